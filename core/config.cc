#include "core/config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace clusterkv {
namespace {

absl::Status CheckRange(const char* name, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CentroidScoring> ParseCentroidScoring(absl::string_view name) {
  if (name == "unit") return CentroidScoring::kUnit;
  if (name == "key_norm") return CentroidScoring::kKeyNorm;
  if (name == "head_norm") return CentroidScoring::kHeadNorm;
  return absl::InvalidArgumentError(
      absl::StrCat("centroid scoring must be unit, key_norm or head_norm, got \"", name, "\""));
}

const char* CentroidScoringName(CentroidScoring scoring) {
  switch (scoring) {
    case CentroidScoring::kKeyNorm:
      return "key_norm";
    case CentroidScoring::kHeadNorm:
      return "head_norm";
    default:
      return "unit";
  }
}

absl::Status ClusterKvConfig::Validate() const {
  constexpr int64_t kMaxTokens = int64_t{1} << 30;
  absl::Status s;
  if (!(s = CheckRange("num_sink_tokens", num_sink_tokens, 0, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("num_prefill_clusters", num_prefill_clusters, 1, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("kmeans_iterations", kmeans_iterations, 1, 10000)).ok()) return s;
  if (!(s = CheckRange("recluster_interval", recluster_interval, 1, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("prefill_segment_tokens", prefill_segment_tokens, 0, 1 << 24)).ok()) return s;
  if (!(s = CheckRange("prefill_segment_clusters", prefill_segment_clusters, 0, 1 << 20)).ok()) {
    return s;
  }
  if (!(s = CheckRange("clusters_per_recluster", clusters_per_recluster, 1, recluster_interval))
           .ok()) {
    return s;
  }
  if (!(s = CheckRange("token_budget", token_budget, 1, kMaxTokens)).ok()) return s;
  if (!(recall_target >= 0.0 && recall_target <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("recall_target must be in [0, 1] (0: fixed budget), got ", recall_target));
  }
  if (!(s = CheckRange("min_token_budget", min_token_budget, 0, token_budget)).ok()) return s;
  if (max_token_budget != 0 &&
      !(s = CheckRange("max_token_budget", max_token_budget, token_budget, kMaxTokens)).ok()) {
    return s;
  }
  if (!(s = CheckRange("cache_residency_steps", cache_residency_steps, 0, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("promotion_hint_tokens", promotion_hint_tokens, 0, kMaxTokens)).ok()) {
    return s;
  }
  if (centroid_scoring != CentroidScoring::kUnit &&
      centroid_scoring != CentroidScoring::kKeyNorm &&
      centroid_scoring != CentroidScoring::kHeadNorm) {
    return absl::InvalidArgumentError(
        absl::StrCat("centroid_scoring must be unit (0), key_norm (1) or head_norm (2), got ",
                     static_cast<int>(centroid_scoring)));
  }
  for (int32_t layer : dense_layers) {
    if (!(s = CheckRange("dense_layers entry", layer, 0, 1023)).ok()) return s;
  }
  return absl::OkStatus();
}

bool ClusterKvConfig::IsDenseLayer(int32_t layer) const {
  return std::find(dense_layers.begin(), dense_layers.end(), layer) != dense_layers.end();
}

int64_t ClusterKvConfig::MinTokenBudget() const {
  return min_token_budget > 0 ? min_token_budget : std::max<int64_t>(1, token_budget / 4);
}

int64_t ClusterKvConfig::MaxTokenBudget() const {
  return max_token_budget > 0 ? max_token_budget : 4 * int64_t{token_budget};
}

int32_t ClusterKvConfig::SegmentClusters(int64_t segment, int64_t tokens) const {
  if (segment == 0) {
    return static_cast<int32_t>(std::clamp<int64_t>(num_prefill_clusters, 1, std::max<int64_t>(tokens, 1)));
  }
  const int64_t g = std::max<int32_t>(prefill_segment_tokens, 1);
  const int64_t per_segment =
      prefill_segment_clusters > 0
          ? prefill_segment_clusters
          : std::max<int64_t>(1, int64_t{num_prefill_clusters} * g / 8192);
  const int64_t c = (per_segment * tokens + g - 1) / g;
  return static_cast<int32_t>(std::clamp<int64_t>(c, 1, std::max<int64_t>(tokens, 1)));
}

std::string ClusterKvConfig::DebugString() const {
  return absl::StrCat("sinks=", num_sink_tokens, " dense_layers=[", absl::StrJoin(dense_layers, ","),
                      "] C0=", num_prefill_clusters,
                      prefill_segment_tokens > 0
                          ? absl::StrCat(" segments(G=", prefill_segment_tokens,
                                         " Cs=", SegmentClusters(1, prefill_segment_tokens), ")")
                          : std::string(),
                      " iters=", kmeans_iterations,
                      " m=", recluster_interval, " C+=", clusters_per_recluster,
                      " B=", token_budget,
                      adaptive_budget()
                          ? absl::StrCat(" adaptive(target=", recall_target, " B_min=",
                                         MinTokenBudget(), " B_max=", MaxTokenBudget(), ")")
                          : std::string(),
                      " R=", cache_residency_steps,
                      centroid_scoring != CentroidScoring::kUnit
                          ? absl::StrCat(" scoring=", CentroidScoringName(centroid_scoring))
                          : std::string(),
                      promotion_hint_tokens > 0
                          ? absl::StrCat(" hints=", promotion_hint_tokens)
                          : std::string(),
                      " seed=", seed);
}

}  // namespace clusterkv
