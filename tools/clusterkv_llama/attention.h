// Causal grouped-query attention of the prefill on the CPU (fp32). Query head h reads kv head
// h / (n_heads / n_kv_heads); scores are scaled by 1/sqrt(head_dim), the softmax is exact
// (max-subtracted) and each query sees the keys at its own position and before.
// Thread-safe; `threads` splits the work over (kv head, query block) tasks.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_H_

#include <cstdint>

#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

// Queries of the `chunk` tokens at positions [first, first + chunk): q is [chunk, n_heads *
// head_dim]. keys/values hold the tokens [0, first + chunk) as [tokens, n_kv_heads * head_dim]
// rows (after RoPE for keys). out is [chunk, n_heads * head_dim].
void CausalAttention(const LlamaConfig& config, const float* q, int64_t first, int64_t chunk,
                     const float* keys, const float* values, float* out, int threads);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_H_
