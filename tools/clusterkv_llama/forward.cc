#include "tools/clusterkv_llama/forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/attention.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"

namespace clusterkv::llama {
namespace {

using internal::MicrosSince;
using internal::SteadyClock;

// Prompt tokens per prefill chunk: bounds the activations to a few MiB whatever the prompt.
constexpr int64_t kChunk = 256;
// Positions per vocabulary projection when every position's logits are wanted.
constexpr int64_t kLogitRows = 16;

void AddInto(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void Scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

Tensor3View RowsView(const std::vector<float>& rows, const ModelConfig& c) {
  const int64_t n = static_cast<int64_t>(rows.size()) / c.KvDim();
  Tensor3View v(rows.data(), DType::kFloat32, {c.n_kv_heads, n, c.head_dim});
  v.strides = {c.head_dim, c.KvDim()};  // rows are tokens of [tokens, n_kv * hd]
  return v;
}

}  // namespace

Tensor3View PrefillResult::KeyView(const ModelConfig& c, int32_t layer) const {
  return RowsView(keys[static_cast<size_t>(layer)], c);
}

Tensor3View PrefillResult::ValueView(const ModelConfig& c, int32_t layer) const {
  return RowsView(values[static_cast<size_t>(layer)], c);
}

DecoderModel::DecoderModel(const ModelWeights* weights, int threads, MatMulImpl matmul)
    : weights_(weights),
      threads_(std::max(1, threads)),
      matmul_(matmul),
      rope_global_(weights->config),
      rope_local_(weights->config.head_dim, weights->config.rope_theta_local, {}, 1.0f),
      backend_q_scale_(weights->config.AttentionScale() *
                       std::sqrt(static_cast<float>(weights->config.head_dim))) {}

void DecoderModel::PrepareQk(const LayerWeights& lw, bool local, int64_t first, int64_t rows,
                             float* q, float* k) const {
  const ModelConfig& c = weights_->config;
  const RopeTable& rope = local ? rope_local_ : rope_global_;
  const int64_t q_dim = c.QDim(), kv_dim = c.KvDim();
  for (int64_t i = 0; i < rows; ++i) {
    float* qi = q + i * q_dim;
    float* ki = k + i * kv_dim;
    if (c.qk_norm) {
      for (int32_t h = 0; h < c.n_heads; ++h) {
        float* v = qi + int64_t{h} * c.head_dim;
        RmsNorm(v, lw.q_norm.data(), c.head_dim, c.norm_eps, v);
      }
      for (int32_t h = 0; h < c.n_kv_heads; ++h) {
        float* v = ki + int64_t{h} * c.head_dim;
        RmsNorm(v, lw.k_norm.data(), c.head_dim, c.norm_eps, v);
      }
    }
    rope.Apply(qi, c.n_heads, first + i, weights_->rope_style);
    rope.Apply(ki, c.n_kv_heads, first + i, weights_->rope_style);
    if (backend_q_scale_ != 1.0f) Scale(qi, q_dim, backend_q_scale_);
  }
}

void DecoderModel::ProjectQkv(const LayerWeights& lw, bool local, int64_t first, int64_t rows,
                              const float* x, float* h, float* q, float* k, float* v) const {
  const ModelConfig& c = weights_->config;
  const int64_t dim = c.dim;
  for (int64_t i = 0; i < rows; ++i) {
    RmsNorm(x + i * dim, lw.attn_norm.data(), dim, c.norm_eps, h + i * dim);
  }
  MatMul(h, rows, lw.wq.data(), c.QDim(), dim, q, threads_, matmul_);
  MatMul(h, rows, lw.wk.data(), c.KvDim(), dim, k, threads_, matmul_);
  MatMul(h, rows, lw.wv.data(), c.KvDim(), dim, v, threads_, matmul_);
  PrepareQk(lw, local, first, rows, q, k);
}

void DecoderModel::PredictQuery(int32_t layer, int64_t pos, const float* x, float* q) const {
  const ModelConfig& c = weights_->config;
  const LayerWeights& lw = weights_->layers[static_cast<size_t>(layer)];
  std::vector<float> h(static_cast<size_t>(c.dim));
  std::vector<float> k(static_cast<size_t>(c.KvDim()), 0.0f);  // PrepareQk's; discarded
  RmsNorm(x, lw.attn_norm.data(), c.dim, c.norm_eps, h.data());
  MatMul(h.data(), 1, lw.wq.data(), c.QDim(), c.dim, q, threads_, matmul_);
  PrepareQk(lw, c.IsLocalLayer(layer), pos, 1, q, k.data());
}

void DecoderModel::AddAttentionOutput(const LayerWeights& lw, int64_t rows, const float* attn,
                                      float* x, float* proj) const {
  const ModelConfig& c = weights_->config;
  const int64_t dim = c.dim;
  MatMul(attn, rows, lw.wo.data(), dim, c.QDim(), proj, threads_, matmul_);
  if (c.post_norms) {
    for (int64_t i = 0; i < rows; ++i) {
      RmsNorm(proj + i * dim, lw.post_attn_norm.data(), dim, c.norm_eps, proj + i * dim);
    }
  }
  AddInto(x, proj, rows * dim);
}

void DecoderModel::AddMlp(const LayerWeights& lw, int64_t rows, float* x, float* h, float* gate,
                          float* up, float* proj) const {
  const ModelConfig& c = weights_->config;
  const int64_t dim = c.dim, ffn = c.ffn_dim;
  for (int64_t i = 0; i < rows; ++i) {
    RmsNorm(x + i * dim, lw.ffn_norm.data(), dim, c.norm_eps, h + i * dim);
  }
  MatMul(h, rows, lw.w_gate.data(), ffn, dim, gate, threads_, matmul_);
  MatMul(h, rows, lw.w_up.data(), ffn, dim, up, threads_, matmul_);
  GatedActivation(c.activation, gate, up, rows * ffn, gate);
  MatMul(gate, rows, lw.w_down.data(), dim, ffn, proj, threads_, matmul_);
  if (c.post_norms) {
    for (int64_t i = 0; i < rows; ++i) {
      RmsNorm(proj + i * dim, lw.post_ffn_norm.data(), dim, c.norm_eps, proj + i * dim);
    }
  }
  AddInto(x, proj, rows * dim);
}

void DecoderModel::Logits(const float* x, int64_t rows, float* logits) const {
  const ModelConfig& c = weights_->config;
  std::vector<float> normed(static_cast<size_t>(rows * c.dim));
  for (int64_t i = 0; i < rows; ++i) {
    RmsNorm(x + i * c.dim, weights_->final_norm.data(), c.dim, c.norm_eps, &normed[i * c.dim]);
  }
  MatMul(normed.data(), rows, weights_->Output().data(), c.vocab, c.dim, logits, threads_, matmul_);
  if (c.final_logit_softcap > 0.0f) SoftCap(logits, rows * c.vocab, c.final_logit_softcap);
}

absl::StatusOr<PrefillResult> DecoderModel::Prefill(absl::Span<const int32_t> tokens,
                                                    const ForwardProgress& progress,
                                                    const PositionLogits& all_logits,
                                                    const PrefillResult* prefix,
                                                    int64_t window_snapshot) const {
  const ModelConfig& c = weights_->config;
  const ModelWeights& w = *weights_;
  const int64_t base = prefix != nullptr ? prefix->tokens : 0;
  const int64_t total = base + static_cast<int64_t>(tokens.size());
  if (total == base) return absl::InvalidArgumentError("prefill: empty prompt");
  if (total > c.max_context) {
    return absl::InvalidArgumentError(absl::StrCat("prefill: the prompt's ", total,
                                                   " tokens exceed the model's context of ",
                                                   c.max_context, " tokens"));
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
  if (prefix != nullptr) {
    // The prefix's rows at their positions: every row of a global layer, the last window of a
    // local one (all its next queries can see).
    if (prefix->keys.size() != r.keys.size() || prefix->values.size() != r.keys.size()) {
      return absl::InvalidArgumentError("prefill: the prefix has the wrong number of layers");
    }
    for (int32_t l = 0; l < c.n_layers; ++l) {
      const size_t i = static_cast<size_t>(l);
      const int64_t rows = c.IsLocalLayer(l) ? std::min<int64_t>(base, c.sliding_window) : base;
      if (static_cast<int64_t>(prefix->keys[i].size()) != rows * kv_dim ||
          prefix->values[i].size() != prefix->keys[i].size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "prefill: the prefix's layer ", l, " must hold ", rows, " rows of ", kv_dim));
      }
      std::copy(prefix->keys[i].begin(), prefix->keys[i].end(),
                r.keys[i].begin() + (base - rows) * kv_dim);
      std::copy(prefix->values[i].begin(), prefix->values[i].end(),
                r.values[i].begin() + (base - rows) * kv_dim);
    }
  }
  const int64_t chunk_max = std::min(kChunk, total - base);
  std::vector<float> x(static_cast<size_t>(chunk_max * dim)), h(x.size()), proj(x.size());
  std::vector<float> q(static_cast<size_t>(chunk_max * q_dim)), attn(q.size());
  std::vector<float> gate(static_cast<size_t>(chunk_max * ffn)), up(gate.size());
  std::vector<float> logits;
  if (all_logits) {
    logits.resize(static_cast<size_t>(std::min(kLogitRows, total - base) * c.vocab));
  }
  int64_t n = 0;
  for (int64_t t0 = base; t0 < total; t0 += n) {
    n = std::min(kChunk, total - t0);
    for (int64_t i = 0; i < n; ++i) {
      const float* e =
          &w.embed[static_cast<size_t>(int64_t{tokens[static_cast<size_t>(t0 - base + i)]} *
                                       dim)];
      float* xi = &x[static_cast<size_t>(i * dim)];
      for (int64_t d = 0; d < dim; ++d) xi[d] = e[d] * c.embed_scale;
    }
    for (int32_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      const bool local = c.IsLocalLayer(l);
      float* keys = &r.keys[static_cast<size_t>(l)][static_cast<size_t>(t0 * kv_dim)];
      float* values = &r.values[static_cast<size_t>(l)][static_cast<size_t>(t0 * kv_dim)];
      ProjectQkv(lw, local, t0, n, x.data(), h.data(), q.data(), keys, values);
      CausalAttentionParams params;
      params.window = local ? c.sliding_window : 0;
      params.matmul = matmul_;
      CausalAttention(c, q.data(), t0, n, r.keys[static_cast<size_t>(l)].data(),
                      r.values[static_cast<size_t>(l)].data(), attn.data(), threads_, params);
      AddAttentionOutput(lw, n, attn.data(), x.data(), proj.data());
      AddMlp(lw, n, x.data(), h.data(), gate.data(), up.data(), proj.data());
    }
    if (all_logits) {
      for (int64_t i0 = 0; i0 < n; i0 += kLogitRows) {
        const int64_t rows = std::min(kLogitRows, n - i0);
        Logits(&x[static_cast<size_t>(i0 * dim)], rows, logits.data());
        for (int64_t i = 0; i < rows; ++i) {
          all_logits(t0 + i0 + i, &logits[static_cast<size_t>(i * c.vocab)]);
        }
      }
    }
    if (progress) progress(t0 + n - base, total - base);
  }
  // x holds the last chunk; its last row is the last prompt token.
  r.last_logits.resize(static_cast<size_t>(c.vocab));
  Logits(&x[static_cast<size_t>((n - 1) * dim)], 1, r.last_logits.data());
  if (window_snapshot > base && window_snapshot <= total) {
    r.snapshot_keys.resize(static_cast<size_t>(c.n_layers));
    r.snapshot_values.resize(r.snapshot_keys.size());
    const int64_t from = std::max<int64_t>(0, window_snapshot - c.sliding_window);
    for (int32_t l = 0; l < c.n_layers; ++l) {
      if (!c.IsLocalLayer(l)) continue;
      const size_t i = static_cast<size_t>(l);
      r.snapshot_keys[i].assign(r.keys[i].begin() + from * kv_dim,
                                r.keys[i].begin() + window_snapshot * kv_dim);
      r.snapshot_values[i].assign(r.values[i].begin() + from * kv_dim,
                                  r.values[i].begin() + window_snapshot * kv_dim);
    }
  }
  // Local layers keep only the window their next query can see.
  for (int32_t l = 0; l < c.n_layers; ++l) {
    if (!c.IsLocalLayer(l)) continue;
    const int64_t keep = std::min<int64_t>(total, c.sliding_window) * kv_dim;
    for (std::vector<float>* v :
         {&r.keys[static_cast<size_t>(l)], &r.values[static_cast<size_t>(l)]}) {
      v->erase(v->begin(), v->end() - keep);
      v->shrink_to_fit();
    }
  }
  return r;
}

absl::Status DecoderModel::DecodeStep(int32_t token, int64_t pos, AttentionBackend& backend,
                                      float* logits, DecodeTiming* timing,
                                      AttentionStepStats* attention_stats) const {
  const auto start = SteadyClock::now();
  const ModelConfig& c = weights_->config;
  const ModelWeights& w = *weights_;
  if (token < 0 || token >= c.vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: token ", token, " outside [0, ", c.vocab, ")"));
  }
  const int64_t dim = c.dim, q_dim = c.QDim(), kv_dim = c.KvDim(), ffn = c.ffn_dim;
  std::vector<float> x(w.embed.begin() + int64_t{token} * dim,
                       w.embed.begin() + (int64_t{token} + 1) * dim);
  if (c.embed_scale != 1.0f) Scale(x.data(), dim, c.embed_scale);
  std::vector<float> h(static_cast<size_t>(dim)), proj(h.size());
  std::vector<float> q(static_cast<size_t>(q_dim)), attn(q.size());
  std::vector<float> k(static_cast<size_t>(kv_dim)), v(k.size());
  std::vector<float> gate(static_cast<size_t>(ffn)), up(gate.size());
  std::vector<float> q_guess(speculative_prefetch_ ? q.size() : 0);
  int64_t attention_us = 0, hook_us = 0;
  AttentionStepStats total_stats;
  backend.BeginStep();
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    if (residual_hook_) {
      const auto t_hook = SteadyClock::now();
      residual_hook_(l, pos, x.data());
      hook_us += MicrosSince(t_hook);
    }
    if (speculative_prefetch_ && l + 1 < c.n_layers && backend.WantsPrefetch(l + 1)) {
      PredictQuery(l + 1, pos, x.data(), q_guess.data());
      RETURN_IF_ERROR(backend.Prefetch(l + 1, q_guess.data()));
    }
    ProjectQkv(lw, c.IsLocalLayer(l), pos, 1, x.data(), h.data(), q.data(), k.data(), v.data());
    const auto t_attn = SteadyClock::now();
    AttentionStepStats s;
    RETURN_IF_ERROR(backend.AppendAndAttend(l, q.data(), k.data(), v.data(), attn.data(), &s));
    attention_us += MicrosSince(t_attn) - s.excluded_us;
    total_stats.Add(s);
    if (query_hook_) {
      const auto t_hook = SteadyClock::now();
      query_hook_(l, q.data());
      hook_us += MicrosSince(t_hook);
    }
    AddAttentionOutput(lw, 1, attn.data(), x.data(), proj.data());
    AddMlp(lw, 1, x.data(), h.data(), gate.data(), up.data(), proj.data());
  }
  Logits(x.data(), 1, logits);
  if (timing != nullptr) {
    timing->total_us = MicrosSince(start) - hook_us - total_stats.excluded_us;
    timing->attention_us = attention_us;
    timing->dense_us = timing->total_us - attention_us;
  }
  if (attention_stats != nullptr) *attention_stats = total_stats;
  return absl::OkStatus();
}

