#include "tools/clusterkv_bench/bench_buffers.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/splitmix64.h"

namespace clusterkv::bench {

absl::StatusOr<std::unique_ptr<ScratchDir>> ScratchDir::Create(const std::string& parent,
                                                               absl::string_view name) {
  std::string pattern = absl::StrCat(parent.empty() ? "/tmp" : parent, "/clusterkv_bench_", name,
                                     ".XXXXXX");
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(name, ": cannot create ", pattern, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<ScratchDir>(new ScratchDir(buf.data()));
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) std::cerr << "clusterkv_bench: could not remove " << path_ << ": " << ec.message() << "\n";
}

std::string ScratchDir::Sub(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

void ScratchDir::RemoveSub(absl::string_view name) const {
  std::error_code ec;
  std::filesystem::remove_all(Sub(name), ec);
}

Ring::Ring(int64_t bytes) : bytes_(bytes), data_(new uint8_t[static_cast<size_t>(bytes)]) {
  std::memset(data_.get(), 0, static_cast<size_t>(bytes));
}

void Ring::FillRandom(uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t off = 0; off < bytes_; off += 8) {
    const uint64_t z = SplitMix64(x);
    std::memcpy(data_.get() + off, &z, static_cast<size_t>(std::min<int64_t>(8, bytes_ - off)));
  }
}

std::string SizeText(int64_t bytes) {
  constexpr int64_t kKiB = 1024;
  constexpr int64_t kMiB = 1024 * kKiB;
  if (bytes % kMiB == 0) return absl::StrCat(bytes / kMiB, " MiB");
  if (bytes % kKiB == 0) return absl::StrCat(bytes / kKiB, " KiB");
  return absl::StrCat(bytes, " B");
}

}  // namespace clusterkv::bench
