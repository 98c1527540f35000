// LlamaModel: the Llama forward pass on the CPU in fp32 over LlamaWeights.
//
//   x = embed[token]
//   per layer:  h = RMSNorm(x) * attn_norm;  q, k, v = Wq h, Wk h, Wv h;  RoPE(q, k, pos)
//               x += Wo Attention(q, K, V)                       (GQA, causal)
//               h = RMSNorm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * Wup h)
//   logits = Output (RMSNorm(x) * final_norm)
//
// Prefill runs the whole prompt densely (chunks of tokens, causal attention over the keys so
// far) and returns every layer's K (after RoPE) and V plus the last token's logits; each decode
// step then runs one token with its attention delegated to an AttentionBackend. Matrix
// products use `threads` (core/parallel.h). The model does not own the weights; they must
// outlive it. Const methods are thread-safe.
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
  std::vector<float> last_logits;          // [vocab]
  std::vector<std::vector<float>> keys;    // per layer [tokens, n_kv_heads * head_dim]
  std::vector<std::vector<float>> values;  // per layer, same

  // Layer `layer`'s keys/values as the [n_kv_heads, tokens, head_dim] view backends take.
  Tensor3View KeyView(const LlamaConfig& config, int32_t layer) const;
  Tensor3View ValueView(const LlamaConfig& config, int32_t layer) const;
};

// Where a decode step's time went, in microseconds.
struct DecodeTiming {
  int64_t total_us = 0;
  int64_t attention_us = 0;  // inside AttentionBackend::AppendAndAttend
  int64_t dense_us = 0;      // everything else: embeddings, norms, projections, RoPE, MLP, logits
};

// Called after each prefill chunk: (tokens done, tokens total).
using ForwardProgress = std::function<void(int64_t done, int64_t total)>;

class LlamaModel {
 public:
  LlamaModel(const LlamaWeights* weights, int threads);

  const LlamaConfig& config() const { return weights_->config; }

  // InvalidArgument: empty prompt, a token outside [0, vocab), or more tokens than
  // max_context.
  [[nodiscard]] absl::StatusOr<PrefillResult> Prefill(
      absl::Span<const int32_t> tokens, const ForwardProgress& progress = nullptr) const;

  // Runs `token` at position `pos` (the number of tokens before it) through the model with
  // attention in `backend`; writes logits [vocab]. InvalidArgument: bad token; otherwise the
  // backend's status. `timing` may be null.
  [[nodiscard]] absl::Status DecodeStep(int32_t token, int64_t pos, AttentionBackend& backend,
                                        float* logits, DecodeTiming* timing,
                                        AttentionStepStats* attention_stats) const;

  // Optional hook for diagnostics: called per layer of a decode step with the rotated query
  // [n_heads, head_dim] after the backend has attended.
  using QueryHook = std::function<void(int32_t layer, const float* q)>;
  void set_query_hook(QueryHook hook) { query_hook_ = std::move(hook); }

 private:
  const LlamaWeights* weights_;
  int threads_;
  RopeTable rope_;
  QueryHook query_hook_;
};

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FORWARD_H_
