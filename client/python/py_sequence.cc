// Sequence: prefill offload, the decode step (attend), decode appends, checkpoints, documents,
// close and the counters.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bindings.h"

namespace clusterkv::python {
namespace {

py::dict StatsDict(const client::StepStats& s) {
  py::dict d;
  d["score_us"] = s.score_us;
  d["select_us"] = s.select_us;
  d["fetch_us"] = s.fetch_us;
  d["attend_us"] = s.attend_us;
  d["bytes_fetched"] = s.bytes_fetched;
  d["blocks_fetched"] = s.blocks_fetched;
  d["hit_clusters"] = s.hit_clusters;
  d["miss_clusters"] = s.miss_clusters;
  d["hit_tokens"] = s.hit_tokens;
  d["miss_tokens"] = s.miss_tokens;
  d["attended_tokens"] = s.attended_tokens;
  d["selected_tokens"] = s.selected_tokens;
  d["selected_heads"] = s.selected_heads;
  d["estimated_recall"] = s.estimated_recall;
  d["estimated_recall_min"] = s.estimated_recall_min;
  d["hinted_clusters"] = s.hinted_clusters;
  d["prefetched_clusters"] = s.prefetched_clusters;
  d["prefetched_tokens"] = s.prefetched_tokens;
  d["prefetch_used_tokens"] = s.prefetch_used_tokens;
  d["prefetch_wait_us"] = s.prefetch_wait_us;
  d["prefetch_failures"] = s.prefetch_failures;
  const int64_t requested = s.hit_tokens + s.miss_tokens;
  d["hit_rate"] = requested == 0 ? 0.0 : static_cast<double>(s.hit_tokens) / requested;
  return d;
}

py::dict CacheStatsDict(const client::CacheStats& s) {
  py::dict d;
  d["hit_clusters"] = s.hit_clusters;
  d["miss_clusters"] = s.miss_clusters;
  d["hit_tokens"] = s.hit_tokens;
  d["miss_tokens"] = s.miss_tokens;
  d["evictions"] = s.evictions;
  d["hit_rate"] = s.HitRate();
  return d;
}

// The bytes of a bytes-like object `what` (bytes, bytearray, memoryview, a C-contiguous numpy
// array); pybind11 answers TypeError for an object without the buffer protocol, this
// InvalidArgumentError for a buffer that is not contiguous.
std::string BufferBytes(const py::buffer& buffer, const char* what) {
  Py_buffer view;
  if (PyObject_GetBuffer(buffer.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    ThrowInvalid(absl::StrCat(what, " must be a contiguous bytes-like object"));
  }
  std::string bytes(static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
  PyBuffer_Release(&view);
  return bytes;
}

// A read-only counter of the Sequence, taken under its mutex.
template <typename T>
auto Counter(T (client::Sequence::*getter)() const) {
  return [getter](SequenceHandle& h) {
    return h.Run([getter](client::Sequence& s) { return (s.*getter)(); });
  };
}

}  // namespace

void RegisterSequence(py::module_& m) {
  m.def(
      "attend_batch",
      [](int32_t layer, const py::sequence& sequence_list, const py::sequence& query_list,
         bool return_stats) -> py::object {
        if (sequence_list.size() != query_list.size()) {
          ThrowInvalid(absl::StrCat(sequence_list.size(), " sequences but ", query_list.size(),
                                    " query arrays"));
        }
        // Held for the call: the handles stay alive even if the caller drops its lists.
        std::vector<std::shared_ptr<SequenceHandle>> sequences;
        std::vector<py::array> queries;
        for (size_t i = 0; i < sequence_list.size(); ++i) {
          sequences.push_back(sequence_list[i].cast<std::shared_ptr<SequenceHandle>>());
          if (!py::isinstance<py::array>(query_list[i])) {
            throw py::type_error("attend_batch: queries must be numpy arrays");
          }
          queries.push_back(query_list[i].cast<py::array>());
        }
        std::vector<SequenceHandle*> handles;
        std::vector<py::array> outs;
        std::vector<client::StepStats> stats(sequences.size());
        std::vector<client::BatchAttendItem> items(sequences.size());
        for (size_t i = 0; i < sequences.size(); ++i) {
          if (sequences[i] == nullptr) ThrowInvalid("None in the batch's sequences");
          const KvLayout& l = sequences[i]->layout();
          handles.push_back(sequences[i].get());
          items[i].queries = AsMatrix(queries[i], "queries", l.num_q_heads, l.head_dim);
          outs.push_back(py::array_t<float>(std::vector<py::ssize_t>{l.num_q_heads, l.head_dim}));
          items[i].out = AsOutput(outs.back(), "out", l.num_q_heads, l.head_dim);
          items[i].stats = &stats[i];
        }
        ThrowIfError(SequenceHandle::RunAll(handles, [&](const std::vector<client::Sequence*>& s) {
          for (size_t i = 0; i < s.size(); ++i) items[i].sequence = s[i];
          return client::Sequence::AttendBatch(layer, absl::MakeSpan(items));
        }));
        py::list result;
        for (size_t i = 0; i < outs.size(); ++i) {
          if (return_stats) {
            result.append(py::make_tuple(outs[i], StatsDict(stats[i])));
          } else {
            result.append(outs[i]);
          }
        }
        return std::move(result);
      },
      py::arg("layer"), py::arg("sequences"), py::arg("queries"), py::kw_only(),
      py::arg("return_stats") = false, R"doc(
One decode step of `layer` for a batch of distinct sequences (continuous batching): each
sequence selects its clusters as Sequence.attend does, then the device-cache misses of all of
them are recalled in one data-plane request, then each attends. `queries` holds one array
[num_q_heads, head_dim] per sequence. Returns the list of outputs (or of (output, stats) with
return_stats=True), each equal to what Sequence.attend would return. Raises the first failed
sequence's error (the others have attended), InvalidArgumentError for a repeated sequence or
mismatched lists.)doc");

  py::class_<SequenceHandle, std::shared_ptr<SequenceHandle>> cls(m, "Sequence", R"doc(
One sequence of one model (libclusterkv's Sequence). Created by Client.open_sequence(),
Client.reopen_sequence(), Client.resume_sequence() or Client.open_sequence_from(). Calls from
several Python threads are serialised; the GIL is released while a call runs. Usable as a
context manager (close(drop=False) on exit).)doc");
  cls.def(
         "offload_prefill",
         [](SequenceHandle& h, int32_t layer, const py::array& keys, const py::array& values) {
           const KvLayout& l = h.layout();
           const Tensor3View k = AsTensor3(keys, "keys", l.num_kv_heads, -1, l.head_dim);
           const Tensor3View v = AsTensor3(values, "values", l.num_kv_heads, -1, l.head_dim);
           if (k.dims[1] != v.dims[1]) {
             ThrowInvalid(absl::StrCat("keys hold ", k.dims[1], " tokens, values ", v.dims[1]));
           }
           ThrowIfError(h.Run([&](client::Sequence& s) { return s.OffloadPrefill(layer, k, v); }));
         },
         py::arg("layer"), py::arg("keys"), py::arg("values"), R"doc(
Offloads the prompt of `layer`: keys and values are numpy arrays [num_kv_heads, tokens,
head_dim] of float32 or float16 (outer axes may be strided, the last must be contiguous). The
sinks stay local; the other keys are clustered per kv head and stored in the daemon. Once per
layer, before any append_token of it; on a fork (Client.open_sequence_from), with the keys and
values of the tokens after the shared prefix. Raises InvalidArgumentError (bad layer, shape,
NaN/Inf), TypeError (dtype), FailedPreconditionError (the layer already holds tokens) or the
daemon's error.)doc")
      .def(
          "attend",
          [](SequenceHandle& h, int32_t layer, const py::array& queries, py::object out,
             bool return_stats) -> py::object {
            const KvLayout& l = h.layout();
            const ConstMatrixView q = AsMatrix(queries, "queries", l.num_q_heads, l.head_dim);
            py::array result = out.is_none()
                                   ? py::array(py::array_t<float>(
                                         std::vector<py::ssize_t>{l.num_q_heads, l.head_dim}))
                                   : out.cast<py::array>();
            const MatrixView o = AsOutput(result, "out", l.num_q_heads, l.head_dim);
            client::StepStats stats;
            ThrowIfError(
                h.Run([&](client::Sequence& s) { return s.Attend(layer, q, o, &stats); }));
            if (return_stats) return py::make_tuple(result, StatsDict(stats));
            return std::move(result);
          },
          py::arg("layer"), py::arg("queries"), py::kw_only(), py::arg("out") = py::none(),
          py::arg("return_stats") = false, R"doc(
One decode step of `layer`: queries [num_q_heads, head_dim] (float32 or float16). Selects
clusters within the token budget, fetches the device-cache misses from the daemon, and attends
over sinks + selected clusters + the recent window. Returns the output [num_q_heads, head_dim]
float32 (written into `out` when given), or (output, stats) with return_stats=True; stats holds
the StepStats counters (score_us, select_us, fetch_us, attend_us, bytes_fetched,
blocks_fetched, hit/miss clusters and tokens, attended_tokens, selected_tokens and
selected_heads (the tokens taken from clusters and the heads that took them), hit_rate, and
estimated_recall / estimated_recall_min: the share of attention mass the step is estimated to
have attended, mean and minimum over the layer's kv heads), and hinted_clusters (clusters named
in the step's promotion hint, config promotion_hint_tokens), and the prefetch counters
(prefetched_clusters, prefetched_tokens, prefetch_used_tokens, prefetch_wait_us,
prefetch_failures; see prefetch).
A layer attended twice starts a new decode step (see begin_step).)doc")
      .def(
          "prefetch",
          [](SequenceHandle& h, int32_t layer, const py::array& predicted_queries) {
            const KvLayout& l = h.layout();
            const ConstMatrixView q =
                AsMatrix(predicted_queries, "predicted_queries", l.num_q_heads, l.head_dim);
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.Prefetch(layer, q); }));
          },
          py::arg("layer"), py::arg("predicted_queries"), R"doc(
Starts recalling, in the background, the clusters `layer` would select for predicted_queries
[num_q_heads, head_dim] (a guess at the layer's queries, e.g. its Wq applied to an earlier
layer's input). Returns once the selection is made; the fetch runs on the sequence's background
thread while the caller computes. The layer's next attend waits for it and fetches only what
its real queries add (stats: prefetch_used_tokens). No-op on a dense layer. Raises
InvalidArgumentError for a bad layer, shape or NaN/Inf; a failed fetch is counted by the next
attend (prefetch_failures), which then fetches everything it selects.)doc")
      .def(
          "wait_for_prefetch",
          [](SequenceHandle& h, int32_t layer) {
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.WaitForPrefetch(layer); }));
          },
          py::arg("layer"),
          "Waits for the prefetch of `layer` and raises its fetch's error, if any (no-op when "
          "none is pending).")
      .def(
          "append_token",
          [](SequenceHandle& h, int32_t layer, const py::array& key, const py::array& value) {
            const KvLayout& l = h.layout();
            const ConstMatrixView k = AsMatrix(key, "key", l.num_kv_heads, l.head_dim);
            const ConstMatrixView v = AsMatrix(value, "value", l.num_kv_heads, l.head_dim);
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.AppendToken(layer, k, v); }));
          },
          py::arg("layer"), py::arg("key"), py::arg("value"), R"doc(
