// libFuzzer target: the GGUF reader of the decode engine (tools/clusterkv_llama/gguf.h) and the
// conversions behind ReadAsFloat (tensor_file.h, ggml_quant.h), which read model files
// downloaded from anywhere. ParseGguf works on a memory buffer, so the input is parsed
// directly. Every failure must be DataLoss or InvalidArgument; every tensor of what parses must
// lie inside the input and, read with its own shape, decode to exactly its element count
// (F32/F16/BF16 and the decodable block types) or be refused as InvalidArgument (the rest).
// The input's bytes are also decoded as raw blocks of every block type, through both decoder
// entry points, which must agree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/clusterkv_llama/ggml_quant.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/tensor_file.h"

namespace clusterkv::llama {
namespace {

// Tensors above this many elements are not decoded: a few bytes of header can declare
// gigabytes of fp32.
constexpr int64_t kMaxDecodedElements = int64_t{1} << 20;

void Require(bool condition) {
  if (!condition) std::abort();
}

void FuzzParse(absl::Span<const uint8_t> bytes) {
  const absl::StatusOr<GgufIndex> index = ParseGguf(bytes);
  if (!index.ok()) {
    Require(absl::IsDataLoss(index.status()) || absl::IsInvalidArgument(index.status()));
    return;
  }
  Require(index->data_offset <= bytes.size());
  for (const StoredTensor& t : index->tensors) {
    Require(!t.shape.empty());
    for (int64_t d : t.shape) Require(d > 0);
    if (!t.bytes.empty()) {
      Require(t.bytes.data() >= bytes.data() &&
              t.bytes.data() + t.bytes.size() <= bytes.data() + bytes.size());
    }
    if (t.NumElements() > kMaxDecodedElements) continue;
    const absl::StatusOr<std::vector<float>> values = ReadAsFloat(t, t.shape);
    if (t.dtype == StoredDType::kUnsupported) {
      Require(absl::IsInvalidArgument(values.status()));
    } else {
      Require(values.ok() && values->size() == static_cast<size_t>(t.NumElements()));
    }
  }
}

void FuzzBlocks(absl::Span<const uint8_t> bytes) {
  for (uint32_t type :
       {kGgmlTypeQ4_0, kGgmlTypeQ4_1, kGgmlTypeQ5_0, kGgmlTypeQ5_1, kGgmlTypeQ8_0, kGgmlTypeQ2_K,
        kGgmlTypeQ3_K, kGgmlTypeQ4_K, kGgmlTypeQ5_K, kGgmlTypeQ6_K, kGgmlTypeQ8_K}) {
    const GgmlTypeInfo* info = FindGgmlType(type);
    const int64_t blocks = static_cast<int64_t>(bytes.size()) / info->block_bytes;
    const int64_t n = blocks * info->block_elements;
    const absl::Span<const uint8_t> whole = bytes.subspan(0, blocks * info->block_bytes);
    std::vector<float> one(static_cast<size_t>(n)), two(static_cast<size_t>(n));
    Require(DequantizeRow(type, whole, n, one.data()).ok());
    Require(DequantizeTensor(type, whole, n, two.data(), 2).ok());
    Require(n == 0 || std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
    // One byte short of the blocks is refused, never read past.
    if (blocks > 0) {
      Require(absl::IsInvalidArgument(
          DequantizeRow(type, whole.subspan(0, whole.size() - 1), n, one.data())));
    }
  }
}

}  // namespace
}  // namespace clusterkv::llama

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::Span<const uint8_t> bytes(data, size);
  clusterkv::llama::FuzzParse(bytes);
  clusterkv::llama::FuzzBlocks(bytes);
  return 0;
}
