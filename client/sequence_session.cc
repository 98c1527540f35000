// SequenceCore's resumable sessions and shared documents: Checkpoint (the engine-side state to
// the daemon), Resume and OpenFork (a sequence rebuilt from the daemon alone), Publish (a
// prefilled sequence sealed as a document) and ReadTokens (a layer's stored keys and values,
// for an engine prefilling the rest of a prompt after a shared prefix).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/internal/sequence_core.h"
#include "client/internal/sequence_state.h"
#include "client/internal/session_state.h"
#include "core/status_macros.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"

namespace clusterkv::client {
namespace {

const v1::LayerCheckpoint* FindLayer(const v1::SequenceState& state, int32_t layer) {
  for (const v1::LayerCheckpoint& l : state.layers()) {
    if (l.layer() == layer) return &l;
  }
  return nullptr;
}

// The engine's opaque state: the response's chunks of the engine-state layer, in order.
std::string EngineStateOf(const v1::GetStateResponse& response) {
  std::string state;
  for (const v1::StateChunk& chunk : response.chunks()) {
    if (chunk.layer() == -1) state += chunk.data();
  }
  return state;
}

}  // namespace

absl::Status SequenceCore::Checkpoint(absl::string_view engine_state) {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("sequence ", id_, " is closed"));
  CompletePrefetches();
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    LayerState& state = *layers_[l];
    if (state.pending.has_value()) RETURN_IF_ERROR(FlushPending(l, state));
  }
  const int32_t heads = layout_.num_kv_heads;
  const size_t row_bytes = static_cast<size_t>(layout_.head_dim) * DTypeSize(layout_.dtype);
  v1::PutStateRequest request;
  request.set_sequence_id(id_);
  request.set_write_through(options_.write_through);
  v1::SequenceState* out = request.mutable_state();
  out->set_num_tokens(num_tokens());
  int32_t next = next_chunk_;
  std::vector<std::vector<LayerState::SavedChunk>> live(layers_.size());
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    LayerState& state = *layers_[l];
    const std::vector<int32_t>& positions = state.heads[0].window.window_positions();
    const int64_t window_start = positions.empty() ? state.num_tokens : positions.front();
    // Chunks that still hold a local row, or a row of the current window, stay named.
    for (const LayerState::SavedChunk& c : state.chunks) {
      if (c.has_local || c.last_window_position >= window_start) live[l].push_back(c);
    }
    const size_t first_new = static_cast<size_t>(
        std::lower_bound(positions.begin(), positions.end(), state.saved_position) -
        positions.begin());
    const int64_t new_local = state.local_rows - state.saved_local_rows;
    if (new_local > 0 || first_new < positions.size()) {
      internal::ChunkRows rows;
      rows.layer = l;
      rows.first_local = state.saved_local_rows;
      rows.num_local = new_local;
      rows.window_positions.assign(positions.begin() + first_new, positions.end());
      const size_t window_rows = rows.window_positions.size();
      for (int32_t h = 0; h < heads; ++h) {
        const HeadState& head = state.heads[h];
        const size_t from = static_cast<size_t>(state.saved_local_rows) * row_bytes;
        const size_t bytes = static_cast<size_t>(new_local) * row_bytes;
        rows.local_keys.emplace_back(head.local_keys.begin() + from,
                                     head.local_keys.begin() + from + bytes);
        rows.local_values.emplace_back(head.local_values.begin() + from,
                                       head.local_values.begin() + from + bytes);
        const ConstMatrixView wk = head.window.window_keys();
        const ConstMatrixView wv = head.window.window_values();
        std::vector<float> k(window_rows * layout_.head_dim), v(k.size());
        for (size_t r = 0; r < window_rows; ++r) {
          wk.LoadRow(static_cast<int64_t>(first_new + r), k.data() + r * layout_.head_dim);
          wv.LoadRow(static_cast<int64_t>(first_new + r), v.data() + r * layout_.head_dim);
        }
        rows.window_keys.push_back(std::move(k));
        rows.window_values.push_back(std::move(v));
      }
      v1::StateChunk* chunk = request.add_chunks();
      chunk->set_layer(l);
      chunk->set_chunk(next);
      chunk->set_data(internal::EncodeChunk(rows, layout_));
      live[l].push_back({next, new_local > 0,
                         window_rows > 0 ? int64_t{rows.window_positions.back()} : int64_t{-1}});
      ++next;
    }
    v1::LayerCheckpoint* lc = out->add_layers();
    lc->set_layer(l);
    lc->set_num_tokens(state.num_tokens);
    lc->set_clusters(state.heads[0].index.num_clusters());
    lc->set_local_rows(state.local_rows);
    lc->set_windows_done(static_cast<int32_t>(state.heads[0].window.windows_done()));
    lc->set_window_start(window_start);
    for (const LayerState::SavedChunk& c : live[l]) lc->add_chunks(c.id);
  }
  // The engine's state, in pieces well under the daemon's block limit.
  constexpr size_t kEnginePiece = size_t{4} << 20;
  for (size_t at = 0; at < engine_state.size(); at += kEnginePiece) {
    v1::StateChunk* chunk = request.add_chunks();
    chunk->set_layer(-1);
    chunk->set_chunk(next);
    chunk->set_data(std::string(engine_state.substr(at, kEnginePiece)));
    out->add_engine_chunks(next++);
  }
  out->set_next_chunk(next);
  // Numbers of a checkpoint that failed are never reused with other rows.
  next_chunk_ = next;
  RETURN_IF_ERROR(transport_->PutState(request).status());
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    LayerState& state = *layers_[l];
    state.saved_local_rows = state.local_rows;
    state.saved_position = state.num_tokens;
    state.chunks = std::move(live[l]);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceCore>> SequenceCore::Resume(KvTransport* transport,
                                                                   std::string sequence_id,
                                                                   SequenceOptions options) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceCore> seq,
                   Reopen(transport, sequence_id, std::move(options)));
  v1::GetStateRequest request;
  request.set_sequence_id(seq->id_);
  request.set_engine_state(true);
  ASSIGN_OR_RETURN(v1::GetStateResponse response, transport->GetState(request));
  if (!response.has_state()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sequence ", seq->id_, " was never checkpointed"));
  }
  RETURN_IF_ERROR(seq->RestoreState(response.state()));
  seq->engine_state_ = EngineStateOf(response);
  if (response.state().has_base() && response.state().engine_chunks_size() == 0 &&
      response.state().layers_size() == 0) {
    // A fork not yet checkpointed: the document's engine state, when it shares all of it.
    v1::GetStateRequest doc;
    doc.set_sequence_id(seq->id_);
    doc.set_base(true);
    doc.set_engine_state(true);
    ASSIGN_OR_RETURN(v1::GetStateResponse d, transport->GetState(doc));
    seq->engine_state_ = EngineStateOf(d);
  }
  return seq;
}