absl::Status DecoderModel::DecodeBatchStep(absl::Span<const int32_t> tokens, int64_t pos,
                                           const BatchAttention& attention,
                                           float* logits) const {
  const ModelConfig& c = weights_->config;
  const ModelWeights& w = *weights_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("decode: empty batch");
  const int64_t dim = c.dim, q_dim = c.QDim(), kv_dim = c.KvDim(), ffn = c.ffn_dim;
  std::vector<float> x(static_cast<size_t>(n * dim));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens[static_cast<size_t>(i)];
    if (t < 0 || t >= c.vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("decode: token ", t, " outside [0, ", c.vocab, ")"));
    }
    std::copy_n(w.embed.begin() + int64_t{t} * dim, dim, x.begin() + i * dim);
  }
  if (c.embed_scale != 1.0f) Scale(x.data(), n * dim, c.embed_scale);
  std::vector<float> h(x.size()), proj(x.size());
  std::vector<float> q(static_cast<size_t>(n * q_dim)), attn(q.size());
  std::vector<float> k(static_cast<size_t>(n * kv_dim)), v(k.size());
  std::vector<float> gate(static_cast<size_t>(n * ffn)), up(gate.size());
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const bool local = c.IsLocalLayer(l);
    // ProjectQkv for n rows at one position: the products over the batch, then each row's
    // QK-norm and RoPE at `pos`.
    for (int64_t i = 0; i < n; ++i) {
      RmsNorm(&x[i * dim], lw.attn_norm.data(), dim, c.norm_eps, &h[i * dim]);
    }
    MatMul(h.data(), n, lw.wq.data(), q_dim, dim, q.data(), threads_, matmul_);
    MatMul(h.data(), n, lw.wk.data(), kv_dim, dim, k.data(), threads_, matmul_);
    MatMul(h.data(), n, lw.wv.data(), kv_dim, dim, v.data(), threads_, matmul_);
    for (int64_t i = 0; i < n; ++i) PrepareQk(lw, local, pos, 1, &q[i * q_dim], &k[i * kv_dim]);
    RETURN_IF_ERROR(attention(l, q.data(), k.data(), v.data(), attn.data(),
                              static_cast<int32_t>(n)));
    AddAttentionOutput(lw, n, attn.data(), x.data(), proj.data());
    AddMlp(lw, n, x.data(), h.data(), gate.data(), up.data(), proj.data());
  }
  Logits(x.data(), n, logits);
  return absl::OkStatus();
}

