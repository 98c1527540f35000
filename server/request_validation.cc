#include "server/request_validation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "storage/cluster_block.h"

namespace clusterkv::server {
namespace {

constexpr int64_t kMaxClustersPerHead = int64_t{1} << 20;

absl::Status CheckHead(const KvLayout& layout, int32_t layer, int32_t kv_head) {
  if (layer < 0 || layer >= layout.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " is outside [0, ", layout.num_layers, ")"));
  }
  if (kv_head < 0 || kv_head >= layout.num_kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_head ", kv_head, " is outside [0, ", layout.num_kv_heads, ")"));
  }
  return absl::OkStatus();
}

template <typename Floats>
absl::Status CheckFinite(const Floats& values, absl::string_view what) {
  for (int i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values.Get(i))) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[", i, "] is not finite (", values.Get(i), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateClusterRef(const KvLayout& layout, const v1::ClusterRef& ref) {
  if (absl::Status s = CheckHead(layout, ref.layer(), ref.kv_head()); !s.ok()) return s;
  if (ref.cluster() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cluster id ", ref.cluster(), " is negative"));
  }
  // Ids from kStateChunkBase up name a sequence's session state chunks (PutState), which are
  // not cluster blocks.
  if (ref.cluster() >= kStateChunkBase) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster id ", ref.cluster(), " is at or above 2^30"));
  }
  return absl::OkStatus();
}

