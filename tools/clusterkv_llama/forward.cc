#include "tools/clusterkv_llama/forward.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/attention.h"

namespace clusterkv::llama {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t MicrosSince(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count();
}

// Prompt tokens per prefill chunk: bounds the activations to a few MiB whatever the prompt.
constexpr int64_t kChunk = 256;

void AddInto(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

Tensor3View PrefillResult::KeyView(const LlamaConfig& c, int32_t layer) const {
  Tensor3View v(keys[static_cast<size_t>(layer)].data(), DType::kFloat32,
                {c.n_kv_heads, tokens, c.head_dim});
  v.strides = {c.head_dim, c.KvDim()};  // rows are tokens of [tokens, n_kv * hd]
  return v;
}

Tensor3View PrefillResult::ValueView(const LlamaConfig& c, int32_t layer) const {
  Tensor3View v(values[static_cast<size_t>(layer)].data(), DType::kFloat32,
                {c.n_kv_heads, tokens, c.head_dim});
  v.strides = {c.head_dim, c.KvDim()};
  return v;
}

LlamaModel::LlamaModel(const LlamaWeights* weights, int threads)
    : weights_(weights), threads_(std::max(1, threads)), rope_(weights->config) {}

absl::StatusOr<PrefillResult> LlamaModel::Prefill(absl::Span<const int32_t> tokens,
                                                  const ForwardProgress& progress) const {
  const LlamaConfig& c = weights_->config;
  const LlamaWeights& w = *weights_;
  const int64_t total = static_cast<int64_t>(tokens.size());
  if (total == 0) return absl::InvalidArgumentError("prefill: empty prompt");
  if (total > c.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill: ", total, " tokens exceed the model's max context ", c.max_context));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prefill: token ", t, " outside the vocabulary [0, ", c.vocab, ")"));
    }
  }
  const int64_t dim = c.dim, q_dim = c.QDim(), kv_dim = c.KvDim(), ffn = c.ffn_dim;
  PrefillResult r;
  r.tokens = total;
  r.keys.assign(static_cast<size_t>(c.n_layers),
                std::vector<float>(static_cast<size_t>(total * kv_dim)));
  r.values = r.keys;
  const int64_t chunk_max = std::min(kChunk, total);
  std::vector<float> x(static_cast<size_t>(chunk_max * dim)), h(x.size()), proj(x.size());
  std::vector<float> q(static_cast<size_t>(chunk_max * q_dim)), attn(q.size());
  std::vector<float> gate(static_cast<size_t>(chunk_max * ffn)), up(gate.size());
  int64_t n = 0;
  for (int64_t t0 = 0; t0 < total; t0 += n) {
    n = std::min(kChunk, total - t0);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&x[static_cast<size_t>(i * dim)],
                  &w.embed[static_cast<size_t>(int64_t{tokens[static_cast<size_t>(t0 + i)]} * dim)],
                  sizeof(float) * static_cast<size_t>(dim));
    }
    for (int32_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      float* keys = &r.keys[static_cast<size_t>(l)][static_cast<size_t>(t0 * kv_dim)];
      float* values = &r.values[static_cast<size_t>(l)][static_cast<size_t>(t0 * kv_dim)];
      for (int64_t i = 0; i < n; ++i) {
        RmsNorm(&x[static_cast<size_t>(i * dim)], lw.attn_norm.data(), dim, c.norm_eps,
                &h[static_cast<size_t>(i * dim)]);
      }
      MatMul(h.data(), n, lw.wq.data(), q_dim, dim, q.data(), threads_);
      MatMul(h.data(), n, lw.wk.data(), kv_dim, dim, keys, threads_);
      MatMul(h.data(), n, lw.wv.data(), kv_dim, dim, values, threads_);
      for (int64_t i = 0; i < n; ++i) {
        rope_.Apply(&q[static_cast<size_t>(i * q_dim)], c.n_heads, t0 + i, w.rope_style);
        rope_.Apply(keys + i * kv_dim, c.n_kv_heads, t0 + i, w.rope_style);
      }
      CausalAttention(c, q.data(), t0, n, r.keys[static_cast<size_t>(l)].data(),
                      r.values[static_cast<size_t>(l)].data(), attn.data(), threads_);
      MatMul(attn.data(), n, lw.wo.data(), dim, q_dim, proj.data(), threads_);
      AddInto(x.data(), proj.data(), n * dim);
      for (int64_t i = 0; i < n; ++i) {
        RmsNorm(&x[static_cast<size_t>(i * dim)], lw.ffn_norm.data(), dim, c.norm_eps,
                &h[static_cast<size_t>(i * dim)]);
      }
      MatMul(h.data(), n, lw.w_gate.data(), ffn, dim, gate.data(), threads_);
      MatMul(h.data(), n, lw.w_up.data(), ffn, dim, up.data(), threads_);
      SwiGlu(gate.data(), up.data(), n * ffn, gate.data());
      MatMul(gate.data(), n, lw.w_down.data(), dim, ffn, proj.data(), threads_);
      AddInto(x.data(), proj.data(), n * dim);
    }
    if (progress) progress(t0 + n, total);
  }
  // x holds the last chunk; its last row is the last prompt token.
  std::vector<float> last(static_cast<size_t>(dim));
  RmsNorm(&x[static_cast<size_t>((n - 1) * dim)], w.final_norm.data(), dim, c.norm_eps,
          last.data());
  r.last_logits.resize(static_cast<size_t>(c.vocab));
  MatMul(last.data(), 1, w.Output().data(), c.vocab, dim, r.last_logits.data(), threads_);
  return r;
}

