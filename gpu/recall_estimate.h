// Estimated recall: the share of one kv head's attention mass that a decode step attends
// (sinks, the selected clusters, the recent window), estimated from what the client already
// holds -- centroids, cluster sizes and two statistics per cluster -- without reading a single
// recalled key (docs/decisions.md D74).
//
// Tokens attended exactly (sinks, recent window, a pending window) enter with their exact
// logits. A cluster c of n_c keys with unit centroid mu_c, mean key norm r_c and spread s_c^2
// (Clustering::key_norms / key_spreads) stands for n_c keys k = r_c mu_c + e, e isotropic with
// variance s_c^2 per coordinate, so for a query q and logit scale s
//   E[exp(s q.k)] = exp(s r_c q.mu_c + s^2 s_c^2 |q|^2 / 2),
// and the cluster's mass is n_c times that. A selected cluster truncated to t of its n_c tokens
// counts t / n_c of its mass. For query head g the estimate is
//   (exact mass + selected clusters' mass) / (exact mass + every cluster's mass),
// and the kv head's estimate is the mean over its query heads. A cluster without statistics
// (NaN: an index restored from the daemon) takes the mean norm and spread of the head's clusters
// that have them, or norm 1 and spread 0 when none has.
#ifndef CLUSTERKV_GPU_RECALL_ESTIMATE_H_
#define CLUSTERKV_GPU_RECALL_ESTIMATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor_view.h"
#include "gpu/selection.h"

namespace clusterkv::gpu {

struct RecallEstimateInput {
  ConstMatrixView queries;  // [G, head_dim], any dtype
  float scale = 1.0f;       // logit = scale * q.k
  ConstMatrixView centroids;             // [C, head_dim] fp32, unit norm
  absl::Span<const int32_t> sizes;       // [C]
  absl::Span<const float> key_norms;     // [C]; NaN where unknown
  absl::Span<const float> key_spreads;   // [C]; NaN where unknown
  const ClusterSelection* selection = nullptr;  // the clusters attended (null: none)
  std::vector<ConstMatrixView> exact_keys;      // other keys attended, each [rows, head_dim]
};

// The estimate in [0, 1] (1 when there is no clustered token). InvalidArgument on mismatched
// shapes or a selection naming a cluster out of range.
absl::StatusOr<float> EstimateRecall(const RecallEstimateInput& input);

// The model's masses for one kv head, before any selection: per query head g, the exact mass
// and each cluster's mass, all relative to a common per-g reference so they add up.
struct ClusterMasses {
  int32_t num_query_heads = 0;
  int32_t num_clusters = 0;
  std::vector<double> exact;    // [G]
  std::vector<double> total;    // [G]: exact + every cluster's mass
  std::vector<double> cluster;  // [G * C], row g then cluster c
  bool no_clustered_tokens = true;

  // The recall estimate (as EstimateRecall) of attending `selection` (null: no cluster).
  // The selection must name clusters of this head (checked by EstimateClusterMasses' caller).
  float RecallOf(const ClusterSelection* selection, absl::Span<const int32_t> sizes) const;
};

// The masses of input.queries against every cluster of the head (input.selection is ignored).
// The same errors as EstimateRecall.
absl::StatusOr<ClusterMasses> EstimateClusterMasses(const RecallEstimateInput& input);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_RECALL_ESTIMATE_H_