Appends one decode token of `layer`: key and value [num_kv_heads, head_dim]. Every
recluster_interval tokens the window is clustered and offloaded; if that offload fails the token
is kept and the offload retried by the next append_token or flush.)doc")
      .def(
          "flush",
          [](SequenceHandle& h, int32_t layer) {
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.Flush(layer); }));
          },
          py::arg("layer"), "Retries a pending window offload of `layer` (no-op when none).")
      .def(
          "begin_step",
          [](SequenceHandle& h) {
            h.Run([](client::Sequence& s) {
              s.BeginStep();
              return 0;
            });
          },
          "Starts a new decode step explicitly (the device cache's residency counts steps).")
      .def(
          "reattach",
          [](SequenceHandle& h) {
            ThrowIfError(h.Run([](client::Sequence& s) { return s.Reattach(); }));
          },
          "After a daemon restart: re-opens the sequence and re-reads its indexes.")
      .def(
          "checkpoint",
          [](SequenceHandle& h, const py::buffer& engine_state) {
            // Copied while the GIL is held.
            const std::string state = BufferBytes(engine_state, "engine_state");
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.Checkpoint(state); }));
          },
          py::arg("engine_state") = py::bytes(), R"doc(
Writes to the daemon what a resume needs beyond the clusters: the sink rows (every row of a
dense layer) and recent windows added since the last checkpoint, and the decode position; a
pending window offload is flushed first. Afterwards Client.resume_sequence(id), in any process,
continues this sequence exactly as it stands now. Call it at a step boundary (after every
layer's append_token of a token). engine_state (bytes-like) is saved with it, opaque: what the
engine keeps beside the sequence (e.g. the windows of sliding-window layers), returned by the
resumed sequence's engine_state. Each checkpoint replaces the previous one's (b"": none).)doc")
      .def(
          "publish",
          [](SequenceHandle& h, const py::object& tokens, const std::string& model,
             const py::buffer& engine_state) {
            const std::vector<int32_t> ids = TokenIds(tokens, "tokens");
            const std::string state = BufferBytes(engine_state, "engine_state");
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.Publish(ids, model, state); }));
          },
          py::arg("tokens"), py::arg("model"), py::arg("engine_state") = py::bytes(), R"doc(
