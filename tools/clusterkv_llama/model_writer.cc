#include "tools/clusterkv_llama/model_writer.h"

#include <cmath>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/safetensors.h"

namespace clusterkv::llama {
namespace {

// splitmix64 + Box-Muller: the same numbers on every platform and standard library.
class Normal {
 public:
  explicit Normal(uint64_t seed) : state_(seed) {}
  float Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = Uniform(), u2 = Uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(2.0 * M_PI * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(2.0 * M_PI * u2));
  }
  void Fill(std::vector<float>& v, size_t n, double stddev, double mean = 0.0) {
    v.resize(n);
    for (float& x : v) x = static_cast<float>(mean + stddev * Next());
  }

 private:
  double Uniform() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
  }
  uint64_t state_;
  bool has_spare_ = false;
  float spare_ = 0.0f;
};

uint32_t FileType(StoredDType dtype) {
  switch (dtype) {
    case StoredDType::kF16:
      return 1;  // LLAMA_FTYPE_MOSTLY_F16
    case StoredDType::kBF16:
      return 32;  // LLAMA_FTYPE_MOSTLY_BF16
    default:
      return 0;  // LLAMA_FTYPE_ALL_F32
  }
}

std::vector<TensorToWrite> Encode(std::vector<NamedTensor> named, StoredDType dtype) {
  std::vector<TensorToWrite> out;
  out.reserve(named.size());
  for (const NamedTensor& t : named) {
    // Norm weights and rope factors are small and precision-sensitive: llama.cpp's converter
    // keeps 1-D tensors in F32 too.
    const StoredDType d = t.shape.size() == 1 ? StoredDType::kF32 : dtype;
    out.push_back(TensorToWrite{t.name, d, t.shape, EncodeFloats(*t.data, d)});
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelWeights> MakeRandomWeights(const RandomModelOptions& o) {
  RETURN_IF_ERROR(o.config.Validate());
  if (!(o.qk_shared >= 0.0f && o.qk_shared <= 1.0f) || !(o.qk_gain > 0.0f) ||
      !std::isfinite(o.qk_gain)) {
    return absl::InvalidArgumentError("random model: need qk_shared in [0, 1] and qk_gain > 0");
  }
  const ModelConfig& c = o.config;
  ModelWeights w;
  w.config = c;
  w.rope_style = RopeStyle::kRotateHalf;
  Normal rng(o.seed);
  const size_t dim = static_cast<size_t>(c.dim), ffn = static_cast<size_t>(c.ffn_dim);
  const size_t hd = static_cast<size_t>(c.head_dim);
  const double in_std = 1.0 / std::sqrt(static_cast<double>(c.dim));
  rng.Fill(w.embed, static_cast<size_t>(c.vocab) * dim, 1.0);
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (LayerWeights& l : w.layers) {
    rng.Fill(l.attn_norm, dim, 0.1, 1.0);
    std::vector<float> base, own;
    rng.Fill(base, static_cast<size_t>(c.KvDim()) * dim, in_std);
    rng.Fill(own, static_cast<size_t>(c.QDim()) * dim, in_std);
    l.wk.resize(base.size());
    for (size_t i = 0; i < base.size(); ++i) l.wk[i] = o.qk_gain * base[i];
    l.wq.resize(own.size());
    const float shared = std::sqrt(o.qk_shared), independent = std::sqrt(1.0f - o.qk_shared);
    for (size_t h = 0; h < static_cast<size_t>(c.n_heads); ++h) {
      const size_t g = h / static_cast<size_t>(c.GroupSize());
      for (size_t i = 0; i < hd * dim; ++i) {
        l.wq[h * hd * dim + i] =
            o.qk_gain * (shared * base[g * hd * dim + i] + independent * own[h * hd * dim + i]);
      }
    }
    rng.Fill(l.wv, static_cast<size_t>(c.KvDim()) * dim, in_std);
    rng.Fill(l.wo, dim * static_cast<size_t>(c.QDim()),
             0.5 / std::sqrt(static_cast<double>(c.QDim())));
    rng.Fill(l.ffn_norm, dim, 0.1, 1.0);
    rng.Fill(l.w_gate, ffn * dim, in_std);
    rng.Fill(l.w_up, ffn * dim, in_std);
    rng.Fill(l.w_down, dim * ffn, 0.5 / std::sqrt(static_cast<double>(c.ffn_dim)));
    if (c.qk_norm) {
      rng.Fill(l.q_norm, hd, 0.1, 1.0);
      rng.Fill(l.k_norm, hd, 0.1, 1.0);
    }
    if (c.post_norms) {
      rng.Fill(l.post_attn_norm, dim, 0.1, 1.0);
      rng.Fill(l.post_ffn_norm, dim, 0.1, 1.0);
    }
  }
  rng.Fill(w.final_norm, dim, 0.1, 1.0);
  if (!o.tie_embeddings) rng.Fill(w.lm_head, static_cast<size_t>(c.vocab) * dim, 2.0 * in_std);
  return w;
}

absl::Status WriteModel(const ModelWeights& weights, const std::string& path, ModelFormat format,
                        const WriteOptions& options) {
  RETURN_IF_ERROR(weights.Validate());
  if (options.dtype == StoredDType::kUnsupported) {
    return absl::InvalidArgumentError("writer: dtype must be F32, F16 or BF16");
  }
  const ModelConfig& c = weights.config;
  ModelWeights w = weights;  // Q/K reordered for the target format below
  if (format == ModelFormat::kSafetensors && c.arch != Architecture::kLlama) {
    return absl::InvalidArgumentError(
        absl::StrCat("writer: ", ArchitectureName(c.arch), " models are written as GGUF only"));
  }
  // llama.cpp's files hold Llama Q/K rows in the interleaved order, Gemma's in rotate-half.
  const RopeStyle target = format == ModelFormat::kGguf && c.arch == Architecture::kLlama
                               ? RopeStyle::kInterleaved
                               : RopeStyle::kRotateHalf;
  if (w.rope_style != target) {
    for (LayerWeights& l : w.layers) {
      if (target == RopeStyle::kInterleaved) {
        l.wq = PermuteQkToInterleaved(l.wq, c.n_heads, c.head_dim, c.dim);
        l.wk = PermuteQkToInterleaved(l.wk, c.n_kv_heads, c.head_dim, c.dim);
      } else {
        l.wq = PermuteQkToRotateHalf(l.wq, c.n_heads, c.head_dim, c.dim);
        l.wk = PermuteQkToRotateHalf(l.wk, c.n_kv_heads, c.head_dim, c.dim);
      }
    }
    w.rope_style = target;
  }

  if (format == ModelFormat::kSafetensors) {
    if (!c.rope_freq_factors.empty()) {
      return absl::InvalidArgumentError(
          "writer: rope frequency factors cannot be written to a safetensors config.json");
    }
    const std::string config_path =
        options.config_path.empty() ? ConfigPathNextTo(path) : options.config_path;
    std::ofstream cfg(config_path, std::ios::trunc);
    if (!cfg) return absl::UnavailableError(absl::StrCat("cannot create ", config_path));
    cfg << ToHfConfigJson(c, w.lm_head.empty());
    cfg.close();
    if (!cfg) return absl::UnavailableError(absl::StrCat("cannot write ", config_path));
    return WriteSafetensors(path, Encode(HfTensors(w), options.dtype),
                            {{"format", "pt"}, {"writer", "clusterkv_llama"}});
  }

  GgufMetadata md = options.gguf_extra_metadata;
  const std::string arch(ArchitectureName(c.arch));
  const std::string p = arch + ".";
  auto u32 = [](int64_t v) { return GgufValue::Uint32(static_cast<uint32_t>(v)); };
  md.emplace_back("general.architecture", GgufValue::String(arch));
  md.emplace_back("general.name", GgufValue::String("clusterkv random " + arch));
  if (options.gguf_alignment != 32) {
    md.emplace_back("general.alignment", GgufValue::Uint32(options.gguf_alignment));
  }
  md.emplace_back("general.file_type", GgufValue::Uint32(FileType(options.dtype)));
  md.emplace_back(p + "context_length", u32(c.max_context));
  md.emplace_back(p + "embedding_length", u32(c.dim));
  md.emplace_back(p + "block_count", u32(c.n_layers));
  md.emplace_back(p + "feed_forward_length", u32(c.ffn_dim));
  md.emplace_back(p + "rope.dimension_count", u32(c.head_dim));
  md.emplace_back(p + "attention.head_count", u32(c.n_heads));
  md.emplace_back(p + "attention.head_count_kv", u32(c.n_kv_heads));
  md.emplace_back(p + "attention.key_length", u32(c.head_dim));
  md.emplace_back(p + "attention.value_length", u32(c.head_dim));
  md.emplace_back(p + "attention.layer_norm_rms_epsilon", GgufValue::Float32(c.norm_eps));
  md.emplace_back(p + "rope.freq_base", GgufValue::Float32(c.rope_theta));
  if (c.arch == Architecture::kGemma3) {
    md.emplace_back(p + "attention.sliding_window", u32(c.sliding_window));
    std::vector<double> pattern;
    for (int32_t l = 0; l < c.n_layers; ++l) pattern.push_back(c.IsLocalLayer(l) ? 1.0 : 0.0);
    md.emplace_back(p + "attention.sliding_window_pattern",
                    GgufValue::NumberArray(GgufType::kBool, std::move(pattern)));
    md.emplace_back(p + "rope.freq_base_swa", GgufValue::Float32(c.rope_theta_local));
    if (c.attention_scale > 0.0f) {
      md.emplace_back(p + "attention.scale", GgufValue::Float32(c.attention_scale));
    }
    if (c.final_logit_softcap > 0.0f) {
      md.emplace_back(p + "final_logit_softcapping", GgufValue::Float32(c.final_logit_softcap));
    }
  }
  if (options.gguf_tokenizer) {
    std::vector<std::string> tokens = w.token_strings;
    if (static_cast<int32_t>(tokens.size()) != c.vocab) {
      tokens.clear();
      for (int32_t t = 0; t < c.vocab; ++t) tokens.push_back(absl::StrCat("<t", t, ">"));
    }
    md.emplace_back("tokenizer.ggml.model", GgufValue::String("llama"));
    md.emplace_back("tokenizer.ggml.tokens", GgufValue::StringArray(std::move(tokens)));
    md.emplace_back("tokenizer.ggml.scores",
                    GgufValue::NumberArray(GgufType::kFloat32,
                                           std::vector<double>(static_cast<size_t>(c.vocab), 0.0)));
    md.emplace_back("tokenizer.ggml.token_type",
                    GgufValue::NumberArray(GgufType::kInt32,
                                           std::vector<double>(static_cast<size_t>(c.vocab), 1.0)));
  }
  std::vector<GgufTensorToWrite> tensors;
  for (const TensorToWrite& t : Encode(GgufTensors(w), options.dtype)) {
    tensors.push_back(ToGgufTensor(t));
  }
  return WriteGguf(path, md, tensors, options.gguf_version);
}

}  // namespace clusterkv::llama
