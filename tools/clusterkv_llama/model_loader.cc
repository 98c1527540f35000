#include "tools/clusterkv_llama/model_loader.h"

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
                         const std::string& output_name, const std::string& path, LlamaWeights* w) {
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

absl::StatusOr<LlamaWeights> LoadModel(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::MappedFile> file, internal::MappedFile::Open(path));
  const absl::Span<const uint8_t> head = file->bytes().subspan(0, 4);
  const bool gguf = head.size() == 4 && std::string(head.begin(), head.end()) == "GGUF";
  file.reset();
  return gguf ? LoadGgufModel(path) : LoadSafetensorsModel(path);
}

absl::StatusOr<LlamaWeights> LoadSafetensorsModel(const std::string& path,
                                                  const std::string& config_path) {
  const std::string cfg_path = config_path.empty() ? ConfigPathNextTo(path) : config_path;
  absl::StatusOr<std::string> cfg_text = ReadText(cfg_path);
  if (!cfg_text.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "a safetensors model needs its Hugging Face config.json: cannot read ", cfg_path));
  }
  absl::StatusOr<LlamaConfig> config = ParseHfConfigJson(*cfg_text);
  RETURN_IF_ERROR(WithPath(config.status(), cfg_path));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  LlamaWeights w;
  w.config = *std::move(config);
  w.rope_style = RopeStyle::kRotateHalf;
  w.layers.resize(static_cast<size_t>(w.config.n_layers));
  const SafetensorsIndex& index = file->index();
  auto find = [&](const std::string& name) { return index.Find(name); };
  RETURN_IF_ERROR(WithPath(FillTensors(HfTensors(w), find, "lm_head.weight", path, &w), path));
  return w;
}

absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufIndex& index) {
  ASSIGN_OR_RETURN(std::string arch, index.GetString("general.architecture"));
  if (arch != "llama") {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF general.architecture is \"", arch, "\"; only \"llama\" is supported"));
  }
  auto get_int = [&](const char* key) { return index.GetInt(absl::StrCat("llama.", key)); };
  auto get_float = [&](const char* key) { return index.GetFloat(absl::StrCat("llama.", key)); };
  constexpr int64_t kLimit = int64_t{1} << 30;
  auto narrow = [&](const char* key, int64_t v) -> absl::StatusOr<int32_t> {
    if (v < 0 || v > kLimit) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF llama.", key, " out of range: ", v));
    }
    return static_cast<int32_t>(v);
  };
  LlamaConfig c;
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
  if (c.n_heads == 0) return absl::InvalidArgumentError("GGUF llama.attention.head_count is 0");
  absl::StatusOr<int64_t> key_length = get_int("attention.key_length");
  ASSIGN_OR_RETURN(c.head_dim, narrow("attention.key_length",
                                      key_length.ok() ? *key_length : c.dim / c.n_heads));
  if (absl::StatusOr<int64_t> rope_dims = get_int("rope.dimension_count");
      rope_dims.ok() && *rope_dims != c.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF llama.rope.dimension_count = ", *rope_dims, " != head_dim ", c.head_dim,
                     " (partial rotary embeddings are not supported)"));
  }
  if (absl::StatusOr<double> theta = get_float("rope.freq_base"); theta.ok()) {
    c.rope_theta = static_cast<float>(*theta);
  }
  ASSIGN_OR_RETURN(double eps, get_float("attention.layer_norm_rms_epsilon"));
  c.norm_eps = static_cast<float>(eps);
  if (absl::StatusOr<int64_t> ctx = get_int("context_length"); ctx.ok()) c.max_context = *ctx;
  // Vocabulary: llama.vocab_size, else the tokenizer's token list, else the output or
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
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<LlamaWeights> LoadGgufModel(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  const GgufIndex& index = file->index();
  absl::StatusOr<LlamaConfig> config = ConfigFromGguf(index);
  RETURN_IF_ERROR(WithPath(config.status(), path));
  LlamaWeights w;
  w.config = *std::move(config);
  w.rope_style = RopeStyle::kInterleaved;
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
