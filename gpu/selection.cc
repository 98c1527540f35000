#include "gpu/selection.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "gpu/internal/cuda_backend.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu {
namespace {

absl::Status ValidateScoring(const ConstMatrixView& queries, const ConstMatrixView& centroids,
                             float scale, absl::Span<float> scores) {
  RETURN_IF_ERROR(queries.Validate("queries"));
  RETURN_IF_ERROR(centroids.Validate("centroids"));
  if (queries.rows < 1 || centroids.rows < 1) {
    return absl::InvalidArgumentError("need at least one query and one centroid");
  }
  if (queries.cols != centroids.cols) {
    return absl::InvalidArgumentError(absl::StrCat("query width ", queries.cols,
                                                   " != centroid width ", centroids.cols));
  }
  if (centroids.dtype != DType::kFloat32) {
    return absl::InvalidArgumentError("centroids must be fp32");
  }
  if (static_cast<int64_t>(scores.size()) != centroids.rows) {
    return absl::InvalidArgumentError(absl::StrCat("scores has ", scores.size(),
                                                   " entries for ", centroids.rows, " centroids"));
  }
  if (!std::isfinite(scale)) return absl::InvalidArgumentError("scale is not finite");
  return queries.CheckFinite("queries");
}

}  // namespace

absl::Status ScoreCentroids(const ConstMatrixView& queries, const ConstMatrixView& centroids,
                            float scale, absl::Span<float> scores, const ExecContext& ctx) {
  RETURN_IF_ERROR(ValidateScoring(queries, centroids, scale, scores));
  if (ctx.backend == Backend::kCuda) {
    return internal::CudaScoreCentroids(queries, centroids, scale, scores, ctx.cuda_device);
  }
  const int d = static_cast<int>(queries.cols);
  const int64_t num_clusters = centroids.rows;
  std::fill(scores.begin(), scores.end(), 0.0f);
  std::vector<float> q(static_cast<size_t>(d));
  std::vector<float> logits(static_cast<size_t>(num_clusters));
  for (int64_t g = 0; g < queries.rows; ++g) {
    queries.LoadRow(g, q.data());
    float max_logit = -3.402823466e38f;
    for (int64_t c = 0; c < num_clusters; ++c) {
      const float* mu = static_cast<const float*>(static_cast<const void*>(centroids.RowPtr(c)));
      logits[c] = scale * internal::Dot(q.data(), mu, d);
      max_logit = std::max(max_logit, logits[c]);
    }
    float total = 0.0f;
    for (int64_t c = 0; c < num_clusters; ++c) {
      logits[c] = std::exp(logits[c] - max_logit);
      total += logits[c];
    }
    const float inv = 1.0f / total;
    for (int64_t c = 0; c < num_clusters; ++c) scores[c] += logits[c] * inv;
  }
  return absl::OkStatus();
}

absl::StatusOr<ClusterSelection> SelectClusters(absl::Span<const float> scores,
                                                absl::Span<const int32_t> sizes,
                                                int64_t budget) {
  if (scores.size() != sizes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(scores.size(), " scores for ", sizes.size(),
                                                   " cluster sizes"));
  }
  int64_t total = 0;
  for (size_t c = 0; c < sizes.size(); ++c) {
    if (sizes[c] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster ", c, " has negative size ", sizes[c]));
    }
    if (std::isnan(scores[c])) {
      return absl::InvalidArgumentError(absl::StrCat("score of cluster ", c, " is NaN"));
    }
    total += sizes[c];
  }
  if (budget < 1 || budget > total) {
    return absl::InvalidArgumentError(absl::StrCat("budget must be in [1, ", total,
                                                   "] (the clustered tokens), got ", budget));
  }
  std::vector<int32_t> ids(scores.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return internal::IsBetter(scores[a], a, scores[b], b);
  });
  ClusterSelection selection;
  for (int32_t id : ids) {
    if (selection.total_tokens == budget) break;
    if (sizes[id] == 0) continue;
    const int64_t take = std::min<int64_t>(sizes[id], budget - selection.total_tokens);
    selection.clusters.push_back(id);
    selection.tokens.push_back(static_cast<int32_t>(take));
    selection.total_tokens += take;
  }
  return selection;
}

absl::StatusOr<std::vector<TokenRange>> SelectionToRanges(const ClusterSelection& selection,
                                                          absl::Span<const int32_t> offsets) {
  if (selection.clusters.size() != selection.tokens.size()) {
    return absl::InvalidArgumentError("selection has mismatched cluster and token lists");
  }
  if (offsets.empty()) return absl::InvalidArgumentError("offsets is empty");
  const int64_t num_clusters = static_cast<int64_t>(offsets.size()) - 1;
  std::vector<TokenRange> ranges;
  ranges.reserve(selection.clusters.size());
  for (size_t i = 0; i < selection.clusters.size(); ++i) {
    const int32_t c = selection.clusters[i];
    if (c < 0 || c >= num_clusters) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster id ", c, " is outside [0, ", num_clusters, ")"));
    }
    const int64_t size = offsets[c + 1] - offsets[c];
    if (selection.tokens[i] < 0 || selection.tokens[i] > size) {
      return absl::InvalidArgumentError(absl::StrCat("cluster ", c, " has ", size,
                                                     " tokens; selection takes ",
                                                     selection.tokens[i]));
    }
    ranges.push_back(TokenRange{offsets[c], offsets[c] + selection.tokens[i]});
  }
  return NormalizeRanges(std::move(ranges));
}

}  // namespace clusterkv::gpu
