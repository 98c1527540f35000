// MappedFile: a read-only memory map of a whole file (the model loaders' view of a checkpoint:
// tensors are converted straight from the map, so a multi-GiB file is never copied whole).
// Move-only RAII owner of the mapping; thread-compatible (the bytes are immutable).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_MAPPED_FILE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace clusterkv::llama::internal {

class MappedFile {
 public:
  // NotFound when the file does not exist; DataLoss when it is empty; Unavailable for other
  // open/stat/mmap failures (the message names the path and errno).
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  absl::Span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_MAPPED_FILE_H_
