// The GGUF format (llama.cpp, versions 2 and 3), little-endian:
//   u32 magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
//   metadata_kv_count x {string key, u32 value_type, value},
//   tensor_count x {string name, u32 n_dims, u64 ne[n_dims] (innermost first), u32 ggml_type,
//                   u64 offset (from the data section, a multiple of the alignment)},
//   padding to `general.alignment` (u32, default 32), the data section.
// A string is u64 length + bytes; an array is u32 element type + u64 count + elements (arrays
// may nest). The reader parses every value type (keeping strings and numbers), checks every
// length, count and offset against the bytes that remain (DataLoss when they do not fit;
// InvalidArgument for a file that is not GGUF or a version it does not read) and turns tensor
// dims into outermost-first shapes. Every tensor's byte range is checked with its type's block
// geometry (ggml_quant.h). F32, F16, BF16 and the block-quantized types ggml_quant.h decodes keep
// their bytes and are converted to fp32 when read; other types (I8..I64, F64, the IQ* codebook
// types, ...) are recorded by their GGML name and refused when read (tensor_file.h).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GGUF_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GGUF_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tools/clusterkv_llama/ggml_quant.h"
#include "tools/clusterkv_llama/internal/mapped_file.h"
#include "tools/clusterkv_llama/tensor_file.h"

namespace clusterkv::llama {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

absl::string_view GgufTypeName(GgufType type);

// The GGML tensor type ids (kGgmlTypeF32, ...) and GgmlTypeName come from ggml_quant.h.

// One metadata value. Scalars use the field of their kind; arrays keep their element type,
// their size and their elements (numbers widened to double, strings, or nested arrays).
struct GgufValue {
  GgufType type = GgufType::kUint32;
  uint64_t uint_value = 0;  // kUint8/16/32/64
  int64_t int_value = 0;    // kInt8/16/32/64
  double float_value = 0;   // kFloat32/64
  bool bool_value = false;
  std::string string_value;
  GgufType element_type = GgufType::kUint8;  // kArray
  std::vector<double> numbers;               // numeric and bool arrays
  std::vector<std::string> strings;          // string arrays
  std::vector<GgufValue> arrays;             // arrays of arrays

  static GgufValue Uint32(uint32_t v);
  static GgufValue Uint64(uint64_t v);
  static GgufValue Int32(int32_t v);
  static GgufValue Float32(float v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue StringArray(std::vector<std::string> v);
  // A numeric (or bool) array of `element_type`.
  static GgufValue NumberArray(GgufType element_type, std::vector<double> v);
  static GgufValue ArrayOfArrays(std::vector<GgufValue> v);
  // Elements of an array value (0 for scalars).
  uint64_t ArraySize() const;
};

using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

struct GgufIndex {
  uint32_t version = 0;
  uint32_t alignment = 32;
  GgufMetadata metadata;
  std::vector<StoredTensor> tensors;  // shape outermost first
  uint64_t data_offset = 0;           // where the data section starts in the file

  const GgufValue* Find(absl::string_view key) const;
  const StoredTensor* FindTensor(absl::string_view name) const;
  // Any integer type widened; NotFound when absent, InvalidArgument for another type.
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  // kFloat32/kFloat64 (integers are accepted too).
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
};

// Parses a whole GGUF file held in `bytes`. Errors as in the file comment.
absl::StatusOr<GgufIndex> ParseGguf(absl::Span<const uint8_t> bytes);

// A mapped GGUF file and its index. Immutable once opened; thread-compatible.
class GgufFile {
 public:
  // MappedFile::Open's errors, then ParseGguf's (prefixed with the path).
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  const GgufIndex& index() const { return index_; }

 private:
  GgufFile(std::unique_ptr<internal::MappedFile> file, GgufIndex index)
      : file_(std::move(file)), index_(std::move(index)) {}
  std::unique_ptr<internal::MappedFile> file_;
  GgufIndex index_;
};

// A tensor for WriteGguf with an explicit GGML type and raw bytes (tests use this to write
// quantized types); shape outermost first.
struct GgufTensorToWrite {
  std::string name;
  uint32_t ggml_type = kGgmlTypeF32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Converts a TensorToWrite (F32/F16/BF16) to a GgufTensorToWrite.
GgufTensorToWrite ToGgufTensor(const TensorToWrite& tensor);

// Writes a GGUF file of `version` (2 or 3). The alignment is `general.alignment` when the
// metadata holds it (a u32 power of two), else 32. InvalidArgument: bad version or alignment,
// duplicate tensor names; Unavailable: the file cannot be written.
absl::Status WriteGguf(const std::string& path, const GgufMetadata& metadata,
                       const std::vector<GgufTensorToWrite>& tensors, uint32_t version = 3);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GGUF_H_
