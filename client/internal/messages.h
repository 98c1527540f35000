// Building and reading the wire messages of a Sequence: cluster blocks from a clustering,
// PutClusters streams batched to a message size, HeadIndex <-> gpu::Clustering. Internal to
// client/; exposed in a header for the unit tests.
#ifndef CLUSTERKV_CLIENT_INTERNAL_MESSAGES_H_
#define CLUSTERKV_CLIENT_INTERNAL_MESSAGES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "core/ids.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"
#include "gpu/kmeans.h"

namespace clusterkv::client::internal {

// Collects blocks into PutClustersRequest messages of about `target_bytes` each (a block is
// never split; a message holds at least one block). Thread-compatible.
class PutBatcher {
 public:
  PutBatcher(std::string sequence_id, size_t target_bytes, bool write_through);

  void Add(v1::ClusterBlock block);
  // The stream: every block, then `indexes` and `num_tokens` in the last message, so the daemon
  // never sees an index naming a block that has not arrived yet.
  std::vector<v1::PutClustersRequest> Finish(std::vector<v1::HeadIndex> indexes,
                                             int64_t num_tokens);
  size_t bytes() const { return total_bytes_; }
  int64_t blocks() const { return total_blocks_; }

 private:
  v1::PutClustersRequest NewMessage() const;

  std::string sequence_id_;
  size_t target_bytes_;
  bool write_through_;
  std::vector<v1::PutClustersRequest> messages_;
  size_t current_bytes_ = 0;
  size_t total_bytes_ = 0;
  int64_t total_blocks_ = 0;
};

// The blocks of every non-empty cluster of `c`, whose rows index `keys`/`values` (rows of the
// clustered tokens, any dtype; row r is token position position_base + r). Cluster j gets id
// {head, first_cluster_id + j}. Empty clusters get no block (they are never selected).
absl::StatusOr<std::vector<v1::ClusterBlock>> BlocksOfClustering(
    const gpu::Clustering& c, const ConstMatrixView& keys, const ConstMatrixView& values,
    int32_t position_base, HeadId head, int32_t first_cluster_id, DType dtype);

// The blocks of a decode window whose positions/keys/values are already cluster-contiguous
// (gpu::WindowClusters): cluster j covers rows [c.offsets[j], c.offsets[j + 1]).
absl::StatusOr<std::vector<v1::ClusterBlock>> BlocksOfWindow(
    const gpu::Clustering& c, absl::Span<const int32_t> positions, const ConstMatrixView& keys,
    const ConstMatrixView& values, HeadId head, int32_t first_cluster_id, DType dtype);

// The index entry of one head: centroids and sizes of `c`.
v1::HeadIndex MakeHeadIndex(HeadId head, const gpu::Clustering& c);

// A Clustering holding the centroids and sizes of `index` (labels/order left empty), fit for
// gpu::ClusterIndex::Append. DataLoss when the daemon's index is malformed (centroid count not
// C x head_dim, negative size, non-finite centroid).
absl::StatusOr<gpu::Clustering> ClusteringOfHeadIndex(const v1::HeadIndex& index, int32_t head_dim);

}  // namespace clusterkv::client::internal

#endif  // CLUSTERKV_CLIENT_INTERNAL_MESSAGES_H_
