// The JSON behind the dashboard's per-sequence view, served on the metrics address:
//   GET /api/sequences                          the open sequences with client reports
//   GET /api/sequence?tenant=T&sequence=S       one sequence: its report history (estimated
//                                               recall, budget, device-cache hit ratio per
//                                               report) and the heat map of its recalls
// Operator endpoints, like /metrics: they carry counts, ratios and cluster ids only, never keys
// or values. Every list is bounded (SequenceStatsOptions, ClusterHeatOptions, kMaxHeatRows).
#ifndef CLUSTERKV_SERVER_HTTP_SEQUENCE_API_H_
#define CLUSTERKV_SERVER_HTTP_SEQUENCE_API_H_

#include <optional>
#include <string>

#include "server/metrics/daemon_metrics.h"

namespace clusterkv::server::http {

// Rows (clusters, the most recalled first) of a heat map in /api/sequence.
inline constexpr int kMaxHeatRows = 48;

// {"max_sequences": N, "sequences": [{"tenant", "sequence", "reports", "step",
//   "estimated_recall", "budget_tokens", "hit_ratio"}, ...]} (the latest report of each).
std::string SequencesJson(const metrics::DaemonMetrics& metrics);

// {"tenant", "sequence", "reports", "points": [{"unix_s", "step", "estimated_recall",
//   "recall_estimates", "budget_tokens", "selected_heads", "hit_ratio", "hit_tokens",
//   "miss_tokens"}, ...], "heatmap": null | {"fetches_per_bucket", "first_fetch", "fetches",
//   "rows": ["layer.kv_head.cluster", ...], "counts": [[...], ...], "other": [...]}};
// nullopt when the sequence has no history (unknown, closed, or never reported).
std::optional<std::string> SequenceJson(metrics::DaemonMetrics& metrics, const std::string& tenant,
                                        const std::string& sequence);

}  // namespace clusterkv::server::http

#endif  // CLUSTERKV_SERVER_HTTP_SEQUENCE_API_H_
