// SequenceCore: open, reopen, prefill offload, decode appends, reattach, close. The decode step
// (Attend) is in sequence_attend.cc.
#include "client/internal/sequence_core.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "client/internal/messages.h"
#include "client/internal/sequence_state.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "gpu/kmeans.h"
#include "proto/rpc_support.h"

namespace clusterkv::client {
namespace {

absl::Status ValidateSequenceId(const std::string& id) {
  // The tenant is the transport's business; only the id's rules matter here.
  return SequenceKey{"tenant", id}.Validate();
}

// Appends rows [begin, end) of `m`, converted to `dtype`, to `out`.
void AppendRows(const ConstMatrixView& m, int64_t begin, int64_t end, DType dtype,
                std::vector<uint8_t>* out) {
  const size_t row_bytes = static_cast<size_t>(m.cols) * DTypeSize(dtype);
  std::vector<float> row(static_cast<size_t>(m.cols));
  for (int64_t r = begin; r < end; ++r) {
    const size_t at = out->size();
    out->resize(at + row_bytes);
    if (m.dtype == dtype) {
      std::copy(m.RowPtr(r), m.RowPtr(r) + row_bytes, out->data() + at);
    } else {
      m.LoadRow(r, row.data());
      ConvertFromFloat(row.data(), m.cols, dtype, out->data() + at);
    }
  }
}

// Head-major ([heads][tokens][d]) and token-major ([tokens][heads][d], an engine's KV cache
// layout) views are both accepted; what matters is that no two rows overlap.
absl::Status CheckKv(const Tensor3View& t, const KvLayout& layout, absl::string_view what) {
  const bool head_major = t.strides[1] >= t.dims[2] && t.strides[0] >= t.dims[1] * t.strides[1];
  const bool token_major = t.strides[0] >= t.dims[2] && t.strides[1] >= t.dims[0] * t.strides[0];
  if (t.data == nullptr || t.dims[0] != layout.num_kv_heads || t.dims[2] != layout.head_dim ||
      t.dims[1] < 1 || !(head_major || token_major)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be [", layout.num_kv_heads, ", tokens >= 1, ", layout.head_dim,
        "] with non-overlapping strides, got [", t.dims[0], ", ", t.dims[1], ", ", t.dims[2], "]"));
  }
  return absl::OkStatus();
}

// InvalidArgument naming `what` unless `m` is a valid, finite [rows, head_dim] view.
absl::Status CheckRows(const ConstMatrixView& m, int64_t rows, const KvLayout& layout,
                       absl::string_view what) {
  RETURN_IF_ERROR(m.Validate(what));
  if (m.rows != rows || m.cols != layout.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be [", rows, ", ",
                                                   layout.head_dim, "], got [", m.rows, ", ",
                                                   m.cols, "]"));
  }
  return m.CheckFinite(what);
}

absl::Status CheckTokenRows(const ConstMatrixView& m, const KvLayout& layout,
                            absl::string_view what) {
  return CheckRows(m, layout.num_kv_heads, layout, what);
}

}  // namespace

SequenceCore::SequenceCore(KvTransport* transport, std::string id, const KvLayout& layout,
                           SequenceOptions options)
    : transport_(transport),
      id_(std::move(id)),
      layout_(layout),
      options_(std::move(options)),
      slots_(layout.head_dim, layout.dtype) {
  if (options_.clock == nullptr) options_.clock = MakeSystemClock();
  const ClusterKvConfig& cfg = options_.config;
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    auto state = std::make_unique<LayerState>();
    state->dense = cfg.IsDenseLayer(l);
    state->heads.reserve(layout_.num_kv_heads);
    for (int32_t h = 0; h < layout_.num_kv_heads; ++h) {
      gpu::IncrementalOptions inc;
      inc.interval = cfg.recluster_interval;
      inc.clusters = cfg.clusters_per_recluster;
      inc.iterations = cfg.kmeans_iterations;
      inc.seed = cfg.seed + static_cast<uint64_t>(l) * layout_.num_kv_heads + h;
      state->heads.emplace_back(layout_.head_dim, inc, options_.exec);
    }
    layers_.push_back(std::move(state));
  }
}

