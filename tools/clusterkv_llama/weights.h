// ModelWeights: every parameter of a decoder (Llama or Gemma 3, model_config.h) in fp32,
// row-major as PyTorch's nn.Linear keeps them ([out_features, in_features]), plus the tensor
// names of the two file formats.
//
// Tensor names (model_loader.h reads them, model_writer.h writes them):
//   safetensors (Hugging Face)                  GGUF (llama.cpp)               shape [rows, cols]
//   model.embed_tokens.weight                   token_embd.weight              [vocab, dim]
//   model.layers.{i}.input_layernorm.weight     blk.{i}.attn_norm.weight       [dim]
//   model.layers.{i}.self_attn.q_proj.weight    blk.{i}.attn_q.weight          [n_heads*hd, dim]
//   model.layers.{i}.self_attn.k_proj.weight    blk.{i}.attn_k.weight          [n_kv*hd, dim]
//   model.layers.{i}.self_attn.v_proj.weight    blk.{i}.attn_v.weight          [n_kv*hd, dim]
//   model.layers.{i}.self_attn.o_proj.weight    blk.{i}.attn_output.weight     [dim, n_heads*hd]
//   model.layers.{i}.post_attention_layernorm.weight  blk.{i}.ffn_norm.weight  [dim]
//   model.layers.{i}.mlp.gate_proj.weight       blk.{i}.ffn_gate.weight        [ffn, dim]
//   model.layers.{i}.mlp.up_proj.weight         blk.{i}.ffn_up.weight          [ffn, dim]
//   model.layers.{i}.mlp.down_proj.weight       blk.{i}.ffn_down.weight        [dim, ffn]
//   model.norm.weight                           output_norm.weight             [dim]
//   lm_head.weight (optional: tied)             output.weight (optional: tied) [vocab, dim]
//   -                                           rope_freqs.weight (optional)   [hd/2]
// Gemma 3 (GGUF only) adds per layer:
//   blk.{i}.attn_q_norm.weight [hd], blk.{i}.attn_k_norm.weight [hd] (QK-norm),
//   blk.{i}.post_attention_norm.weight [dim], blk.{i}.post_ffw_norm.weight [dim] (post-norms).
// llama.cpp's converter stores Gemma's RMSNorm weights with the 1 of its (1 + w) scaling already
// added, so every norm here multiplies by its weight as stored.
// GGUF lists dims innermost first (ne[0] = cols), so a [rows, cols] tensor appears as
// [cols, rows] there; the bytes are the same row-major matrix. GGUF Q/K rows are in the
// interleaved RoPE order for Llama (model_config.h, RopeStyle), recorded in `rope_style`;
// Gemma GGUF files keep the rotate-half order (llama.cpp's NEOX RoPE).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_WEIGHTS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

struct LayerWeights {
  std::vector<float> attn_norm;  // [dim]
  std::vector<float> wq;         // [n_heads*hd, dim]
  std::vector<float> wk;         // [n_kv*hd, dim]
  std::vector<float> wv;         // [n_kv*hd, dim]
  std::vector<float> wo;         // [dim, n_heads*hd]
  std::vector<float> ffn_norm;   // [dim]
  std::vector<float> w_gate;     // [ffn, dim]
  std::vector<float> w_up;       // [ffn, dim]
  std::vector<float> w_down;     // [dim, ffn]
  // Gemma 3 only (empty otherwise).
  std::vector<float> q_norm;          // [hd]
  std::vector<float> k_norm;          // [hd]
  std::vector<float> post_attn_norm;  // [dim]
  std::vector<float> post_ffn_norm;   // [dim]
};

struct ModelWeights {
  ModelConfig config;
  RopeStyle rope_style = RopeStyle::kRotateHalf;
  std::vector<float> embed;  // [vocab, dim]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [dim]
  std::vector<float> lm_head;     // [vocab, dim]; empty = tied to embed
  // Token strings when the file carries them (GGUF tokenizer.ggml.tokens); may be empty.
  std::vector<std::string> token_strings;

  const std::vector<float>& Output() const { return lm_head.empty() ? embed : lm_head; }
  // InvalidArgument naming the first tensor whose size disagrees with the config.
  absl::Status Validate() const;
};

// One named tensor of the model: its logical [rows, cols] shape (cols = 1 for vectors is
// written as a 1-D tensor) and the fp32 storage it lives in.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;  // outermost first: {rows, cols} or {n}
  std::vector<float>* data;
};

// Every tensor of `w` with its safetensors (HF) or GGUF name, in a fixed order: embeddings,
// then per layer, then the final norm and the output head (when untied) and, for GGUF,
// rope_freqs when the config has frequency factors. Sizes follow w.config.
std::vector<NamedTensor> HfTensors(ModelWeights& w);
std::vector<NamedTensor> GgufTensors(ModelWeights& w);

// Reorders the rows of each head of a Q or K projection [n_heads*hd, cols]:
//   ToInterleaved:  row 2i <- row i, row 2i+1 <- row i + hd/2 (what convert_hf_to_gguf.py does)
//   ToRotateHalf:   the inverse.
std::vector<float> PermuteQkToInterleaved(const std::vector<float>& w, int32_t n_heads,
                                          int32_t head_dim, int64_t cols);
std::vector<float> PermuteQkToRotateHalf(const std::vector<float>& w, int32_t n_heads,
                                         int32_t head_dim, int64_t cols);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_WEIGHTS_H_
