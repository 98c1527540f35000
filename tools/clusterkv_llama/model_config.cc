#include "tools/clusterkv_llama/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace clusterkv::llama {
namespace {

using Json = nlohmann::json;

absl::Status Range(const char* name, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: ", name, " must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// Reads an integer field; `required` fields that are absent are InvalidArgument.
absl::Status ReadInt(const Json& j, const char* key, bool required, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: missing field \"", key, "\""));
    }
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: \"", key, "\" is not an integer"));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadFloat(const Json& j, const char* key, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: \"", key, "\" is not a number"));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

int32_t Narrow(int64_t v) { return static_cast<int32_t>(v); }

}  // namespace

absl::string_view RopeStyleName(RopeStyle style) {
  return style == RopeStyle::kRotateHalf ? "rotate-half (HF)" : "interleaved pairs (GGUF)";
}

absl::string_view ArchitectureName(Architecture arch) {
  return arch == Architecture::kGemma3 ? "gemma3" : "llama";
}

std::vector<int32_t> ModelConfig::GlobalLayers() const {
  std::vector<int32_t> out;
  for (int32_t l = 0; l < n_layers; ++l) {
    if (!IsLocalLayer(l)) out.push_back(l);
  }
  return out;
}

float ModelConfig::AttentionScale() const {
  return attention_scale > 0.0f ? attention_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

absl::Status ModelConfig::Validate() const {
  constexpr int64_t kBig = int64_t{1} << 20;
  absl::Status s;
  if (!(s = Range("dim", dim, 1, kBig)).ok()) return s;
  if (!(s = Range("n_layers", n_layers, 1, 4096)).ok()) return s;
  if (!(s = Range("n_heads", n_heads, 1, 4096)).ok()) return s;
  if (!(s = Range("n_kv_heads", n_kv_heads, 1, n_heads)).ok()) return s;
  if (!(s = Range("head_dim", head_dim, 2, 4096)).ok()) return s;
  if (!(s = Range("ffn_dim", ffn_dim, 1, kBig)).ok()) return s;
  if (!(s = Range("vocab", vocab, 1, int64_t{1} << 24)).ok()) return s;
  if (!(s = Range("max_context", max_context, 1, int64_t{1} << 30)).ok()) return s;
  if (n_heads % n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model config: n_heads (", n_heads,
                                                   ") must be a multiple of n_kv_heads (",
                                                   n_kv_heads, ")"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError("model config: head_dim must be even (RoPE pairs)");
  }
  if (!std::isfinite(rope_theta) || rope_theta <= 1.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: rope_theta must be finite and > 1, got ", rope_theta));
  }
  if (!std::isfinite(norm_eps) || norm_eps <= 0.0f || norm_eps > 1.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: norm_eps must be in (0, 1], got ", norm_eps));
  }
  if (!rope_freq_factors.empty()) {
    if (static_cast<int64_t>(rope_freq_factors.size()) != head_dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat("model config: rope_freq_factors holds ",
                                                     rope_freq_factors.size(),
                                                     " entries, head_dim/2 = ", head_dim / 2));
    }
    for (float f : rope_freq_factors) {
      if (!std::isfinite(f) || f <= 0.0f) {
        return absl::InvalidArgumentError(
            "model config: rope_freq_factors must be positive and finite");
      }
    }
  }
  if (!layer_is_local.empty()) {
    if (static_cast<int64_t>(layer_is_local.size()) != n_layers) {
      return absl::InvalidArgumentError(absl::StrCat("model config: layer_is_local holds ",
                                                     layer_is_local.size(), " entries for ",
                                                     n_layers, " layers"));
    }
    if (!(s = Range("sliding_window", sliding_window, 1, max_context)).ok()) return s;
    if (GlobalLayers().empty()) {
      return absl::InvalidArgumentError("model config: every layer is local (no global layer)");
    }
    if (!std::isfinite(rope_theta_local) || rope_theta_local <= 1.0f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model config: rope_theta_local must be finite and > 1, got ", rope_theta_local));
    }
  }
  for (const auto& [name, v] : {std::pair<const char*, float>{"embed_scale", embed_scale},
                                {"attention_scale", attention_scale},
                                {"final_logit_softcap", final_logit_softcap},
                                {"rope_linear_scale", rope_linear_scale}}) {
    if (!std::isfinite(v) || v < 0.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat("model config: ", name, " must be finite and >= 0, got ", v));
    }
  }
  if (embed_scale <= 0.0f || rope_linear_scale <= 0.0f) {
    return absl::InvalidArgumentError(
        "model config: embed_scale and rope_linear_scale must be > 0");
  }
  return absl::OkStatus();
}

std::string ModelConfig::DebugString() const {
  std::string local;
  if (!layer_is_local.empty()) {
    local = absl::StrCat(" local_layers=", n_layers - static_cast<int64_t>(GlobalLayers().size()),
                         " window=", sliding_window, " rope_theta_local=", rope_theta_local);
  }
  return absl::StrCat(
      "arch=", ArchitectureName(arch), " dim=", dim, " layers=", n_layers, " heads=", n_heads,
      " kv_heads=", n_kv_heads, " head_dim=", head_dim, " ffn=", ffn_dim, " vocab=", vocab,
      " rope_theta=", rope_theta, " eps=", norm_eps, " max_context=", max_context,
      rope_freq_factors.empty() ? "" : " rope_freq_factors=yes", local, qk_norm ? " qk_norm" : "",
      post_norms ? " post_norms" : "", activation == Activation::kGeluTanh ? " geglu" : "");
}

