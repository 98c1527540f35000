// ByteReader: a bounds-checked little-endian cursor over an in-memory byte range, for parsing
// file headers whose every length and offset comes from untrusted input. Every read checks the
// remaining bytes first and answers DataLoss ("truncated ...") instead of reading past the end.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_BYTE_READER_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_BYTE_READER_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace clusterkv::llama::internal {

class ByteReader {
 public:
  explicit ByteReader(absl::Span<const uint8_t> bytes) : bytes_(bytes) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return bytes_.size() - offset_; }

  // Fixed-size little-endian scalar (this code runs on little-endian hosts only).
  template <typename T>
  absl::Status Read(T* out, absl::string_view what) {
    if (remaining() < sizeof(T)) return Truncated(what, sizeof(T));
    std::memcpy(out, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return absl::OkStatus();
  }
  // `n` raw bytes as a view into the underlying range.
  absl::Status ReadBytes(uint64_t n, absl::string_view what, absl::string_view* out) {
    if (remaining() < n) return Truncated(what, n);
    *out = absl::string_view(reinterpret_cast<const char*>(bytes_.data() + offset_),
                             static_cast<size_t>(n));
    offset_ += static_cast<size_t>(n);
    return absl::OkStatus();
  }
  absl::Status Skip(uint64_t n, absl::string_view what) {
    if (remaining() < n) return Truncated(what, n);
    offset_ += static_cast<size_t>(n);
    return absl::OkStatus();
  }

 private:
  absl::Status Truncated(absl::string_view what, uint64_t need) const {
    return absl::DataLossError(absl::StrCat("truncated file: ", what, " needs ", need,
                                            " bytes at offset ", offset_, ", only ", remaining(),
                                            " remain"));
  }

  absl::Span<const uint8_t> bytes_;
  size_t offset_ = 0;
};

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_BYTE_READER_H_
