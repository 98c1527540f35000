#include "tools/clusterkv_llama/reuse_bench.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/sequence.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double MillisSince(absl::Time start) { return absl::ToDoubleMilliseconds(absl::Now() - start); }

// A token-major [rows, kv_heads, head_dim] fp32 buffer as the [kv_heads, rows, head_dim] view
// backends take.
Tensor3View TokenMajor(const float* data, int64_t rows, const ModelConfig& c) {
  Tensor3View view;
  view.data = data;
  view.dtype = DType::kFloat32;
  view.dims = {c.n_kv_heads, rows, c.head_dim};
  view.strides = {c.head_dim, int64_t{c.n_kv_heads} * c.head_dim};
  return view;
}

// Full attention that also keeps every appended token's k and v, per layer (the rest of a
// prompt run after a shared prefix, to be offloaded).
class RecordingBackend : public AttentionBackend {
 public:
  RecordingBackend(std::unique_ptr<AttentionBackend> inner, int32_t layers)
      : inner_(std::move(inner)), keys_(layers), values_(layers) {}
  std::string Name() const override { return inner_->Name(); }
  absl::Status LoadPrefill(int32_t layer, const Tensor3View& k, const Tensor3View& v) override {
    return inner_->LoadPrefill(layer, k, v);
  }
  absl::Status AppendAndAttend(int32_t layer, const float* q, const float* k, const float* v,
                               float* out, AttentionStepStats* stats) override {
    keys_[layer].insert(keys_[layer].end(), k, k + kv_dim_);
    values_[layer].insert(values_[layer].end(), v, v + kv_dim_);
    return inner_->AppendAndAttend(layer, q, k, v, out, stats);
  }
  void set_kv_dim(int64_t d) { kv_dim_ = d; }
  const std::vector<float>& keys(int32_t l) const { return keys_[l]; }
  const std::vector<float>& values(int32_t l) const { return values_[l]; }

 private:
  std::unique_ptr<AttentionBackend> inner_;
  std::vector<std::vector<float>> keys_, values_;
  int64_t kv_dim_ = 0;
};

// Greedy decode of `steps` tokens after `first` (already generated at position `pos`).
absl::StatusOr<std::vector<int32_t>> Generate(const DecoderModel& model,
                                              AttentionBackend& backend, int32_t first,
                                              int64_t pos, int32_t steps) {
  std::vector<int32_t> tokens = {first};
  std::vector<float> logits(static_cast<size_t>(model.config().vocab));
  for (int32_t s = 1; s < steps; ++s) {
    RETURN_IF_ERROR(model.DecodeStep(tokens.back(), pos + s - 1, backend, logits.data(), nullptr,
                                     nullptr));
    tokens.push_back(Argmax(logits));
  }
  return tokens;
}

}  // namespace

