// Scratch space shared by the benchmarks that touch storage or a daemon: a self-removing
// temporary directory and a cold byte ring (a buffer larger than every cache, cut into
// block-sized slots), the source and destination of the cold-memcpy baselines.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_BUFFERS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_BUFFERS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::bench {

// A fresh directory (mkdtemp) "<parent>/clusterkv_bench_<name>.XXXXXX"; removed with everything
// in it on destruction. Not thread-safe.
class ScratchDir {
 public:
  // `parent` empty means /tmp. Unavailable when the directory cannot be created.
  static absl::StatusOr<std::unique_ptr<ScratchDir>> Create(const std::string& parent,
                                                            absl::string_view name);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(absl::string_view name) const;
  // Removes one entry (between phases, to keep the disk footprint small).
  void RemoveSub(absl::string_view name) const;

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A buffer of `bytes` (all pages touched) cut into block-sized slots; block i uses slot
// i mod slots, so a pass walks the whole buffer and no cache holds it at full size.
// Owns its memory; not thread-safe.
class Ring {
 public:
  explicit Ring(int64_t bytes);
  int64_t bytes() const { return bytes_; }
  // Slots of `block` bytes (>= 1 when bytes() >= block).
  int64_t Slots(int64_t block) const { return bytes_ / block; }
  uint8_t* Slot(int64_t i, int64_t block) { return data_.get() + (i % Slots(block)) * block; }
  // Seeded random bytes (splitmix64).
  void FillRandom(uint64_t seed);

 private:
  int64_t bytes_;
  std::unique_ptr<uint8_t[]> data_;
};

// "64 KiB", "1 MiB" or "1000 B".
std::string SizeText(int64_t bytes);

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_BUFFERS_H_
