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

// Element types the engine reads. Anything else in a file (quantized GGML types, integer or
// fp8 safetensors dtypes) is recorded by name and refused when the tensor is read.
enum class StoredDType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kUnsupported = 255 };

absl::string_view StoredDTypeName(StoredDType dtype);  // "F32", "F16", "BF16"
size_t StoredDTypeSize(StoredDType dtype);             // 4, 2, 2 (0 for kUnsupported)
// "f32"/"F32"/"fp32"/"float32", likewise f16 and bf16; InvalidArgument otherwise.
absl::StatusOr<StoredDType> ParseStoredDType(absl::string_view name);

// A tensor inside a mapped file. `shape` is outermost first (GGUF's innermost-first dims are
// reversed by the GGUF reader), so a weight matrix is {rows, cols} in both formats.
struct StoredTensor {
  std::string name;
  StoredDType dtype = StoredDType::kUnsupported;
  std::string type_name;  // the file's own name of the type (e.g. "Q4_K", "I64")
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;  // empty for unsupported types

  int64_t NumElements() const;
};

// The tensor's values in fp32. InvalidArgument when its type is not F32/F16/BF16 (the message
// names the type and the tensor) or when its shape differs from `expected_shape` (outermost
// first).
absl::StatusOr<std::vector<float>> ReadAsFloat(const StoredTensor& tensor,
                                               const std::vector<int64_t>& expected_shape);

// fp32 values encoded as `dtype` (round to nearest even for F16/BF16).
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