SequenceCore::~SequenceCore() = default;

absl::StatusOr<std::unique_ptr<SequenceCore>> SequenceCore::Open(KvTransport* transport,
                                                         std::string sequence_id,
                                                         const KvLayout& layout,
                                                         SequenceOptions options) {
  if (transport == nullptr) return absl::InvalidArgumentError("null transport");
  RETURN_IF_ERROR(ValidateSequenceId(sequence_id));
  RETURN_IF_ERROR(layout.Validate());
  RETURN_IF_ERROR(options.config.Validate());
  v1::OpenSequenceRequest request;
  request.set_sequence_id(sequence_id);
  *request.mutable_layout() = rpc::ToProto(layout);
  ASSIGN_OR_RETURN(v1::OpenSequenceResponse response, transport->OpenSequence(request));
  if (response.has_layout()) {
    ASSIGN_OR_RETURN(KvLayout stored, rpc::FromProto(response.layout()));
    if (stored != layout) {
      return absl::FailedPreconditionError(absl::StrCat("sequence ", sequence_id, " has layout ",
                                                        stored.DebugString(), ", not ",
                                                        layout.DebugString()));
    }
  }
  std::unique_ptr<SequenceCore> seq(
      new SequenceCore(transport, std::move(sequence_id), layout, std::move(options)));
  if (!response.created()) {
    for (auto& state : seq->layers_) state->num_tokens = response.num_tokens();
    RETURN_IF_ERROR(seq->RestoreIndexes(/*strict=*/false));
  }
  return seq;
}

absl::StatusOr<std::unique_ptr<SequenceCore>> SequenceCore::Reopen(KvTransport* transport,
                                                           std::string sequence_id,
                                                           SequenceOptions options) {
  if (transport == nullptr) return absl::InvalidArgumentError("null transport");
  RETURN_IF_ERROR(ValidateSequenceId(sequence_id));
  RETURN_IF_ERROR(options.config.Validate());
  v1::OpenSequenceRequest request;
  request.set_sequence_id(sequence_id);
  request.set_must_exist(true);
  ASSIGN_OR_RETURN(v1::OpenSequenceResponse response, transport->OpenSequence(request));
  ASSIGN_OR_RETURN(KvLayout layout, rpc::FromProto(response.layout()));
  std::unique_ptr<SequenceCore> seq(
      new SequenceCore(transport, std::move(sequence_id), layout, std::move(options)));
  for (auto& state : seq->layers_) state->num_tokens = response.num_tokens();
  RETURN_IF_ERROR(seq->RestoreIndexes(/*strict=*/false));
  return seq;
}

absl::Status SequenceCore::RestoreIndexes(bool strict, const std::vector<int32_t>* caps) {
  // One layer per call: the daemon bounds each answer (a long sequence's whole index can be
  // larger than one message).
  absl::flat_hash_map<HeadId, gpu::Clustering> restored;
  for (int32_t layer = 0; layer < layout_.num_layers; ++layer) {
    v1::GetIndexRequest request;
    request.set_sequence_id(id_);
    request.add_layers(layer);
    ASSIGN_OR_RETURN(v1::GetIndexResponse response, transport_->GetIndex(request));
    for (const v1::HeadIndex& index : response.indexes()) {
      if (index.layer() != layer || index.kv_head() < 0 ||
          index.kv_head() >= layout_.num_kv_heads) {
        return absl::DataLossError(absl::StrCat("daemon returned an index for layer ",
                                                index.layer(), " kv head ", index.kv_head(),
                                                " when asked for layer ", layer));
      }
      ASSIGN_OR_RETURN(gpu::Clustering c,
                       internal::ClusteringOfHeadIndex(index, layout_.head_dim));
      if (caps != nullptr && (*caps)[layer] >= 0 && c.num_clusters > (*caps)[layer]) {
        const int32_t keep = (*caps)[layer];
        c.num_clusters = keep;
        c.centroids.resize(static_cast<size_t>(keep) * layout_.head_dim);
        c.sizes.resize(static_cast<size_t>(keep));
        if (c.offsets.size() > static_cast<size_t>(keep) + 1) c.offsets.resize(keep + 1);
        if (c.key_norms.size() > static_cast<size_t>(keep)) c.key_norms.resize(keep);
        if (c.key_spreads.size() > static_cast<size_t>(keep)) c.key_spreads.resize(keep);
      }
      restored[HeadId{index.layer(), index.kv_head()}] = std::move(c);
    }
  }
  std::string lost;
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    for (int32_t h = 0; h < layout_.num_kv_heads; ++h) {
      HeadState& head = layers_[l]->heads[h];
      gpu::ClusterIndex index(layout_.head_dim);
      auto it = restored.find(HeadId{l, h});
      if (it != restored.end()) RETURN_IF_ERROR(index.Append(it->second));
      if (strict && index.num_clusters() < head.index.num_clusters() && lost.empty()) {
        lost = absl::StrCat("daemon holds ", index.num_clusters(), " clusters of layer ", l,
                            " kv head ", h, ", this client knew ", head.index.num_clusters());
      }
      head.index = std::move(index);
    }
  }
  if (!lost.empty()) return absl::DataLossError(lost);
  return absl::OkStatus();
}

