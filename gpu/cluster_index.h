// ClusterIndex: the centroid index of one (sequence, layer, kv_head): unit-norm centroids,
// cluster sizes and where each cluster starts in the cluster-contiguous token store. Prefill
// creates it; each decode re-clustering appends C+ clusters. Cluster ids are never reused.
// Thread-compatible.
#ifndef CLUSTERKV_GPU_CLUSTER_INDEX_H_
#define CLUSTERKV_GPU_CLUSTER_INDEX_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor_view.h"
#include "gpu/kmeans.h"

namespace clusterkv::gpu {

class ClusterIndex {
 public:
  explicit ClusterIndex(int32_t head_dim) : head_dim_(head_dim), offsets_{0} {}

  // Appends the clusters of `c` after the existing ones: their ids continue the numbering and
  // their tokens follow the existing tokens in the store.
  // InvalidArgument when c.head_dim differs from the index's.
  absl::Status Append(const Clustering& c);

  int32_t head_dim() const { return head_dim_; }
  int32_t num_clusters() const { return static_cast<int32_t>(sizes_.size()); }
  int64_t num_tokens() const { return offsets_.back(); }
  ConstMatrixView centroids() const {
    return ConstMatrixView(centroids_.data(), num_clusters(), head_dim_);
  }
  const std::vector<int32_t>& sizes() const { return sizes_; }
  const std::vector<int32_t>& offsets() const { return offsets_; }
  // Clustering::key_norms / key_spreads of each cluster; NaN where the clustering that added
  // the cluster did not carry them (an index restored from the daemon).
  const std::vector<float>& key_norms() const { return key_norms_; }
  const std::vector<float>& key_spreads() const { return key_spreads_; }
  // The mean of the known key norms of the index's clusters (1 when none is known): the
  // temperature of CentroidScoring::kHeadNorm.
  float mean_key_norm() const {
    return known_norms_ > 0 ? static_cast<float>(known_norm_sum_ / known_norms_) : 1.0f;
  }
  // r_c * mu_c per cluster: each unit centroid times its cluster's mean key norm, the centroid
  // that CentroidScoring::kKeyNorm scores against. A cluster whose norm is unknown takes the
  // mean of the known norms of the clustering that added it, else of the whole index, else 1.
  ConstMatrixView norm_scaled_centroids() const {
    return ConstMatrixView(scaled_centroids_.data(), num_clusters(), head_dim_);
  }

 private:
  int32_t head_dim_;
  std::vector<float> centroids_;
  std::vector<int32_t> sizes_;
  std::vector<int32_t> offsets_;  // num_clusters + 1 entries
  std::vector<float> key_norms_;
  std::vector<float> key_spreads_;
  std::vector<float> scaled_centroids_;
  double known_norm_sum_ = 0.0;  // over the clusters with a known norm
  int64_t known_norms_ = 0;
};

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_CLUSTER_INDEX_H_
