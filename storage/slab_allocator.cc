#include "storage/slab_allocator.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "absl/base/internal/raw_logging.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clusterkv::storage {
namespace {

// Size classes: every multiple of 64 up to 512 bytes, then eight classes per power of two
// (512, 576, ..., 1024, 1152, ...), so a block never wastes more than 12.5% to rounding.
// All are multiples of kAlignment, which keeps every block 64-byte aligned inside a slab.
std::vector<uint64_t> MakeClassBytes() {
  std::vector<uint64_t> classes;
  constexpr uint64_t kLinearLimit = 512;
  for (uint64_t b = SlabAllocator::kAlignment; b <= kLinearLimit; b += SlabAllocator::kAlignment) {
    classes.push_back(b);
  }
  for (uint64_t octave = kLinearLimit; octave < SlabAllocator::kMaxClassBytes; octave *= 2) {
    const uint64_t step = octave / 8;
    for (uint64_t b = octave + step; b <= 2 * octave; b += step) classes.push_back(b);
  }
  return classes;
}

}  // namespace

SlabAllocator::SlabAllocator(uint64_t capacity_bytes)
    : num_slabs_(capacity_bytes / kSlabBytes), class_bytes_(MakeClassBytes()) {
  // Slab indexes are 32-bit: 8 PiB of arena is far beyond any host.
  ABSL_RAW_CHECK(num_slabs_ <= std::numeric_limits<uint32_t>::max(),
                 "SlabAllocator: capacity exceeds 2^32 slabs");
  absl::MutexLock lock(&mu_);
  classes_.resize(class_bytes_.size());
  for (size_t c = 0; c < class_bytes_.size(); ++c) classes_[c].block_bytes = class_bytes_[c];
  slabs_.resize(num_slabs_);
  if (num_slabs_ > 0) AddFreeRun(0, static_cast<uint32_t>(num_slabs_));
  stats_.capacity_bytes = num_slabs_ * kSlabBytes;
}

int32_t SlabAllocator::ClassFor(uint64_t bytes) const {
  auto it = std::lower_bound(class_bytes_.begin(), class_bytes_.end(), bytes);
  return it == class_bytes_.end() ? -1 : static_cast<int32_t>(it - class_bytes_.begin());
}

uint32_t SlabAllocator::BlocksPerSlab(int32_t size_class) const {
  return static_cast<uint32_t>(kSlabBytes / class_bytes_[size_class]);
}

absl::StatusOr<SlabAllocation> SlabAllocator::Allocate(uint64_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("slab allocator: 0-byte allocation");

  if (bytes > kMaxClassBytes) {
    // Whole slabs; computed without overflow for any 64-bit request.
    const uint64_t count = bytes / kSlabBytes + (bytes % kSlabBytes != 0 ? 1 : 0);
    absl::MutexLock lock(&mu_);
    uint32_t first = 0;
    if (count > num_slabs_ || !TakeFreeSlabs(static_cast<uint32_t>(count), &first)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("slab allocator: no free run of ", count, " slabs for ", bytes, " bytes"));
    }
    slabs_[first].run_slabs = static_cast<uint32_t>(count);
    stats_.reserved_bytes += count * kSlabBytes;
    stats_.requested_bytes += bytes;
    ++stats_.live_blocks;
    return SlabAllocation{first * kSlabBytes, count * kSlabBytes, bytes};
  }

  int32_t c = ClassFor(bytes);
  absl::MutexLock lock(&mu_);
  uint32_t fresh = 0;
  if (classes_[c].partial_slabs.empty() && !TakeFreeSlabs(1, &fresh)) {
    // No free slab: rather than fail while other classes have room, use a partly filled slab
    // of a class up to ~2x larger (8 classes up), trading internal waste for availability.
    int32_t larger = -1;
    for (int32_t k = c + 1; k < static_cast<int32_t>(classes_.size()) && k <= c + 8; ++k) {
      if (!classes_[k].partial_slabs.empty()) {
        larger = k;
        break;
      }
    }
    if (larger < 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("slab allocator: no free slab for a ", bytes, "-byte block"));
    }
    c = larger;
  }
  SizeClass& size_class = classes_[c];
  if (size_class.partial_slabs.empty()) {  // `fresh` was taken above
    Slab& slab = slabs_[fresh];
    slab.size_class = c;
    slab.used = 0;
    slab.carved = 0;
    slab.live_bits.assign((BlocksPerSlab(c) + 63) / 64, 0);
    slab.partial_index = static_cast<uint32_t>(size_class.partial_slabs.size());
    size_class.partial_slabs.push_back(fresh);
    stats_.reserved_bytes += kSlabBytes;
  }

  const uint32_t s = size_class.partial_slabs.back();
  Slab& slab = slabs_[s];
  uint32_t index;
  if (!slab.free_blocks.empty()) {
    index = slab.free_blocks.back();
    slab.free_blocks.pop_back();
  } else {
    index = slab.carved++;
  }
  slab.live_bits[index / 64] |= uint64_t{1} << (index % 64);
  if (++slab.used == BlocksPerSlab(c)) RemovePartial(s);

  stats_.requested_bytes += bytes;
  ++stats_.live_blocks;
  return SlabAllocation{s * kSlabBytes + index * size_class.block_bytes, size_class.block_bytes,
                        bytes};
}