Seals this prefilled sequence as a stored document whose token ids are `tokens` (a list or a
1-D integer numpy array, one id per token of the sequence) for `model` (a name of the weights).
A prompt starting with the same tokens then finds it (Client.find_prefix) and forks from it;
this sequence becomes read-only. Checkpoints first, with engine_state (bytes-like), which a
fork of the WHOLE document receives as its engine_state (a fork of fewer segments receives
b""). FailedPreconditionError: decode tokens, a fork, a prefill in pieces not ending on segment
boundaries, or len(tokens) != num_tokens.)doc")
      .def(
          "grant",
          [](SequenceHandle& h, const std::string& tenant) {
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.Grant(tenant); }));
          },
          py::arg("tenant"), R"doc(
Lets `tenant` find and fork this published document: its Client.find_prefix answers with a
StoredPrefix whose owner is this sequence's tenant. The blocks stay accounted to this tenant.
Without a grant another tenant sees nothing of a document. FailedPreconditionError: not
published; InvalidArgumentError: a bad tenant name, or this sequence's own tenant.)doc")
      .def(
          "revoke",
          [](SequenceHandle& h, const std::string& tenant) {
            ThrowIfError(h.Run([&](client::Sequence& s) { return s.Revoke(tenant); }));
          },
          py::arg("tenant"), R"doc(
Withdraws grant(tenant): the tenant no longer finds or forks the document; forks it made
before keep working. Errors as grant.)doc")
      .def(
          "read_tokens",
          [](SequenceHandle& h, int32_t layer, int64_t begin, int64_t end) {
            if (begin < 0 || end < begin) {
              ThrowInvalid(absl::StrCat("bad token range [", begin, ", ", end, ")"));
            }
            const KvLayout& l = h.layout();
            const std::vector<py::ssize_t> shape = {end - begin, l.num_kv_heads, l.head_dim};
            py::array_t<float> keys(shape);
            py::array_t<float> values(shape);
            float* k = keys.mutable_data();
            float* v = values.mutable_data();
            ThrowIfError(h.Run(
                [&](client::Sequence& s) { return s.ReadTokens(layer, begin, end, k, v); }));
            return py::make_tuple(keys, values);
          },
          py::arg("layer"), py::arg("begin"), py::arg("end"), R"doc(
The stored keys and values of positions [begin, end) of `layer`: a tuple (keys, values) of
float32 arrays [end - begin, num_kv_heads, head_dim] (token-major, like an engine's KV cache),
read from the daemon; values are those of the layout's dtype, widened to float32. On a fork,
read_tokens(layer, 0, base_tokens) is the shared prefix an engine needs to prefill the rest of
its prompt. InvalidArgumentError: bad range; DataLossError: a position is missing.)doc")
      .def_property_readonly(
          "base_document",
          [](SequenceHandle& h) {
            return h.Run([](client::Sequence& s) { return s.base_document(); });
          },
          "A fork's base document ('' for a sequence of its own).")
      .def_property_readonly("base_tokens", Counter(&client::Sequence::base_tokens),
                             "Tokens a fork shares with its base document (0 otherwise).")
      .def_property_readonly(
          "engine_state",
          [](SequenceHandle& h) {
            return py::bytes(h.Run([](client::Sequence& s) { return s.engine_state(); }));
          },
          "The engine state (bytes) of the checkpoint this sequence was resumed from, or of "
          "the document this fork shares whole; b'' otherwise.")
      .def(
          "close",
          [](SequenceHandle& h, bool drop) {
            ThrowIfError(h.Run([drop](client::Sequence& s) { return s.Close(drop); }));
          },
          py::arg("drop") = false,
          "Closes the sequence on the daemon; drop=True deletes it. Afterwards only the "
          "properties remain usable (other calls raise FailedPreconditionError).")
      .def(
          "has_pending_offload",
          [](SequenceHandle& h, int32_t layer) {
            return h.Run([layer](client::Sequence& s) { return s.has_pending_offload(layer); });
          },
          py::arg("layer"))
      .def(
          "layer_tokens",
          [](SequenceHandle& h, int32_t layer) {
            return h.Run([layer](client::Sequence& s) { return s.num_tokens(layer); });
          },
          py::arg("layer"), "Tokens `layer` holds (prefill + appended).")
      .def_property_readonly("id", &SequenceHandle::id)
      .def_property_readonly("layout", &SequenceHandle::layout)
      .def_property_readonly("config",
                             [](SequenceHandle& h) {
                               return h.Run([](client::Sequence& s) { return s.config(); });
                             })
      .def_property_readonly("num_tokens",
                             Counter<int64_t>(&client::Sequence::num_tokens),
                             "Tokens of the sequence (the most any layer holds).")
      .def_property_readonly("step", Counter(&client::Sequence::step))
      .def_property_readonly("cache_hit_rate", Counter(&client::Sequence::cache_hit_rate),
                             "Fraction of requested cluster tokens already in the device cache.")
      .def_property_readonly("cache_stats",
                             [](SequenceHandle& h) {
                               return CacheStatsDict(h.Run(
                                   [](client::Sequence& s) { return s.cache_stats(); }));
                             })
      .def_property_readonly("bytes_fetched", Counter(&client::Sequence::bytes_fetched))
      .def_property_readonly("bytes_offloaded", Counter(&client::Sequence::bytes_offloaded))
      .def_property_readonly("blocks_fetched_direct",
                             Counter(&client::Sequence::blocks_fetched_direct),
                             "Blocks the daemon wrote over the UCX data plane.")
      .def_property_readonly("blocks_fetched_grpc",
                             Counter(&client::Sequence::blocks_fetched_grpc),
                             "Blocks received over gRPC streaming.")
      .def("__enter__", [](const std::shared_ptr<SequenceHandle>& self) { return self; })
      .def("__exit__",
           [](SequenceHandle& h, py::args) {
             ThrowIfError(h.Run([](client::Sequence& s) { return s.Close(false); }));
             return false;
           })
      .def("__repr__", [](SequenceHandle& h) {
        return absl::StrCat("Sequence(id='", h.id(), "', ", h.layout().DebugString(), ")");
      });
  RegisterSelect(cls);
}

}  // namespace clusterkv::python
