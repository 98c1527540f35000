// Quality evaluation of token selection (DESIGN.md section 9, "Quality"): for every kv head of
// every non-dense layer and every decode query, compares ClusterKV, Quest, StreamingLLM and the
// oracle top-k at equal budgets against full attention.
//
// Per (layer, kv head) the keys after the sinks are clustered ONCE (spherical K-means, C0
// clusters, the configured iterations) and Quest's page index is built once; then per query:
//   * full attention probabilities p[g, t] (gpu::AttentionWeights) and output o_full[g];
//   * for every budget B each method selects the S sinks plus exactly B further tokens:
//       clusterkv     centroid scores (gpu::ScoreCentroids, scale 1/sqrt(d)), whole clusters in
//                     score order (gpu::SelectClusters), cluster-store rows mapped back to
//                     positions through Clustering::order (position = S + order[row]);
//       quest         pages of `quest_page_size` tokens by min/max upper bound;
//       streamingllm  the most recent B tokens;
//       oracle        the B tokens of highest attention summed over the G query heads.
// Metrics, averaged over (layer, kv head, query) and over the G query heads of a kv head:
//   attention_recall   sum of p[g, t] over the selected tokens (sinks included), in [0, 1];
//   output_rel_error   ||o_sparse[g] - o_full[g]|| / ||o_full[g]||, o_sparse being attention
//                      over only the selected tokens (softmax renormalised over them);
//   topk_overlap       |selected ∩ oracle's B non-sink tokens| / B, i.e. k = B (the oracle
//                      ranks by attention summed over the group, so it scores 1 by definition).
// For ClusterKV it also compares libclusterkv's estimated recall with the true attention_recall
// (MethodMetrics::estimate: correlation, mean absolute error, calibration bins).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_EVAL_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_EVAL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/config.h"
#include "core/token_range.h"
#include "core/tensor_view.h"
#include "gpu/backend.h"
#include "gpu/kmeans.h"
#include "tools/clusterkv_eval/layer_data.h"

namespace clusterkv::eval {

enum class Method { kClusterKv = 0, kQuest = 1, kStreamingLlm = 2, kOracle = 3 };
inline constexpr int kNumMethods = 4;

// "clusterkv", "quest", "streamingllm", "oracle".
absl::string_view MethodName(Method method);

// Reported after each (layer, kv head) is done, for progress output.
struct HeadProgress {
  int32_t layer = 0;
  int64_t kv_head = 0;
  int64_t heads_done = 0;
  int64_t heads_total = 0;
  double kmeans_objective = 0.0;  // mean cosine of keys to their centroid
};

struct EvalOptions {
  // Sinks, C0, K-means iterations and seed, dense layers (skipped with a note).
  ClusterKvConfig config;
  // Tokens selected beyond the sinks; budgets that do not fit the context are skipped with a
  // note.
  std::vector<int64_t> budgets = {256, 512, 1024, 2048};
  int32_t quest_page_size = 16;
  // How ClusterKV scores a cluster against a query: by its unit-norm centroid (the paper's
  // cosine K-means centroid, what libclusterkv does) or by the plain mean of the cluster's keys
  // (norms and spread included: q . mean is the cluster's mean attention logit, so a diffuse
  // cluster whose keys point many ways scores lower than a tight one in the same direction).
  enum class CentroidScoring { kUnit, kMeanKey };
  CentroidScoring centroid_scoring = CentroidScoring::kUnit;
  gpu::ExecContext ctx;
  // Optional; called on the calling thread.
  std::function<void(const HeadProgress&)> on_head_done;
};

// Calibration of the estimated recall: the (kv head, query) pairs whose estimate fell in
// [lower, lower + 1 / kCalibrationBins).
inline constexpr int kCalibrationBins = 10;
struct CalibrationBin {
  double lower = 0.0;
  int64_t count = 0;
  double mean_estimate = 0.0;
  double mean_true = 0.0;
};

// How well libclusterkv's estimated recall (gpu/recall_estimate.h, from centroids, sizes and
// key statistics) predicts the true attention recall of ClusterKV's selection: one pair per
// (kv head, query), the true recall averaged over the group's query heads as the estimate is.
struct RecallEstimateQuality {
  int64_t pairs = 0;  // 0: not measured (other methods, or mean-key scoring)
  double mean_estimate = 0.0;
  double mean_true = 0.0;
  double mean_abs_error = 0.0;
  double correlation = 0.0;  // Pearson, over the pairs
  std::vector<CalibrationBin> bins;  // non-empty bins, ascending
};

// One (method, budget) row.
struct MethodMetrics {
  Method method = Method::kClusterKv;
  int64_t budget = 0;
  double attention_recall = 0.0;
  double output_rel_error = 0.0;
  double topk_overlap = 0.0;
  int64_t samples = 0;  // (kv head, query, query head) triples averaged
  RecallEstimateQuality estimate;  // ClusterKV rows only
};

struct EvalReport {
  // Method-major (Method order), budgets ascending within a method.
  std::vector<MethodMetrics> rows;
  std::vector<int32_t> evaluated_layers;
  std::vector<int32_t> skipped_layers;  // dense layers
  std::vector<std::string> notes;       // skipped layers/budgets, clamped cluster count
  std::vector<int64_t> budgets;         // budgets actually evaluated
  int64_t context = 0;
  int64_t num_kv_heads = 0;
  int64_t num_q_heads = 0;
  int64_t head_dim = 0;
  int64_t num_queries = 0;
  int64_t heads_evaluated = 0;
  int32_t num_clusters = 0;  // C0 actually used
  double mean_kmeans_objective = 0.0;

  // The row of (method, budget), or nullptr.
  const MethodMetrics* Find(Method method, int64_t budget) const;
};

// The mean of each cluster's keys ([num_clusters, head_dim]; zero for an empty cluster), for
// EvalOptions::CentroidScoring::kMeanKey. keys: the clustered rows, labelled by `c.labels`.
std::vector<float> MeanKeyCentroids(const ConstMatrixView& keys, const gpu::Clustering& c);

// Runs the evaluation over every layer of `source`.
// InvalidArgument: invalid config, page size or budgets (< 1, or none fits the context), layers
// of differing shapes, fewer tokens than sinks + 1. Errors of the source and of the gpu ops are
// passed through (annotated with the layer and head).
absl::StatusOr<EvalReport> Evaluate(LayerSource& source, const EvalOptions& options);

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_EVAL_H_
