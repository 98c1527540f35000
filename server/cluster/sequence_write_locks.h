// SequenceWriteLocks: one reader/writer lock per sequence, created while someone holds it and
// freed with its last holder. Writes through a cluster node to a sequence hold its lock shared
// (from routing to the last holder's answer); a re-replication of that sequence holds it
// exclusively while it commits the new replica and catches it up, so a write either reaches the
// new replica or is caught up by it. Only writes to the sequence being re-replicated wait:
// every other sequence's writes go on.
//
// Thread-safe.
//
// Example:
//   SequenceWriteLocks::Shared write = locks.LockShared(key);   // a put or an append
//   SequenceWriteLocks::Exclusive commit = locks.LockExclusive(key);  // re-replication
#ifndef CLUSTERKV_SERVER_CLUSTER_SEQUENCE_WRITE_LOCKS_H_
#define CLUSTERKV_SERVER_CLUSTER_SEQUENCE_WRITE_LOCKS_H_

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "core/ids.h"

namespace clusterkv::server::cluster {

class SequenceWriteLocks {
 private:
  struct Entry {
    absl::Mutex mu;
    int holders = 0;  // guarded by SequenceWriteLocks::mu_
  };

 public:
  // Holds one sequence's lock (shared or exclusive) until destroyed. Move-only.
  template <bool kExclusive>
  class Hold {
   public:
    Hold(Hold&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), key_(std::move(other.key_)),
          entry_(std::exchange(other.entry_, nullptr)) {}
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    Hold& operator=(Hold&&) = delete;
    ~Hold() {
      if (entry_ == nullptr) return;
      if (kExclusive) {
        entry_->mu.Unlock();
      } else {
        entry_->mu.ReaderUnlock();
      }
      owner_->Release(key_);
    }

   private:
    friend class SequenceWriteLocks;
    Hold(SequenceWriteLocks* owner, SequenceKey key, Entry* entry)
        : owner_(owner), key_(std::move(key)), entry_(entry) {}
    SequenceWriteLocks* owner_;
    SequenceKey key_;
    Entry* entry_;
  };
  using Shared = Hold<false>;
  using Exclusive = Hold<true>;

  Shared LockShared(const SequenceKey& key) {
    Entry* e = Acquire(key);
    e->mu.ReaderLock();
    return Shared(this, key, e);
  }
  Exclusive LockExclusive(const SequenceKey& key) {
    Entry* e = Acquire(key);
    e->mu.Lock();
    return Exclusive(this, key, e);
  }

  // Sequences with a lock entry now (tests: entries are freed with their last holder).
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return entries_.size();
  }

 private:
  Entry* Acquire(const SequenceKey& key) {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Entry>& e = entries_[key];
    if (e == nullptr) e = std::make_unique<Entry>();
    ++e->holders;
    return e.get();
  }
  void Release(const SequenceKey& key) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && --it->second->holders == 0) entries_.erase(it);
  }

  mutable absl::Mutex mu_;
  absl::flat_hash_map<SequenceKey, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_SEQUENCE_WRITE_LOCKS_H_