void SlabAllocator::Free(const SlabAllocation& allocation) {
  absl::MutexLock lock(&mu_);
  ABSL_RAW_CHECK(allocation.offset / kSlabBytes < num_slabs_,
                 "SlabAllocator::Free: offset outside the managed range");
  const uint32_t s = static_cast<uint32_t>(allocation.offset / kSlabBytes);
  if (slabs_[s].size_class >= 0) {
    FreeClassBlock(allocation, s);
  } else {
    FreeRun(allocation, s);
  }
  stats_.requested_bytes -= allocation.requested;
  --stats_.live_blocks;
}

void SlabAllocator::FreeClassBlock(const SlabAllocation& allocation, uint32_t s) {
  Slab& slab = slabs_[s];
  const int32_t c = slab.size_class;
  const uint64_t block_bytes = class_bytes_[c];
  const uint64_t in_slab = allocation.offset - uint64_t{s} * kSlabBytes;
  ABSL_RAW_CHECK(in_slab % block_bytes == 0 && in_slab / block_bytes < BlocksPerSlab(c),
                 "SlabAllocator::Free: offset is not a block of its slab");
  // A block may come from a larger class than its request's (Allocate's fallback).
  ABSL_RAW_CHECK(allocation.capacity == block_bytes && allocation.requested > 0 &&
                     allocation.requested <= block_bytes && ClassFor(allocation.requested) <= c,
                 "SlabAllocator::Free: capacity/requested do not match the block");
  const uint32_t index = static_cast<uint32_t>(in_slab / block_bytes);
  uint64_t& word = slab.live_bits[index / 64];
  const uint64_t bit = uint64_t{1} << (index % 64);
  ABSL_RAW_CHECK((word & bit) != 0, "SlabAllocator::Free: double free of a block");
  word &= ~bit;

  const bool was_full = slab.used == BlocksPerSlab(c);
  --slab.used;
  if (slab.used == 0) {
    // The last block: the slab goes back to the free runs for any class or a large block.
    if (slab.partial_index != kNotPartial) RemovePartial(s);
    slab.size_class = -1;
    slab.carved = 0;
    std::vector<uint32_t>().swap(slab.free_blocks);
    std::vector<uint64_t>().swap(slab.live_bits);
    ReturnSlabs(s, 1);
    stats_.reserved_bytes -= kSlabBytes;
    return;
  }
  slab.free_blocks.push_back(index);
  if (was_full) {
    std::vector<uint32_t>& partial = classes_[c].partial_slabs;
    slab.partial_index = static_cast<uint32_t>(partial.size());
    partial.push_back(s);
  }
}

void SlabAllocator::FreeRun(const SlabAllocation& allocation, uint32_t s) {
  const uint32_t count = slabs_[s].run_slabs;
  ABSL_RAW_CHECK(count > 0 && allocation.offset % kSlabBytes == 0,
                 "SlabAllocator::Free: double free, or not the start of a run");
  ABSL_RAW_CHECK(allocation.capacity == uint64_t{count} * kSlabBytes &&
                     allocation.requested > kMaxClassBytes &&
                     allocation.requested <= allocation.capacity &&
                     allocation.requested > allocation.capacity - kSlabBytes,
                 "SlabAllocator::Free: capacity/requested do not match the run");
  slabs_[s].run_slabs = 0;
  ReturnSlabs(s, count);
  stats_.reserved_bytes -= allocation.capacity;
}

SlabStats SlabAllocator::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool SlabAllocator::TakeFreeSlabs(uint32_t count, uint32_t* first) {
  // Best fit: the smallest free run that holds `count` slabs, so single slabs for size
  // classes fill holes and leave long runs for large blocks.
  auto fit = runs_by_size_.lower_bound({count, 0});
  if (fit == runs_by_size_.end()) return false;
  const uint32_t start = fit->second;
  const uint32_t length = fit->first;
  EraseFreeRun(free_runs_.find(start));
  if (length > count) AddFreeRun(start + count, length - count);
  *first = start;
  return true;
}

void SlabAllocator::ReturnSlabs(uint32_t first, uint32_t count) {
  // Coalesce with the free runs directly after and before.
  auto next = free_runs_.find(first + count);
  if (next != free_runs_.end()) {
    count += next->second;
    EraseFreeRun(next);
  }
  auto after = free_runs_.lower_bound(first);
  if (after != free_runs_.begin()) {
    auto prev = std::prev(after);
    if (prev->first + prev->second == first) {
      first = prev->first;
      count += prev->second;
      EraseFreeRun(prev);
    }
  }
  AddFreeRun(first, count);
}

void SlabAllocator::AddFreeRun(uint32_t first, uint32_t count) {
  free_runs_.emplace(first, count);
  runs_by_size_.emplace(count, first);
}

void SlabAllocator::EraseFreeRun(std::map<uint32_t, uint32_t>::iterator run) {
  runs_by_size_.erase({run->second, run->first});
  free_runs_.erase(run);
}

void SlabAllocator::RemovePartial(uint32_t s) {
  std::vector<uint32_t>& partial = classes_[slabs_[s].size_class].partial_slabs;
  const uint32_t pos = slabs_[s].partial_index;
  const uint32_t moved = partial.back();
  partial[pos] = moved;
  slabs_[moved].partial_index = pos;
  partial.pop_back();
  slabs_[s].partial_index = kNotPartial;
}

}  // namespace clusterkv::storage