KvLayout ModelConfig::ToKvLayout(DType dtype) const {
  KvLayout layout;
  layout.num_layers = static_cast<int32_t>(GlobalLayers().size());
  layout.num_q_heads = n_heads;
  layout.num_kv_heads = n_kv_heads;
  layout.head_dim = head_dim;
  layout.dtype = dtype;
  return layout;
}

std::vector<float> Llama3RopeFactors(int32_t head_dim, float rope_theta, float factor,
                                     float low_freq_factor, float high_freq_factor,
                                     int64_t original_max_positions) {
  const double old_len = static_cast<double>(original_max_positions);
  const double low_wavelen = old_len / low_freq_factor;
  const double high_wavelen = old_len / high_freq_factor;
  std::vector<float> factors(static_cast<size_t>(head_dim / 2));
  for (int32_t i = 0; i < head_dim / 2; ++i) {
    const double inv_freq = std::pow(static_cast<double>(rope_theta), -2.0 * i / head_dim);
    const double wavelen = 2.0 * M_PI / inv_freq;
    double divisor = 1.0;
    if (wavelen > low_wavelen) {
      divisor = factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth =
          (old_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      divisor = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    factors[static_cast<size_t>(i)] = static_cast<float>(divisor);
  }
  return factors;
}

absl::StatusOr<ModelConfig> ParseHfConfigJson(absl::string_view json_text) {
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  int64_t dim = 0, layers = 0, heads = 0, kv_heads = -1, head_dim = -1, ffn = 0, vocab = 0;
  int64_t max_pos = 4096;
  double theta = 10000.0, eps = 1e-5;
  absl::Status s;
  if (!(s = ReadInt(j, "hidden_size", true, &dim)).ok()) return s;
  if (!(s = ReadInt(j, "num_hidden_layers", true, &layers)).ok()) return s;
  if (!(s = ReadInt(j, "num_attention_heads", true, &heads)).ok()) return s;
  if (!(s = ReadInt(j, "num_key_value_heads", false, &kv_heads)).ok()) return s;
  if (!(s = ReadInt(j, "head_dim", false, &head_dim)).ok()) return s;
  if (!(s = ReadInt(j, "intermediate_size", true, &ffn)).ok()) return s;
  if (!(s = ReadInt(j, "vocab_size", true, &vocab)).ok()) return s;
  if (!(s = ReadInt(j, "max_position_embeddings", false, &max_pos)).ok()) return s;
  if (!(s = ReadFloat(j, "rope_theta", &theta)).ok()) return s;
  if (!(s = ReadFloat(j, "rms_norm_eps", &eps)).ok()) return s;
  // Bound everything before narrowing to int32.
  constexpr int64_t kLimit = int64_t{1} << 30;
  for (int64_t v : {dim, layers, heads, ffn, vocab, kv_heads, head_dim}) {
    if (v > kLimit || v < -1) return absl::InvalidArgumentError("config.json: size out of range");
  }
  if (heads <= 0) return absl::InvalidArgumentError("config.json: num_attention_heads <= 0");
  ModelConfig c;
  c.dim = Narrow(dim);
  c.n_layers = Narrow(layers);
  c.n_heads = Narrow(heads);
  c.n_kv_heads = Narrow(kv_heads < 0 ? heads : kv_heads);
  c.head_dim = Narrow(head_dim < 0 ? dim / heads : head_dim);
  c.ffn_dim = Narrow(ffn);
  c.vocab = Narrow(vocab);
  c.max_context = max_pos;
  c.rope_theta = static_cast<float>(theta);
  c.norm_eps = static_cast<float>(eps);
  if (auto it = j.find("model_type");
      it != j.end() && it->is_string() && *it != "llama" && *it != "mistral") {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: model_type \"", it->get<std::string>(), "\" is not a Llama architecture"));
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("config.json: bad rope_scaling");
    std::string type;
    for (const char* key : {"type", "rope_type"}) {  // transformers writes either name
      auto t = it->find(key);
      if (t != it->end() && t->is_string()) type = t->get<std::string>();
    }
    if (type != "llama3") {
      return absl::InvalidArgumentError(absl::StrCat("config.json: rope_scaling type \"", type,
                                                     "\" is not supported (only \"llama3\")"));
    }
    double factor = 0, low = 0, high = 0;
    int64_t original = 0;
    if (!(s = ReadFloat(*it, "factor", &factor)).ok()) return s;
    if (!(s = ReadFloat(*it, "low_freq_factor", &low)).ok()) return s;
    if (!(s = ReadFloat(*it, "high_freq_factor", &high)).ok()) return s;
    if (!(s = ReadInt(*it, "original_max_position_embeddings", true, &original)).ok()) return s;
    if (!(factor > 0 && low > 0 && high > low && original > 0)) {
      return absl::InvalidArgumentError("config.json: invalid llama3 rope_scaling values");
    }
    if (c.head_dim > 0 && c.head_dim % 2 == 0) {
      c.rope_freq_factors =
          Llama3RopeFactors(c.head_dim, c.rope_theta, static_cast<float>(factor),
                            static_cast<float>(low), static_cast<float>(high), original);
    }
  }
  if (absl::Status v = c.Validate(); !v.ok()) return v;
  return c;
}

std::string ToHfConfigJson(const ModelConfig& c, bool tie_word_embeddings) {
  nlohmann::ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = c.dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["intermediate_size"] = c.ffn_dim;
  j["vocab_size"] = c.vocab;
  j["max_position_embeddings"] = c.max_context;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.norm_eps;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

}  // namespace clusterkv::llama
