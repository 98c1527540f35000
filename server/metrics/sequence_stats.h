// SequenceStatsBook: the recent client reports of each open sequence, for the dashboard's
// per-sequence view (/api/sequences) and the per-sequence gauges of /metrics
// (clusterkv_sequence_*{tenant, sequence}).
//
// A client reports every 64 decode steps and at close (ReportClientStats with a sequence_id):
// device-cache hit and miss tokens, the estimated recall of every (layer, kv head, step) it
// attended sparsely (count and sum), and the budget it spent (selected tokens and the heads
// they were selected for). The book keeps the last `max_points` reports of at most
// `max_sequences` sequences: a new sequence past the bound replaces the one reported least
// recently. Drop() forgets a sequence when it closes, so its gauges leave /metrics. Only
// counts and ratios are kept, never keys or values.
//
// Thread-safe (one mutex).
#ifndef CLUSTERKV_SERVER_METRICS_SEQUENCE_STATS_H_
#define CLUSTERKV_SERVER_METRICS_SEQUENCE_STATS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace clusterkv::server::metrics {

// One client report (deltas since the sequence's previous report).
struct SequenceReport {
  absl::Time at;
  int64_t step = 0;  // the sequence's decode step when it reported
  uint64_t hit_tokens = 0;
  uint64_t miss_tokens = 0;
  uint64_t recall_estimates = 0;  // (layer, kv head, step) estimates
  double recall_sum = 0.0;
  uint64_t selected_tokens = 0;
  uint64_t selected_heads = 0;

  // Mean estimated recall; NaN-free: 0 when there was no estimate.
  double EstimatedRecall() const {
    return recall_estimates > 0 ? recall_sum / static_cast<double>(recall_estimates) : 0.0;
  }
  // Mean tokens selected per head (the budget actually spent); 0 without a selection.
  double BudgetTokens() const {
    return selected_heads > 0
               ? static_cast<double>(selected_tokens) / static_cast<double>(selected_heads)
               : 0.0;
  }
  // Device-cache hit ratio of the recalled tokens; 0 without recalls.
  double HitRatio() const {
    return hit_tokens + miss_tokens > 0
               ? static_cast<double>(hit_tokens) / static_cast<double>(hit_tokens + miss_tokens)
               : 0.0;
  }
};

struct SequenceHistory {
  std::string tenant;
  std::string sequence;
  uint64_t reports = 0;  // all reports, including those no longer kept
  std::deque<SequenceReport> points;  // oldest first, at most max_points
};

struct SequenceStatsOptions {
  int max_sequences = 32;
  int max_points = 256;
};

class SequenceStatsBook {
 public:
  explicit SequenceStatsBook(SequenceStatsOptions options = {}) : options_(options) {}

  void Add(const std::string& tenant, const std::string& sequence, const SequenceReport& report);
  void Drop(const std::string& tenant, const std::string& sequence);
  // Every kept sequence, ordered by (tenant, sequence).
  std::vector<SequenceHistory> Snapshot() const;
  // One sequence; false when it is not kept.
  bool Get(const std::string& tenant, const std::string& sequence, SequenceHistory* out) const;
  const SequenceStatsOptions& options() const { return options_; }

 private:
  using Key = std::pair<std::string, std::string>;  // tenant, sequence
  struct Entry {
    SequenceHistory history;
    uint64_t last_add = 0;
  };
  const SequenceStatsOptions options_;
  mutable absl::Mutex mu_;
  std::map<Key, Entry> sequences_ ABSL_GUARDED_BY(mu_);
  uint64_t adds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace clusterkv::server::metrics

#endif  // CLUSTERKV_SERVER_METRICS_SEQUENCE_STATS_H_