absl::Status SequenceCore::CheckQueries(const ConstMatrixView& queries,
                                        absl::string_view what) const {
  return CheckRows(queries, layout_.num_q_heads, layout_, what);
}

absl::Status SequenceCore::CheckLayer(int32_t layer) const {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("sequence ", id_, " is closed"));
  if (layer < 0 || layer >= layout_.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " out of range [0, ", layout_.num_layers, ")"));
  }
  return absl::OkStatus();
}

absl::Status SequenceCore::OffloadPrefill(int32_t layer, const Tensor3View& keys,
                                      const Tensor3View& values, const PrefillProgress& progress) {
  RETURN_IF_ERROR(CheckLayer(layer));
  RETURN_IF_ERROR(CheckKv(keys, layout_, "keys"));
  RETURN_IF_ERROR(CheckKv(values, layout_, "values"));
  if (keys.dims != values.dims) {
    return absl::InvalidArgumentError("keys and values must have the same shape");
  }
  LayerState& state = *layers_[layer];
  WaitForPrefetchPlan(state);
  bool decoding = state.pending.has_value();
  for (const HeadState& head : state.heads) decoding |= head.window.window_size() > 0;
  if (decoding) {
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", layer, " of sequence ", id_, " is decoding already"));
  }
  const ClusterKvConfig& cfg = options_.config;
  const int32_t heads = layout_.num_kv_heads;
  const int64_t tokens = keys.dims[1];
  const int64_t position_base = state.num_tokens;  // > 0 when this call continues the prompt
  // Every row of a dense layer stays local; on a clustered layer, the sinks.
  const int64_t local =
      state.dense ? tokens
                  : std::clamp<int64_t>(cfg.num_sink_tokens - position_base, 0, tokens);
  if (position_base + tokens > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError("token positions would overflow int32");
  }
  for (int32_t h = 0; h < heads; ++h) {
    RETURN_IF_ERROR(keys.Slice(h).CheckFinite("keys"));
    RETURN_IF_ERROR(values.Slice(h).CheckFinite("values"));
  }

  // The clustered rows [local, tokens), cut at the segment boundaries (multiples of G in
  // positions), or whole without segments.
  std::vector<std::pair<int64_t, int64_t>> segments;
  const int64_t g = cfg.prefill_segment_tokens;
  for (int64_t r = local; r < tokens;) {
    const int64_t end =
        g == 0 ? tokens : std::min(tokens, ((position_base + r) / g + 1) * g - position_base);
    segments.emplace_back(r, end);
    r = end;
  }
  // Per segment, per head. A segment's K-means seed depends only on the layer and where the
  // segment starts, so a fork's segments cluster as the document's did.
  std::vector<std::vector<gpu::Clustering>> clusterings;
  for (const auto& [begin, end] : segments) {
    std::vector<ConstMatrixView> clustered;
    for (int32_t h = 0; h < heads; ++h) clustered.push_back(keys.Slice(h).Rows(begin, end));
    gpu::KMeansOptions kmeans;
    kmeans.iterations = cfg.kmeans_iterations;
    kmeans.seed = cfg.seed + static_cast<uint64_t>(layer) * heads;
    if (g == 0) {
      kmeans.num_clusters =
          static_cast<int32_t>(std::min<int64_t>(cfg.num_prefill_clusters, end - begin));
    } else {
      kmeans.num_clusters = cfg.SegmentClusters((position_base + begin) / g, end - begin);
      kmeans.seed += static_cast<uint64_t>((position_base + begin) / g) * 0x9e3779b97f4a7c15ULL;
    }
    ASSIGN_OR_RETURN(std::vector<gpu::Clustering> c,
                     gpu::SphericalKMeansBatch(clustered, kmeans, options_.exec));
    clusterings.push_back(std::move(c));
  }

  if (!segments.empty()) {
    // Blocks and one index per head covering every segment of this call, after the clusters
    // the head holds already.
    const bool first = state.heads[0].index.num_clusters() == 0;
    internal::PutBatcher batcher(id_, options_.put_message_bytes, options_.write_through);
    v1::AppendClustersRequest append;
    std::vector<v1::HeadIndex> indexes;
    for (int32_t h = 0; h < heads; ++h) {
      const int32_t held = state.heads[h].index.num_clusters();
      int32_t next = held;
      v1::HeadIndex index;
      for (size_t s = 0; s < segments.size(); ++s) {
        const auto [begin, end] = segments[s];
        const gpu::Clustering& c = clusterings[s][h];
        ASSIGN_OR_RETURN(std::vector<v1::ClusterBlock> blocks,
                         internal::BlocksOfClustering(
                             c, keys.Slice(h).Rows(begin, end), values.Slice(h).Rows(begin, end),
                             static_cast<int32_t>(position_base + begin), HeadId{layer, h}, next,
                             layout_.dtype));
        for (v1::ClusterBlock& block : blocks) {
          if (first) {
            batcher.Add(std::move(block));
          } else {
            *append.add_blocks() = std::move(block);
          }
        }
        index.MergeFrom(internal::MakeHeadIndex(HeadId{layer, h}, c));
        next += c.num_clusters;
      }
      if (first) {
        indexes.push_back(std::move(index));
      } else {
        index.set_first_cluster(held);  // a retried append that landed answers OK
        *append.add_appended() = std::move(index);
      }
      if (progress) progress(h + 1, heads);
    }
    if (first) {
      const size_t bytes = batcher.bytes();
      std::vector<v1::PutClustersRequest> stream =
          batcher.Finish(std::move(indexes), position_base + tokens);
      RETURN_IF_ERROR(transport_->PutClusters(stream).status());
      bytes_offloaded_ += static_cast<int64_t>(bytes);
    } else {
      append.set_sequence_id(id_);
      append.set_num_tokens(position_base + tokens);
      append.set_write_through(options_.write_through);
      RETURN_IF_ERROR(transport_->AppendClusters(append).status());
      for (const v1::ClusterBlock& block : append.blocks()) {
        bytes_offloaded_ += static_cast<int64_t>(block.data().size());
      }
    }
  } else if (progress) {
    progress(heads, heads);
  }

  // The daemon holds the clusters: commit the local half.
  for (int32_t h = 0; h < heads; ++h) {
    HeadState& head = state.heads[h];
    AppendRows(keys.Slice(h), 0, local, layout_.dtype, &head.local_keys);
    AppendRows(values.Slice(h), 0, local, layout_.dtype, &head.local_values);
    for (const std::vector<gpu::Clustering>& c : clusterings) {
      RETURN_IF_ERROR(head.index.Append(c[h]));
    }
  }
  state.local_rows += local;
  state.num_tokens = position_base + tokens;
  // Where each segment ends, with the clusters the layer then holds (Publish).
  int32_t clusters = state.heads[0].index.num_clusters();
  for (size_t s = segments.size(); s-- > 0;) {
    state.segment_ends.emplace_back(position_base + segments[s].second, clusters);
    clusters -= clusterings[s][0].num_clusters;
  }
  std::sort(state.segment_ends.begin(), state.segment_ends.end());
  if (segments.empty()) state.segment_ends.emplace_back(state.num_tokens, clusters);
  return absl::OkStatus();
}

