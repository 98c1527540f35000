// RemoteCache: bookkeeping of this node's read-only copies of sequences owned elsewhere
// in cluster mode. A recall through this node of another node's sequence pulls the missing blocks
// from the owner (or a replica) into the local tiered store, under a key of its own:
//
//   tenant ":cluster-cache", sequence "<32 hex of SHA-256(tenant NUL sequence)>-<incarnation>"
//
// so a copy can never be confused with a sequence this node owns or replicates (no tenant
// credential can name ":cluster-cache"), and a sequence dropped and created again (a new
// incarnation in the directory) maps to a fresh copy: stale blocks are never served. Copies are
// not kept across restarts (the daemon drops that tenant's sequences when it joins). Blocks are
// immutable, so a cached block stays valid for its incarnation.
//
// Only bookkeeping: the caller (the cluster request handler) moves the bytes. Thread-safe.
#ifndef CLUSTERKV_SERVER_CLUSTER_REMOTE_CACHE_H_
#define CLUSTERKV_SERVER_CLUSTER_REMOTE_CACHE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/ids.h"

namespace clusterkv::server::cluster {

inline constexpr char kCacheTenant[] = ":cluster-cache";

// The local key of the copy of `key` at `incarnation`.
SequenceKey CacheKeyOf(const SequenceKey& key, int64_t incarnation);

class RemoteCache {
 public:
  struct Acquired {
    SequenceKey cache_key;
    bool has_meta = false;  // the copy's sequence record was written
    // The local key of a copy of an older incarnation, which the caller must drop.
    std::optional<SequenceKey> stale;
  };
  // The copy of `key` at `incarnation` (created empty if needed).
  Acquired Acquire(const SequenceKey& key, int64_t incarnation);
  void MarkMeta(const SequenceKey& key, int64_t incarnation);
  // Which of `clusters` the copy lacks (in order, duplicates kept once).
  std::vector<ClusterId> Missing(const SequenceKey& key, int64_t incarnation,
                                 absl::Span<const ClusterId> clusters) const;
  void MarkCached(const SequenceKey& key, int64_t incarnation, const ClusterId& cluster);
  // Forgets the copy of `key`; returns its local key (to drop) when there was one.
  std::optional<SequenceKey> Forget(const SequenceKey& key);
  // Forgets the copy of `key` only if it is of `incarnation`; returns its local key then.
  std::optional<SequenceKey> ForgetIf(const SequenceKey& key, int64_t incarnation);
  struct Held {
    SequenceKey key;
    int64_t incarnation = 0;
  };
  // Every copy held now.
  std::vector<Held> List() const;
  size_t size() const;

 private:
  struct Copy {
    int64_t incarnation = 0;
    SequenceKey cache_key;
    bool has_meta = false;
    absl::flat_hash_set<ClusterId> blocks;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<SequenceKey, Copy> copies_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_REMOTE_CACHE_H_
