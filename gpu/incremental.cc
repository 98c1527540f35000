#include "gpu/incremental.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace clusterkv::gpu {

IncrementalClusterer::IncrementalClusterer(int32_t head_dim, const IncrementalOptions& options,
                                           const ExecContext& ctx)
    : head_dim_(head_dim), options_(options), ctx_(ctx) {}

absl::StatusOr<std::optional<WindowClusters>> IncrementalClusterer::Append(int32_t position,
                                                                           const float* key,
                                                                           const float* value) {
  if (options_.interval < 1 || options_.clusters < 1 || options_.clusters > options_.interval) {
    return absl::InvalidArgumentError(absl::StrCat("need 1 <= clusters (", options_.clusters,
                                                   ") <= interval (", options_.interval, ")"));
  }
  for (int32_t i = 0; i < head_dim_; ++i) {
    if (!std::isfinite(key[i]) || !std::isfinite(value[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("token at position ", position, " has a non-finite key or value"));
    }
  }
  positions_.push_back(position);
  keys_.insert(keys_.end(), key, key + head_dim_);
  values_.insert(values_.end(), value, value + head_dim_);
  if (window_size() < options_.interval) return std::nullopt;

  KMeansOptions kmeans;
  kmeans.num_clusters = options_.clusters;
  kmeans.iterations = options_.iterations;
  kmeans.seed = options_.seed + windows_done_;
  absl::StatusOr<Clustering> clustering = SphericalKMeans(window_keys(), kmeans, ctx_);
  if (!clustering.ok()) {
    // Leave the window as it was before this token.
    positions_.pop_back();
    keys_.resize(keys_.size() - head_dim_);
    values_.resize(values_.size() - head_dim_);
    return clustering.status();
  }
  WindowClusters out;
  out.clustering = *std::move(clustering);
  const size_t d = static_cast<size_t>(head_dim_);
  out.positions.reserve(positions_.size());
  out.keys.resize(keys_.size());
  out.values.resize(values_.size());
  for (size_t i = 0; i < out.clustering.order.size(); ++i) {
    const int32_t row = out.clustering.order[i];
    out.positions.push_back(positions_[row]);
    std::memcpy(&out.keys[i * d], &keys_[row * d], d * sizeof(float));
    std::memcpy(&out.values[i * d], &values_[row * d], d * sizeof(float));
  }
  ++windows_done_;
  positions_.clear();
  keys_.clear();
  values_.clear();
  return out;
}

absl::Status IncrementalClusterer::Restore(uint64_t windows_done, std::vector<int32_t> positions,
                                          std::vector<float> keys, std::vector<float> values) {
  const size_t n = positions.size();
  if (n >= static_cast<size_t>(options_.interval) || keys.size() != n * head_dim_ ||
      values.size() != n * head_dim_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a restored window holds fewer than ", options_.interval, " rows of ", head_dim_,
        " keys and values; got ", n, " positions, ", keys.size(), " keys, ", values.size(),
        " values"));
  }
  windows_done_ = windows_done;
  positions_ = std::move(positions);
  keys_ = std::move(keys);
  values_ = std::move(values);
  return absl::OkStatus();
}

}  // namespace clusterkv::gpu
