// LlamaConfig: the geometry and numerics of a Llama-architecture decoder (RMSNorm, RoPE, GQA
// attention, SwiGLU MLP), read from a Hugging Face config.json or from GGUF llama.* metadata
// (model_loader.h) and written back by the model writer. A plain value type.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_CONFIG_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/kv_layout.h"

namespace clusterkv::llama {

// How RoPE pairs the channels of one head. Both rotate pair i by position * theta_i with
// theta_i = rope_theta^(-2i/head_dim) (divided by rope_freq_factors[i] when present); they
// differ in which two channels form pair i:
//   kRotateHalf   (i, i + head_dim/2): Hugging Face transformers (`rotate_half`), so the
//                 q_proj/k_proj rows of a safetensors checkpoint are in this order;
//   kInterleaved  (2i, 2i + 1): llama.cpp's LLAMA_ROPE_TYPE_NORM for the llama architecture.
//                 convert_hf_to_gguf.py permutes the Q/K rows of each head so that row 2i is
//                 HF row i and row 2i+1 is HF row i + head_dim/2, which makes the two layouts
//                 compute the same attention scores.
enum class RopeStyle : uint8_t { kRotateHalf = 0, kInterleaved = 1 };

absl::string_view RopeStyleName(RopeStyle style);

struct LlamaConfig {
  int32_t dim = 0;              // hidden_size / llama.embedding_length
  int32_t n_layers = 0;         // num_hidden_layers / llama.block_count
  int32_t n_heads = 0;          // num_attention_heads / llama.attention.head_count
  int32_t n_kv_heads = 0;       // num_key_value_heads / llama.attention.head_count_kv (GQA)
  int32_t head_dim = 0;         // head_dim / llama.attention.key_length (default dim / n_heads)
  int32_t ffn_dim = 0;          // intermediate_size / llama.feed_forward_length
  int32_t vocab = 0;            // vocab_size / tokenizer.ggml.tokens length
  float rope_theta = 10000.0f;  // rope_theta / llama.rope.freq_base
  float norm_eps = 1e-5f;       // rms_norm_eps / llama.attention.layer_norm_rms_epsilon
  int64_t max_context = 4096;   // max_position_embeddings / llama.context_length
  // Per-pair divisors of the RoPE frequencies (Llama 3.1 "llama3" rope scaling; GGUF
  // rope_freqs.weight). Empty: none.
  std::vector<float> rope_freq_factors;

  int32_t GroupSize() const { return n_heads / n_kv_heads; }
  int64_t QDim() const { return int64_t{n_heads} * head_dim; }
  int64_t KvDim() const { return int64_t{n_kv_heads} * head_dim; }

  // InvalidArgument naming the first inconsistent field: every size positive and bounded,
  // n_heads a multiple of n_kv_heads, head_dim even, finite positive theta and eps, and
  // rope_freq_factors empty or head_dim/2 positive finite entries.
  absl::Status Validate() const;
  std::string DebugString() const;
  // The KV layout libclusterkv needs for this model with K/V stored as `dtype`.
  KvLayout ToKvLayout(DType dtype) const;
};

// Reads the fields above from a Hugging Face config.json document. A "rope_scaling" of type
// "llama3" is turned into rope_freq_factors; any other rope_scaling is InvalidArgument (it
// would change the model's positions). InvalidArgument on malformed JSON, missing required
// fields or invalid values.
absl::StatusOr<LlamaConfig> ParseHfConfigJson(absl::string_view json_text);
// A config.json document for `config` (architectures LlamaForCausalLM).
std::string ToHfConfigJson(const LlamaConfig& config, bool tie_word_embeddings);

// Llama 3.1 rope scaling: the per-pair frequency divisors of transformers'
// `_compute_llama3_parameters` for (factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings).
std::vector<float> Llama3RopeFactors(int32_t head_dim, float rope_theta, float factor,
                                     float low_freq_factor, float high_freq_factor,
                                     int64_t original_max_positions);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_CONFIG_H_
