// Per-query cluster selection (DESIGN.md section 4): score centroids against the query heads of
// one kv head, take whole clusters in descending score until the token budget is filled (the
// last one truncated), and turn the chosen clusters into token ranges of the cluster-contiguous
// storage through the prefix sums of cluster sizes.
#ifndef CLUSTERKV_GPU_SELECTION_H_
#define CLUSTERKV_GPU_SELECTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor_view.h"
#include "core/token_range.h"
#include "gpu/backend.h"

namespace clusterkv::gpu {

// scores[c] = sum over the G query heads g of softmax_c(scale * q_g . mu_c): each query head
// contributes a distribution over clusters, so GQA heads vote with equal weight.
// queries: [G, head_dim] any dtype; centroids: [C, head_dim] fp32; scores.size() == C.
// InvalidArgument on shape mismatch, empty inputs or NaN/Inf in the queries.
absl::Status ScoreCentroids(const ConstMatrixView& queries, const ConstMatrixView& centroids,
                            float scale, absl::Span<float> scores, const ExecContext& ctx);

// Clusters chosen for one (query, kv head), in descending score order.
struct ClusterSelection {
  std::vector<int32_t> clusters;  // cluster ids
  std::vector<int32_t> tokens;    // tokens taken from each; only the last may be < its size
  int64_t total_tokens = 0;
};

// Takes clusters by descending score (ties: lower id first), skipping empty clusters, until
// `budget` tokens are taken; the last cluster is truncated to fit.
// InvalidArgument: sizes/scores length mismatch, negative size, budget < 1 or budget greater
// than the total number of clustered tokens.
absl::StatusOr<ClusterSelection> SelectClusters(absl::Span<const float> scores,
                                                absl::Span<const int32_t> sizes, int64_t budget);

// Token ranges of `selection` in cluster-contiguous storage whose cluster j starts at
// offsets[j]; a truncated cluster contributes its first `tokens` rows. Adjacent ranges merge.
// InvalidArgument when a cluster id or count is out of range of `offsets`.
absl::StatusOr<std::vector<TokenRange>> SelectionToRanges(const ClusterSelection& selection,
                                                          absl::Span<const int32_t> offsets);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_SELECTION_H_