absl::StatusOr<nlohmann::ordered_json> RunReuseBench(const ModelWeights& weights,
                                                     const std::vector<int32_t>& prompt,
                                                     const ReuseBenchOptions& o,
                                                     std::ostream& out) {
  const ModelConfig& c = weights.config;
  if (static_cast<int32_t>(c.GlobalLayers().size()) != c.n_layers) {
    return absl::UnimplementedError(
        "--mode=reuse needs a model without local layers: their sliding windows live in the "
        "engine, not in clusterkvd");
  }
  const int64_t g = o.config.prefill_segment_tokens;
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (g <= 0) return absl::InvalidArgumentError("--mode=reuse needs --prefill_segment_tokens");
  const int64_t shared = (n - 1) / g * g;  // at least one token left to run
  if (shared == 0) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt's ", n, " tokens hold no whole ",
                                                   g, "-token segment before its last token"));
  }
  const int threads = o.threads;
  DecoderModel model(&weights, threads);
  const KvLayout layout = c.ToKvLayout(o.kv_dtype);
  const int32_t layers = c.n_layers;
  auto say = [&](const std::string& line) {
    if (o.progress != nullptr) *o.progress << line << "\n" << std::flush;
  };

  // Full prefill: the baseline.
  say(absl::StrCat("full prefill of ", n, " tokens"));
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(PrefillResult prefill, model.Prefill(prompt));
  ASSIGN_OR_RETURN(ClusterKvSession full, OpenClusterKv(c, o, o.budget, "reuse-full", threads));
  RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *full.backend));
  const int32_t full_first = Argmax(prefill.last_logits);
  const double full_ms = MillisSince(start);
  ASSIGN_OR_RETURN(std::vector<int32_t> full_tokens,
                   Generate(model, *full.backend, full_first, n, o.steps));
  ClusterKvBackend& full_sparse = *full.sparse;
  RETURN_IF_ERROR(full_sparse.sequence().Checkpoint());
  const std::string full_id = full_sparse.sequence().id();

  // The stored document: the prompt's first `shared` tokens (their rows of the same prefill:
  // attention is causal), published.
  say(absl::StrCat("publishing a document of ", shared, " tokens"));
  start = absl::Now();
  ASSIGN_OR_RETURN(ClusterKvSession doc, OpenClusterKv(c, o, o.budget, "reuse-doc", threads));
  for (int32_t l = 0; l < layers; ++l) {
    Tensor3View k = prefill.KeyView(c, l), v = prefill.ValueView(c, l);
    k.dims[1] = v.dims[1] = shared;
    RETURN_IF_ERROR(doc.backend->LoadPrefill(l, k, v));
  }
  RETURN_IF_ERROR(doc.sparse->sequence().Publish(
      absl::MakeConstSpan(prompt.data(), static_cast<size_t>(shared)), o.model_name));
  const double publish_ms = MillisSince(start);

  // Reuse: find the prefix, fork it, read it back, run only the rest.
  say("second request over the same document");
  start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client,
                   client::Client::Connect(ClientOptionsFor(c, o, o.budget, threads, 1)));
  ASSIGN_OR_RETURN(std::optional<client::Client::StoredPrefix> found,
                   client->FindPrefix(absl::MakeConstSpan(prompt.data(), prompt.size() - 1),
                                      o.model_name, layout));
  if (!found.has_value()) return absl::InternalError("the published document was not found");
  ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> fork,
                   client->OpenSequenceFrom(
                       absl::StrCat(o.sequence_prefix, "-", getpid(), "-reuse-fork"), *found));
  const int64_t m = found->tokens;
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  auto recorder = std::make_unique<RecordingBackend>(
      ForModelLayers(c, std::make_unique<FullAttentionBackend>(c, o.kv_dtype, n, exec)), layers);
  recorder->set_kv_dim(int64_t{c.n_kv_heads} * c.head_dim);
  const double read_start = absl::ToDoubleMilliseconds(absl::Now() - start);
  std::vector<float> keys(static_cast<size_t>(m) * c.n_kv_heads * c.head_dim), values(keys.size());
  for (int32_t l = 0; l < layers; ++l) {
    RETURN_IF_ERROR(fork->ReadTokens(l, 0, m, keys.data(), values.data()));
    RETURN_IF_ERROR(recorder->LoadPrefill(l, TokenMajor(keys.data(), m, c),
                                          TokenMajor(values.data(), m, c)));
  }
  const double read_ms = MillisSince(start) - read_start;
  std::vector<float> last_logits;
  RETURN_IF_ERROR(model.DecodeChunk(
      absl::MakeConstSpan(prompt.data() + m, static_cast<size_t>(n - m)), m, *recorder,
      [&](int64_t pos, const float* logits) {
        if (pos == n - 1) last_logits.assign(logits, logits + c.vocab);
      },
      nullptr));
  for (int32_t l = 0; l < layers; ++l) {
    RETURN_IF_ERROR(fork->OffloadPrefill(l, TokenMajor(recorder->keys(l).data(), n - m, c),
                                         TokenMajor(recorder->values(l).data(), n - m, c)));
  }
  const int32_t reuse_first = Argmax(last_logits);
  const double reuse_ms = MillisSince(start);
  ClusterKvSession reuse = WrapClusterKv(c, std::move(client), std::move(fork), "reuse-fork");
  ASSIGN_OR_RETURN(std::vector<int32_t> reuse_tokens,
                   Generate(model, *reuse.backend, reuse_first, n, o.steps));

  // Resume: the full run's sequence, left after its checkpoint, continued by a new client.
  say("resuming the parked full-prefill sequence");
  std::vector<float> logits(static_cast<size_t>(c.vocab));
  const int64_t next_pos = n + o.steps - 1;
  RETURN_IF_ERROR(model.DecodeStep(full_tokens.back(), next_pos, *full.backend, logits.data(),
                                   nullptr, nullptr));
  const int32_t want_next = Argmax(logits);
  start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> resumer,
                   client::Client::Connect(ClientOptionsFor(c, o, o.budget, threads, 1)));
  ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> resumed, resumer->ResumeSequence(full_id));
  ClusterKvSession parked = WrapClusterKv(c, std::move(resumer), std::move(resumed), "resumed");
  RETURN_IF_ERROR(model.DecodeStep(full_tokens.back(), next_pos, *parked.backend, logits.data(),
                                   nullptr, nullptr));
  const int32_t resumed_next = Argmax(logits);
  const double resume_ms = MillisSince(start);

  int32_t agree = 0;
  for (int32_t s = 0; s < o.steps; ++s) agree += full_tokens[s] == reuse_tokens[s];
  char line[256];
  out << "reuse bench: " << n << "-token prompt, document of " << shared << " tokens (" << m
      << " found), B=" << o.budget << "\n";
  out << "run      time to first token   vs full prefill   greedy tokens equal to full\n";
  std::snprintf(line, sizeof(line), "full     %10.1f ms            1.00x\n", full_ms);
  out << line;
  std::snprintf(line, sizeof(line), "reuse    %10.1f ms        %8.2fx   %d/%d (read %.1f ms)\n",
                reuse_ms, full_ms / reuse_ms, agree, o.steps, read_ms);
  out << line;
  std::snprintf(line, sizeof(line), "resume   %10.1f ms        %8.2fx   next token %s\n",
                resume_ms, full_ms / resume_ms, resumed_next == want_next ? "equal" : "DIFFERS");
  out << line;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  nlohmann::ordered_json common = {{"model", o.model_name}, {"prompt_tokens", n},
                                   {"shared_tokens", m}, {"budget", o.budget},
                                   {"segment_tokens", g}};
  auto row = [&](const std::string& name, double ms) {
    nlohmann::ordered_json r = common;
    r["name"] = name;
    r["ttft_ms"] = ms;
    r["ratio_vs_full_prefill"] = full_ms / ms;
    return r;
  };
  rows.push_back(row("full_prefill", full_ms));
  nlohmann::ordered_json r = row("shared_document", reuse_ms);
  r["read_prefix_ms"] = read_ms;
  r["greedy_tokens_equal"] = agree;
  r["greedy_tokens"] = o.steps;
  rows.push_back(std::move(r));
  r = row("resume", resume_ms);
  r["next_token_equal"] = resumed_next == want_next;
  rows.push_back(std::move(r));
  r = common;
  r["name"] = "publish_document";
  r["ms"] = publish_ms;
  rows.push_back(std::move(r));
  return rows;
}

}  // namespace clusterkv::llama
