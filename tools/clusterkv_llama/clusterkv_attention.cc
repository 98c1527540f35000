#include "tools/clusterkv_llama/clusterkv_attention.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

using internal::MicrosSince;

}  // namespace

ClusterKvConfig SequenceConfig(const ModelConfig& model, const ClusterKvConfig& config) {
  ClusterKvConfig out = config;
  out.dense_layers.clear();
  const std::vector<int32_t> global = model.GlobalLayers();
  for (size_t i = 0; i < global.size(); ++i) {
    if (config.IsDenseLayer(global[i])) out.dense_layers.push_back(static_cast<int32_t>(i));
  }
  return out;
}

bool ClusterKvBackend::WantsPrefetch(int32_t layer) const {
  return layer >= 0 && layer < sequence_->layout().num_layers &&
         !sequence_->config().IsDenseLayer(layer);
}

absl::Status ClusterKvBackend::Prefetch(int32_t layer, const float* q_guess) {
  const KvLayout& layout = sequence_->layout();
  return sequence_->Prefetch(layer,
                             ConstMatrixView(q_guess, layout.num_q_heads, layout.head_dim));
}

ClusterKvBackend::ClusterKvBackend(std::string name, std::unique_ptr<client::Sequence> sequence)
    : name_(std::move(name)), sequence_(std::move(sequence)) {}

absl::Status ClusterKvBackend::LoadPrefill(int32_t layer, const Tensor3View& keys,
                                           const Tensor3View& values) {
  // The forward pass keeps token-major rows; Sequence reads them in place.
  return sequence_->OffloadPrefill(layer, keys, values);
}

absl::Status ClusterKvBackend::AppendAndAttend(int32_t layer, const float* q, const float* k,
                                               const float* v, float* out,
                                               AttentionStepStats* stats) {
  const KvLayout& layout = sequence_->layout();
  const auto t0 = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(sequence_->AppendToken(layer,
                                         ConstMatrixView(k, layout.num_kv_heads, layout.head_dim),
                                         ConstMatrixView(v, layout.num_kv_heads, layout.head_dim)));
  const int64_t append_us = MicrosSince(t0);
  int64_t excluded_us = 0;
  if (resident_bound_) {
    const auto t_warm = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(
        sequence_->Prefetch(layer, ConstMatrixView(q, layout.num_q_heads, layout.head_dim)));
    RETURN_IF_ERROR(sequence_->WaitForPrefetch(layer));
    excluded_us = MicrosSince(t_warm);
  }
  client::StepStats s;
  RETURN_IF_ERROR(sequence_->Attend(layer, ConstMatrixView(q, layout.num_q_heads, layout.head_dim),
                                    MatrixView(out, layout.num_q_heads, layout.head_dim), &s));
  if (stats != nullptr) {
    *stats = AttentionStepStats();
    stats->total_us = MicrosSince(t0) - excluded_us;
    stats->excluded_us = excluded_us;
    stats->prefetched_tokens = s.prefetched_tokens;
    stats->prefetch_used_tokens = s.prefetch_used_tokens;
    stats->prefetch_wait_us = s.prefetch_wait_us;
    stats->append_us = append_us;
    stats->score_us = s.score_us;
    stats->select_us = s.select_us;
    stats->fetch_us = s.fetch_us;
    stats->attend_us = s.attend_us;
    stats->bytes_fetched = s.bytes_fetched;
    stats->hit_tokens = s.hit_tokens;
    stats->miss_tokens = s.miss_tokens;
    stats->attended_tokens = s.attended_tokens;
    stats->selected_tokens = s.selected_tokens;
    stats->selected_heads = s.selected_heads;
    stats->estimated_recall_sum = s.estimated_recall * s.selected_heads;
  }
  return absl::OkStatus();
}

std::string ClusterKvSession::DataPlaneUsed() const {
  const bool direct = sparse->sequence().blocks_fetched_direct() > 0;
  const bool grpc = sparse->sequence().blocks_fetched_grpc() > 0;
  return direct && grpc ? "ucx+grpc" : direct ? "ucx" : grpc ? "grpc" : "none";
}

std::string ClusterKvSession::DataPlaneConfigured() const {
  if (std::string(client->data_plane_name()) == "ucx") return "ucx";
  const absl::Status& why = client->data_plane_status();
  return why.ok() ? "grpc" : absl::StrCat("grpc (UCX unavailable: ", why.message(), ")");
}

