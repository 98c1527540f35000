#include "tools/clusterkv_llama/model_loader.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/internal/mapped_file.h"

namespace clusterkv::llama {
namespace {

// Looks up every tensor `names` lists (lm_head/output optional) and converts it.
template <typename FindFn>
absl::Status FillTensors(std::vector<NamedTensor> named, const FindFn& find,
                         const std::string& output_name, const std::string& path, ModelWeights* w) {
  for (NamedTensor& t : named) {
    const StoredTensor* stored = find(t.name);
    if (stored == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": missing tensor ", t.name));
    }
    ASSIGN_OR_RETURN(*t.data, ReadAsFloat(*stored, t.shape));
  }
  if (const StoredTensor* head = find(output_name); head != nullptr) {
    ASSIGN_OR_RETURN(w->lm_head, ReadAsFloat(*head, {w->config.vocab, w->config.dim}));
  }
  return w->Validate();
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status WithPath(const absl::Status& s, absl::string_view path) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

}  // namespace

std::string DefaultModelDir() {
  if (const char* dir = std::getenv("CLUSTERKV_MODEL_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr ? home : "/root", "/.cache/clusterkv/models");
}

absl::string_view ModelFormatName(ModelFormat format) {
  return format == ModelFormat::kGguf ? "gguf" : "safetensors";
}

absl::StatusOr<ModelFormat> FormatFromPath(absl::string_view path) {
  if (absl::EndsWith(path, ".gguf")) return ModelFormat::kGguf;
  if (absl::EndsWith(path, ".safetensors")) return ModelFormat::kSafetensors;
  return absl::InvalidArgumentError(absl::StrCat("cannot tell the model format of ", path,
                                                 " (expected a .gguf or .safetensors file name)"));
}

std::string ConfigPathNextTo(absl::string_view model_path) {
  const size_t slash = model_path.rfind('/');
  if (slash == absl::string_view::npos) return "config.json";
  return absl::StrCat(model_path.substr(0, slash + 1), "config.json");
}

absl::StatusOr<ModelWeights> LoadModel(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::MappedFile> file, internal::MappedFile::Open(path));
  const absl::Span<const uint8_t> head = file->bytes().subspan(0, 4);
  const bool gguf = head.size() == 4 && std::string(head.begin(), head.end()) == "GGUF";
  file.reset();
  return gguf ? LoadGgufModel(path) : LoadSafetensorsModel(path);
}

absl::StatusOr<ModelWeights> LoadSafetensorsModel(const std::string& path,
                                                  const std::string& config_path) {
  const std::string cfg_path = config_path.empty() ? ConfigPathNextTo(path) : config_path;
  absl::StatusOr<std::string> cfg_text = ReadText(cfg_path);
  if (!cfg_text.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "a safetensors model needs its Hugging Face config.json: cannot read ", cfg_path));
  }
  absl::StatusOr<ModelConfig> config = ParseHfConfigJson(*cfg_text);
  RETURN_IF_ERROR(WithPath(config.status(), cfg_path));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  ModelWeights w;
  w.config = *std::move(config);
  w.rope_style = RopeStyle::kRotateHalf;
  w.layers.resize(static_cast<size_t>(w.config.n_layers));
  const SafetensorsIndex& index = file->index();
  auto find = [&](const std::string& name) { return index.Find(name); };
  RETURN_IF_ERROR(WithPath(FillTensors(HfTensors(w), find, "lm_head.weight", path, &w), path));
  return w;
}

