// Causal grouped-query attention of the prefill on the CPU (fp32), blocked the way flash
// attention is: per (kv head, block of query tokens) the keys are visited in blocks, scores of
// one block at a time are turned into probabilities with an online (running max) softmax and
// accumulated into the output, so memory stays O(block x block) whatever the context: a 32k
// prompt never materialises a 32k x 32k score matrix. Query head h reads kv head
// h / (n_heads / n_kv_heads). Each query sees the keys at its own position and before; with a
// window W > 0 only the last W of them (positions p - W + 1 .. p), as Gemma 3's local layers do.
// Thread-safe; `threads` splits the work over (kv head, query block) tasks.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_H_

#include <cstdint>

#include "tools/clusterkv_llama/model_config.h"
#include "tools/clusterkv_llama/ops.h"

namespace clusterkv::llama {

struct CausalAttentionParams {
  float scale = 0.0f;  // of q.k; 0 means 1/sqrt(head_dim)
  int64_t window = 0;  // 0 = every earlier token
  // The block products: OpenBLAS sgemm (kAuto, kBlas; run single-threaded inside each task)
  // or the own kernel (kOwn).
  MatMulImpl matmul = MatMulImpl::kAuto;
};

// Queries of the `chunk` tokens at positions [first, first + chunk): q is [chunk, n_heads *
// head_dim]. keys/values hold the tokens [0, first + chunk) as [tokens, n_kv_heads * head_dim]
// rows (after RoPE for keys). out is [chunk, n_heads * head_dim].
void CausalAttention(const ModelConfig& config, const float* q, int64_t first, int64_t chunk,
                     const float* keys, const float* values, float* out, int threads,
                     const CausalAttentionParams& params = {});

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_ATTENTION_H_
