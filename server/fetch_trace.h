// FetchTrace: the daemon's record of which clusters each fetch recalled, in order, with the
// size of every block of the fetched sequences: the input of `clusterkv_bench heat`, which
// replays it against tiered stores under each eviction policy. On with clusterkvd
// --fetch_trace_file; kept in memory (bounded) and written when the daemon shuts down.
//
// The text format, one record per line ('#' lines are comments):
//   B <seq> <layer>.<kv_head>.<c> <bytes>,<bytes>,...
//       blocks of sequence <seq> (0, 1, ... in order of first fetch) exist: clusters c, c+1,
//       ... of that head, with their sizes. Written before the first fetch that names them
//       (every block of a sequence at its first fetch, in runs of consecutive clusters).
//   F <seq> <layer>.<kv_head>:<c>,<c>,... <layer>.<kv_head>:... ...
//       one fetch request: its clusters in request order, consecutive ones of a head grouped.
// Sequences are numbered, never named, and no block content is kept.
//
// Thread-safe (one mutex; it reads the store's in-memory block table under it, never its SSD).
#ifndef CLUSTERKV_SERVER_FETCH_TRACE_H_
#define CLUSTERKV_SERVER_FETCH_TRACE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "storage/key_codec.h"
#include "storage/tiered_store.h"

namespace clusterkv::server {

class FetchTrace {
 public:
  // Keeps at most `max_bytes` of trace text; later fetches are counted in dropped_fetches().
  explicit FetchTrace(uint64_t max_bytes = uint64_t{256} << 20) : max_bytes_(max_bytes) {}

  // One fetch of `sequence` naming `clusters`; block sizes come from `store`.
  void Record(const SequenceKey& sequence, absl::Span<const ClusterId> clusters,
              const storage::TieredStore& store);
  // Writes the trace to `path` (replacing it). Internal when the file cannot be written.
  absl::Status WriteTo(const std::string& path) const;
  uint64_t dropped_fetches() const;
  std::string Text() const;

 private:
  // Appends B lines for `clusters` of `sequence` (sorted; runs of consecutive ids share a
  // line); clusters without a block are skipped.
  void AddBlocksLocked(int seq, const SequenceKey& sequence, absl::Span<const ClusterId> clusters,
                       const storage::TieredStore& store) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t max_bytes_;
  mutable absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SequenceKey, int> sequences_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<storage::BlockKey> sized_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_FETCH_TRACE_H_
