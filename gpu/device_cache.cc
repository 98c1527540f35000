#include "gpu/device_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace clusterkv::gpu {

ClusterCache::ClusterCache(int64_t capacity_tokens, int32_t residency_steps)
    : capacity_(std::max<int64_t>(0, capacity_tokens)),
      residency_steps_(std::max(0, residency_steps)),
      free_tokens_(capacity_) {
  if (capacity_ > 0) free_[0] = capacity_;
}

void ClusterCache::Free(const ClusterId& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  int64_t begin = it->second.slot.begin;
  int64_t end = it->second.slot.end;
  free_tokens_ += end - begin;
  entries_.erase(it);
  // Coalesce with the neighbouring free runs.
  auto next = free_.lower_bound(begin);
  if (next != free_.end() && next->first == end) {
    end = next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->second == begin) {
      begin = prev->first;
      free_.erase(prev);
    }
  }
  free_[begin] = end;
}

bool ClusterCache::Allocate(int64_t tokens, TokenRange* slot) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {  // first fit
    if (it->second - it->first < tokens) continue;
    const int64_t begin = it->first;
    const int64_t end = it->second;
    free_.erase(it);
    if (begin + tokens < end) free_[begin + tokens] = end;
    free_tokens_ -= tokens;
    *slot = TokenRange{begin, begin + tokens};
    return true;
  }
  return false;
}

absl::StatusOr<CachePlan> ClusterCache::Access(int64_t step,
                                               absl::Span<const CacheRequest> wanted) {
  return Plan(step, wanted, /*count=*/true);
}

absl::StatusOr<CachePlan> ClusterCache::Reserve(int64_t step,
                                                absl::Span<const CacheRequest> wanted) {
  return Plan(step, wanted, /*count=*/false);
}

absl::StatusOr<CachePlan> ClusterCache::Plan(int64_t step, absl::Span<const CacheRequest> wanted,
                                             bool count) {
  if (step < last_step_) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", step, " is before the previous step ", last_step_));
  }
  absl::flat_hash_map<ClusterId, int32_t> wanted_ids;  // id -> tokens
  int64_t miss_tokens = 0;
  int64_t reusable = free_tokens_;
  for (const CacheRequest& r : wanted) {
    if (r.tokens < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster ", ToString(r.id), " requests ", r.tokens, " tokens"));
    }
    if (!wanted_ids.emplace(r.id, r.tokens).second) {
      return absl::InvalidArgumentError(absl::StrCat("cluster ", ToString(r.id), " requested twice"));
    }
  }
  // A resident cluster survives this step when it is not expired and, if wanted, large enough.
  auto expired = [&](const Resident& resident) {
    return step - resident.last_used > residency_steps_;
  };
  for (const CacheRequest& r : wanted) {
    auto it = entries_.find(r.id);
    if (it == entries_.end() || expired(it->second) || it->second.slot.size() < r.tokens) {
      miss_tokens += r.tokens;
    }
  }
  for (const auto& [id, resident] : entries_) {
    auto want = wanted_ids.find(id);
    const bool kept = !expired(resident) && want != wanted_ids.end() &&
                      resident.slot.size() >= want->second;
    if (!kept) reusable += resident.slot.size();
  }
  if (miss_tokens > reusable) {
    return absl::ResourceExhaustedError(absl::StrCat("step needs ", miss_tokens,
                                                     " new tokens; the cache can free ",
                                                     reusable, " of ", capacity_));
  }
  last_step_ = step;

  // Expired entries (even wanted ones: R bounds what stays resident) and undersized ones leave
  // first.
  std::vector<ClusterId> leaving;
  for (const auto& [id, resident] : entries_) {
    auto want = wanted_ids.find(id);
    if (expired(resident) || (want != wanted_ids.end() && resident.slot.size() < want->second)) {
      leaving.push_back(id);
    }
  }
  for (const ClusterId& id : leaving) {
    Free(id);
    ++stats_.evictions;
  }

  CachePlan plan;
  std::vector<const CacheRequest*> misses;
  for (const CacheRequest& r : wanted) {
    auto it = entries_.find(r.id);
    if (it != entries_.end()) {
      it->second.last_used = step;
      plan.hits.push_back(
          CacheEntry{r.id, TokenRange{it->second.slot.begin, it->second.slot.begin + r.tokens}});
    } else {
      misses.push_back(&r);
    }
  }
  // Largest first keeps first-fit fragmentation low.
  std::stable_sort(misses.begin(), misses.end(), [](const CacheRequest* a, const CacheRequest* b) {
    return a->tokens > b->tokens;
  });
  for (const CacheRequest* r : misses) {
    TokenRange slot;
    while (!Allocate(r->tokens, &slot)) {
      // Evict the least recently used cluster this step does not need.
      const ClusterId* victim = nullptr;
      int64_t victim_used = 0;
      for (const auto& [id, resident] : entries_) {
        if (wanted_ids.contains(id)) continue;
        if (victim == nullptr || resident.last_used < victim_used ||
            (resident.last_used == victim_used && id < *victim)) {
          victim = &id;
          victim_used = resident.last_used;
        }
      }
      if (victim == nullptr) {
        for (const CacheEntry& placed : plan.misses) Free(placed.id);
        return absl::ResourceExhaustedError(
            absl::StrCat("device cache too fragmented for a ", r->tokens, "-token cluster"));
      }
      Free(ClusterId(*victim));
      ++stats_.evictions;
    }
    entries_[r->id] = Resident{slot, step};
    plan.misses.push_back(CacheEntry{r->id, slot});
  }
  if (!count) return plan;
  for (const CacheEntry& e : plan.hits) {
    ++stats_.hit_clusters;
    stats_.hit_tokens += e.slot.size();
  }
  for (const CacheEntry& e : plan.misses) {
    ++stats_.miss_clusters;
    stats_.miss_tokens += e.slot.size();
  }
  return plan;
}

}  // namespace clusterkv::gpu
