// Spherical K-means (cosine distance) for clustering keys, and the cluster-contiguous
// reordering that turns a clustering into one contiguous block per cluster.
//
// Rows are L2-normalised, assigned to the centroid of highest dot product, and each centroid is
// the normalised mean of its rows. Initialisation draws distinct rows with a seeded RNG, so the
// same keys, options and seed give the same clustering on every run and backend (up to fp32
// ties). A cluster left empty by an assignment is re-seeded with the row that is farthest from
// its own centroid; clusters can still end empty (e.g. all rows identical) and then have size 0.
//
// Example:
//   KMeansOptions opt{.num_clusters = 400, .iterations = 20, .seed = 7};
//   ASSIGN_OR_RETURN(Clustering c, SphericalKMeans(keys, opt, ctx));
//   // Tokens of cluster j, in position order: c.order[c.offsets[j] .. c.offsets[j + 1]).
#ifndef CLUSTERKV_GPU_KMEANS_H_
#define CLUSTERKV_GPU_KMEANS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor_view.h"
#include "gpu/backend.h"

namespace clusterkv::gpu {

struct KMeansOptions {
  int32_t num_clusters = 400;
  // Assign + update rounds; a final assignment against the last centroids gives the labels.
  int32_t iterations = 20;
  uint64_t seed = 1;
};

// The clustering of one kv head's keys.
struct Clustering {
  int32_t num_clusters = 0;
  int32_t head_dim = 0;
  std::vector<float> centroids;  // [num_clusters, head_dim], unit norm
  std::vector<int32_t> labels;   // [rows] cluster of each input row
  std::vector<int32_t> sizes;    // [num_clusters]
  std::vector<int32_t> offsets;  // [num_clusters + 1] prefix sums of sizes
  std::vector<int32_t> order;    // [rows] input rows grouped by cluster, ascending inside each
  double objective = 0.0;        // mean cosine similarity of each row to its centroid
  // What the unit centroids leave out, for estimating attention mass (gpu/recall_estimate.h):
  // per cluster, the mean L2 norm r of its keys and the spread, the mean over its keys of
  // |k - r * centroid|^2 / head_dim. Empty when unknown (an index restored from the daemon).
  std::vector<float> key_norms;    // [num_clusters]
  std::vector<float> key_spreads;  // [num_clusters]

  ConstMatrixView CentroidView() const {
    return ConstMatrixView(centroids.data(), num_clusters, head_dim);
  }
};

// Clusters the rows of `keys` ([rows, head_dim], any dtype).
// InvalidArgument: empty keys, num_clusters < 1 or > rows, iterations < 1, NaN/Inf in keys.
// FailedPrecondition: ctx asks for CUDA and no device is usable.
absl::StatusOr<Clustering> SphericalKMeans(const ConstMatrixView& keys,
                                           const KMeansOptions& options,
                                           const ExecContext& ctx);

// Fills c.key_norms and c.key_spreads from the rows `c` was computed from (labels and sizes
// set). SphericalKMeans calls it; exposed for clusterings assembled elsewhere.
void ComputeKeyStatistics(const ConstMatrixView& keys, Clustering& c);

// Clusters many heads (e.g. every (layer, kv_head) of a sequence) with the same options; head i
// uses seed options.seed + i. CPU threads are spread over heads. Fails with the first error.
absl::StatusOr<std::vector<Clustering>> SphericalKMeansBatch(
    absl::Span<const ConstMatrixView> heads, const KMeansOptions& options,
    const ExecContext& ctx);

// Mean over rows of max_j cos(row, centroid_j): the objective both our K-means and a baseline's
// centroids are judged by. centroids: [C, head_dim] fp32 (normalised inside).
absl::StatusOr<double> MeanCosineToNearest(const ConstMatrixView& keys,
                                           const ConstMatrixView& centroids, int threads);

// Copies rows of `src` in `order` into dst (rows x src.cols elements of src.dtype, contiguous):
// the cluster-contiguous layout of a cluster block. InvalidArgument on an out-of-range index.
absl::Status GatherRows(const ConstMatrixView& src, absl::Span<const int32_t> order, void* dst);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_KMEANS_H_
