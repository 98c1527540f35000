// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {"__metadata__": {str: str}, NAME: {"dtype": "F16", "shape": [..], "data_offsets":
// [begin, end]}, ...}, then the byte buffer that the offsets index (relative to its start).
// The reader validates every field against the file: N within the file, offsets ordered and
// inside the buffer, end - begin == prod(shape) * element size; every violation is DataLoss
// (or InvalidArgument for a header that is not the format at all), never a crash.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_SAFETENSORS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_SAFETENSORS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/clusterkv_llama/internal/mapped_file.h"
#include "tools/clusterkv_llama/tensor_file.h"

namespace clusterkv::llama {

// The parsed header of a safetensors byte range; tensors point into that range.
struct SafetensorsIndex {
  std::map<std::string, std::string> metadata;
  std::vector<StoredTensor> tensors;  // in header order

  const StoredTensor* Find(absl::string_view name) const;
};

// Parses `bytes` (a whole file). DataLoss: truncated or inconsistent header or offsets;
// InvalidArgument: the header is not a safetensors JSON object.
absl::StatusOr<SafetensorsIndex> ParseSafetensors(absl::Span<const uint8_t> bytes);

// A mapped file and its index. Immutable once opened; thread-compatible.
class SafetensorsFile {
 public:
  // MappedFile::Open's errors, then ParseSafetensors' (prefixed with the path).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  const SafetensorsIndex& index() const { return index_; }

 private:
  SafetensorsFile(std::unique_ptr<internal::MappedFile> file, SafetensorsIndex index)
      : file_(std::move(file)), index_(std::move(index)) {}
  std::unique_ptr<internal::MappedFile> file_;
  SafetensorsIndex index_;
};

// Writes `tensors` (in order, 8-byte aligned header padded with spaces) and `metadata`.
// InvalidArgument: duplicate names or bytes that disagree with shape and dtype; Unavailable:
// the file cannot be written.
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_SAFETENSORS_H_
