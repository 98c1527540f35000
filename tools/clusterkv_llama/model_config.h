// ModelConfig: the geometry and numerics of a decoder-only transformer of one of the two
// architectures the engine runs, read from a Hugging Face config.json (Llama) or from GGUF
// metadata (model_loader.h) and written back by the model writer. A plain value type.
//
//   Llama    RMSNorm, RoPE, GQA attention over every earlier token, SwiGLU MLP.
//   Gemma 3  the same skeleton plus: embeddings scaled by sqrt(dim); per-head RMSNorm of q and
//            k before RoPE (QK-norm); RMSNorm of the attention and MLP outputs before each
//            residual add (post-norms); a GeGLU MLP (tanh-approximated GELU gate); and two
//            kinds of attention layer: local layers see a sliding window of the last
//            `sliding_window` tokens (their own position included) with their own RoPE base,
//            global layers see every token. Only global layers have a KV cache that grows with
//            the context; they are the layers ClusterKV compresses.
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

enum class Architecture : uint8_t { kLlama = 0, kGemma3 = 1 };
// "llama", "gemma3" (GGUF general.architecture spelling).
absl::string_view ArchitectureName(Architecture arch);

// The MLP gate's activation: SwiGLU's silu(z) = z * sigmoid(z), or GeGLU's GELU with the tanh
// approximation 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))).
enum class Activation : uint8_t { kSilu = 0, kGeluTanh = 1 };

struct ModelConfig {
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
  // Global layers' positions are divided by this (linear RoPE scaling; 1 = none).
  float rope_linear_scale = 1.0f;

  Architecture arch = Architecture::kLlama;
  Activation activation = Activation::kSilu;
  bool qk_norm = false;      // RMSNorm of each q/k head (weights [head_dim]) before RoPE
  bool post_norms = false;   // RMSNorm of the attention and MLP outputs before the residual add
  float embed_scale = 1.0f;  // token embeddings are multiplied by this (Gemma: sqrt(dim))
  // Scale of q.k in the softmax; 0 means 1/sqrt(head_dim).
  float attention_scale = 0.0f;
  // tanh soft-capping of the final logits: cap * tanh(logit / cap); 0 = none.
  float final_logit_softcap = 0.0f;
  // Local (sliding-window) layers: each sees the last `sliding_window` tokens including its own.
  // layer_is_local empty = every layer global.
  int32_t sliding_window = 0;
  std::vector<uint8_t> layer_is_local;  // per layer, 1 = local
  float rope_theta_local = 10000.0f;    // RoPE base of the local layers

  int32_t GroupSize() const { return n_heads / n_kv_heads; }
  bool IsLocalLayer(int32_t layer) const {
    return !layer_is_local.empty() && layer_is_local[static_cast<size_t>(layer)] != 0;
  }
  // The global layers in order: the layers whose K/V an attention backend (full attention or
  // ClusterKV) holds. Backend layer i is model layer GlobalLayers()[i].
  std::vector<int32_t> GlobalLayers() const;
  float AttentionScale() const;
  int64_t QDim() const { return int64_t{n_heads} * head_dim; }
  int64_t KvDim() const { return int64_t{n_kv_heads} * head_dim; }

  // InvalidArgument naming the first inconsistent field: every size positive and bounded,
  // n_heads a multiple of n_kv_heads, head_dim even, finite positive theta and eps,
  // rope_freq_factors empty or head_dim/2 positive finite entries, layer_is_local empty or one
  // entry per layer with a positive sliding_window and at least one global layer, finite
  // non-negative scales.
  absl::Status Validate() const;
  std::string DebugString() const;
  // The KV layout libclusterkv needs for this model with K/V stored as `dtype`: one layer per
  // global layer (local layers never leave the engine).
  KvLayout ToKvLayout(DType dtype) const;
};

// Reads the fields above from a Hugging Face config.json document. A "rope_scaling" of type
// "llama3" is turned into rope_freq_factors; any other rope_scaling is InvalidArgument (it
// would change the model's positions). InvalidArgument on malformed JSON, missing required
// fields or invalid values.
absl::StatusOr<ModelConfig> ParseHfConfigJson(absl::string_view json_text);
// A config.json document for `config` (architectures LlamaForCausalLM).
std::string ToHfConfigJson(const ModelConfig& config, bool tie_word_embeddings);

// Llama 3.1 rope scaling: the per-pair frequency divisors of transformers'
// `_compute_llama3_parameters` for (factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings).
std::vector<float> Llama3RopeFactors(int32_t head_dim, float rope_theta, float factor,
                                     float low_freq_factor, float high_freq_factor,
                                     int64_t original_max_positions);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_CONFIG_H_
