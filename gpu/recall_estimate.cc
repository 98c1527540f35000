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

absl::StatusOr<float> EstimateRecall(const RecallEstimateInput& in) {
  if (absl::Status s = Validate(in); !s.ok()) return s;
  const int32_t d = static_cast<int32_t>(in.queries.cols);
  const size_t num_clusters = in.sizes.size();
  int64_t clustered = 0;
  for (int32_t n : in.sizes) clustered += n;
  if (clustered == 0) return 1.0f;

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
  std::vector<float> fraction(num_clusters, 0.0f);  // share of each cluster attended
  if (in.selection != nullptr) {
    for (size_t i = 0; i < in.selection->clusters.size(); ++i) {
      const int32_t j = in.selection->clusters[i];
      if (in.sizes[j] > 0) {
        fraction[j] = static_cast<float>(in.selection->tokens[i]) / static_cast<float>(in.sizes[j]);
      }
    }
  }

  std::vector<float> q(static_cast<size_t>(d)), k(static_cast<size_t>(d));
  std::vector<double> exact_logits, cluster_logmass(num_clusters);
  double recall_sum = 0.0;
  for (int64_t g = 0; g < in.queries.rows; ++g) {
    in.queries.LoadRow(g, q.data());
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
    double exact = 0.0, selected = 0.0, all = 0.0;
    for (double l : exact_logits) exact += std::exp(l - top);
    for (size_t j = 0; j < num_clusters; ++j) {
      if (in.sizes[j] == 0) continue;
      const double m = std::exp(cluster_logmass[j] - top);
      all += m;
      selected += fraction[j] * m;
    }
    recall_sum += (exact + selected) / (exact + all);
  }
  return static_cast<float>(recall_sum / static_cast<double>(in.queries.rows));
}

}  // namespace clusterkv::gpu
