// DecoderModel: the forward pass of a Llama or Gemma 3 decoder (model_config.h) on the CPU in
// fp32 over ModelWeights.
//
//   x = embed[token] * embed_scale
//   per layer:  h = RMSNorm(x) * attn_norm;  q, k, v = Wq h, Wk h, Wv h
//               [QK-norm: q, k = RMSNorm per head * q_norm / k_norm]
//               RoPE(q, k, pos) with the layer's base (local layers: rope_theta_local)
//               a = Attention(q, K, V)   (GQA, causal; local layers: the last `window` tokens)
//               x += [RMSNorm(.) * post_attn_norm] (Wo a)
//               h = RMSNorm(x) * ffn_norm;  x += [RMSNorm(.) * post_ffn_norm] (Wdown (act(Wgate h)
//               * Wup h))
//   logits = Output (RMSNorm(x) * final_norm)  [soft-capped]
//
// Prefill runs the whole prompt densely (chunks of tokens, blocked causal attention over the
// keys so far) and returns every global layer's K (after RoPE) and V, the last window of every
// local layer, and the last token's logits (optionally every position's); each decode step then
// runs one token with its attention delegated to an AttentionBackend. The query handed to a
// backend is pre-multiplied by AttentionScale() * sqrt(head_dim), so a backend that scales q.k
// by 1/sqrt(head_dim) (full_attention.h, libclusterkv) computes the model's own scores. Matrix
// products use `threads` (ops.h). The model does not own the weights; they must outlive it.
// Const methods are thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FORWARD_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FORWARD_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor_view.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/ops.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct PrefillResult {
  int64_t tokens = 0;
  std::vector<float> last_logits;  // [vocab]
  // Per model layer, [rows, n_kv_heads * head_dim]: every token's row for global layers; the
  // last min(tokens, sliding_window) tokens' rows for local layers.
  std::vector<std::vector<float>> keys;
  std::vector<std::vector<float>> values;

  // With Prefill's `window_snapshot` = p: every local layer's window ending at position p
  // (its rows [max(0, p - sliding_window), p)), as a prefill of the first p tokens would keep
  // it; empty for global layers. What a document of the prompt's first p tokens stores.
  std::vector<std::vector<float>> snapshot_keys;
  std::vector<std::vector<float>> snapshot_values;

  // Layer `layer`'s keys/values as the [n_kv_heads, rows, head_dim] views backends take.
  Tensor3View KeyView(const ModelConfig& config, int32_t layer) const;
  Tensor3View ValueView(const ModelConfig& config, int32_t layer) const;
};

// Where a decode step's time went, in microseconds.
struct DecodeTiming {
  int64_t total_us = 0;
  int64_t attention_us = 0;  // inside AttentionBackend::AppendAndAttend
  int64_t dense_us = 0;      // everything else: embeddings, norms, projections, RoPE, MLP, logits
};

// Called after each prefill chunk: (tokens done, tokens total).
using ForwardProgress = std::function<void(int64_t done, int64_t total)>;
// Called with the logits [vocab] of prompt position `pos` (in order).
using PositionLogits = std::function<void(int64_t pos, const float* logits)>;

class DecoderModel {
 public:
  // `matmul` forces one matrix-product implementation (ops.h); kAuto is the engine's choice.
  DecoderModel(const ModelWeights* weights, int threads, MatMulImpl matmul = MatMulImpl::kAuto);

  const ModelConfig& config() const { return weights_->config; }

  // InvalidArgument: empty prompt, a token outside [0, vocab), or more tokens than
  // max_context. With `all_logits`, it is called for every prompt position (the vocabulary
  // projection then runs for every token, not only the last).
  // With `prefix` (a prompt's keys and values as Prefill returns them: every row of a global
  // layer, the last window of a local one), `tokens` continue that prompt from position
  // prefix->tokens: the result is the whole prompt's (rows of local layers before the prefix's
  // window are zero, and dropped as usual), exactly what one Prefill of both would compute up
  // to the chunking of the matrix products. InvalidArgument: a prefix of the wrong shape.
  // `window_snapshot` > 0 also fills PrefillResult::snapshot_keys / snapshot_values.
  [[nodiscard]] absl::StatusOr<PrefillResult> Prefill(
      absl::Span<const int32_t> tokens, const ForwardProgress& progress = nullptr,
      const PositionLogits& all_logits = nullptr, const PrefillResult* prefix = nullptr,
      int64_t window_snapshot = 0) const;

  // Runs `token` at position `pos` (the number of tokens before it) through the model with
  // attention in `backend` (which must serve every model layer: see LocalWindowBackend in
  // local_window.h for models with local layers); writes logits [vocab]. InvalidArgument: bad
  // token; otherwise the backend's status. `timing` may be null.
  [[nodiscard]] absl::Status DecodeStep(int32_t token, int64_t pos, AttentionBackend& backend,
                                        float* logits, DecodeTiming* timing,
                                        AttentionStepStats* attention_stats) const;