absl::Status SequenceCore::AppendToken(int32_t layer, const ConstMatrixView& keys,
                                   const ConstMatrixView& values) {
  RETURN_IF_ERROR(CheckLayer(layer));
  RETURN_IF_ERROR(CheckTokenRows(keys, layout_, "keys"));
  RETURN_IF_ERROR(CheckTokenRows(values, layout_, "values"));
  LayerState& state = *layers_[layer];
  WaitForPrefetchPlan(state);  // its selection reads the index this call may grow
  if (state.pending.has_value()) RETURN_IF_ERROR(FlushPending(layer, state));
  if (state.num_tokens >= (int64_t{1} << 31) - 1) {
    return absl::OutOfRangeError("token positions would overflow int32");
  }
  const int32_t heads = layout_.num_kv_heads;
  const int32_t position = static_cast<int32_t>(state.num_tokens);
  if (state.dense || position < options_.config.num_sink_tokens) {
    for (int32_t h = 0; h < heads; ++h) {
      AppendRows(keys, h, h + 1, layout_.dtype, &state.heads[h].local_keys);
      AppendRows(values, h, h + 1, layout_.dtype, &state.heads[h].local_values);
    }
    ++state.local_rows;
    ++state.num_tokens;
    return absl::OkStatus();
  }

  std::vector<float> k(layout_.head_dim);
  std::vector<float> v(layout_.head_dim);
  std::vector<gpu::WindowClusters> done;
  for (int32_t h = 0; h < heads; ++h) {
    keys.LoadRow(h, k.data());
    values.LoadRow(h, v.data());
    ASSIGN_OR_RETURN(std::optional<gpu::WindowClusters> window,
                     state.heads[h].window.Append(position, k.data(), v.data()));
    if (window.has_value()) done.push_back(*std::move(window));
  }
  ++state.num_tokens;
  if (done.empty()) return absl::OkStatus();
  if (static_cast<int32_t>(done.size()) != heads) {
    return absl::InternalError("kv heads completed their decode windows at different tokens");
  }

  PendingAppend pending;
  pending.request.set_sequence_id(id_);
  pending.request.set_num_tokens(state.num_tokens);
  pending.request.set_write_through(options_.write_through);
  for (int32_t h = 0; h < heads; ++h) {
    const gpu::WindowClusters& w = done[h];
    const int64_t rows = static_cast<int64_t>(w.positions.size());
    ASSIGN_OR_RETURN(
        std::vector<v1::ClusterBlock> blocks,
        internal::BlocksOfWindow(
            w.clustering, w.positions, ConstMatrixView(w.keys.data(), rows, layout_.head_dim),
            ConstMatrixView(w.values.data(), rows, layout_.head_dim), HeadId{layer, h},
            state.heads[h].index.num_clusters(), layout_.dtype));
    for (v1::ClusterBlock& block : blocks) *pending.request.add_blocks() = std::move(block);
    v1::HeadIndex* appended = pending.request.add_appended();
    *appended = internal::MakeHeadIndex(HeadId{layer, h}, w.clustering);
    // Names where the clusters go, so a retry of an append that landed answers OK.
    appended->set_first_cluster(state.heads[h].index.num_clusters());
  }
  pending.windows = std::move(done);
  state.pending = std::move(pending);
  return FlushPending(layer, state);
}