namespace {

// Reads the Gemma 3 specifics of `c` (arch prefix "gemma3.") from the GGUF metadata. Keys the
// file does not carry take the architecture's fixed values, the ones Gemma 3's reference
// configuration and llama.cpp's loader use: every 6th layer global (layers 5, 11, ...), local
// RoPE base 10000, attention scale 1/sqrt(head_dim), no logit soft-capping.
absl::Status ReadGemma3(const GgufIndex& index, const std::string& prefix, ModelConfig* c) {
  c->activation = Activation::kGeluTanh;
  c->qk_norm = true;
  c->post_norms = true;
  c->embed_scale = std::sqrt(static_cast<float>(c->dim));
  ASSIGN_OR_RETURN(int64_t window, index.GetInt(prefix + "attention.sliding_window"));
  if (window < 1 || window > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF ", prefix, "attention.sliding_window out of range: ", window));
  }
  c->sliding_window = static_cast<int32_t>(window);
  c->layer_is_local.assign(static_cast<size_t>(c->n_layers), 0);
  const GgufValue* pattern = index.Find(prefix + "attention.sliding_window_pattern");
  if (pattern != nullptr && pattern->type == GgufType::kArray) {
    // One flag per layer: true = sliding window.
    if (pattern->numbers.size() != static_cast<size_t>(c->n_layers)) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF ", prefix, "attention.sliding_window_pattern holds ",
                       pattern->ArraySize(), " entries for ", c->n_layers, " layers"));
    }
    for (size_t l = 0; l < pattern->numbers.size(); ++l) {
      c->layer_is_local[l] = pattern->numbers[l] != 0 ? 1 : 0;
    }
  } else {
    int64_t period = 6;
    if (pattern != nullptr) {
      ASSIGN_OR_RETURN(period, index.GetInt(prefix + "attention.sliding_window_pattern"));
      if (period < 1 || period > c->n_layers + 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "GGUF ", prefix, "attention.sliding_window_pattern out of range: ", period));
      }
    }
    for (int32_t l = 0; l < c->n_layers; ++l) {
      c->layer_is_local[static_cast<size_t>(l)] = (l + 1) % period != 0 ? 1 : 0;
    }
  }
  if (absl::StatusOr<double> base = index.GetFloat(prefix + "rope.freq_base_swa"); base.ok()) {
    c->rope_theta_local = static_cast<float>(*base);
  }
  if (absl::StatusOr<double> scale = index.GetFloat(prefix + "attention.scale"); scale.ok()) {
    c->attention_scale = static_cast<float>(*scale);
  }
  if (absl::StatusOr<double> cap = index.GetFloat(prefix + "final_logit_softcapping"); cap.ok()) {
    c->final_logit_softcap = static_cast<float>(*cap);
  }
  if (absl::StatusOr<std::string> type = index.GetString(prefix + "rope.scaling.type"); type.ok()) {
    if (*type == "linear") {
      ASSIGN_OR_RETURN(double factor, index.GetFloat(prefix + "rope.scaling.factor"));
      c->rope_linear_scale = static_cast<float>(factor);
    } else if (*type != "none") {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF ", prefix, "rope.scaling.type \"", *type, "\" is not supported"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufIndex& index) {
  ASSIGN_OR_RETURN(std::string arch, index.GetString("general.architecture"));
  ModelConfig c;
  if (arch == "llama") {
    c.arch = Architecture::kLlama;
  } else if (arch == "gemma3") {
    c.arch = Architecture::kGemma3;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("GGUF general.architecture is \"", arch,
                                                   "\"; supported: \"llama\", \"gemma3\""));
  }
  const std::string prefix = arch + ".";
  auto get_int = [&](const char* key) { return index.GetInt(prefix + key); };
  auto get_float = [&](const char* key) { return index.GetFloat(prefix + key); };
  constexpr int64_t kLimit = int64_t{1} << 30;
  auto narrow = [&](const char* key, int64_t v) -> absl::StatusOr<int32_t> {
    if (v < 0 || v > kLimit) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF ", prefix, key, " out of range: ", v));
    }
    return static_cast<int32_t>(v);
  };
  ASSIGN_OR_RETURN(int64_t dim, get_int("embedding_length"));
  ASSIGN_OR_RETURN(c.dim, narrow("embedding_length", dim));
  ASSIGN_OR_RETURN(int64_t layers, get_int("block_count"));
  ASSIGN_OR_RETURN(c.n_layers, narrow("block_count", layers));
  ASSIGN_OR_RETURN(int64_t heads, get_int("attention.head_count"));
  ASSIGN_OR_RETURN(c.n_heads, narrow("attention.head_count", heads));
  absl::StatusOr<int64_t> kv = get_int("attention.head_count_kv");
  if (!kv.ok() && !absl::IsNotFound(kv.status())) return kv.status();
  ASSIGN_OR_RETURN(c.n_kv_heads, narrow("attention.head_count_kv", kv.ok() ? *kv : heads));
  ASSIGN_OR_RETURN(int64_t ffn, get_int("feed_forward_length"));
  ASSIGN_OR_RETURN(c.ffn_dim, narrow("feed_forward_length", ffn));
  if (c.n_heads == 0) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF ", prefix, "attention.head_count is 0"));
  }
  absl::StatusOr<int64_t> key_length = get_int("attention.key_length");
  ASSIGN_OR_RETURN(c.head_dim, narrow("attention.key_length",
                                      key_length.ok() ? *key_length : c.dim / c.n_heads));
  if (absl::StatusOr<int64_t> value_length = get_int("attention.value_length");
      value_length.ok() && *value_length != c.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF ", prefix, "attention.value_length = ", *value_length, " != key_length ",
                     c.head_dim, " (not supported)"));
  }
  if (absl::StatusOr<int64_t> rope_dims = get_int("rope.dimension_count");
      rope_dims.ok() && *rope_dims != c.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF ", prefix, "rope.dimension_count = ", *rope_dims, " != head_dim ",
                     c.head_dim, " (partial rotary embeddings are not supported)"));
  }
  if (absl::StatusOr<double> theta = get_float("rope.freq_base"); theta.ok()) {
    c.rope_theta = static_cast<float>(*theta);
  }
  ASSIGN_OR_RETURN(double eps, get_float("attention.layer_norm_rms_epsilon"));
  c.norm_eps = static_cast<float>(eps);
  if (absl::StatusOr<int64_t> ctx = get_int("context_length"); ctx.ok()) c.max_context = *ctx;
  // Vocabulary: <arch>.vocab_size, else the tokenizer's token list, else the output or
  // embedding tensor's rows.
  if (absl::StatusOr<int64_t> v = get_int("vocab_size"); v.ok()) {
    ASSIGN_OR_RETURN(c.vocab, narrow("vocab_size", *v));
  } else if (const GgufValue* tokens = index.Find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->type == GgufType::kArray) {
    ASSIGN_OR_RETURN(
        c.vocab, narrow("tokenizer.ggml.tokens length", static_cast<int64_t>(tokens->ArraySize())));
  } else {
    const StoredTensor* out = index.FindTensor("output.weight");
    if (out == nullptr) out = index.FindTensor("token_embd.weight");
    if (out == nullptr || out->shape.size() != 2) {
      return absl::InvalidArgumentError("GGUF: cannot tell the vocabulary size");
    }
    ASSIGN_OR_RETURN(c.vocab, narrow("vocabulary", out->shape[0]));
  }
  if (const StoredTensor* freqs = index.FindTensor("rope_freqs.weight"); freqs != nullptr) {
    ASSIGN_OR_RETURN(c.rope_freq_factors, ReadAsFloat(*freqs, {c.head_dim / 2}));
  }
  if (c.arch == Architecture::kGemma3) RETURN_IF_ERROR(ReadGemma3(index, prefix, &c));
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<ModelWeights> LoadGgufModel(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  const GgufIndex& index = file->index();
  absl::StatusOr<ModelConfig> config = ConfigFromGguf(index);
  RETURN_IF_ERROR(WithPath(config.status(), path));
  ModelWeights w;
  w.config = *std::move(config);
  // llama.cpp permutes the Q/K rows of Llama models only; Gemma runs NEOX-style RoPE.
  w.rope_style =
      w.config.arch == Architecture::kLlama ? RopeStyle::kInterleaved : RopeStyle::kRotateHalf;
  w.layers.resize(static_cast<size_t>(w.config.n_layers));
  std::vector<NamedTensor> named;
  for (NamedTensor& t : GgufTensors(w)) {
    if (t.name != "rope_freqs.weight") named.push_back(t);  // read by ConfigFromGguf
  }
  auto find = [&](const std::string& name) { return index.FindTensor(name); };
  RETURN_IF_ERROR(WithPath(FillTensors(std::move(named), find, "output.weight", path, &w), path));
  if (const GgufValue* tokens = index.Find("tokenizer.ggml.tokens");
      tokens != nullptr && static_cast<int64_t>(tokens->strings.size()) == w.config.vocab) {
    w.token_strings = tokens->strings;
  }
  return w;
}

}  // namespace clusterkv::llama
