#include "gpu/internal/kmeans_common.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/splitmix64.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu::internal {
std::vector<int32_t> SampleDistinctRows(int64_t rows, int32_t count, uint64_t seed) {
  // Partial Fisher-Yates over an index permutation.
  std::vector<int32_t> perm(static_cast<size_t>(rows));
  std::iota(perm.begin(), perm.end(), 0);
  uint64_t state = seed;
  for (int32_t i = 0; i < count; ++i) {
    const uint64_t remaining = static_cast<uint64_t>(rows - i);
    const int64_t j = i + static_cast<int64_t>(SplitMix64(state) % remaining);
    std::swap(perm[i], perm[j]);
  }
  perm.resize(static_cast<size_t>(count));
  return perm;
}

void UpdateCentroids(std::vector<float>& sums, const std::vector<int32_t>& counts,
                     const std::vector<int32_t>& labels, const std::vector<float>& best_sim,
                     bool reseed, const NormalizedRowFn& row_fn, int32_t head_dim,
                     std::vector<float>& centroids) {
  const int32_t num_clusters = static_cast<int32_t>(counts.size());
  const size_t d = static_cast<size_t>(head_dim);
  std::vector<int32_t> empty;
  for (int32_t c = 0; c < num_clusters; ++c) {
    float* sum = &sums[c * d];
    if (counts[c] == 0) {
      empty.push_back(c);
      continue;
    }
    float sq = 0.0f;
    for (size_t i = 0; i < d; ++i) sq += sum[i] * sum[i];
    const float inv = InverseNorm(sq);
    if (inv == 0.0f) continue;  // members cancel out exactly: keep the previous direction
    for (size_t i = 0; i < d; ++i) centroids[c * d + i] = sum[i] * inv;
  }
  if (!reseed || empty.empty()) return;
  // The rows worst served by their centroid seed the empty clusters (ties: lower row first).
  std::vector<int32_t> rows(labels.size());
  std::iota(rows.begin(), rows.end(), 0);
  const size_t take = std::min(empty.size(), rows.size());
  auto worse = [&](int32_t a, int32_t b) {
    return best_sim[a] < best_sim[b] || (best_sim[a] == best_sim[b] && a < b);
  };
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(take), rows.end(),
                    worse);
  for (size_t i = 0; i < take; ++i) row_fn(rows[i], &centroids[empty[i] * d]);
}

void BuildClusterOrder(Clustering& c) {
  c.sizes.assign(static_cast<size_t>(c.num_clusters), 0);
  for (int32_t label : c.labels) ++c.sizes[label];
  c.offsets.assign(static_cast<size_t>(c.num_clusters) + 1, 0);
  for (int32_t j = 0; j < c.num_clusters; ++j) c.offsets[j + 1] = c.offsets[j] + c.sizes[j];
  std::vector<int32_t> cursor(c.offsets.begin(), c.offsets.end() - 1);
  c.order.assign(c.labels.size(), 0);
  for (size_t row = 0; row < c.labels.size(); ++row) {
    c.order[cursor[c.labels[row]]++] = static_cast<int32_t>(row);
  }
}

}  // namespace clusterkv::gpu::internal