absl::Status ValidateFetchRefs(const KvLayout& layout,
                               const google::protobuf::RepeatedPtrField<v1::ClusterRef>& refs,
                               int32_t max_clusters) {
  if (refs.size() > max_clusters) {
    return absl::InvalidArgumentError(
        absl::StrCat("fetch names ", refs.size(), " clusters; the limit is ", max_clusters));
  }
  absl::flat_hash_set<ClusterId> seen;
  seen.reserve(static_cast<size_t>(refs.size()));
  for (const v1::ClusterRef& ref : refs) {
    if (absl::Status s = ValidateClusterRef(layout, ref); !s.ok()) return s;
    if (!seen.insert(ClusterId{HeadId{ref.layer(), ref.kv_head()}, ref.cluster()}).second) {
      return absl::InvalidArgumentError(absl::StrCat("cluster ", ref.layer(), "/", ref.kv_head(),
                                                     "/", ref.cluster(), " is named twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> ListPageSize(const v1::ListSequencesRequest& request,
                                     int32_t max_page) {
  if (request.max_sequences() < 0) return absl::InvalidArgumentError("max_sequences is negative");
  if (request.start_after().size() > 128) {  // the longest sequence id (core/ids.h)
    return absl::InvalidArgumentError("start_after is longer than any sequence id");
  }
  return request.max_sequences() == 0 ? max_page : std::min(request.max_sequences(), max_page);
}

absl::Status ValidateIndexCount(const KvLayout& layout, int count, absl::string_view what) {
  const int64_t heads = int64_t{layout.num_layers} * layout.num_kv_heads;
  if (count > heads) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " carries ", count, " indexes; the layout has ", heads, " heads"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBlock(const KvLayout& layout, const v1::ClusterBlock& block,
                           uint64_t max_block_bytes) {
  if (absl::Status s = ValidateClusterRef(layout, block.id()); !s.ok()) return s;
  return ValidateBlockShape(layout, block.num_tokens(), block.data().size(), max_block_bytes);
}

absl::Status ValidateBlockShape(const KvLayout& layout, int32_t num_tokens, uint64_t bytes,
                                uint64_t max_block_bytes) {
  if (num_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("block num_tokens must be >= 1, got ", num_tokens));
  }
  const uint64_t expected = storage::ClusterBlockBytes(num_tokens, layout.head_dim, layout.dtype);
  if (bytes != expected) {
    return absl::InvalidArgumentError(absl::StrCat("block of ", num_tokens, " tokens must be ",
                                                   expected, " bytes, got ", bytes));
  }
  if (expected > max_block_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("block of ", expected,
                                                   " bytes exceeds the limit of ",
                                                   max_block_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateHeadIndex(const KvLayout& layout, const v1::HeadIndex& index) {
  if (absl::Status s = CheckHead(layout, index.layer(), index.kv_head()); !s.ok()) return s;
  if (index.sizes_size() > kMaxClustersPerHead) {
    return absl::InvalidArgumentError(absl::StrCat("index has ", index.sizes_size(),
                                                   " clusters; the limit is ",
                                                   kMaxClustersPerHead));
  }
  if (static_cast<int64_t>(index.centroids_size()) !=
      static_cast<int64_t>(index.sizes_size()) * layout.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("index has ", index.centroids_size(),
                                                   " centroid values for ", index.sizes_size(),
                                                   " clusters of width ", layout.head_dim));
  }
  for (int i = 0; i < index.sizes_size(); ++i) {
    if (index.sizes(i) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("size of cluster ", i, " is negative (", index.sizes(i), ")"));
    }
  }
  if (absl::Status s = CheckFinite(index.centroids(), "centroids"); !s.ok()) return s;
  // Key statistics: none, or one norm and one spread per cluster, each non-negative or NaN
  // (unknown).
  if (index.key_norms_size() != index.key_spreads_size() ||
      (index.key_norms_size() != 0 && index.key_norms_size() != index.sizes_size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index has ", index.key_norms_size(), " key norms and ", index.key_spreads_size(),
        " key spreads for ", index.sizes_size(), " clusters (none, or one each per cluster)"));
  }
  for (const auto* values : {&index.key_norms(), &index.key_spreads()}) {
    for (float x : *values) {
      if (std::isnan(x)) continue;
      if (!std::isfinite(x) || x < 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat(
            "key statistics must be non-negative and finite (or NaN: unknown), got ", x));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSequenceReport(const v1::ReportClientStatsRequest& request) {
  constexpr int64_t kMaxStep = int64_t{1} << 40;
  constexpr uint64_t kMaxHeads = uint64_t{1} << 40;
  constexpr uint64_t kMaxTokensPerHead = uint64_t{1} << 31;
  if (request.step() < 0 || request.step() > kMaxStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", request.step(), " is not in [0, 2^40]"));
  }
  if (request.selected_heads() > kMaxHeads) {
    return absl::InvalidArgumentError("selected_heads above 2^40 per report");
  }
  // tokens <= heads * 2^31, compared by division so nothing overflows.
  if (request.selected_tokens() > 0 &&
      (request.selected_heads() == 0 ||
       (request.selected_tokens() - 1) / request.selected_heads() >= kMaxTokensPerHead)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "selected_tokens ", request.selected_tokens(), " for ", request.selected_heads(),
        " heads: at most 2^31 tokens per head"));
  }
  if (request.sequence_id().empty() &&
      (request.step() != 0 || request.selected_heads() != 0 || request.selected_tokens() != 0)) {
    return absl::InvalidArgumentError("step and selected_* need a sequence_id");
  }
  return absl::OkStatus();
}

absl::Status ValidateSelect(const KvLayout& layout, const v1::SelectRequest& request) {
  if (request.layer() < 0 || request.layer() >= layout.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", request.layer(), " is outside [0, ", layout.num_layers, ")"));
  }
  const int64_t expected = static_cast<int64_t>(layout.num_q_heads) * layout.head_dim;
  if (request.queries_size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("queries must hold num_q_heads x head_dim = ",
                                                   expected, " values, got ",
                                                   request.queries_size()));
  }
  if (request.budget() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget must be >= 1, got ", request.budget()));
  }
  return CheckFinite(request.queries(), "queries");
}

absl::Status ValidatePutState(const KvLayout& layout, const v1::PutStateRequest& request,
                              uint64_t max_chunk_bytes) {
  if (request.chunks_size() > kMaxStateChunks) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint carries ", request.chunks_size(),
                                                   " chunks; the limit is ", kMaxStateChunks));
  }
  auto check_chunk_id = [](int32_t chunk) -> absl::Status {
    if (chunk < 0 || chunk >= kStateChunkBase) {
      return absl::InvalidArgumentError(
          absl::StrCat("state chunk ", chunk, " is outside [0, 2^30)"));
    }
    return absl::OkStatus();
  };
  for (const v1::StateChunk& chunk : request.chunks()) {
    if (chunk.layer() != kEngineStateLayer) RETURN_IF_ERROR(CheckHead(layout, chunk.layer(), 0));
    RETURN_IF_ERROR(check_chunk_id(chunk.chunk()));
    if (chunk.data().empty() || chunk.data().size() > max_chunk_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("state chunk ", chunk.chunk(), " has ",
                                                     chunk.data().size(),
                                                     " bytes; 1 to ", max_chunk_bytes,
                                                     " are accepted"));
    }
  }
  const v1::SequenceState& state = request.state();
  if (state.num_tokens() < 0 || state.next_chunk() < 0 || state.next_chunk() > kStateChunkBase) {
    return absl::InvalidArgumentError("checkpoint num_tokens or next_chunk is out of range");
  }
  if (state.layers_size() > layout.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint names ", state.layers_size(),
                                                   " layers; the sequence has ",
                                                   layout.num_layers));
  }
  std::vector<bool> named(static_cast<size_t>(layout.num_layers), false);
  for (const v1::LayerCheckpoint& l : state.layers()) {
    RETURN_IF_ERROR(CheckHead(layout, l.layer(), 0));
    if (named[static_cast<size_t>(l.layer())]) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint names layer ", l.layer(),
                                                     " twice"));
    }
    named[static_cast<size_t>(l.layer())] = true;
    if (l.num_tokens() < 0 || l.clusters() < 0 || l.local_rows() < 0 || l.windows_done() < 0 ||
        l.local_rows() > l.num_tokens() || l.chunks_size() > kMaxStateChunks) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint of layer ", l.layer(), " has out-of-range counts"));
    }
    for (int32_t chunk : l.chunks()) RETURN_IF_ERROR(check_chunk_id(chunk));
  }
  if (state.engine_chunks_size() > kMaxStateChunks) {
    return absl::InvalidArgumentError("checkpoint names too many engine state chunks");
  }
  for (int32_t chunk : state.engine_chunks()) RETURN_IF_ERROR(check_chunk_id(chunk));
  return absl::OkStatus();
}

