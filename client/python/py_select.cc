// Sequence.select and Sequence.index: what the decode step would select, for inspection.
//
// select() runs the same scoring and budgeted selection as Sequence::Attend
// (SequenceCore::PreviewSelection: gpu::ScoreCentroids with scale 1/sqrt(head_dim) over the
// query heads of each kv head, gpu::SelectClusters with budget min(B, clustered tokens)) on the
// local centroid index, without touching the device cache or the step counter. Token positions
// are not held locally (the device cache keeps keys and values only), so positions=True reads
// them from the blocks themselves with one FetchClusters call: a block starts with its tokens'
// positions, int32 little endian (proto/clusterkv/v1/kvcache.proto).
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bindings.h"
#include "core/ids.h"
#include "gpu/selection.h"

namespace clusterkv::python {
namespace {

struct HeadSelection {
  gpu::ClusterSelection selection;
  std::vector<float> scores;  // of the selected clusters, in selection order
  std::vector<TokenRange> ranges;
  std::vector<int32_t> positions;  // filled when asked for
};

// Scores and selects for every kv head of `layer` (SequenceCore::PreviewSelection). Caller
// holds the Sequence (Run).
absl::StatusOr<std::vector<HeadSelection>> Select(const client::SequenceCore& seq, int32_t layer,
                                                  const ConstMatrixView& queries) {
  if (seq.index(layer, 0) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer, " out of range [0, ", seq.layout().num_layers, ")"));
  }
  std::vector<std::vector<float>> scores;
  absl::StatusOr<std::vector<gpu::ClusterSelection>> selected =
      seq.PreviewSelection(layer, queries, &scores);
  if (!selected.ok()) return selected.status();
  std::vector<HeadSelection> out(selected->size());
  for (size_t h = 0; h < out.size(); ++h) {
    HeadSelection& head = out[h];
    const gpu::ClusterIndex& index = *seq.index(layer, static_cast<int32_t>(h));
    if (index.num_tokens() == 0) continue;
    absl::StatusOr<std::vector<TokenRange>> ranges =
        gpu::SelectionToRanges((*selected)[h], index.offsets());
    if (!ranges.ok()) return ranges.status();
    for (int32_t c : (*selected)[h].clusters) head.scores.push_back(scores[h][c]);
    head.selection = std::move((*selected)[h]);
    head.ranges = *std::move(ranges);
  }
  return out;
}

