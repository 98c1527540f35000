// Decode-time incremental clustering (DESIGN.md section 4): new tokens of one kv head stay in
// a recent window; when the window holds m tokens they are clustered into C+ clusters, handed
// back in cluster-contiguous order for appending to the index and offloading, and the window
// starts again. Thread-compatible.
//
// Example:
//   IncrementalClusterer window(128, {.interval = 320, .clusters = 8, .iterations = 20});
//   ASSIGN_OR_RETURN(std::optional<WindowClusters> done, window.Append(pos, key, value));
//   if (done) { RETURN_IF_ERROR(index.Append(done->clustering)); Offload(*done); }
#ifndef CLUSTERKV_GPU_INCREMENTAL_H_
#define CLUSTERKV_GPU_INCREMENTAL_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor_view.h"
#include "gpu/backend.h"
#include "gpu/kmeans.h"

namespace clusterkv::gpu {

struct IncrementalOptions {
  int32_t interval = 320;  // m
  int32_t clusters = 8;    // C+
  int32_t iterations = 20;
  uint64_t seed = 1;
};

// One full window, clustered; rows are in cluster-contiguous order.
struct WindowClusters {
  Clustering clustering;           // labels/order refer to window rows
  std::vector<int32_t> positions;  // [m] token positions, cluster-contiguous
  std::vector<float> keys;         // [m, head_dim] fp32, cluster-contiguous
  std::vector<float> values;       // [m, head_dim] fp32, cluster-contiguous
};

class IncrementalClusterer {
 public:
  IncrementalClusterer(int32_t head_dim, const IncrementalOptions& options,
                       const ExecContext& ctx = ExecContext());

  // Adds one token (key and value: head_dim fp32 each). Returns the clustered window when this
  // token fills it, nullopt otherwise. InvalidArgument for NaN/Inf input or a bad option
  // (clusters > interval); the window is unchanged on error.
  absl::StatusOr<std::optional<WindowClusters>> Append(int32_t position, const float* key,
                                                       const float* value);

  // Tokens currently in the recent window, attended in full every step.
  int32_t window_size() const { return static_cast<int32_t>(positions_.size()); }
  ConstMatrixView window_keys() const {
    return ConstMatrixView(keys_.data(), window_size(), head_dim_);
  }
  ConstMatrixView window_values() const {
    return ConstMatrixView(values_.data(), window_size(), head_dim_);
  }
  const std::vector<int32_t>& window_positions() const { return positions_; }
  // Windows clustered so far (each window's K-means seed derives from it).
  uint64_t windows_done() const { return windows_done_; }
  // Puts the clusterer back into a saved state (a resumed sequence): `windows_done` windows
  // clustered and `positions` (with fp32 keys and values, [n, head_dim] each) in the window.
  // InvalidArgument when the rows do not fit one window or their sizes disagree.
  absl::Status Restore(uint64_t windows_done, std::vector<int32_t> positions,
                       std::vector<float> keys, std::vector<float> values);

 private:
  int32_t head_dim_;
  IncrementalOptions options_;
  ExecContext ctx_;
  uint64_t windows_done_ = 0;
  std::vector<int32_t> positions_;
  std::vector<float> keys_;
  std::vector<float> values_;
};

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_INCREMENTAL_H_