absl::Status SequenceCore::Flush(int32_t layer) {
  RETURN_IF_ERROR(CheckLayer(layer));
  LayerState& state = *layers_[layer];
  WaitForPrefetchPlan(state);
  if (!state.pending.has_value()) return absl::OkStatus();
  return FlushPending(layer, state);
}

absl::Status SequenceCore::FlushPending(int32_t layer, LayerState& state) {
  PendingAppend& pending = *state.pending;
  // The request names each head's first cluster id: a retried append whose first attempt
  // landed answers OK; FAILED_PRECONDITION means the daemon's index really differs.
  absl::StatusOr<v1::AppendClustersResponse> response = transport_->AppendClusters(pending.request);
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        absl::StrCat("offload of a decode window of layer ", layer,
                                     " is pending: ", response.status().message()));
  }
  for (int32_t h = 0; h < layout_.num_kv_heads; ++h) {
    RETURN_IF_ERROR(state.heads[h].index.Append(pending.windows[h].clustering));
  }
  for (const v1::ClusterBlock& block : pending.request.blocks()) {
    bytes_offloaded_ += static_cast<int64_t>(block.data().size());
  }
  state.pending.reset();
  return absl::OkStatus();
}

absl::Status SequenceCore::Reattach() {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("sequence ", id_, " is closed"));
  CompletePrefetches();
  v1::OpenSequenceRequest request;
  request.set_sequence_id(id_);
  *request.mutable_layout() = rpc::ToProto(layout_);
  request.set_must_exist(true);
  RETURN_IF_ERROR(transport_->OpenSequence(request).status());
  return RestoreIndexes(/*strict=*/true);
}