absl::StatusOr<std::unique_ptr<SequenceCore>> SequenceCore::OpenFork(
    KvTransport* transport, std::string sequence_id, const KvLayout& layout,
    const std::string& document, const std::string& owner, int32_t segments,
    SequenceOptions options) {
  if (transport == nullptr) return absl::InvalidArgumentError("null transport");
  RETURN_IF_ERROR((SequenceKey{"tenant", sequence_id}.Validate()));
  RETURN_IF_ERROR(layout.Validate());
  v1::OpenSequenceRequest request;
  request.set_sequence_id(sequence_id);
  *request.mutable_layout() = rpc::ToProto(layout);
  request.set_base_document(document);
  request.set_base_owner(owner);
  request.set_base_segments(segments);
  ASSIGN_OR_RETURN(v1::OpenSequenceResponse response, transport->OpenSequence(request));
  if (!response.created()) {
    return absl::AlreadyExistsError(
        absl::StrCat("sequence ", sequence_id, " exists already; it cannot become a fork"));
  }
  return Resume(transport, std::move(sequence_id), std::move(options));
}

absl::Status SequenceCore::RestoreState(const v1::SequenceState& state) {
  const ClusterKvConfig& cfg = options_.config;
  const int32_t heads = layout_.num_kv_heads;
  const size_t row_bytes = static_cast<size_t>(layout_.head_dim) * DTypeSize(layout_.dtype);
  if (state.has_base()) {
    base_document_ = state.base().document();
    base_tokens_ = state.base().tokens();
    if (state.base().clusters_size() != layout_.num_layers) {
      return absl::DataLossError("the fork's base names the wrong number of layers");
    }
  }
  // Clusters appended after the checkpoint are left out: the replayed decode appends them
  // again, under the same ids.
  std::vector<int32_t> caps(static_cast<size_t>(layout_.num_layers), -1);
  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    if (const v1::LayerCheckpoint* lc = FindLayer(state, l); lc != nullptr) {
      caps[l] = lc->clusters();
    } else if (state.has_base()) {
      caps[l] = state.base().clusters(l);
    }
  }
  RETURN_IF_ERROR(RestoreIndexes(/*strict=*/false, &caps));

  // The chunks of a layer, decoded in order: this sequence's, or (`base`) its document's.
  auto read_chunks = [&](bool base,
                         int32_t layer) -> absl::StatusOr<std::vector<internal::ChunkRows>> {
    v1::GetStateRequest request;
    request.set_sequence_id(id_);
    request.set_base(base);
    request.add_layers(layer);
    ASSIGN_OR_RETURN(v1::GetStateResponse response, transport_->GetState(request));
    std::vector<internal::ChunkRows> out;
    for (const v1::StateChunk& chunk : response.chunks()) {
      ASSIGN_OR_RETURN(internal::ChunkRows rows, internal::DecodeChunk(chunk.data(), layer,
                                                                       layout_));
      out.push_back(std::move(rows));
    }
    return out;
  };
  // Appends the local rows of `rows` beyond what `state` holds, up to row `limit`.
  auto take_local = [&](LayerState& layer_state, const internal::ChunkRows& rows, int64_t limit) {
    for (int64_t r = 0; r < rows.num_local; ++r) {
      const int64_t row = rows.first_local + r;
      if (row != layer_state.local_rows || row >= limit) continue;
      for (int32_t h = 0; h < heads; ++h) {
        HeadState& head = layer_state.heads[h];
        const auto k = rows.local_keys[h].begin() + static_cast<ptrdiff_t>(r * row_bytes);
        const auto v = rows.local_values[h].begin() + static_cast<ptrdiff_t>(r * row_bytes);
        head.local_keys.insert(head.local_keys.end(), k, k + static_cast<ptrdiff_t>(row_bytes));
        head.local_values.insert(head.local_values.end(), v,
                                 v + static_cast<ptrdiff_t>(row_bytes));
      }
      ++layer_state.local_rows;
    }
  };

  for (int32_t l = 0; l < layout_.num_layers; ++l) {
    LayerState& st = *layers_[l];
    for (HeadState& head : st.heads) {
      head.local_keys.clear();
      head.local_values.clear();
    }
    st.local_rows = 0;
    st.num_tokens = state.num_tokens();
    if (state.has_base()) {
      // The document's local rows before the fork's first own token.
      const int64_t limit =
          st.dense ? base_tokens_ : std::min<int64_t>(cfg.num_sink_tokens, base_tokens_);
      ASSIGN_OR_RETURN(std::vector<internal::ChunkRows> doc, read_chunks(/*base=*/true, l));
      for (const internal::ChunkRows& rows : doc) take_local(st, rows, limit);
      if (st.local_rows != limit) {
        return absl::DataLossError(absl::StrCat("document ", base_document_, " holds ",
                                                st.local_rows, " local rows of layer ", l,
                                                "; the fork needs ", limit));
      }
      st.base_local_rows = st.local_rows;
      st.num_tokens = base_tokens_;
    }
    const v1::LayerCheckpoint* lc = FindLayer(state, l);
    if (lc != nullptr) {
      ASSIGN_OR_RETURN(std::vector<internal::ChunkRows> own, read_chunks(/*base=*/false, l));
      std::vector<int32_t> positions;
      std::vector<std::vector<float>> wk(heads), wv(heads);
      for (size_t c = 0; c < own.size(); ++c) {
        const internal::ChunkRows& rows = own[c];
        take_local(st, rows, lc->local_rows());
        for (size_t r = 0; r < rows.window_positions.size(); ++r) {
          const int32_t p = rows.window_positions[r];
          if (p < lc->window_start() || p >= lc->num_tokens()) continue;
          positions.push_back(p);
          for (int32_t h = 0; h < heads; ++h) {
            const float* k = rows.window_keys[h].data() + r * layout_.head_dim;
            const float* v = rows.window_values[h].data() + r * layout_.head_dim;
            wk[h].insert(wk[h].end(), k, k + layout_.head_dim);
            wv[h].insert(wv[h].end(), v, v + layout_.head_dim);
          }
        }
        st.chunks.push_back({c < static_cast<size_t>(lc->chunks_size()) ? lc->chunks(c) : 0,
                             rows.num_local > 0,
                             rows.window_positions.empty()
                                 ? int64_t{-1}
                                 : int64_t{rows.window_positions.back()}});
      }
      const int64_t expected_window =
          st.dense ? 0 : lc->num_tokens() - std::max<int64_t>(lc->window_start(), 0);
      if (st.local_rows != lc->local_rows() ||
          static_cast<int64_t>(positions.size()) != expected_window) {
        return absl::DataLossError(absl::StrCat(
            "the checkpoint of layer ", l, " names ", lc->local_rows(), " local rows and ",
            expected_window, " window rows; its chunks hold ", st.local_rows, " and ",
            positions.size()));
      }
      for (int32_t h = 0; h < heads; ++h) {
        RETURN_IF_ERROR(st.heads[h].window.Restore(static_cast<uint64_t>(lc->windows_done()),
                                                   positions, std::move(wk[h]),
                                                   std::move(wv[h])));
      }
      st.num_tokens = lc->num_tokens();
    }
    st.saved_local_rows = st.local_rows;
    st.saved_position = st.num_tokens;
  }
  next_chunk_ = state.next_chunk();
  return absl::OkStatus();
}

