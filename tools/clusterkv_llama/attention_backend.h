// AttentionBackend: where the decode step's attention happens, so that one forward pass
// (forward.h) can run over full attention (full_attention.h, the reference) or over
// libclusterkv (clusterkv_attention.h) in the same process. The prefill is always dense; a
// backend receives its K/V once per layer, then one AppendAndAttend per (step, layer).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_BACKEND_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_BACKEND_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/tensor_view.h"

namespace clusterkv::llama {

// What one AppendAndAttend did. Times in microseconds. The ClusterKV fields mirror
// client::StepStats (zero for full attention).
struct AttentionStepStats {
  int64_t total_us = 0;   // the whole call
  int64_t append_us = 0;  // taking the new token's K/V (ClusterKV: AppendToken)
  int64_t score_us = 0;
  int64_t select_us = 0;
  int64_t fetch_us = 0;
  int64_t attend_us = 0;
  int64_t bytes_fetched = 0;
  int64_t hit_tokens = 0;
  int64_t miss_tokens = 0;
  int64_t attended_tokens = 0;  // summed over kv heads
  // ClusterKV: tokens taken from clusters and the heads that took them (their ratio is the mean
  // per-head budget), and the estimated recall summed over those heads.
  int64_t selected_tokens = 0;
  int64_t selected_heads = 0;
  double estimated_recall_sum = 0.0;
  // Speculative recall (Prefetch): tokens the layer's prefetch fetched, tokens of the layer's
  // selection it had brought in, and the time the attend waited for it.
  int64_t prefetched_tokens = 0;
  int64_t prefetch_used_tokens = 0;
  int64_t prefetch_wait_us = 0;
  // Work the call did that a step's timing must leave out (the compute-only bound's warm-up
  // of the device cache, ClusterKvBackend::set_resident_bound).
  int64_t excluded_us = 0;

  void Add(const AttentionStepStats& o);
};

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual std::string Name() const = 0;

  // The prompt's keys (after RoPE) and values of `layer`: [n_kv_heads, tokens, head_dim] fp32
  // views. Called once per layer before any decode step. Errors are the backend's.
  [[nodiscard]] virtual absl::Status LoadPrefill(int32_t layer, const Tensor3View& keys,
                                                 const Tensor3View& values) = 0;
  // A new decode step begins (every layer is then called once).
  virtual void BeginStep() {}
  // Appends the new token's k and v ([n_kv_heads, head_dim] fp32) to `layer`, then attends
  // q ([n_heads, head_dim] fp32) over every token of the layer including the new one, writing
  // out [n_heads, head_dim]. `stats` may be null.
  [[nodiscard]] virtual absl::Status AppendAndAttend(int32_t layer, const float* q, const float* k,
                                                     const float* v, float* out,
                                                     AttentionStepStats* stats) = 0;
  // Whether `layer`'s attention recalls K/V from a store, so that a Prefetch of it can start
  // that recall early. False by default (every token is local).
  virtual bool WantsPrefetch(int32_t /*layer*/) const { return false; }
  // Starts recalling what `layer`'s next AppendAndAttend will need, for a predicted query
  // q_guess [n_heads, head_dim] (DecoderModel::PredictQuery); returns without waiting for the
  // recall. No-op by default.
  [[nodiscard]] virtual absl::Status Prefetch(int32_t /*layer*/, const float* /*q_guess*/) {
    return absl::OkStatus();
  }
};

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_BACKEND_H_