absl::Status SequenceCore::ReportStats() {
  const bool pending = unreported_.hit_tokens + unreported_.miss_tokens > 0 ||
                       std::any_of(unreported_.recall_counts.begin(),
                                   unreported_.recall_counts.end(),
                                   [](uint64_t n) { return n > 0; });
  last_report_step_ = step_;
  if (!pending) return absl::OkStatus();
  v1::ReportClientStatsRequest request;
  request.set_device_cache_hit_tokens(unreported_.hit_tokens);
  request.set_device_cache_miss_tokens(unreported_.miss_tokens);
  for (uint64_t n : unreported_.recall_counts) request.add_estimated_recall_counts(n);
  request.set_estimated_recall_sum(unreported_.recall_sum);
  // Per sequence: the daemon keeps a history of these for its dashboard.
  request.set_sequence_id(id_);
  request.set_step(step_);
  request.set_selected_tokens(unreported_.selected_tokens);
  request.set_selected_heads(unreported_.selected_heads);
  RETURN_IF_ERROR(transport_->ReportClientStats(request));
  unreported_ = Unreported();
  return absl::OkStatus();
}

absl::Status SequenceCore::Close(bool drop) {
  if (closed_) return absl::OkStatus();
  CompletePrefetches();
  ReportStats().IgnoreError();  // metrics are best effort; the close must not fail for them
  v1::CloseSequenceRequest request;
  request.set_sequence_id(id_);
  request.set_drop(drop);
  RETURN_IF_ERROR(transport_->CloseSequence(request));
  closed_ = true;
  for (auto& state : layers_) {
    state->cache.reset();
    state->memory.reset();
    state->direct = nullptr;
  }
  return absl::OkStatus();
}

int64_t SequenceCore::num_tokens() const {
  int64_t n = 0;
  for (const auto& state : layers_) n = std::max(n, state->num_tokens);
  return n;
}

int64_t SequenceCore::num_tokens(int32_t layer) const {
  if (layer < 0 || layer >= layout_.num_layers) return 0;
  return layers_[layer]->num_tokens;
}

const gpu::ClusterIndex* SequenceCore::index(int32_t layer, int32_t kv_head) const {
  if (layer < 0 || layer >= layout_.num_layers || kv_head < 0 || kv_head >= layout_.num_kv_heads) {
    return nullptr;
  }
  return &layers_[layer]->heads[kv_head].index;
}

bool SequenceCore::has_pending_offload(int32_t layer) const {
  return layer >= 0 && layer < layout_.num_layers && layers_[layer]->pending.has_value();
}

gpu::CacheStats SequenceCore::cache_stats() const {
  for (const auto& state : layers_) WaitForPrefetchPlan(*state);  // it may be evicting
  gpu::CacheStats total;
  auto add = [&total](const gpu::CacheStats& s) {
    total.hit_clusters += s.hit_clusters;
    total.miss_clusters += s.miss_clusters;
    total.hit_tokens += s.hit_tokens;
    total.miss_tokens += s.miss_tokens;
    total.evictions += s.evictions;
  };
  for (const auto& state : layers_) {
    add(state->retired);
    if (state->cache != nullptr) add(state->cache->stats());
  }
  return total;
}

}  // namespace clusterkv::client