  // Runs `tokens` at positions pos, pos + 1, ... as consecutive decode steps through `backend`
  // (each token appended, then attending over every token before it and itself) and calls
  // `logits` for each position in order. The dense parts run for the whole chunk at once, layer
  // by layer, and each layer's tokens go through the backend in order: every layer sees the
  // same sequence of AppendAndAttend calls as with one DecodeStep per token, so the results are
  // those of DecodeStep (a backend's step counter advances per call, per layer). For teacher
  // forcing, where the inputs are known in advance. `stats` (may be null) sums the backend's.
  // InvalidArgument: empty chunk or a bad token; otherwise the backend's status.
  [[nodiscard]] absl::Status DecodeChunk(absl::Span<const int32_t> tokens, int64_t pos,
                                         AttentionBackend& backend, const PositionLogits& logits,
                                         AttentionStepStats* stats) const;

  // The attention of one layer for a batch of sequences at position `pos`: rows i of q
  // [n, q_dim], k and v [n, kv_dim] belong to sequence i, whose new token's k and v are to be
  // appended before it attends; writes out [n, q_dim].
  using BatchAttention = std::function<absl::Status(int32_t layer, const float* q,
                                                    const float* k, const float* v, float* out,
                                                    int32_t n)>;
  // One decode step of a batch of sequences that all stand at position `pos`: tokens[i] is
  // sequence i's input token; logits [n, vocab]. The dense parts run for the whole batch at
  // once (one matrix product of n rows per weight); `attention` serves each layer for all of
  // them. InvalidArgument: empty batch or a bad token; otherwise `attention`'s status.
  [[nodiscard]] absl::Status DecodeBatchStep(absl::Span<const int32_t> tokens, int64_t pos,
                                             const BatchAttention& attention,
                                             float* logits) const;

  // Optional hook for diagnostics: called per layer of a decode step (DecodeStep, and each
  // token of DecodeChunk) with the query handed to the backend [n_heads, head_dim] after the
  // backend has attended.
  using QueryHook = std::function<void(int32_t layer, const float* q)>;
  void set_query_hook(QueryHook hook) { query_hook_ = std::move(hook); }
  // Optional hook of DecodeStep: called per layer with the residual stream x [dim] entering
  // the layer, before its attention (for speculating on later layers' queries).
  using ResidualHook = std::function<void(int32_t layer, int64_t pos, const float* x)>;
  void set_residual_hook(ResidualHook hook) { residual_hook_ = std::move(hook); }

  // Speculative recall in DecodeStep: when on, before each layer's attention the step predicts
  // the next layer's query from this layer's input (PredictQuery) and hands it to the backend's
  // Prefetch, for every next layer the backend WantsPrefetch; the recall then overlaps this
  // layer's attention and MLP. Timed as part of the step. Off by default.
  void set_speculative_prefetch(bool on) { speculative_prefetch_ = on; }

  // The query [n_heads, head_dim] that `layer` would compute at `pos` from the residual stream
  // `x` [dim]: its attention norm, Wq, QK-norm, RoPE and backend scale, as in DecodeStep. Given
  // an earlier layer's x it is a speculation on `layer`'s real query (InfiniGen's).
  void PredictQuery(int32_t layer, int64_t pos, const float* x, float* q) const;

 private:
  // The attention inputs of `rows` tokens at positions first.. of layer `lw`: h = the
  // attention-normed x [rows, dim]; q [rows, q_dim], k, v [rows, kv_dim] projected, then
  // QK-norm, RoPE of the layer's kind and the backend query scale (PrepareQk).
  void ProjectQkv(const LayerWeights& lw, bool local, int64_t first, int64_t rows, const float* x,
                  float* h, float* q, float* k, float* v) const;
  // Per-head RMSNorm (QK-norm), RoPE of the layer's kind and the backend query scale, applied
  // to `rows` tokens of q [rows, q_dim] and k [rows, kv_dim] at positions first..first+rows-1.
  void PrepareQk(const LayerWeights& lw, bool local, int64_t first, int64_t rows, float* q,
                 float* k) const;
  // x [rows, dim] += the attention output block: Wo attn, post-norm when the model has one.
  void AddAttentionOutput(const LayerWeights& lw, int64_t rows, const float* attn, float* x,
                          float* proj) const;
  // x [rows, dim] += the MLP block of layer `lw` (pre-norm, gate/up, activation, down,
  // post-norm); scratch buffers sized for `rows`.
  void AddMlp(const LayerWeights& lw, int64_t rows, float* x, float* h, float* gate, float* up,
              float* proj) const;
  // Final norm and vocabulary projection of `rows` hidden states into logits [rows, vocab].
  void Logits(const float* x, int64_t rows, float* logits) const;

  const ModelWeights* weights_;
  int threads_;
  MatMulImpl matmul_;
  RopeTable rope_global_;
  RopeTable rope_local_;
  float backend_q_scale_;  // AttentionScale() * sqrt(head_dim)
  QueryHook query_hook_;
  ResidualHook residual_hook_;
  bool speculative_prefetch_ = false;
};

// Loads every layer of `prefill` into `backend` (LoadPrefill per model layer, in order).
// `per_layer`, when set, is called after each layer with (layer, seconds). The backend's
// errors.
absl::Status LoadPrefillInto(const ModelConfig& config, const PrefillResult& prefill,
                             AttentionBackend& backend,
                             const std::function<void(int32_t, double)>& per_layer = nullptr);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FORWARD_H_
