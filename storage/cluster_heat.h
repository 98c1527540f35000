// ClusterHeat: which clusters of each sequence the decode recalls, and how often. Every fetch
// the daemon serves is recorded here; the tiered store's heat eviction policy asks for the
// score of each host-resident block and moves the coldest to the SSD first.
//
// - A cluster's score is its recall count with exponential decay: each recall adds 1, and the
//   score halves every `half_life_fetches` fetches recorded store-wide (a logical clock, so the
//   score is deterministic and a sequence that stops decoding cools as the others fetch). A
//   stored block starts at `put_score` (RecordPut), decaying the same way, so a new block is
//   not colder than stale ones; a cluster neither put nor recalled scores 0.
// - Memory is bounded: past `max_clusters` tracked clusters the colder half is forgotten (a
//   forgotten cluster scores 0 again, like one never recalled).
// - For the dashboard it also keeps, per sequence, a heat map: recall counts of each cluster
//   per bucket of `map_fetches_per_bucket` fetches of that sequence, the last `map_buckets`
//   buckets, for at most `map_sequences` sequences (the least recently fetched is dropped)
//   and at most `map_bucket_clusters` distinct clusters per bucket (the rest are counted in
//   the bucket's `other`). Only ids and counts are kept, never block contents.
//
// Thread-safe (one mutex). It never calls out while holding it, so a caller may hold its own
// lock around any method (the tiered store scores candidates under its lock).
//
// Example:
//   ClusterHeat heat({.half_life_fetches = 1024});
//   heat.RecordFetch(seq, {c1, c2});
//   double hot = heat.Score(seq, c1);  // 1.0 until other fetches decay it
#ifndef CLUSTERKV_STORAGE_CLUSTER_HEAT_H_
#define CLUSTERKV_STORAGE_CLUSTER_HEAT_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "storage/key_codec.h"

namespace clusterkv::storage {

struct ClusterHeatOptions {
  // Fetches (store-wide) after which a recall's weight is halved. > 0.
  double half_life_fetches = 32.0;
  // The score a block starts with at its put (RecordPut), decaying like a recall's: a new
  // block is as warm as one recalled this many times at its put, so it is not evicted before
  // stale blocks whose recalls have decayed below it. >= 0 (0: new blocks are the coldest).
  double put_score = 1.0;
  // Most clusters with a score; past it the colder half is forgotten. >= 1.
  size_t max_clusters = size_t{1} << 20;
  // Heat map: fetches of one sequence per bucket, buckets kept, sequences kept, distinct
  // clusters counted per bucket. Each >= 1.
  int32_t map_fetches_per_bucket = 32;
  int32_t map_buckets = 32;
  int32_t map_sequences = 16;
  int32_t map_bucket_clusters = 4096;
};

struct ClusterHeatStats {
  uint64_t fetches = 0;           // fetches recorded
  uint64_t recalls = 0;           // cluster recalls recorded (a fetch recalls several)
  uint64_t tracked_clusters = 0;  // clusters with a score now
  uint64_t forgotten = 0;         // scores dropped to stay under max_clusters
};

// One sequence's heat map: rows are clusters (the hottest over the kept buckets, by total
// count), columns are buckets of fetches, oldest first.
struct HeatMap {
  int32_t fetches_per_bucket = 0;
  uint64_t first_fetch = 0;  // the sequence's fetch number at the start of the first column
  uint64_t fetches = 0;      // fetches of the sequence recorded so far
  std::vector<ClusterId> rows;
  std::vector<std::vector<uint32_t>> counts;  // counts[row][column]
  std::vector<uint32_t> other;                // per column: recalls beyond the distinct cap
};

class ClusterHeat {
 public:
  explicit ClusterHeat(const ClusterHeatOptions& options = {});
  ClusterHeat(const ClusterHeat&) = delete;
  ClusterHeat& operator=(const ClusterHeat&) = delete;

  // One fetch of `sequence` naming `clusters` (a cluster named twice counts twice).
  void RecordFetch(const SequenceKey& sequence, absl::Span<const ClusterId> clusters);
  // A block was stored: it starts with options().put_score (a recalled cluster keeps its
  // score). Counts neither as a recall nor in the heat map.
  void RecordPut(const SequenceKey& sequence, const ClusterId& cluster);
  // The decayed score of a cluster now; 0 when neither put nor recalled (or forgotten).
  double Score(const SequenceKey& sequence, const ClusterId& cluster) const;
  struct Heat {
    double score = 0;
    bool recalled = false;  // named by a fetch (since it was last forgotten)
  };
  // The score of each key, and whether it was ever recalled, under one lock.
  std::vector<Heat> Scores(absl::Span<const BlockKey* const> keys) const;
  // Forgets the sequence's scores and heat map (the sequence was dropped or closed).
  void DropSequence(const SequenceKey& sequence);

  // The heat map of `sequence` with at most `max_rows` rows; nullopt when none is kept.
  std::optional<HeatMap> Map(const SequenceKey& sequence, int32_t max_rows) const;
  ClusterHeatStats Stats() const;
  const ClusterHeatOptions& options() const { return options_; }

 private:
  struct Entry {
    double score = 0;      // as of fetch `at`
    uint64_t at = 0;
    bool recalled = false;
  };
  struct Bucket {
    absl::flat_hash_map<ClusterId, uint32_t> counts;
    uint32_t other = 0;
  };
  struct SequenceMap {
    uint64_t fetches = 0;     // fetches of this sequence
    uint64_t last_fetch = 0;  // store-wide fetch number of the latest one
    std::deque<Bucket> buckets;  // newest at the back; covers the latest fetches
  };

  double DecayedLocked(const Entry& e) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void PruneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordMapLocked(const SequenceKey& sequence, absl::Span<const ClusterId> clusters)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClusterHeatOptions options_;
  mutable absl::Mutex mu_;
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;  // fetches recorded
  uint64_t tracked_ ABSL_GUARDED_BY(mu_) = 0;
  ClusterHeatStats stats_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SequenceKey, absl::flat_hash_map<ClusterId, Entry>> scores_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SequenceKey, SequenceMap> maps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_CLUSTER_HEAT_H_
