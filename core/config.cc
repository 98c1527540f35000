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

absl::Status ClusterKvConfig::Validate() const {
  constexpr int64_t kMaxTokens = int64_t{1} << 30;
  absl::Status s;
  if (!(s = CheckRange("num_sink_tokens", num_sink_tokens, 0, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("num_prefill_clusters", num_prefill_clusters, 1, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("kmeans_iterations", kmeans_iterations, 1, 10000)).ok()) return s;
  if (!(s = CheckRange("recluster_interval", recluster_interval, 1, 1 << 20)).ok()) return s;
  if (!(s = CheckRange("clusters_per_recluster", clusters_per_recluster, 1, recluster_interval))
           .ok()) {
    return s;
  }
  if (!(s = CheckRange("token_budget", token_budget, 1, kMaxTokens)).ok()) return s;
  if (!(s = CheckRange("cache_residency_steps", cache_residency_steps, 0, 1 << 20)).ok()) return s;
  for (int32_t layer : dense_layers) {
    if (!(s = CheckRange("dense_layers entry", layer, 0, 1023)).ok()) return s;
  }
  return absl::OkStatus();
}

bool ClusterKvConfig::IsDenseLayer(int32_t layer) const {
  return std::find(dense_layers.begin(), dense_layers.end(), layer) != dense_layers.end();
}

std::string ClusterKvConfig::DebugString() const {
  return absl::StrCat("sinks=", num_sink_tokens, " dense_layers=[", absl::StrJoin(dense_layers, ","),
                      "] C0=", num_prefill_clusters, " iters=", kmeans_iterations,
                      " m=", recluster_interval, " C+=", clusters_per_recluster,
                      " B=", token_budget, " R=", cache_residency_steps, " seed=", seed);
}

}  // namespace clusterkv