absl::Status SequenceCore::Publish(absl::Span<const int32_t> tokens, absl::string_view model,
                                   absl::string_view engine_state) {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("sequence ", id_, " is closed"));
  if (!base_document_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sequence ", id_, " is a fork of ", base_document_,
                     "; only a sequence prefilled on its own can be published"));
  }
  if (static_cast<int64_t>(tokens.size()) != num_tokens()) {
    return absl::FailedPreconditionError(absl::StrCat("sequence ", id_, " holds ", num_tokens(),
                                                      " tokens, not the ", tokens.size(),
                                                      " token ids given"));
  }
  for (const auto& state : layers_) {
    bool decoding = state->pending.has_value() || state->num_tokens != num_tokens();
    for (const HeadState& head : state->heads) decoding |= head.window.window_size() > 0;
    if (decoding) {
      return absl::FailedPreconditionError(
          absl::StrCat("sequence ", id_, " has decode tokens; publish it right after prefill"));
    }
  }
  RETURN_IF_ERROR(Checkpoint(engine_state));
  const std::vector<int64_t> ends =
      internal::SegmentEnds(num_tokens(), options_.config.prefill_segment_tokens);
  v1::SealDocumentRequest request;
  request.set_sequence_id(id_);
  v1::DocumentSegments* segments = request.mutable_segments();
  for (std::string& hash :
       internal::PrefixHashes(tokens, ends, model, layout_, options_.config)) {
    segments->add_hashes(std::move(hash));
  }
  for (int64_t end : ends) {
    segments->add_tokens(end);
    for (int32_t l = 0; l < layout_.num_layers; ++l) {
      const LayerState& state = *layers_[l];
      int32_t clusters = -1;
      for (const auto& [at, count] : state.segment_ends) {
        if (at == end) clusters = count;
      }
      if (clusters < 0 && (state.dense || end <= options_.config.num_sink_tokens)) clusters = 0;
      if (clusters < 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "layer ", l, " was prefilled in pieces that do not end at token ", end,
            " (a segment boundary)"));
      }
      segments->add_clusters(clusters);
    }
  }
  return transport_->SealDocument(request).status();
}

