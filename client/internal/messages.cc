#include "client/internal/messages.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"

namespace clusterkv::client::internal {

PutBatcher::PutBatcher(std::string sequence_id, size_t target_bytes, bool write_through)
    : sequence_id_(std::move(sequence_id)),
      target_bytes_(target_bytes),
      write_through_(write_through) {}

v1::PutClustersRequest PutBatcher::NewMessage() const {
  v1::PutClustersRequest m;
  m.set_sequence_id(sequence_id_);
  m.set_write_through(write_through_);
  return m;
}

void PutBatcher::Add(v1::ClusterBlock block) {
  const size_t bytes = block.data().size();
  if (messages_.empty() || (current_bytes_ > 0 && current_bytes_ + bytes > target_bytes_)) {
    messages_.push_back(NewMessage());
    current_bytes_ = 0;
  }
  *messages_.back().add_blocks() = std::move(block);
  current_bytes_ += bytes;
  total_bytes_ += bytes;
  ++total_blocks_;
}

std::vector<v1::PutClustersRequest> PutBatcher::Finish(std::vector<v1::HeadIndex> indexes,
                                                       int64_t num_tokens) {
  if (messages_.empty()) messages_.push_back(NewMessage());
  v1::PutClustersRequest& last = messages_.back();
  for (v1::HeadIndex& index : indexes) *last.add_indexes() = std::move(index);
  if (num_tokens > 0) last.set_num_tokens(num_tokens);
  std::vector<v1::PutClustersRequest> out = std::move(messages_);
  messages_.clear();
  current_bytes_ = 0;
  return out;
}

namespace {

v1::ClusterBlock MakeBlock(HeadId head, int32_t cluster, int64_t tokens,
                           std::vector<uint8_t> data) {
  v1::ClusterBlock block;
  *block.mutable_id() = rpc::ToProto(ClusterId{head, cluster});
  block.set_num_tokens(static_cast<int32_t>(tokens));
  block.set_data(data.data(), data.size());
  return block;
}

absl::Status CheckClustering(const gpu::Clustering& c) {
  if (static_cast<int32_t>(c.offsets.size()) != c.num_clusters + 1) {
    return absl::InvalidArgumentError("clustering offsets do not match its cluster count");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<v1::ClusterBlock>> BlocksOfClustering(
    const gpu::Clustering& c, const ConstMatrixView& keys, const ConstMatrixView& values,
    int32_t position_base, HeadId head, int32_t first_cluster_id, DType dtype) {
  RETURN_IF_ERROR(CheckClustering(c));
  if (static_cast<int64_t>(c.order.size()) != keys.rows || keys.rows != values.rows ||
      keys.dtype != values.dtype || keys.cols != values.cols) {
    return absl::InvalidArgumentError("clustering order does not match the keys and values");
  }
  const size_t elem = DTypeSize(keys.dtype);
  std::vector<v1::ClusterBlock> blocks;
  std::vector<uint8_t> k;
  std::vector<uint8_t> v;
  std::vector<int32_t> positions;
  for (int32_t j = 0; j < c.num_clusters; ++j) {
    const int32_t begin = c.offsets[j];
    const int32_t n = c.offsets[j + 1] - begin;
    if (n == 0) continue;
    absl::Span<const int32_t> rows = absl::MakeConstSpan(c.order).subspan(begin, n);
    k.resize(static_cast<size_t>(n) * keys.cols * elem);
    v.resize(k.size());
    RETURN_IF_ERROR(gpu::GatherRows(keys, rows, k.data()));
    RETURN_IF_ERROR(gpu::GatherRows(values, rows, v.data()));
    positions.clear();
    for (int32_t r : rows) positions.push_back(position_base + r);
    ASSIGN_OR_RETURN(std::vector<uint8_t> data,
                     storage::EncodeClusterBlock(
                         positions, ConstMatrixView(k.data(), keys.dtype, n, keys.cols),
                         ConstMatrixView(v.data(), values.dtype, n, values.cols), dtype));
    blocks.push_back(MakeBlock(head, first_cluster_id + j, n, std::move(data)));
  }
  return blocks;
}

absl::StatusOr<std::vector<v1::ClusterBlock>> BlocksOfWindow(
    const gpu::Clustering& c, absl::Span<const int32_t> positions, const ConstMatrixView& keys,
    const ConstMatrixView& values, HeadId head, int32_t first_cluster_id, DType dtype) {
  RETURN_IF_ERROR(CheckClustering(c));
  if (static_cast<int64_t>(positions.size()) != keys.rows || keys.rows != values.rows ||
      c.offsets.back() != keys.rows) {
    return absl::InvalidArgumentError("window rows do not match its clustering");
  }
  std::vector<v1::ClusterBlock> blocks;
  for (int32_t j = 0; j < c.num_clusters; ++j) {
    const int32_t begin = c.offsets[j];
    const int32_t end = c.offsets[j + 1];
    if (end == begin) continue;
    ASSIGN_OR_RETURN(
        std::vector<uint8_t> data,
        storage::EncodeClusterBlock(positions.subspan(begin, end - begin), keys.Rows(begin, end),
                                    values.Rows(begin, end), dtype));
    blocks.push_back(MakeBlock(head, first_cluster_id + j, end - begin, std::move(data)));
  }
  return blocks;
}

v1::HeadIndex MakeHeadIndex(HeadId head, const gpu::Clustering& c) {
  v1::HeadIndex index;
  index.set_layer(head.layer);
  index.set_kv_head(head.kv_head);
  index.mutable_centroids()->Add(c.centroids.begin(), c.centroids.end());
  index.mutable_sizes()->Add(c.sizes.begin(), c.sizes.end());
  if (c.key_norms.size() == c.sizes.size() && c.key_spreads.size() == c.sizes.size()) {
    index.mutable_key_norms()->Add(c.key_norms.begin(), c.key_norms.end());
    index.mutable_key_spreads()->Add(c.key_spreads.begin(), c.key_spreads.end());
  }
  return index;
}

absl::StatusOr<gpu::Clustering> ClusteringOfHeadIndex(const v1::HeadIndex& index,
                                                      int32_t head_dim) {
  const int64_t clusters = index.sizes_size();
  if (index.centroids_size() != clusters * head_dim) {
    return absl::DataLossError(absl::StrCat("index of layer ", index.layer(), " head ",
                                            index.kv_head(), " has ", index.centroids_size(),
                                            " centroid values for ", clusters, " clusters"));
  }
  gpu::Clustering c;
  c.num_clusters = static_cast<int32_t>(clusters);
  c.head_dim = head_dim;
  c.centroids.assign(index.centroids().begin(), index.centroids().end());
  c.sizes.assign(index.sizes().begin(), index.sizes().end());
  c.offsets.assign(1, 0);
  for (int32_t size : c.sizes) {
    if (size < 0) return absl::DataLossError("index holds a negative cluster size");
    c.offsets.push_back(c.offsets.back() + size);
  }
  for (float x : c.centroids) {
    if (!std::isfinite(x)) return absl::DataLossError("index holds a non-finite centroid");
  }
  // Key statistics travel only complete; anything else leaves them unknown (NaN).
  if (index.key_norms_size() == clusters && index.key_spreads_size() == clusters) {
    c.key_norms.assign(index.key_norms().begin(), index.key_norms().end());
    c.key_spreads.assign(index.key_spreads().begin(), index.key_spreads().end());
  }
  return c;
}

}  // namespace clusterkv::client::internal