// The client a ClusterKV run connects with, for `sequences` sequences of `model`.
client::ClientOptions ClientOptionsFor(const ModelConfig& model, const ServiceOptions& o,
                                       int64_t budget, int threads, int32_t sequences) {
  client::ClientOptions co;
  co.target = o.target;
  co.tenant = o.tenant;
  co.config = SequenceConfig(model, o.config);
  co.config.token_budget = static_cast<int32_t>(budget);
  co.backend = "cpu";
  co.threads = threads;
  co.call_timeout = o.call_timeout;
  co.data_plane = o.data_plane;
  // The UCX region holds every sparse layer's device cache of every sequence (Sequence sizes
  // one per layer at kv_heads x (2B, or B + B_max when adaptive, + its largest cluster)
  // tokens); a layer that does not fit falls back to gRPC fetches. Size it for the budget,
  // with room for clusters of up to 2048 tokens.
  const std::vector<int32_t> global = model.GlobalLayers();
  const int64_t token_bytes =
      2 * int64_t{model.head_dim} * static_cast<int64_t>(DTypeSize(o.kv_dtype)) + 4;
  const int64_t per_head = co.config.adaptive_budget()
                               ? co.config.MaxTokenBudget() + budget  // an adaptive head's most
                               : 2 * budget;
  const int64_t layer_tokens = int64_t{model.n_kv_heads} *
                               (per_head + std::max<int64_t>(2048, co.config.recluster_interval));
  const int64_t want =
      static_cast<int64_t>(global.size()) * layer_tokens * token_bytes * 5 / 4 * sequences;
  co.ucx_region_bytes =
      static_cast<size_t>(std::clamp<int64_t>(want, int64_t{256} << 20, int64_t{8} << 30));
  return co;
}


absl::StatusOr<ClusterKvSession> OpenClusterKv(const ModelConfig& model, const ServiceOptions& o,
                                               int64_t budget, const std::string& name,
                                               int threads) {
  ClusterKvSession session;
  ASSIGN_OR_RETURN(session.client,
                   client::Client::Connect(ClientOptionsFor(model, o, budget, threads, 1)));
  ASSIGN_OR_RETURN(
      std::unique_ptr<client::Sequence> seq,
      session.client->OpenSequence(absl::StrCat(o.sequence_prefix, "-", getpid(), "-", name),
                                   model.ToKvLayout(o.kv_dtype)));
  auto sparse = std::make_unique<ClusterKvBackend>(name, std::move(seq));
  session.sparse = sparse.get();
  session.backend = ForModelLayers(model, std::move(sparse));
  return session;
}

ClusterKvSession WrapClusterKv(const ModelConfig& model, std::unique_ptr<client::Client> client,
                               std::unique_ptr<client::Sequence> sequence,
                               const std::string& name) {
  ClusterKvSession session;
  session.client = std::move(client);
  auto sparse = std::make_unique<ClusterKvBackend>(name, std::move(sequence));
  session.sparse = sparse.get();
  session.backend = ForModelLayers(model, std::move(sparse));
  return session;
}

absl::StatusOr<ClusterKvBatch> OpenClusterKvBatch(const ModelConfig& model,
                                                  const ServiceOptions& o, int64_t budget,
                                                  const std::string& name, int threads,
                                                  int32_t sequences) {
  ClusterKvBatch batch;
  ASSIGN_OR_RETURN(batch.client, client::Client::Connect(
                                     ClientOptionsFor(model, o, budget, threads, sequences)));
  for (int32_t i = 0; i < sequences; ++i) {
    const std::string seq_name = absl::StrCat(name, "-", i);
    ASSIGN_OR_RETURN(
        std::unique_ptr<client::Sequence> seq,
        batch.client->OpenSequence(absl::StrCat(o.sequence_prefix, "-", getpid(), "-", seq_name),
                                   model.ToKvLayout(o.kv_dtype)));
    auto sparse = std::make_unique<ClusterKvBackend>(seq_name, std::move(seq));
    batch.sparse.push_back(sparse.get());
    batch.backends.push_back(ForModelLayers(model, std::move(sparse)));
  }
  return batch;
}

}  // namespace clusterkv::llama
