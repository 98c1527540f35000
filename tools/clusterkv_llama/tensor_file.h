// What the two checkpoint readers (safetensors.h, gguf.h) have in common: a tensor as stored in
// a file (element type, shape, bytes inside the file's map) and the conversions between stored
// elements and the fp32 the engine computes in.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TENSOR_FILE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TENSOR_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace clusterkv::llama {

// Element types the engine reads: the plain float types, and (GGUF only) the GGML
// block-quantized types that ggml_quant.h decodes, all as kQuantized with the exact type in
// StoredTensor::ggml_type. Anything else in a file (IQ* codebook types, integer or fp8
// safetensors dtypes) is kUnsupported: recorded by name and refused when the tensor is read.
enum class StoredDType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kQuantized = 3,
  kUnsupported = 255,
};

// "F32", "F16", "BF16", "quantized", "unsupported".
absl::string_view StoredDTypeName(StoredDType dtype);
// 4, 2, 2; 0 for kQuantized (sizes go by blocks, GgmlBytes) and kUnsupported.
size_t StoredDTypeSize(StoredDType dtype);
// "f32"/"F32"/"fp32"/"float32", likewise f16 and bf16; InvalidArgument otherwise.
absl::StatusOr<StoredDType> ParseStoredDType(absl::string_view name);

// A tensor inside a mapped file. `shape` is outermost first (GGUF's innermost-first dims are
// reversed by the GGUF reader), so a weight matrix is {rows, cols} in both formats.
struct StoredTensor {
  std::string name;
  StoredDType dtype = StoredDType::kUnsupported;
  std::string type_name;   // the file's own name of the type (e.g. "Q4_K", "I64")
  uint32_t ggml_type = 0;  // GGUF: the GGML type id (ggml_quant.h); 0 from other formats
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;  // empty for unsupported types

  int64_t NumElements() const;
};

// The tensor's values in fp32, row-major; quantized tensors are decoded (ggml_quant.h) on all
// cores. InvalidArgument when its type is kUnsupported (the message names the type and the
// tensor) or when its shape differs from `expected_shape` (outermost first); DataLoss when its
// bytes do not match its shape (for a quantized type: the innermost dim is not a whole number
// of blocks, or the byte count is not that of its blocks).
absl::StatusOr<std::vector<float>> ReadAsFloat(const StoredTensor& tensor,
                                               const std::vector<int64_t>& expected_shape);

// fp32 values encoded as `dtype` (round to nearest even for F16/BF16); empty for kQuantized and
// kUnsupported, which have no per-element encoding.
std::string EncodeFloats(const std::vector<float>& values, StoredDType dtype);
// fp32 -> `dtype` -> fp32: the values a file of that dtype holds.
std::vector<float> RoundTrip(const std::vector<float>& values, StoredDType dtype);

// A tensor to be written: logical shape outermost first and the encoded bytes.
struct TensorToWrite {
  std::string name;
  StoredDType dtype = StoredDType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// "[a, b, c]".
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TENSOR_FILE_H_
