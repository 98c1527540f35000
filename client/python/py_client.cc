// KvLayout, Config (ClusterKvConfig), StoredPrefix and Client.
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "bindings.h"
#include "pybind11/stl.h"

namespace clusterkv::python {
namespace {

DType ParseDTypeOrThrow(const std::string& name) {
  absl::StatusOr<DType> dtype = ParseDType(name);
  ThrowIfError(dtype.status());
  return *dtype;
}

absl::Duration Seconds(const py::handle& value, const char* key) {
  const double s = value.cast<double>();
  if (!std::isfinite(s) || s <= 0) ThrowInvalid(absl::StrCat(key, " must be > 0 seconds"));
  return absl::Seconds(s);
}

CentroidScoring ScoringOrThrow(const std::string& name) {
  absl::StatusOr<CentroidScoring> scoring = ParseCentroidScoring(name);
  ThrowIfError(scoring.status());
  return *scoring;
}

// Applies one keyword of Client.connect; false when `key` is not an option name.
bool ApplyConfigOption(const std::string& key, const py::handle& v, ClusterKvConfig& c) {
  if (key == "num_sink_tokens") c.num_sink_tokens = v.cast<int32_t>();
  else if (key == "dense_layers") c.dense_layers = v.cast<std::vector<int32_t>>();
  else if (key == "num_prefill_clusters") c.num_prefill_clusters = v.cast<int32_t>();
  else if (key == "prefill_segment_tokens") c.prefill_segment_tokens = v.cast<int32_t>();
  else if (key == "prefill_segment_clusters") c.prefill_segment_clusters = v.cast<int32_t>();
  else if (key == "kmeans_iterations") c.kmeans_iterations = v.cast<int32_t>();
  else if (key == "recluster_interval") c.recluster_interval = v.cast<int32_t>();
  else if (key == "clusters_per_recluster") c.clusters_per_recluster = v.cast<int32_t>();
  else if (key == "token_budget") c.token_budget = v.cast<int32_t>();
  else if (key == "cache_residency_steps") c.cache_residency_steps = v.cast<int32_t>();
  else if (key == "recall_target") c.recall_target = v.cast<double>();
  else if (key == "min_token_budget") c.min_token_budget = v.cast<int32_t>();
  else if (key == "max_token_budget") c.max_token_budget = v.cast<int32_t>();
  else if (key == "promotion_hint_tokens") c.promotion_hint_tokens = v.cast<int32_t>();
  else if (key == "seed") c.seed = v.cast<uint64_t>();
  else if (key == "centroid_scoring") c.centroid_scoring = ScoringOrThrow(v.cast<std::string>());
  else return false;
  return true;
}

bool ApplyClientOption(const std::string& key, const py::handle& v, client::ClientOptions& o) {
  if (key == "backend") o.backend = v.cast<std::string>();
  else if (key == "threads") o.threads = v.cast<int>();
  else if (key == "device_memory") o.device_memory = v.cast<std::string>();
  else if (key == "call_timeout") o.call_timeout = Seconds(v, "call_timeout");
  else if (key == "put_message_bytes") o.put_message_bytes = v.cast<size_t>();
  else if (key == "write_through") o.write_through = v.cast<bool>();
  else if (key == "data_plane") o.data_plane = v.cast<std::string>();
  else if (key == "ucx_transports") o.ucx_transports = v.cast<std::string>();
  else if (key == "ucx_region_bytes") o.ucx_region_bytes = v.cast<size_t>();
  else if (key == "ucx_fetch_timeout") o.ucx_fetch_timeout = Seconds(v, "ucx_fetch_timeout");
  else if (key == "retry_attempts") o.retry.max_attempts = v.cast<int32_t>();
  else return false;
  return true;
}

constexpr const char* kOptionNames =
    "config, num_sink_tokens, dense_layers, num_prefill_clusters, prefill_segment_tokens, "
    "prefill_segment_clusters, kmeans_iterations, "
    "recluster_interval, clusters_per_recluster, token_budget, recall_target, min_token_budget, "
    "max_token_budget, promotion_hint_tokens, cache_residency_steps, seed, centroid_scoring, "
    "backend, threads, device_memory, call_timeout, put_message_bytes, write_through, "
    "data_plane, ucx_transports, ucx_region_bytes, ucx_fetch_timeout, retry_attempts";

client::ClientOptions MakeOptions(const std::string& target, const std::string& tenant,
                                  const py::kwargs& kwargs) {
  client::ClientOptions options;
  options.target = target;
  options.tenant = tenant;
  // `config=` first, so that single fields given beside it override it.
  if (kwargs.contains("config")) options.config = kwargs["config"].cast<ClusterKvConfig>();
  for (const auto& [k, v] : kwargs) {
    const std::string key = k.cast<std::string>();
    if (key == "config") continue;
    bool known = false;
    try {
      known = ApplyConfigOption(key, v, options.config) || ApplyClientOption(key, v, options);
    } catch (const py::cast_error&) {
      throw py::type_error(absl::StrCat("Client.connect: option ", key, " has the wrong type (",
                                        std::string(py::str(py::type::of(v))), ")"));
    }
    if (!known) {
      throw py::type_error(absl::StrCat("Client.connect: unknown option '", key,
                                        "'; options: ", kOptionNames));
    }
  }
  return options;
}

}  // namespace

void RegisterClient(py::module_& m) {
  py::class_<KvLayout>(m, "KvLayout", R"doc(
Shape and element type of one model's KV cache.

KvLayout(num_layers, num_q_heads, num_kv_heads, head_dim, dtype="fp16"); dtype is "fp16",
"bf16" or "fp32" (the dtype blocks are stored in; numpy inputs may be float32 or float16
whatever it is). num_q_heads must be a multiple of num_kv_heads (GQA).)doc")
      .def(py::init([](int32_t layers, int32_t q_heads, int32_t kv_heads, int32_t head_dim,
                       const std::string& dtype) {
             KvLayout layout;
             layout.num_layers = layers;
             layout.num_q_heads = q_heads;
             layout.num_kv_heads = kv_heads;
             layout.head_dim = head_dim;
             layout.dtype = ParseDTypeOrThrow(dtype);
             ThrowIfError(layout.Validate());
             return layout;
           }),
           py::arg("num_layers"), py::arg("num_q_heads"), py::arg("num_kv_heads"),
           py::arg("head_dim"), py::arg("dtype") = "fp16")
      .def_static("llama3_8b", &KvLayout::Llama3_8B,
                  "Llama-3-8B: 32 layers, 32 q heads, 8 kv heads, head_dim 128, fp16.")
      .def_readonly("num_layers", &KvLayout::num_layers)
      .def_readonly("num_q_heads", &KvLayout::num_q_heads)
      .def_readonly("num_kv_heads", &KvLayout::num_kv_heads)
      .def_readonly("head_dim", &KvLayout::head_dim)
      .def_property_readonly("dtype",
                             [](const KvLayout& l) { return std::string(DTypeName(l.dtype)); })
      .def_property_readonly("group_size", &KvLayout::GroupSize,
                             "Query heads per kv head.")
      .def_property_readonly("token_bytes", &KvLayout::TokenBytes,
                             "Bytes of K and V of one token over all layers and kv heads.")
      .def("__eq__", [](const KvLayout& a, const KvLayout& b) { return a == b; })
      .def("__hash__",
           [](const KvLayout& l) {
             return py::hash(py::make_tuple(l.num_layers, l.num_q_heads, l.num_kv_heads,
                                            l.head_dim, static_cast<int>(l.dtype)));
           })
      .def("__repr__",
           [](const KvLayout& l) { return absl::StrCat("KvLayout(", l.DebugString(), ")"); });

  py::class_<ClusterKvConfig>(m, "Config", R"doc(
The algorithm's knobs (core/config.h), with the reference code's defaults. Fields are
read/write; validate() raises InvalidArgumentError naming the first bad field. Client.connect
takes a Config as config= and/or the same fields as keywords.)doc")
      .def(py::init<>())
      .def_readwrite("num_sink_tokens", &ClusterKvConfig::num_sink_tokens)
      .def_readwrite("dense_layers", &ClusterKvConfig::dense_layers)
      .def_readwrite("num_prefill_clusters", &ClusterKvConfig::num_prefill_clusters)
      .def_readwrite("prefill_segment_tokens", &ClusterKvConfig::prefill_segment_tokens,
                     "G: cluster the prompt in segments of G positions (0: all at once), so "
                     "that any segment-aligned prefix of a published document is reusable.")
      .def_readwrite("prefill_segment_clusters", &ClusterKvConfig::prefill_segment_clusters,
                     "Clusters of a full segment (0: num_prefill_clusters * G / 8192, at "
                     "least 1).")
      .def_readwrite("kmeans_iterations", &ClusterKvConfig::kmeans_iterations)
      .def_readwrite("recluster_interval", &ClusterKvConfig::recluster_interval)
      .def_readwrite("clusters_per_recluster", &ClusterKvConfig::clusters_per_recluster)
      .def_readwrite("token_budget", &ClusterKvConfig::token_budget)
      .def_readwrite("cache_residency_steps", &ClusterKvConfig::cache_residency_steps)
      .def_readwrite("recall_target", &ClusterKvConfig::recall_target)
      .def_readwrite("min_token_budget", &ClusterKvConfig::min_token_budget)
      .def_readwrite("max_token_budget", &ClusterKvConfig::max_token_budget)
      .def_readwrite("promotion_hint_tokens", &ClusterKvConfig::promotion_hint_tokens)
      .def_readwrite("seed", &ClusterKvConfig::seed)
      .def_property(
          "centroid_scoring",
          [](const ClusterKvConfig& c) { return std::string(CentroidScoringName(c.centroid_scoring)); },
          [](ClusterKvConfig& c, const std::string& name) { c.centroid_scoring = ScoringOrThrow(name); },
          "How decode queries score clusters: \"unit\" (the paper's cosine), \"key_norm\" "
          "(times the cluster's mean key norm) or \"head_norm\" (times the kv head's mean key "
          "norm).")
      .def("validate", [](const ClusterKvConfig& c) { ThrowIfError(c.Validate()); })
      .def("is_dense_layer", &ClusterKvConfig::IsDenseLayer)
      .def("segment_clusters", &ClusterKvConfig::SegmentClusters, py::arg("segment"),
           py::arg("tokens"),
           "Clusters of prefill segment `segment` (0: the first) holding `tokens` clustered "
           "tokens (with prefill_segment_tokens > 0).")
      .def("__repr__", [](const ClusterKvConfig& c) {
        return absl::StrCat("Config(", c.DebugString(), ")");
      });

  using StoredPrefix = client::Client::StoredPrefix;
  py::class_<StoredPrefix>(m, "StoredPrefix", R"doc(
A stored prefix found by Client.find_prefix: the document that holds it, and how much of the
prompt it covers (its first `segments` clustering segments, `tokens` tokens), for `layout`;
`owner` is the document's tenant when another tenant granted it (Sequence.grant), '' for this
tenant's own. Client.open_sequence_from(id, prefix) forks a sequence from it. Read-only; also
constructible from its fields (e.g. kept from an earlier find_prefix).)doc")
      .def(py::init([](std::string document, int32_t segments, int64_t tokens,
                       const KvLayout& layout, std::string owner) {
             StoredPrefix p;
             p.document = std::move(document);
             p.segments = segments;
             p.tokens = tokens;
             p.layout = layout;
             p.owner = std::move(owner);
             return p;
           }),
           py::arg("document"), py::arg("segments"), py::arg("tokens"), py::arg("layout"),
           py::arg("owner") = "")
      .def_readonly("document", &StoredPrefix::document)
      .def_readonly("segments", &StoredPrefix::segments)
      .def_readonly("tokens", &StoredPrefix::tokens)
      .def_readonly("layout", &StoredPrefix::layout)
      .def_readonly("owner", &StoredPrefix::owner)
      .def("__repr__", [](const StoredPrefix& p) {
        return absl::StrCat("StoredPrefix(document='", p.document, "', segments=", p.segments,
                            ", tokens=", p.tokens, ", ", p.layout.DebugString(),
                            p.owner.empty() ? "" : absl::StrCat(", owner='", p.owner, "'"),
                            ")");
      });

  py::class_<ClientHandle, std::shared_ptr<ClientHandle>>(m, "Client", R"doc(
Connection to the local clusterkvd (libclusterkv's Client). Create with Client.connect();
open sequences with open_sequence() / reopen_sequence(), continue a checkpointed one with
resume_sequence(), fork one from a published document with find_prefix() +
open_sequence_from(). Thread-safe.)doc")
      .def_static(
          "connect",
          [](const std::string& target, const std::string& tenant, const py::kwargs& kwargs) {
            client::ClientOptions options = MakeOptions(target, tenant, kwargs);
            auto handle = std::make_shared<ClientHandle>();
            handle->target = target;
            handle->tenant = tenant;
            absl::StatusOr<std::unique_ptr<client::Client>> c;
            {
              py::gil_scoped_release release;
              c = client::Client::Connect(std::move(options));
            }
            ThrowIfError(c.status());
            handle->client = *std::move(c);
            return handle;
          },
          py::arg("target"), py::arg("tenant"), R"doc(
Client.connect(target, tenant, **options) -> Client

target: "unix:/path/to/clusterkvd.sock" or "host:port". tenant: the caller's tenant (the daemon
uses it only under --auth=none; otherwise it authenticates the caller itself).
Options: config=Config(), any Config field (token_budget=..., num_prefill_clusters=...,
prefill_segment_tokens=..., dense_layers=[...], ...), backend="cpu"|"cuda"|"auto",
threads=0 (all cores), data_plane="auto"|"ucx"|"grpc", device_memory="host",
call_timeout=30.0 (s), write_through=False, put_message_bytes, ucx_transports,
ucx_region_bytes, ucx_fetch_timeout (s), retry_attempts.
Connecting is lazy: a missing daemon surfaces as UnavailableError at the first call.
Raises InvalidArgumentError for bad options, FailedPreconditionError when a requested backend
or data plane is not usable, TypeError for unknown options.)doc")
      .def(
          "open_sequence",
          [](const std::shared_ptr<ClientHandle>& self, const std::string& id,
             const KvLayout& layout) {
            absl::StatusOr<std::unique_ptr<client::Sequence>> s;
            {
              py::gil_scoped_release release;
              s = self->client->OpenSequence(id, layout);
            }
            ThrowIfError(s.status());
            return std::make_shared<SequenceHandle>(self, *std::move(s));
          },
          py::arg("sequence_id"), py::arg("layout"),
          "Opens (creating when missing) a sequence of this tenant. FailedPreconditionError "
          "when it exists with another layout.")
      .def(
          "reopen_sequence",
          [](const std::shared_ptr<ClientHandle>& self, const std::string& id) {
            absl::StatusOr<std::unique_ptr<client::Sequence>> s;
            {
              py::gil_scoped_release release;
              s = self->client->ReopenSequence(id);
            }
            ThrowIfError(s.status());
            return std::make_shared<SequenceHandle>(self, *std::move(s));
          },
          py::arg("sequence_id"),
          "Opens an existing sequence with its stored layout and centroid indexes. "
          "NotFoundError when this tenant has no such sequence.")
      .def(
          "resume_sequence",
          [](const std::shared_ptr<ClientHandle>& self, const std::string& id) {
            absl::StatusOr<std::unique_ptr<client::Sequence>> s;
            {
              py::gil_scoped_release release;
              s = self->client->ResumeSequence(id);
            }
            ThrowIfError(s.status());
            return std::make_shared<SequenceHandle>(self, *std::move(s));
          },
          py::arg("sequence_id"), R"doc(
Rebuilds a checkpointed sequence (Sequence.checkpoint) from the daemon alone: indexes, sinks,
dense layers, recent window and position as they were at its last checkpoint, in any process
and without a prefill, so decoding continues exactly as it would have. A fork never
checkpointed resumes at its base. NotFoundError: no such sequence; FailedPreconditionError:
never checkpointed; DataLossError: inconsistent stored state.)doc")
      .def(
          "find_prefix",
          [](const std::shared_ptr<ClientHandle>& self, const py::object& tokens,
             const std::string& model, const KvLayout& layout) -> std::optional<StoredPrefix> {
            const std::vector<int32_t> ids = TokenIds(tokens, "tokens");
            absl::StatusOr<std::optional<StoredPrefix>> found;
            {
              py::gil_scoped_release release;
              found = self->client->FindPrefix(ids, model, layout);
            }
            ThrowIfError(found.status());
            return *std::move(found);
          },
          py::arg("tokens"), py::arg("model"), py::arg("layout"), R"doc(
The longest stored prefix of the prompt `tokens` (token ids: a list or a 1-D integer numpy
array) among this tenant's published documents (Sequence.publish), and those other tenants
granted it (Sequence.grant; StoredPrefix.owner names the owner), for `model` and `layout`,
under this client's clustering configuration (prefill_segment_tokens): a StoredPrefix, or
None when no document shares a whole segment with the prompt.)doc")
      .def(
          "open_sequence_from",
          [](const std::shared_ptr<ClientHandle>& self, const std::string& id,
             const StoredPrefix& prefix) {
            absl::StatusOr<std::unique_ptr<client::Sequence>> s;
            {
              py::gil_scoped_release release;
              s = self->client->OpenSequenceFrom(id, prefix);
            }
            ThrowIfError(s.status());
            return std::make_shared<SequenceHandle>(self, *std::move(s));
          },
          py::arg("sequence_id"), py::arg("prefix"), R"doc(
Creates `sequence_id` as a fork of `prefix` (a StoredPrefix from find_prefix): it holds the
prefix's prefix.tokens tokens, shared with the document (no copy, no prefill);
offload_prefill(layer, keys, values) with the keys and values of the tokens after the prefix
then adds the rest of the prompt, and read_tokens(layer, 0, prefix.tokens) returns the shared
keys and values. AlreadyExistsError: the id is taken; FailedPreconditionError: the document is
gone or not sealed.)doc")
      .def_property_readonly("target", [](const ClientHandle& c) { return c.target; })
      .def_property_readonly("tenant", [](const ClientHandle& c) { return c.tenant; })
      .def_property_readonly(
          "data_plane", [](ClientHandle& c) { return std::string(c.client->data_plane_name()); },
          "'ucx' when fetches use the UCX data plane, else 'grpc'.")
      .def_property_readonly(
          "data_plane_status",
          [](ClientHandle& c) { return c.client->data_plane_status().ToString(); },
          "Why data_plane='auto' settled on gRPC ('OK' when it did not).")
      .def_property_readonly(
          "config", [](ClientHandle& c) { return client::ClientInternals::sequence_options(*c.client).config; },
          "A copy of the Config the client's sequences use.")
      .def_property_readonly("backend",
                             [](ClientHandle& c) {
                               return std::string(
                                   gpu::BackendName(client::ClientInternals::sequence_options(*c.client).exec.backend));
                             })
      .def("__repr__", [](const ClientHandle& c) {
        return absl::StrCat("Client(target='", c.target, "', tenant='", c.tenant, "')");
      });
}

}  // namespace clusterkv::python