// Reads the selected tokens' positions from their blocks (one FetchClusters call).
absl::Status FetchPositions(client::KvTransport& transport, const client::SequenceCore& seq,
                            int32_t layer, std::vector<HeadSelection>& heads) {
  struct Want {
    int32_t head = 0;
    size_t slot = 0;    // index in the head's selection
    bool done = false;
  };
  absl::flat_hash_map<ClusterId, Want> wanted;
  v1::FetchClustersRequest request;
  request.set_sequence_id(seq.id());
  for (int32_t h = 0; h < static_cast<int32_t>(heads.size()); ++h) {
    const gpu::ClusterSelection& sel = heads[h].selection;
    for (size_t i = 0; i < sel.clusters.size(); ++i) {
      wanted[ClusterId{HeadId{layer, h}, sel.clusters[i]}] = Want{h, i, false};
      v1::ClusterRef* ref = request.add_clusters();
      ref->set_layer(layer);
      ref->set_kv_head(h);
      ref->set_cluster(sel.clusters[i]);
    }
  }
  if (wanted.empty()) return absl::OkStatus();
  // Per head: positions of selected cluster i go to [start[i], start[i] + tokens[i]).
  std::vector<std::vector<int64_t>> start(heads.size());
  for (size_t h = 0; h < heads.size(); ++h) {
    int64_t at = 0;
    for (int32_t t : heads[h].selection.tokens) {
      start[h].push_back(at);
      at += t;
    }
    heads[h].positions.assign(at, -1);
  }
  absl::Status status = transport.FetchClusters(
      request, [&](const v1::ClusterBlock& block) -> absl::Status {
        const ClusterId id{HeadId{block.id().layer(), block.id().kv_head()}, block.id().cluster()};
        auto it = wanted.find(id);
        if (it == wanted.end()) {
          return absl::DataLossError(absl::StrCat("daemon sent unrequested block ", ToString(id)));
        }
        Want& want = it->second;
        const int32_t take = heads[want.head].selection.tokens[want.slot];
        if (block.num_tokens() < take ||
            block.data().size() < static_cast<size_t>(block.num_tokens()) * sizeof(int32_t)) {
          return absl::DataLossError(absl::StrCat("block ", ToString(id), " is shorter than its ",
                                                  "index says"));
        }
        std::memcpy(heads[want.head].positions.data() + start[want.head][want.slot],
                    block.data().data(), static_cast<size_t>(take) * sizeof(int32_t));
        want.done = true;
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  for (const auto& [id, want] : wanted) {
    if (!want.done) {
      return absl::DataLossError(absl::StrCat("daemon did not return block ", ToString(id)));
    }
  }
  return absl::OkStatus();
}

template <typename T>
py::array_t<T> ToArray(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

py::dict ToDict(const HeadSelection& head, bool with_positions) {
  py::dict d;
  d["clusters"] = ToArray(head.selection.clusters);
  d["tokens"] = ToArray(head.selection.tokens);
  d["scores"] = ToArray(head.scores);
  d["total_tokens"] = head.selection.total_tokens;
  py::array_t<int64_t> ranges(
      std::vector<py::ssize_t>{static_cast<py::ssize_t>(head.ranges.size()), 2});
  auto r = ranges.mutable_unchecked<2>();
  for (size_t i = 0; i < head.ranges.size(); ++i) {
    r(i, 0) = head.ranges[i].begin;
    r(i, 1) = head.ranges[i].end;
  }
  d["ranges"] = ranges;
  if (with_positions) d["positions"] = ToArray(head.positions);
  return d;
}

}  // namespace

void RegisterSelect(py::class_<SequenceHandle, std::shared_ptr<SequenceHandle>>& cls) {
  cls.def(
         "select",
         [](SequenceHandle& h, int32_t layer, const py::array& queries, bool positions) {
           const KvLayout& l = h.layout();
           const ConstMatrixView q = AsMatrix(queries, "queries", l.num_q_heads, l.head_dim);
           client::KvTransport& transport = client::ClientInternals::transport(*h.client().client);
           absl::StatusOr<std::vector<HeadSelection>> heads =
               h.Run([&](client::Sequence& s) -> absl::StatusOr<std::vector<HeadSelection>> {
                 absl::StatusOr<std::vector<HeadSelection>> selected = Select(client::ClientInternals::core(s), layer, q);
                 if (selected.ok() && positions) {
                   if (absl::Status f = FetchPositions(transport, client::ClientInternals::core(s), layer, *selected); !f.ok()) {
                     return f;
                   }
                 }
                 return selected;
               });
           ThrowIfError(heads.status());
           py::list out;
           for (const HeadSelection& head : *heads) out.append(ToDict(head, positions));
           return out;
         },
         py::arg("layer"), py::arg("queries"), py::kw_only(), py::arg("positions") = false,
         R"doc(
The clusters attend() would select for `queries` [num_q_heads, head_dim] on `layer`, computed
from the local centroid index (no fetch, no cache or step change). Returns one dict per kv head:
  clusters      int32 [n]  selected cluster ids, best score first
  tokens        int32 [n]  tokens taken from each (only the last may be truncated)
  scores        float32 [n] summed softmax score of each selected cluster
  total_tokens  int         = tokens.sum() = min(token_budget, clustered tokens)
  ranges        int64 [m, 2] the same tokens as [begin, end) rows of the cluster-contiguous store
  positions     int32 [total_tokens]  (positions=True only) their token positions in the
                sequence, read from the daemon's blocks with one fetch
Sinks and the recent decode window are attended in addition and are not listed. Raises
FailedPreconditionError on a dense layer, InvalidArgumentError for a bad layer or queries.)doc")
      .def(
          "index",
          [](SequenceHandle& h, int32_t layer, int32_t kv_head) {
            struct Copy {
              std::vector<float> centroids;
              std::vector<int32_t> sizes, offsets;
              int32_t clusters = 0, head_dim = 0;
              bool found = false;
            };
            Copy c = h.Run([&](client::Sequence& s) {
              Copy copy;
              const gpu::ClusterIndex* index = client::ClientInternals::core(s).index(layer, kv_head);
              if (index == nullptr) return copy;
              copy.found = true;
              copy.clusters = index->num_clusters();
              copy.head_dim = index->head_dim();
              const ConstMatrixView m = index->centroids();
              copy.centroids.resize(static_cast<size_t>(copy.clusters) * copy.head_dim);
              for (int32_t r = 0; r < copy.clusters; ++r) {
                m.LoadRow(r, copy.centroids.data() + static_cast<size_t>(r) * copy.head_dim);
              }
              copy.sizes = index->sizes();
              copy.offsets = index->offsets();
              return copy;
            });
            if (!c.found) {
              ThrowInvalid(absl::StrCat("no index for layer ", layer, " kv head ", kv_head));
            }
            py::dict d;
            py::array_t<float> centroids(
                std::vector<py::ssize_t>{c.clusters, c.head_dim});
            if (!c.centroids.empty()) {
              std::memcpy(centroids.mutable_data(), c.centroids.data(),
                          c.centroids.size() * sizeof(float));
            }
            d["centroids"] = centroids;
            d["sizes"] = ToArray(c.sizes);
            d["offsets"] = ToArray(c.offsets);
            return d;
          },
          py::arg("layer"), py::arg("kv_head"), R"doc(
A copy of the centroid index of (layer, kv_head): centroids float32 [C, head_dim] (unit norm),
sizes int32 [C] and offsets int32 [C + 1] (cluster c holds rows offsets[c]..offsets[c+1] of the
cluster-contiguous store). Empty (C = 0) on dense layers and before the prefill.)doc");
}

}  // namespace clusterkv::python
