#include "gpu/cluster_index.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace clusterkv::gpu {

absl::Status ClusterIndex::Append(const Clustering& c) {
  if (c.head_dim != head_dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("clustering head_dim ", c.head_dim, " != index head_dim ", head_dim_));
  }
  if (static_cast<int32_t>(c.sizes.size()) != c.num_clusters ||
      c.centroids.size() != static_cast<size_t>(c.num_clusters) * head_dim_) {
    return absl::InvalidArgumentError("clustering has inconsistent sizes or centroids");
  }
  const bool has_stats = c.key_norms.size() == c.sizes.size() &&
                         c.key_spreads.size() == c.sizes.size();
  constexpr float kUnknown = std::numeric_limits<float>::quiet_NaN();
  for (int32_t j = 0; j < c.num_clusters; ++j) {
    key_norms_.push_back(has_stats ? c.key_norms[j] : kUnknown);
    key_spreads_.push_back(has_stats ? c.key_spreads[j] : kUnknown);
  }
  double added_sum = 0.0;
  int64_t added_known = 0;
  for (int32_t j = 0; j < c.num_clusters && has_stats; ++j) {
    if (std::isfinite(c.key_norms[j])) {
      added_sum += c.key_norms[j];
      ++added_known;
    }
  }
  known_norm_sum_ += added_sum;
  known_norms_ += added_known;
  const float fallback = added_known > 0   ? static_cast<float>(added_sum / added_known)
                         : known_norms_ > 0 ? static_cast<float>(known_norm_sum_ / known_norms_)
                                            : 1.0f;
  for (int32_t j = 0; j < c.num_clusters; ++j) {
    const float r = has_stats && std::isfinite(c.key_norms[j]) ? c.key_norms[j] : fallback;
    for (int32_t d = 0; d < head_dim_; ++d) {
      scaled_centroids_.push_back(r * c.centroids[static_cast<size_t>(j) * head_dim_ + d]);
    }
  }
  centroids_.insert(centroids_.end(), c.centroids.begin(), c.centroids.end());
  for (int32_t size : c.sizes) {
    sizes_.push_back(size);
    offsets_.push_back(offsets_.back() + size);
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::gpu
