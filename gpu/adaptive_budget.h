// Adaptive per-head budgets (docs/decisions.md D75): instead of B tokens for every kv head, each
// head takes the fewest tokens whose estimated recall (recall_estimate.h) reaches a target,
// within [B_min, B_max], and the heads of one layer share a cap of num_kv_heads * B tokens per
// step (plus what earlier layers of the step left unspent). When the heads together want more
// than the cap, the tokens above the minimums go, a stretch of one cluster at a time, to the
// head whose next cluster adds the most estimated recall per token: the largest total estimated
// recall the cap allows.
#ifndef CLUSTERKV_GPU_ADAPTIVE_BUDGET_H_
#define CLUSTERKV_GPU_ADAPTIVE_BUDGET_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "gpu/recall_estimate.h"
#include "gpu/selection.h"

namespace clusterkv::gpu {

// Estimated recall of one head against the number of tokens taken, clusters taken in the order
// of `order` (SelectClusters' order). Point i is after the first i clusters; between two points
// the recall grows linearly (a truncated cluster counts its share of the cluster's mass).
struct RecallCurve {
  std::vector<int64_t> tokens;  // tokens[0] = 0
  std::vector<double> recall;   // recall[0]: sinks and windows alone

  // The fewest tokens whose estimated recall reaches `target`; every token when none does.
  int64_t TokensFor(double target) const;
  int64_t total_tokens() const { return tokens.back(); }
};

// `order` is a selection of every clustered token (SelectClusters with the full budget).
RecallCurve MakeRecallCurve(const ClusterMasses& masses, const ClusterSelection& order,
                            absl::Span<const int32_t> sizes);

struct BudgetLimits {
  double target = 0.9;     // estimated recall each head aims for
  int64_t min_tokens = 1;  // B_min per head (at most the head's clustered tokens)
  int64_t max_tokens = 1;  // B_max per head
  int64_t total_tokens = 1;  // the layer's cap for the step
};

// One budget per curve, each in [min(B_min, n_h), min(B_max, n_h)] (n_h: the head's clustered
// tokens, B_min at least 1) and at most what the head needs for `target`: those needs when
// their total fits `total_tokens`, else the minimums plus the rest of the cap handed out by
// estimated recall gained per token. The total exceeds the cap only when the minimums alone do.
std::vector<int64_t> PlanBudgets(absl::Span<const RecallCurve> curves, const BudgetLimits& limits);

// The first `budget` tokens of `order` (the last cluster truncated).
ClusterSelection TruncateSelection(const ClusterSelection& order, int64_t budget);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_ADAPTIVE_BUDGET_H_