absl::Status DecoderModel::DecodeChunk(absl::Span<const int32_t> tokens, int64_t pos,
                                       AttentionBackend& backend, const PositionLogits& logits,
                                       AttentionStepStats* stats) const {
  const ModelConfig& c = weights_->config;
  const ModelWeights& w = *weights_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("decode: empty chunk");
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("decode: token ", t, " outside [0, ", c.vocab, ")"));
    }
  }
  const int64_t dim = c.dim, q_dim = c.QDim(), kv_dim = c.KvDim(), ffn = c.ffn_dim;
  std::vector<float> x(static_cast<size_t>(n * dim)), h(x.size()), proj(x.size());
  std::vector<float> q(static_cast<size_t>(n * q_dim)), attn(q.size());
  std::vector<float> k(static_cast<size_t>(n * kv_dim)), v(k.size());
  std::vector<float> gate(static_cast<size_t>(n * ffn)), up(gate.size());
  for (int64_t i = 0; i < n; ++i) {
    const float* e = &w.embed[static_cast<size_t>(int64_t{tokens[static_cast<size_t>(i)]} * dim)];
    for (int64_t d = 0; d < dim; ++d) x[static_cast<size_t>(i * dim + d)] = e[d] * c.embed_scale;
  }
  AttentionStepStats total;
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    ProjectQkv(lw, c.IsLocalLayer(l), pos, n, x.data(), h.data(), q.data(), k.data(), v.data());
    for (int64_t i = 0; i < n; ++i) {
      AttentionStepStats s;
      RETURN_IF_ERROR(backend.AppendAndAttend(
          l, &q[static_cast<size_t>(i * q_dim)], &k[static_cast<size_t>(i * kv_dim)],
          &v[static_cast<size_t>(i * kv_dim)], &attn[static_cast<size_t>(i * q_dim)], &s));
      total.Add(s);
      if (query_hook_) query_hook_(l, &q[static_cast<size_t>(i * q_dim)]);
    }
    AddAttentionOutput(lw, n, attn.data(), x.data(), proj.data());
    AddMlp(lw, n, x.data(), h.data(), gate.data(), up.data(), proj.data());
  }
  std::vector<float> rows(static_cast<size_t>(std::min(kLogitRows, n) * c.vocab));
  for (int64_t i0 = 0; i0 < n; i0 += kLogitRows) {
    const int64_t r = std::min(kLogitRows, n - i0);
    Logits(&x[static_cast<size_t>(i0 * dim)], r, rows.data());
    if (logits) {
      for (int64_t i = 0; i < r; ++i) logits(pos + i0 + i, &rows[static_cast<size_t>(i * c.vocab)]);
    }
  }
  if (stats != nullptr) *stats = total;
  return absl::OkStatus();
}

absl::Status LoadPrefillInto(const ModelConfig& config, const PrefillResult& prefill,
                             AttentionBackend& backend,
                             const std::function<void(int32_t, double)>& per_layer) {
  for (int32_t l = 0; l < config.n_layers; ++l) {
    const auto t0 = SteadyClock::now();
    RETURN_IF_ERROR(
        backend.LoadPrefill(l, prefill.KeyView(config, l), prefill.ValueView(config, l)));
    if (per_layer) {
      per_layer(l, std::chrono::duration<double>(SteadyClock::now() - t0).count());
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
