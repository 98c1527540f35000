// FullAttentionBackend: the reference. Every token's K/V of every global layer (layer i is the
// model's GlobalLayers()[i]; local layers are LocalWindowBackend's) is kept locally in the KV
// dtype (fp16 by default, like an engine's KV cache) and each decode step attends over all
// of them with gpu::AttentionBatch, the same attention kernel libclusterkv's sparse path uses,
// so differences between the backends come from which tokens are attended, not from the
// arithmetic. It also measures how concentrated full attention is (TopMass), which bounds what
// any budgeted selection can recover. Not thread-safe; one decode loop drives it.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FULL_ATTENTION_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FULL_ATTENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/kv_layout.h"
#include "core/token_range.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

class FullAttentionBackend : public AttentionBackend {
 public:
  // Room for `capacity` tokens per global layer (prompt + decode steps).
  FullAttentionBackend(const ModelConfig& config, DType kv_dtype, int64_t capacity,
                       gpu::ExecContext exec);

  std::string Name() const override { return "full_attention"; }
  // InvalidArgument: bad layer, shape, or more tokens than the capacity; FailedPrecondition
  // when the layer already holds tokens.
  absl::Status LoadPrefill(int32_t layer, const Tensor3View& keys,
                           const Tensor3View& values) override;
  // InvalidArgument: bad layer or the capacity is full.
  absl::Status AppendAndAttend(int32_t layer, const float* q, const float* k, const float* v,
                               float* out, AttentionStepStats* stats) override;

  // Oracle concentration of the attention of q ([n_heads, head_dim]) over the tokens `layer`
  // holds: for each budget B, the softmax mass of the B highest-weighted tokens, averaged over
  // query heads, added to mass[i]. InvalidArgument: bad layer or no tokens.
  absl::Status TopMass(int32_t layer, const float* q, absl::Span<const int64_t> budgets,
                       absl::Span<double> mass) const;

  int64_t num_tokens(int32_t layer) const { return layers_[static_cast<size_t>(layer)].tokens; }

  // The two halves of AppendAndAttend, for backends that attend over a subset of the tokens
  // (baseline_attention.h). Append: InvalidArgument for a bad layer or a full cache.
  absl::Status Append(int32_t layer, const float* k, const float* v);
  // Attends q [n_heads, head_dim] over `ranges[h]` (token ranges of kv head h, each within the
  // layer's tokens) into out [n_heads, head_dim], with the kernel AppendAndAttend uses. `ranges`
  // holds one list per kv head. InvalidArgument on a bad layer, list count or range.
  absl::Status AttendRanges(int32_t layer, const float* q,
                            const std::vector<std::vector<TokenRange>>& ranges, float* out) const;
  // Keys of (layer, kv head) so far: [tokens, head_dim] in the KV dtype.
  ConstMatrixView Keys(int32_t layer, int32_t head) const;

 private:
  struct Layer {
    std::vector<uint8_t> keys;  // [n_kv][capacity][hd] in kv_dtype
    std::vector<uint8_t> values;
    int64_t tokens = 0;
  };
  uint8_t* Row(std::vector<uint8_t>& buf, int32_t head, int64_t token);
  const uint8_t* Row(const std::vector<uint8_t>& buf, int32_t head, int64_t token) const;

  ModelConfig config_;
  DType kv_dtype_;
  int64_t capacity_;
  gpu::ExecContext exec_;
  std::vector<Layer> layers_;
};

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_FULL_ATTENTION_H_