absl::Status LlamaModel::DecodeStep(int32_t token, int64_t pos, AttentionBackend& backend,
                                    float* logits, DecodeTiming* timing,
                                    AttentionStepStats* attention_stats) const {
  const auto start = SteadyClock::now();
  const LlamaConfig& c = weights_->config;
  const LlamaWeights& w = *weights_;
  if (token < 0 || token >= c.vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: token ", token, " outside [0, ", c.vocab, ")"));
  }
  const int64_t dim = c.dim, q_dim = c.QDim(), kv_dim = c.KvDim(), ffn = c.ffn_dim;
  std::vector<float> x(w.embed.begin() + int64_t{token} * dim,
                       w.embed.begin() + (int64_t{token} + 1) * dim);
  std::vector<float> h(static_cast<size_t>(dim)), proj(h.size());
  std::vector<float> q(static_cast<size_t>(q_dim)), attn(q.size());
  std::vector<float> k(static_cast<size_t>(kv_dim)), v(k.size());
  std::vector<float> gate(static_cast<size_t>(ffn)), up(gate.size());
  int64_t attention_us = 0, hook_us = 0;
  AttentionStepStats total_stats;
  backend.BeginStep();
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    RmsNorm(x.data(), lw.attn_norm.data(), dim, c.norm_eps, h.data());
    MatMul(h.data(), 1, lw.wq.data(), q_dim, dim, q.data(), threads_);
    MatMul(h.data(), 1, lw.wk.data(), kv_dim, dim, k.data(), threads_);
    MatMul(h.data(), 1, lw.wv.data(), kv_dim, dim, v.data(), threads_);
    rope_.Apply(q.data(), c.n_heads, pos, w.rope_style);
    rope_.Apply(k.data(), c.n_kv_heads, pos, w.rope_style);
    const auto t_attn = SteadyClock::now();
    AttentionStepStats s;
    RETURN_IF_ERROR(backend.AppendAndAttend(l, q.data(), k.data(), v.data(), attn.data(), &s));
    attention_us += MicrosSince(t_attn);
    total_stats.Add(s);
    if (query_hook_) {
      const auto t_hook = SteadyClock::now();
      query_hook_(l, q.data());
      hook_us += MicrosSince(t_hook);
    }
    MatMul(attn.data(), 1, lw.wo.data(), dim, q_dim, proj.data(), threads_);
    AddInto(x.data(), proj.data(), dim);
    RmsNorm(x.data(), lw.ffn_norm.data(), dim, c.norm_eps, h.data());
    MatMul(h.data(), 1, lw.w_gate.data(), ffn, dim, gate.data(), threads_);
    MatMul(h.data(), 1, lw.w_up.data(), ffn, dim, up.data(), threads_);
    SwiGlu(gate.data(), up.data(), ffn, gate.data());
    MatMul(gate.data(), 1, lw.w_down.data(), dim, ffn, proj.data(), threads_);
    AddInto(x.data(), proj.data(), dim);
  }
  RmsNorm(x.data(), w.final_norm.data(), dim, c.norm_eps, h.data());
  MatMul(h.data(), 1, w.Output().data(), c.vocab, dim, logits, threads_);
  if (timing != nullptr) {
    timing->total_us = MicrosSince(start) - hook_us;
    timing->attention_us = attention_us;
    timing->dense_us = timing->total_us - attention_us;
  }
  if (attention_stats != nullptr) *attention_stats = total_stats;
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
