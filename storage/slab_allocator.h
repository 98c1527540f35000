// SlabAllocator: carves a fixed byte range (the host arena) into cluster blocks. Blocks up to
// 1 MiB come from size classes spaced ~12.5% apart, each served by 2 MiB slabs; larger blocks
// take whole contiguous runs of slabs. Offsets are 64-byte aligned. It only does arithmetic on
// offsets, never touches the memory. Thread-safe.
//
// Example:
//   SlabAllocator slabs(arena->capacity());
//   ASSIGN_OR_RETURN(SlabAllocation a, slabs.Allocate(block.size()));
//   std::memcpy(arena->base() + a.offset, block.data(), block.size());
//   slabs.Free(a);
#ifndef CLUSTERKV_STORAGE_SLAB_ALLOCATOR_H_
#define CLUSTERKV_STORAGE_SLAB_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace clusterkv::storage {

struct SlabAllocation {
  uint64_t offset = 0;    // from the start of the range
  uint64_t capacity = 0;  // usable bytes (>= requested)
  uint64_t requested = 0;
};

struct SlabStats {
  uint64_t capacity_bytes = 0;
  uint64_t requested_bytes = 0;  // sum of live requests
  uint64_t reserved_bytes = 0;   // bytes in slabs/runs that are handed out or partly used
  uint64_t live_blocks = 0;
  // 1 - requested / reserved: space lost to rounding and partly empty slabs.
  double Fragmentation() const {
    return reserved_bytes == 0 ? 0.0
                               : 1.0 - static_cast<double>(requested_bytes) /
                                           static_cast<double>(reserved_bytes);
  }
  double Occupancy() const {
    return capacity_bytes == 0 ? 0.0
                               : static_cast<double>(requested_bytes) /
                                     static_cast<double>(capacity_bytes);
  }
};

class SlabAllocator {
 public:
  static constexpr uint64_t kSlabBytes = uint64_t{2} << 20;
  static constexpr uint64_t kMaxClassBytes = uint64_t{1} << 20;
  static constexpr uint64_t kAlignment = 64;

  // Manages [0, capacity_bytes); capacity is rounded down to whole slabs.
  explicit SlabAllocator(uint64_t capacity_bytes);

  // InvalidArgument for 0 bytes; ResourceExhausted when no slab or run can hold the block.
  absl::StatusOr<SlabAllocation> Allocate(uint64_t bytes);
  // Returns an allocation made by this allocator (CHECK-fails on a foreign or double free).
  void Free(const SlabAllocation& allocation);

  SlabStats Stats() const;

 private:
  struct SizeClass {
    uint64_t block_bytes = 0;
    std::vector<uint32_t> partial_slabs;  // slabs with at least one free block
  };
  static constexpr uint32_t kNotPartial = ~uint32_t{0};
  struct Slab {
    int32_t size_class = -1;  // -1: free or part of a large run
    uint32_t run_slabs = 0;   // for the first slab of a large run
    uint32_t used = 0;
    std::vector<uint32_t> free_blocks;  // block indexes inside the slab
    // Blocks [0, carved) have been handed out at least once; later ones are implicitly free,
    // so a slab put into service needs no free list built up front.
    uint32_t carved = 0;
    // Position in its class's partial_slabs, or kNotPartial.
    uint32_t partial_index = kNotPartial;
    std::vector<uint64_t> live_bits;  // one bit per block: catches double and foreign frees
  };

  int32_t ClassFor(uint64_t bytes) const;
  uint32_t BlocksPerSlab(int32_t size_class) const;
  bool TakeFreeSlabs(uint32_t count, uint32_t* first) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReturnSlabs(uint32_t first, uint32_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddFreeRun(uint32_t first, uint32_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseFreeRun(std::map<uint32_t, uint32_t>::iterator run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemovePartial(uint32_t slab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeClassBlock(const SlabAllocation& allocation, uint32_t slab)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeRun(const SlabAllocation& allocation, uint32_t slab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t num_slabs_;
  std::vector<uint64_t> class_bytes_;
  mutable absl::Mutex mu_;
  std::vector<SizeClass> classes_ ABSL_GUARDED_BY(mu_);
  std::vector<Slab> slabs_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, uint32_t> free_runs_ ABSL_GUARDED_BY(mu_);  // first slab -> count
  // The same runs ordered by (count, first slab): finds the smallest run that fits in
  // O(log n), lowest address first among equal sizes.
  std::set<std::pair<uint32_t, uint32_t>> runs_by_size_ ABSL_GUARDED_BY(mu_);
  SlabStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_SLAB_ALLOCATOR_H_
