#include "tools/clusterkv_llama/weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace clusterkv::llama {
namespace {

std::vector<NamedTensor> Tensors(ModelWeights& w, bool gguf) {
  const ModelConfig& c = w.config;
  const int64_t dim = c.dim, q = c.QDim(), kv = c.KvDim(), ffn = c.ffn_dim, vocab = c.vocab;
  std::vector<NamedTensor> t;
  t.push_back({gguf ? "token_embd.weight" : "model.embed_tokens.weight", {vocab, dim}, &w.embed});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& l = w.layers[i];
    const std::string hf = absl::StrCat("model.layers.", i, ".");
    const std::string gg = absl::StrCat("blk.", i, ".");
    auto name = [&](const char* hf_name, const char* gguf_name) {
      return gguf ? gg + gguf_name : hf + hf_name;
    };
    t.push_back({name("input_layernorm.weight", "attn_norm.weight"), {dim}, &l.attn_norm});
    t.push_back({name("self_attn.q_proj.weight", "attn_q.weight"), {q, dim}, &l.wq});
    t.push_back({name("self_attn.k_proj.weight", "attn_k.weight"), {kv, dim}, &l.wk});
    t.push_back({name("self_attn.v_proj.weight", "attn_v.weight"), {kv, dim}, &l.wv});
    t.push_back({name("self_attn.o_proj.weight", "attn_output.weight"), {dim, q}, &l.wo});
    t.push_back({name("post_attention_layernorm.weight", "ffn_norm.weight"), {dim}, &l.ffn_norm});
    t.push_back({name("mlp.gate_proj.weight", "ffn_gate.weight"), {ffn, dim}, &l.w_gate});
    t.push_back({name("mlp.up_proj.weight", "ffn_up.weight"), {ffn, dim}, &l.w_up});
    t.push_back({name("mlp.down_proj.weight", "ffn_down.weight"), {dim, ffn}, &l.w_down});
    if (c.qk_norm) {
      t.push_back({name("self_attn.q_norm.weight", "attn_q_norm.weight"), {c.head_dim}, &l.q_norm});
      t.push_back({name("self_attn.k_norm.weight", "attn_k_norm.weight"), {c.head_dim}, &l.k_norm});
    }
    if (c.post_norms) {
      t.push_back({name("post_attention_layernorm.weight", "post_attention_norm.weight"),
                   {dim},
                   &l.post_attn_norm});
      t.push_back({name("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
                   {dim},
                   &l.post_ffn_norm});
    }
  }
  t.push_back({gguf ? "output_norm.weight" : "model.norm.weight", {dim}, &w.final_norm});
  if (!w.lm_head.empty()) {
    t.push_back({gguf ? "output.weight" : "lm_head.weight", {vocab, dim}, &w.lm_head});
  }
  if (gguf && !c.rope_freq_factors.empty()) {
    t.push_back({"rope_freqs.weight", {c.head_dim / 2}, &w.config.rope_freq_factors});
  }
  return t;
}

std::vector<float> Permute(const std::vector<float>& w, int32_t n_heads, int32_t head_dim,
                           int64_t cols, bool to_interleaved) {
  std::vector<float> out(w.size());
  const int32_t half = head_dim / 2;
  const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
  for (int32_t h = 0; h < n_heads; ++h) {
    const int64_t base = int64_t{h} * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      for (int32_t part = 0; part < 2; ++part) {
        const int64_t half_row = base + part * half + i;  // rotate-half order
        const int64_t pair_row = base + 2 * i + part;     // interleaved order
        const int64_t src = to_interleaved ? half_row : pair_row;
        const int64_t dst = to_interleaved ? pair_row : half_row;
        std::memcpy(&out[static_cast<size_t>(dst * cols)], &w[static_cast<size_t>(src * cols)],
                    row_bytes);
      }
    }
  }
  return out;
}

}  // namespace

std::vector<NamedTensor> HfTensors(ModelWeights& w) { return Tensors(w, false); }
std::vector<NamedTensor> GgufTensors(ModelWeights& w) { return Tensors(w, true); }

std::vector<float> PermuteQkToInterleaved(const std::vector<float>& w, int32_t n_heads,
                                          int32_t head_dim, int64_t cols) {
  return Permute(w, n_heads, head_dim, cols, true);
}

std::vector<float> PermuteQkToRotateHalf(const std::vector<float>& w, int32_t n_heads,
                                         int32_t head_dim, int64_t cols) {
  return Permute(w, n_heads, head_dim, cols, false);
}

absl::Status ModelWeights::Validate() const {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (static_cast<int32_t>(layers.size()) != config.n_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights hold ", layers.size(), " layers, config says ", config.n_layers));
  }
  const ModelConfig& c = config;
  auto check = [](const std::vector<float>& v, int64_t want, absl::string_view what,
                  int64_t layer) -> absl::Status {
    if (static_cast<int64_t>(v.size()) == want) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", what, layer >= 0 ? absl::StrCat(" of layer ", layer) : std::string(), " holds ",
        v.size(), " values, expected ", want));
  };
  absl::Status s;
  if (!(s = check(embed, int64_t{c.vocab} * c.dim, "embed", -1)).ok()) return s;
  if (!(s = check(final_norm, c.dim, "final_norm", -1)).ok()) return s;
  if (!lm_head.empty() && !(s = check(lm_head, int64_t{c.vocab} * c.dim, "lm_head", -1)).ok()) {
    return s;
  }
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const LayerWeights& l = layers[static_cast<size_t>(i)];
    if (!(s = check(l.attn_norm, c.dim, "attn_norm", i)).ok() ||
        !(s = check(l.wq, c.QDim() * c.dim, "wq", i)).ok() ||
        !(s = check(l.wk, c.KvDim() * c.dim, "wk", i)).ok() ||
        !(s = check(l.wv, c.KvDim() * c.dim, "wv", i)).ok() ||
        !(s = check(l.wo, c.QDim() * c.dim, "wo", i)).ok() ||
        !(s = check(l.ffn_norm, c.dim, "ffn_norm", i)).ok() ||
        !(s = check(l.w_gate, int64_t{c.ffn_dim} * c.dim, "w_gate", i)).ok() ||
        !(s = check(l.w_up, int64_t{c.ffn_dim} * c.dim, "w_up", i)).ok() ||
        !(s = check(l.w_down, int64_t{c.ffn_dim} * c.dim, "w_down", i)).ok()) {
      return s;
    }
    if (c.qk_norm && (!(s = check(l.q_norm, c.head_dim, "q_norm", i)).ok() ||
                      !(s = check(l.k_norm, c.head_dim, "k_norm", i)).ok())) {
      return s;
    }
    if (c.post_norms && (!(s = check(l.post_attn_norm, c.dim, "post_attn_norm", i)).ok() ||
                         !(s = check(l.post_ffn_norm, c.dim, "post_ffn_norm", i)).ok())) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
