// The shared state of TieredStore, internal to the storage module: the per-block record
// (BlockState) and TieredStore::State, the block table, LRU list, accounting, pins and hint
// admission behind the store's one mutex. Both halves of the store include it: the tiering
// (tiered_store.cc) and the promotion hints (tiered_store_promotion.cc).
#ifndef CLUSTERKV_STORAGE_INTERNAL_TIERED_STORE_STATE_H_
#define CLUSTERKV_STORAGE_INTERNAL_TIERED_STORE_STATE_H_

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "storage/key_codec.h"
#include "storage/slab_allocator.h"
#include "storage/tiered_store.h"

namespace clusterkv::storage {
namespace internal {

// One block of the store, in either tier or both.
struct BlockState {
  uint64_t size = 0;
  std::optional<SlabAllocation> host;
  bool on_ssd = false;
  bool dirty = false;  // the host copy is not on the SSD yet (write-back)
  bool busy = false;   // being filled, promoted or evicted: wait before touching
  int pins = 0;
  uint64_t last_recall = 0;
  // Promoted into the host tier by a hint (Promote) and not recalled since.
  bool hinted = false;
  bool in_lru = false;
  std::list<BlockKey>::iterator lru_pos;
};

inline absl::Status NoBlockError(const BlockKey& key) {
  return absl::NotFoundError(
      absl::StrCat("no block ", ToString(key.cluster), " in sequence ", key.sequence.sequence));
}

}  // namespace internal

// Everything mutable of the store, behind one mutex. Block bytes are copied and SSD I/O is done
// with the mutex released; the `busy` flag and pin counts keep a block's memory stable meanwhile.
class TieredStore::State {
 public:
  explicit State(const TieredStoreOptions& o) : options(o), slabs(o.host_capacity_bytes) {}

  // Moves a host-resident block to the most-recent end (an O(1) splice, no allocation once it
  // is listed). Pinned and busy blocks stay listed; eviction skips them.
  void LruTouch(const BlockKey& key, internal::BlockState& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!st.host) {
      LruRemove(st);
      return;
    }
    if (st.in_lru) {
      lru.splice(lru.begin(), lru, st.lru_pos);
    } else {
      lru.push_front(key);
      st.lru_pos = lru.begin();
      st.in_lru = true;
    }
    ++generation;
  }
  void LruRemove(internal::BlockState& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (st.in_lru) lru.erase(st.lru_pos);
    st.in_lru = false;
  }
  void AddHost(const std::string& tenant, int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    stats.host.bytes += bytes;
    stats.host.blocks += bytes > 0 ? 1 : -1;
    tenants[tenant].host_bytes += bytes;
  }
  void AddSsd(const std::string& tenant, int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    stats.ssd.bytes += bytes;
    stats.ssd.blocks += bytes > 0 ? 1 : -1;
    tenants[tenant].ssd_bytes += bytes;
  }
  // Gives an SSD block its new host copy `at` (clean: the SSD holds the same bytes).
  void InstallHostCopy(const BlockKey& key, internal::BlockState& st, const SlabAllocation& at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    st.host = at;
    st.dirty = false;
    AddHost(key.sequence.tenant, static_cast<int64_t>(st.size));
  }
  // Drops a block's memory and accounting; the caller erases it from `blocks`.
  void Forget(const BlockKey& key, internal::BlockState& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    LruRemove(st);
    if (st.hinted) {  // dropped with its sequence: wasted, but no verdict on the host tier
      st.hinted = false;
      ++stats.hint_promotions_wasted;
    }
    if (st.host) {
      slabs.Free(*st.host);
      AddHost(key.sequence.tenant, -static_cast<int64_t>(st.size));
    }
    if (st.on_ssd) AddSsd(key.sequence.tenant, -static_cast<int64_t>(st.size));
    --tenants[key.sequence.tenant].blocks;
    ++generation;
  }
  // A pin of a settled host block (Pin, PinResident) and its release (Unpin, UnpinAll): pins
  // keep it from eviction; every recall stamps it and the release moves it to the LRU front.
  void TakePin(internal::BlockState& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ++st.pins;
    ++stats.host.hits;
    st.last_recall = ++tick;
    NoteRecall(st);
  }
  // A read served from the host tier: a hinted promotion came in time.
  void NoteRecall(internal::BlockState& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!st.hinted) return;
    st.hinted = false;
    ++stats.hint_promotions_recalled;
    NoteHintOutcome(/*recalled=*/true);
  }
  // Hint admission; the policy and its constants are in tiered_store_promotion.cc.
  // A hinted block was evicted unread: the host tier could not keep it until its recall.
  void NoteWasted(internal::BlockState& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Counts the outcome of a recent promotion: recalled, or evicted unread.
  void NoteHintOutcome(bool recalled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Whether Promote may follow a hint now (false: kThrottled).
  bool AdmitHint() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void ReleasePin(const BlockKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = blocks.find(key);
    if (it == blocks.end()) return;  // dropped while pinned
    internal::BlockState& st = it->second;
    --st.pins;
    st.last_recall = ++tick;
    LruTouch(key, st);
  }
  // Waits until `key` is not being filled, promoted or evicted; its state, or null when absent.
  internal::BlockState* AwaitSettled(const BlockKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    // Fast path (every recall of a settled block): one lookup, no Await.
    if (auto it = blocks.find(key); it == blocks.end()) {
      return nullptr;
    } else if (!it->second.busy) {
      return &it->second;
    }
    auto settled = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = blocks.find(key);
      return it == blocks.end() || !it->second.busy;
    };
    mu.Await(absl::Condition(&settled));
    auto it = blocks.find(key);
    return it == blocks.end() ? nullptr : &it->second;
  }
  bool AboveHigh() const ABSL_SHARED_LOCKS_REQUIRED(mu) {
    return stats.host.bytes > options.high_watermark * options.host_capacity_bytes;
  }

  const TieredStoreOptions options;
  SlabAllocator slabs;
  mutable absl::Mutex mu;
  absl::flat_hash_map<BlockKey, internal::BlockState> blocks ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<SequenceKey, absl::flat_hash_set<ClusterId>> by_sequence ABSL_GUARDED_BY(mu);
  absl::flat_hash_set<SequenceKey> sequences ABSL_GUARDED_BY(mu);
  // Every host-resident block; front: most recently recalled.
  std::list<BlockKey> lru ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, TenantUsage> tenants ABSL_GUARDED_BY(mu);
  StoreStats stats ABSL_GUARDED_BY(mu);
  QuotaHook quota ABSL_GUARDED_BY(mu);
  uint64_t tick ABSL_GUARDED_BY(mu) = 0;
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;  // bumps when a block becomes evictable or freed
  double hint_recalled ABSL_GUARDED_BY(mu) = 0;  // recent hint outcomes (NoteHintOutcome)
  double hint_wasted ABSL_GUARDED_BY(mu) = 0;
  uint64_t hint_probes ABSL_GUARDED_BY(mu) = 0;
  bool closed ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::thread evictor;
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_INTERNAL_TIERED_STORE_STATE_H_
