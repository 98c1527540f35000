// ClusterCache: bookkeeping of the cluster-granular device cache (DESIGN.md section 4). It
// decides, per decode step, which selected clusters are already resident (hits) and where the
// missing ones go (slots in a device buffer measured in tokens); the caller moves the bytes.
// A cluster used at step s stays resident through step s + R; older ones are freed first, then
// least-recently-used ones not needed by the current step. Thread-compatible.
//
// Example:
//   ClusterCache cache(/*capacity_tokens=*/4096, /*residency_steps=*/1);
//   ASSIGN_OR_RETURN(CachePlan plan, cache.Access(step, wanted));
//   for (const auto& m : plan.misses) Fetch(m.id, m.slot);  // then attend over all slots
#ifndef CLUSTERKV_GPU_DEVICE_CACHE_H_
#define CLUSTERKV_GPU_DEVICE_CACHE_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "core/token_range.h"

namespace clusterkv::gpu {

struct CacheRequest {
  ClusterId id;
  int32_t tokens = 0;  // rows needed (the cluster's size, or its truncated count)
};

struct CacheEntry {
  ClusterId id;
  TokenRange slot;  // rows of the device buffer holding the cluster
};

struct CachePlan {
  std::vector<CacheEntry> hits;
  std::vector<CacheEntry> misses;  // slots allocated; the caller must fill them
};

struct CacheStats {
  int64_t hit_clusters = 0;
  int64_t miss_clusters = 0;
  int64_t hit_tokens = 0;
  int64_t miss_tokens = 0;
  int64_t evictions = 0;
  double HitRate() const {  // fraction of requested tokens already resident
    const int64_t total = hit_tokens + miss_tokens;
    return total == 0 ? 0.0 : static_cast<double>(hit_tokens) / static_cast<double>(total);
  }
};

class ClusterCache {
 public:
  ClusterCache(int64_t capacity_tokens, int32_t residency_steps);

  // Plans step `step` (non-decreasing across calls) for the clusters in `wanted` (distinct ids).
  // A resident cluster holding fewer rows than now requested counts as a miss and is re-placed.
  // InvalidArgument: step goes backwards, duplicate ids, tokens < 1.
  // ResourceExhausted: the wanted clusters do not fit in the capacity (checked before anything
  // changes), or fit only in total but not in contiguous free runs; in the latter case cold
  // clusters may have been evicted, and no wanted cluster was placed.
  absl::StatusOr<CachePlan> Access(int64_t step, absl::Span<const CacheRequest> wanted);
  // Access for a speculative recall (a prefetch ahead of the step's real selection): the same
  // plan and placement, but hits and misses are not counted, since the step's own Access
  // counts the clusters it then finds resident. Evictions are counted.
  absl::StatusOr<CachePlan> Reserve(int64_t step, absl::Span<const CacheRequest> wanted);

  const CacheStats& stats() const { return stats_; }
  // Whether `id` holds a slot (resident, whatever its rows).
  bool Contains(const ClusterId& id) const { return entries_.contains(id); }
  int64_t capacity_tokens() const { return capacity_; }
  int64_t resident_tokens() const { return capacity_ - free_tokens_; }
  int64_t resident_clusters() const { return static_cast<int64_t>(entries_.size()); }

 private:
  struct Resident {
    TokenRange slot;
    int64_t last_used = 0;
  };
  absl::StatusOr<CachePlan> Plan(int64_t step, absl::Span<const CacheRequest> wanted,
                                  bool count);
  void Free(const ClusterId& id);
  bool Allocate(int64_t tokens, TokenRange* slot);

  int64_t capacity_;
  int32_t residency_steps_;
  int64_t last_step_ = -1;
  int64_t free_tokens_;
  absl::flat_hash_map<ClusterId, Resident> entries_;
  std::map<int64_t, int64_t> free_;  // begin -> end, disjoint, coalesced
  CacheStats stats_;
};

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_DEVICE_CACHE_H_