absl::Status SequenceCore::Grant(absl::string_view tenant, bool revoke) {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("sequence ", id_, " is closed"));
  v1::GrantDocumentRequest request;
  request.set_sequence_id(id_);
  request.set_tenant(std::string(tenant));
  request.set_revoke(revoke);
  return transport_->GrantDocument(request).status();
}

absl::Status SequenceCore::ReadTokens(int32_t layer, int64_t begin, int64_t end, float* keys,
                                      float* values) {
  RETURN_IF_ERROR(CheckLayer(layer));
  LayerState& state = *layers_[layer];
  WaitForPrefetchPlan(state);
  if (keys == nullptr || values == nullptr || begin < 0 || begin >= end ||
      end > state.num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read tokens [", begin, ", ", end,
                                                   ") of a layer holding ", state.num_tokens));
  }
  const int32_t heads = layout_.num_kv_heads;
  const int32_t d = layout_.head_dim;
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(layout_.dtype);
  std::vector<bool> filled(static_cast<size_t>(end - begin), false);
  auto out_row = [&](float* base, int64_t position, int32_t h) {
    return base + ((position - begin) * heads + h) * d;
  };
  // Local rows (row r is position r).
  for (int64_t p = begin; p < std::min(end, state.local_rows); ++p) {
    for (int32_t h = 0; h < heads; ++h) {
      ConvertToFloat(state.heads[h].local_keys.data() + p * row_bytes, layout_.dtype, d,
                     out_row(keys, p, h));
      ConvertToFloat(state.heads[h].local_values.data() + p * row_bytes, layout_.dtype, d,
                     out_row(values, p, h));
    }
    filled[static_cast<size_t>(p - begin)] = true;
  }
  // The recent window, and a completed window whose offload is pending.
  for (int32_t h = 0; h < heads; ++h) {
    const gpu::IncrementalClusterer& w = state.heads[h].window;
    for (int32_t r = 0; r < w.window_size(); ++r) {
      const int64_t p = w.window_positions()[r];
      if (p < begin || p >= end) continue;
      w.window_keys().LoadRow(r, out_row(keys, p, h));
      w.window_values().LoadRow(r, out_row(values, p, h));
      filled[static_cast<size_t>(p - begin)] = true;
    }
    if (state.pending.has_value()) {
      const gpu::WindowClusters& pw = state.pending->windows[h];
      for (size_t r = 0; r < pw.positions.size(); ++r) {
        const int64_t p = pw.positions[r];
        if (p < begin || p >= end) continue;
        std::copy_n(pw.keys.data() + r * d, d, out_row(keys, p, h));
        std::copy_n(pw.values.data() + r * d, d, out_row(values, p, h));
        filled[static_cast<size_t>(p - begin)] = true;
      }
    }
  }
  // Every stored cluster of the layer.
  constexpr int32_t kClustersPerFetch = 4096;
  for (int32_t h = 0; h < heads && !state.dense; ++h) {
    const int32_t count = state.heads[h].index.num_clusters();
    for (int32_t first = 0; first < count; first += kClustersPerFetch) {
      v1::FetchClustersRequest request;
      request.set_sequence_id(id_);
      for (int32_t c = first; c < std::min(count, first + kClustersPerFetch); ++c) {
        v1::ClusterRef* ref = request.add_clusters();
        ref->set_layer(layer);
        ref->set_kv_head(h);
        ref->set_cluster(c);
      }
      RETURN_IF_ERROR(transport_->FetchClusters(request, [&](const v1::ClusterBlock& block) {
        const auto* data = reinterpret_cast<const uint8_t*>(block.data().data());
        ASSIGN_OR_RETURN(storage::ClusterBlockView view,
                         storage::ViewClusterBlock(absl::MakeConstSpan(data, block.data().size()),
                                                   block.num_tokens(), d, layout_.dtype));
        for (int64_t r = 0; r < view.tokens(); ++r) {
          const int64_t p = view.positions[r];
          if (p < begin || p >= end) continue;
          view.keys.LoadRow(r, out_row(keys, p, h));
          view.values.LoadRow(r, out_row(values, p, h));
          filled[static_cast<size_t>(p - begin)] = true;
        }
        return absl::OkStatus();
      }));
    }
  }
  for (size_t i = 0; i < filled.size(); ++i) {
    if (!filled[i]) {
      return absl::DataLossError(absl::StrCat("position ", begin + static_cast<int64_t>(i),
                                              " of layer ", layer, " is stored nowhere"));
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::client
