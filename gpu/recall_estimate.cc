#include "gpu/recall_estimate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu {
namespace {

absl::Status Validate(const RecallEstimateInput& in) {
  const int64_t d = in.queries.cols;
  if (in.queries.rows < 1 || d < 1) return absl::InvalidArgumentError("no query heads");
  const size_t c = in.sizes.size();
  if (in.centroids.rows != static_cast<int64_t>(c) || (c > 0 && in.centroids.cols != d) ||
      in.key_norms.size() != c || in.key_spreads.size() != c) {
    return absl::InvalidArgumentError(absl::StrCat(
        "centroids [", in.centroids.rows, ", ", in.centroids.cols, "], ", c, " sizes, ",
        in.key_norms.size(), " norms and ", in.key_spreads.size(), " spreads for head_dim ", d,
        " do not match"));
  }
  if (c > 0 && in.centroids.dtype != DType::kFloat32) {
    return absl::InvalidArgumentError("centroids must be fp32");
  }
  for (const ConstMatrixView& keys : in.exact_keys) {
    if (keys.rows > 0 && keys.cols != d) {
      return absl::InvalidArgumentError(
          absl::StrCat("exact keys have ", keys.cols, " columns, queries ", d));
    }
  }
  if (in.selection != nullptr) {
    const ClusterSelection& s = *in.selection;
    if (s.tokens.size() != s.clusters.size()) {
      return absl::InvalidArgumentError("selection clusters and tokens differ in length");
    }
    for (size_t i = 0; i < s.clusters.size(); ++i) {
      if (s.clusters[i] < 0 || static_cast<size_t>(s.clusters[i]) >= c || s.tokens[i] < 0 ||
          s.tokens[i] > in.sizes[s.clusters[i]]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "selection names cluster ", s.clusters[i], " with ", s.tokens[i], " tokens"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ClusterMasses> EstimateClusterMasses(const RecallEstimateInput& in) {
  RecallEstimateInput unselected = in;
  unselected.selection = nullptr;
  if (absl::Status s = Validate(unselected); !s.ok()) return s;
  const int32_t d = static_cast<int32_t>(in.queries.cols);
  const size_t num_clusters = in.sizes.size();
  ClusterMasses out;
  out.num_query_heads = static_cast<int32_t>(in.queries.rows);
  out.num_clusters = static_cast<int32_t>(num_clusters);
  for (int32_t n : in.sizes) {
    if (n > 0) out.no_clustered_tokens = false;
  }
  if (out.no_clustered_tokens) return out;

  // Statistics for clusters that lack them: the head's mean, else norm 1 and spread 0.
  double norm_sum = 0.0, spread_sum = 0.0;
  int64_t known = 0;
  for (size_t j = 0; j < num_clusters; ++j) {
    if (std::isfinite(in.key_norms[j]) && std::isfinite(in.key_spreads[j])) {
      norm_sum += in.key_norms[j];
      spread_sum += in.key_spreads[j];
      ++known;
    }
  }
  const float default_norm = known > 0 ? static_cast<float>(norm_sum / known) : 1.0f;
  const float default_spread = known > 0 ? static_cast<float>(spread_sum / known) : 0.0f;

  const size_t g_count = static_cast<size_t>(out.num_query_heads);
  out.exact.assign(g_count, 0.0);
  out.total.assign(g_count, 0.0);
  out.cluster.assign(g_count * num_clusters, 0.0);
  std::vector<float> q(static_cast<size_t>(d)), k(static_cast<size_t>(d));
  std::vector<double> exact_logits, cluster_logmass(num_clusters);
  for (size_t g = 0; g < g_count; ++g) {
    in.queries.LoadRow(static_cast<int64_t>(g), q.data());
    const double q_sq = internal::Dot(q.data(), q.data(), d);
    double top = -std::numeric_limits<double>::infinity();
    exact_logits.clear();
    for (const ConstMatrixView& keys : in.exact_keys) {
      for (int64_t r = 0; r < keys.rows; ++r) {
        keys.LoadRow(r, k.data());
        exact_logits.push_back(static_cast<double>(in.scale) * internal::Dot(q.data(), k.data(), d));
        top = std::max(top, exact_logits.back());
      }
    }
    for (size_t j = 0; j < num_clusters; ++j) {
      if (in.sizes[j] == 0) continue;
      const bool has = std::isfinite(in.key_norms[j]) && std::isfinite(in.key_spreads[j]);
      const double r = has ? in.key_norms[j] : default_norm;
      const double spread = has ? in.key_spreads[j] : default_spread;
      const float* mu =
          static_cast<const float*>(static_cast<const void*>(in.centroids.RowPtr(j)));
      const double s = in.scale;
      cluster_logmass[j] = std::log(static_cast<double>(in.sizes[j])) +
                           s * r * internal::Dot(q.data(), mu, d) + 0.5 * s * s * spread * q_sq;
      top = std::max(top, cluster_logmass[j]);
    }
    double exact = 0.0, all = 0.0;
    for (double l : exact_logits) exact += std::exp(l - top);
    double* row = out.cluster.data() + g * num_clusters;
    for (size_t j = 0; j < num_clusters; ++j) {
      if (in.sizes[j] == 0) continue;
      row[j] = std::exp(cluster_logmass[j] - top);
      all += row[j];
    }
    out.exact[g] = exact;
    out.total[g] = exact + all;
  }
  return out;
}

float ClusterMasses::RecallOf(const ClusterSelection* selection,
                              absl::Span<const int32_t> sizes) const {
  if (no_clustered_tokens) return 1.0f;
  double recall_sum = 0.0;
  const size_t c = static_cast<size_t>(num_clusters);
  for (size_t g = 0; g < static_cast<size_t>(num_query_heads); ++g) {
    double selected = 0.0;
    if (selection != nullptr) {
      const double* row = cluster.data() + g * c;
      for (size_t i = 0; i < selection->clusters.size(); ++i) {
        const int32_t j = selection->clusters[i];
        if (sizes[j] > 0) {
          selected += row[j] * static_cast<double>(selection->tokens[i]) /
                      static_cast<double>(sizes[j]);
        }
      }
    }
    recall_sum += (exact[g] + selected) / total[g];
  }
  return static_cast<float>(recall_sum / static_cast<double>(num_query_heads));
}

absl::StatusOr<float> EstimateRecall(const RecallEstimateInput& in) {
  if (absl::Status s = Validate(in); !s.ok()) return s;
  absl::StatusOr<ClusterMasses> masses = EstimateClusterMasses(in);
  if (!masses.ok()) return masses.status();
  return masses->RecallOf(in.selection, in.sizes);
}

}  // namespace clusterkv::gpu
