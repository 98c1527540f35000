// The backend-independent steps of spherical K-means: deterministic initialisation, the
// centroid update with empty-cluster re-seeding, and the cluster-contiguous ordering. Both the
// CPU twin and the CUDA path call these, so they cluster identically given the same
// assignments.
#ifndef CLUSTERKV_GPU_INTERNAL_KMEANS_COMMON_H_
#define CLUSTERKV_GPU_INTERNAL_KMEANS_COMMON_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "gpu/kmeans.h"

namespace clusterkv::gpu::internal {

// `count` distinct row indices in [0, rows), drawn with a portable seeded generator.
std::vector<int32_t> SampleDistinctRows(int64_t rows, int32_t count, uint64_t seed);

// Writes the normalised row `row` of the input into out[0, head_dim).
using NormalizedRowFn = std::function<void(int64_t row, float* out)>;

// Turns per-cluster sums of normalised rows into unit centroids. When `reseed` is true, each
// empty cluster takes the row of lowest similarity to its own centroid (best_sim), distinct
// rows for distinct clusters; when false, an empty cluster keeps its previous centroid.
// sums: [C, d] (overwritten), counts: [C], labels/best_sim: [rows], centroids: [C, d] in/out.
void UpdateCentroids(std::vector<float>& sums, const std::vector<int32_t>& counts,
                     const std::vector<int32_t>& labels, const std::vector<float>& best_sim,
                     bool reseed, const NormalizedRowFn& row_fn, int32_t head_dim,
                     std::vector<float>& centroids);

// Fills sizes, offsets and order of `c` from c.labels (stable counting sort).
void BuildClusterOrder(Clustering& c);

}  // namespace clusterkv::gpu::internal

#endif  // CLUSTERKV_GPU_INTERNAL_KMEANS_COMMON_H_
