// ClusterKvConfig: the algorithm's knobs with the defaults of the authors' reference code
// (DESIGN.md section 4). Every binary exposes them as flags; Validate() guards every entry point.
#ifndef CLUSTERKV_CORE_CONFIG_H_
#define CLUSTERKV_CORE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv {

// How a decode query scores a cluster (docs/decisions.md D88).
//   kUnit     scale * q . mu_c with the unit centroid mu_c: the paper's cosine scoring, blind
//             to how long the cluster's keys are.
//   kKeyNorm  scale * r_c * q . mu_c, r_c the cluster's mean key norm (Clustering::key_norms):
//             the logit of the cluster's mean key, so each query head's softmax over clusters
//             is as sharp as its real attention and one head's strong preference is not
//             averaged away by the other heads of its group.
//   kHeadNorm scale * r * q . mu_c, r the mean of r_c over the kv head's clusters: the same
//             sharpness, one temperature per head, so a single query head ranks the clusters
//             exactly as kUnit does; only how the group's heads add up changes.
enum class CentroidScoring { kUnit, kKeyNorm, kHeadNorm };

// "unit" / "key_norm" / "head_norm"; InvalidArgument for anything else.
absl::StatusOr<CentroidScoring> ParseCentroidScoring(absl::string_view name);
const char* CentroidScoringName(CentroidScoring scoring);

struct ClusterKvConfig {
  // First S tokens: never clustered, always attended.
  int32_t num_sink_tokens = 16;
  // Layers that keep full attention.
  std::vector<int32_t> dense_layers = {0, 1};
  // C0: clusters per kv head for the prompt.
  int32_t num_prefill_clusters = 400;
  // Segmented prefill (docs/decisions.md D85, D87): with G = prefill_segment_tokens > 0 the
  // prompt is clustered segment by segment, positions [jG, (j+1)G) (sinks excepted) each with
  // its own K-means: the first segment with min(C0, n) clusters for its n clustered tokens (a
  // prompt of at most G tokens is clustered exactly as the paper's whole-prompt clustering),
  // every later one with ceil(Cs * n / G), Cs = prefill_segment_clusters (0: C0 * G / 8192, at
  // least 1). Any segment-aligned prefix of a stored document is then reusable by another
  // prompt. 0: the whole prompt at once with C0 clusters (the paper). The default, 2048, was
  // chosen from the real models' perplexity and passkey results (D87).
  int32_t prefill_segment_tokens = 2048;
  int32_t prefill_segment_clusters = 0;
  // K-means iterations (assign + update rounds).
  int32_t kmeans_iterations = 20;
  // m: decode tokens stay in a recent window; every m steps they are clustered and appended.
  int32_t recluster_interval = 320;
  // C+: clusters made from each window of m decode tokens.
  int32_t clusters_per_recluster = 8;
  // B: tokens recalled from clusters per (step, layer, kv head); sinks and the recent window
  // are attended in addition to it.
  int32_t token_budget = 1024;
  // Adaptive budget (docs/decisions.md D75): with recall_target > 0 each kv head takes the
  // fewest tokens whose estimated recall reaches the target, within [min_token_budget,
  // max_token_budget], and a layer's heads share num_kv_heads * token_budget tokens per step
  // (so token_budget becomes the mean budget's cap). 0 = the fixed budget B for every head.
  double recall_target = 0.0;
  // B_min and B_max of the adaptive mode; 0 = token_budget / 4 and 4 * token_budget.
  int32_t min_token_budget = 0;
  int32_t max_token_budget = 0;
  // R: a recalled cluster stays in the device cache for R decode steps after its last use.
  int32_t cache_residency_steps = 1;
  // Promotion hints (docs/decisions.md D79): after each step's fetch, the clusters ranked just
  // past a head's selection, up to this many tokens beyond it, that are not in the device
  // cache are named to the daemon (HintClusters), which promotes those on its SSD into the
  // host tier before a later step recalls them. 0: no hints.
  int32_t promotion_hint_tokens = 0;
  // How decode queries score clusters (CentroidScoring above).
  CentroidScoring centroid_scoring = CentroidScoring::kUnit;
  // Seed of the deterministic K-means initialisation.
  uint64_t seed = 0x636c75737465726bULL;  // "clusterk"

  // InvalidArgument naming the first field out of range.
  absl::Status Validate() const;
  bool IsDenseLayer(int32_t layer) const;
  // Clusters of prefill segment `segment` (its start position / G) holding `tokens` clustered
  // tokens (prefill_segment_tokens > 0).
  int32_t SegmentClusters(int64_t segment, int64_t tokens) const;
  bool adaptive_budget() const { return recall_target > 0.0; }
  // The adaptive mode's B_min and B_max with their defaults applied.
  int64_t MinTokenBudget() const;
  int64_t MaxTokenBudget() const;
  std::string DebugString() const;
};

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_CONFIG_H_