absl::Status ValidateDocumentSegments(const KvLayout& layout, const v1::DocumentSegments& s) {
  const int n = s.hashes_size();
  if (n < 1 || n > kMaxDocumentSegments) {
    return absl::InvalidArgumentError(absl::StrCat("a document has 1 to ", kMaxDocumentSegments,
                                                   " segments, got ", n));
  }
  if (s.tokens_size() != n ||
      s.clusters_size() != static_cast<int64_t>(n) * layout.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a document of ", n, " segments needs ", n, " segment ends and ",
        static_cast<int64_t>(n) * layout.num_layers, " cluster counts, got ", s.tokens_size(),
        " and ", s.clusters_size()));
  }
  for (int j = 0; j < n; ++j) {
    const size_t hash_bytes = s.hashes(j).size();
    if (hash_bytes < kMinSegmentHashBytes || hash_bytes > kMaxSegmentHashBytes) {
      return absl::InvalidArgumentError(absl::StrCat("segment hash ", j, " has ", hash_bytes,
                                                     " bytes; 16 to 64 are accepted"));
    }
    if (s.tokens(j) < 1 || (j > 0 && s.tokens(j) <= s.tokens(j - 1))) {
      return absl::InvalidArgumentError("segment ends must be positive and increasing");
    }
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      const int32_t c = s.clusters(j * layout.num_layers + l);
      const int32_t before = j > 0 ? s.clusters((j - 1) * layout.num_layers + l) : 0;
      if (c < before) {
        return absl::InvalidArgumentError(absl::StrCat(
            "segment ", j, " of layer ", l, " ends at cluster ", c, ", before ", before));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::server
