#include "tools/clusterkv_llama/internal/vocab.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "tools/clusterkv_llama/internal/unicode.h"

namespace clusterkv::llama::internal {
namespace {

constexpr char kModelKey[] = "tokenizer.ggml.model";
constexpr char kPreKey[] = "tokenizer.ggml.pre";
constexpr char kTokensKey[] = "tokenizer.ggml.tokens";
constexpr char kScoresKey[] = "tokenizer.ggml.scores";
constexpr char kTypesKey[] = "tokenizer.ggml.token_type";

// Pre-tokenizer names llama.cpp gives the GPT-2, "smollm" (digits one by one, then GPT-2) and
// default splitters, with its clean-up-spaces flag for each.
struct PreTokenizerName {
  const char* name;
  PreTokenizer kind;
  bool clean_spaces;
};
constexpr PreTokenizerName kPreTokenizers[] = {
    {"default", PreTokenizer::kDefault, true},  {"gpt-2", PreTokenizer::kGpt2, true},
    {"phi-2", PreTokenizer::kGpt2, true},       {"mpt", PreTokenizer::kGpt2, true},
    {"olmo", PreTokenizer::kGpt2, true},        {"smollm", PreTokenizer::kSmollm, false},
    {"starcoder", PreTokenizer::kSmollm, true}, {"refact", PreTokenizer::kSmollm, true},
    {"codeshell", PreTokenizer::kSmollm, true}, {"command-r", PreTokenizer::kSmollm, false},
};

// Texts llama.cpp recognizes as end-of-generation tokens (and makes control tokens).
constexpr const char* kEogTexts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
};

// Tokens found by text when the metadata does not name them (llama.cpp's lists); a token
// found this way becomes a control token. The EOT/EOM/FIM pad, repo and separator tokens also
// end generation.
struct AutoDetected {
  const char* key;  // the metadata key that names the token instead
  const char* deprecated_key;
  bool ends_generation;
  std::vector<const char*> texts;
};
const std::vector<AutoDetected>& AutoDetectedTokens() {
  static const auto* const kList = new std::vector<AutoDetected>{
      {"tokenizer.ggml.eot_token_id",
       nullptr,
       true,
       {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}},
      {"tokenizer.ggml.eom_token_id", nullptr, true, {"<|eom_id|>"}},
      {"tokenizer.ggml.fim_pre_token_id",
       "tokenizer.ggml.prefix_token_id",
       false,
       {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
        "<|code_prefix|>", "<|prefix|>"}},
      {"tokenizer.ggml.fim_suf_token_id",
       "tokenizer.ggml.suffix_token_id",
       false,
       {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
        "<|code_suffix|>", "<|suffix|>"}},
      {"tokenizer.ggml.fim_mid_token_id",
       "tokenizer.ggml.middle_token_id",
       false,
       {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
        "<|code_middle|>", "<|middle|>"}},
      {"tokenizer.ggml.fim_pad_token_id",
       nullptr,
       true,
       {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
      {"tokenizer.ggml.fim_rep_token_id",
       nullptr,
       true,
       {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
      {"tokenizer.ggml.fim_sep_token_id", nullptr, true, {"<|file_sep|>"}},
  };
  return *kList;
}

absl::StatusOr<std::optional<bool>> OptionalBool(const GgufIndex& index, const char* key) {
  const GgufValue* v = index.Find(key);
  if (v == nullptr) return std::optional<bool>();
  if (v->type != GgufType::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " is ", GgufTypeName(v->type), ", not bool"));
  }
  return std::optional<bool>(v->bool_value);
}

// A token id named by `key`; `fallback` when the key is absent.
absl::StatusOr<int32_t> OptionalId(const GgufIndex& index, const char* key, int32_t fallback,
                                   int32_t n_tokens) {
  absl::StatusOr<int64_t> v = index.GetInt(key);
  if (absl::IsNotFound(v.status())) return fallback;
  if (!v.ok()) return absl::InvalidArgumentError(v.status().message());
  if (*v < 0 || *v >= n_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " = ", *v, " is outside the vocabulary of ", n_tokens, " tokens"));
  }
  return static_cast<int32_t>(*v);
}

// The metadata array `key` (nullptr when absent): of numbers (any numeric type) when `numeric`,
// else of strings; with `n` elements unless `n` is 0.
absl::StatusOr<const GgufValue*> Array(const GgufIndex& index, const char* key, bool numeric,
                                       size_t n) {
  const GgufValue* v = index.Find(key);
  if (v == nullptr) return nullptr;
  if (v->type != GgufType::kArray) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " is ", GgufTypeName(v->type), ", not an array"));
  }
  const bool is_string = v->element_type == GgufType::kString;
  const bool is_number = !is_string && v->element_type != GgufType::kArray;
  if (numeric ? !is_number : !is_string) {
    return absl::InvalidArgumentError(absl::StrCat(key, " is an array of ",
                                                   GgufTypeName(v->element_type), ", not of ",
                                                   numeric ? "numbers" : "strings"));
  }
  const size_t have = numeric ? v->numbers.size() : v->strings.size();
  if (have != v->ArraySize() || (n != 0 && have != n)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " has ", have, " elements, the token list ", n));
  }
  return v;
}

// llama.cpp's lenient UTF-8 reading of a token text: a bad byte reads as U+FFFD.
std::vector<uint32_t> LenientCodepoints(absl::string_view s) {
  std::vector<uint32_t> out;
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const size_t len = Utf8Length(b[i]);
    bool ok = b[i] < 0x80 || (len > 1 && i + len <= s.size());
    for (size_t k = 1; ok && k < len; ++k) ok = (b[i + k] & 0xC0) == 0x80;
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    uint32_t cp = len == 1 ? b[i] : b[i] & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (b[i + k] & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}

// A byte-level BPE token's bytes: each code point of its text stands for one byte. A code
// point outside the alphabet is written as llama.cpp writes it.
std::string DecodeByteLevel(const std::string& text) {
  std::string out;
  for (const uint32_t cp : LenientCodepoints(text)) {
    const int b = ByteFromCodepoint(cp);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    std::string utf8;
    AppendUtf8(cp, &utf8);
    out += "[UNK_BYTE_0x";
    for (const char c : utf8) absl::StrAppendFormat(&out, "%02x", static_cast<uint8_t>(c));
    out += text + "]";
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xXX>" token, or -1.
int ByteTokenValue(const std::string& text) {
  if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
  const int hi = HexDigit(text[3]), lo = HexDigit(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

uint32_t AttrOfType(int64_t type) {
  switch (type) {
    case 1:
      return kAttrNormal;
    case 2:
      return kAttrUnknown;
    case 3:
      return kAttrControl;
    case 4:
      return kAttrUserDefined;
    case 5:
      return kAttrUnused;
    case 6:
      return kAttrByte;
    default:
      return 0;  // undefined
  }
}

absl::Status ReadModel(const GgufIndex& index, Vocab* v) {
  absl::StatusOr<std::string> model = index.GetString(kModelKey);
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("no tokenizer: ", model.status().message()));
  }
  v->model_name = *model;
  if (*model == "llama") {
    v->type = VocabType::kSpm;
    v->add_space_prefix = true;
    v->add_bos = true;
    return absl::OkStatus();
  }
  if (*model != "gpt2") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported tokenizer model '", *model, "' (",
                                                   kModelKey, "; known: gpt2, llama)"));
  }
  v->type = VocabType::kBpe;
  if (const GgufValue* pre = index.Find(kPreKey); pre != nullptr) {
    absl::StatusOr<std::string> name = index.GetString(kPreKey);
    if (!name.ok()) return absl::InvalidArgumentError(name.status().message());
    v->pre_name = *name;
  }
  const std::string name = v->pre_name.empty() ? "default" : v->pre_name;
  for (const PreTokenizerName& p : kPreTokenizers) {
    if (name == p.name) {
      v->pre = p.kind;
      v->clean_spaces = p.clean_spaces;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported pre-tokenizer '", name, "' (", kPreKey, " of a gpt2 tokenizer)"));
}

absl::Status ReadTokens(const GgufIndex& index, Vocab* v) {
  absl::StatusOr<const GgufValue*> tokens = Array(index, kTokensKey, false, 0);
  if (!tokens.ok()) return tokens.status();
  if (*tokens == nullptr || (*tokens)->strings.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no token list (", kTokensKey, ")"));
  }
  const size_t n = (*tokens)->strings.size();
  if (n >= static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(kTokensKey, " has ", n, " tokens"));
  }
  absl::StatusOr<const GgufValue*> scores = Array(index, kScoresKey, true, n);
  if (!scores.ok()) return scores.status();
  absl::StatusOr<const GgufValue*> types = Array(index, kTypesKey, true, n);
  if (!types.ok()) return types.status();

  v->texts = (*tokens)->strings;
  v->scores.assign(n, 0.0f);
  v->attrs.assign(n, kAttrNormal);
  if (const int32_t repeated = v->index.Build(v->texts); repeated >= 0) {
    const std::string& text = v->texts[repeated];
    return absl::InvalidArgumentError(absl::StrCat(
        "token ", repeated, " repeats the text of token ", v->Find(text), ": \"", text, "\""));
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = v->texts[i];
    if (text.empty()) return absl::InvalidArgumentError(absl::StrCat("token ", i, " is empty"));
    if (*scores != nullptr) v->scores[i] = static_cast<float>((*scores)->numbers[i]);
    if (*types != nullptr) v->attrs[i] = AttrOfType(static_cast<int64_t>((*types)->numbers[i]));
    if ((v->attrs[i] & kAttrByte) && ByteTokenValue(text) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("byte token ", i, " is \"", text, "\", not <0xXX>"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadFlagsAndIds(const GgufIndex& index, Vocab* v) {
  struct Flag {
    const char* key;
    bool* value;
  };
  for (const Flag& f : {Flag{"tokenizer.ggml.add_space_prefix", &v->add_space_prefix},
                        Flag{"tokenizer.ggml.add_bos_token", &v->add_bos},
                        Flag{"tokenizer.ggml.add_eos_token", &v->add_eos}}) {
    absl::StatusOr<std::optional<bool>> b = OptionalBool(index, f.key);
    if (!b.ok()) return b.status();
    if (b->has_value()) *f.value = **b;
  }
  // llama.cpp's defaults when the metadata names no id, dropped when outside the vocabulary.
  const int32_t n = v->size();
  const bool spm = v->type == VocabType::kSpm;
  auto fallback = [n](int32_t id) { return id < n ? id : -1; };
  struct Id {
    const char* key;
    int32_t fallback;
    int32_t* value;
  };
  for (const Id& id : {Id{"tokenizer.ggml.bos_token_id", fallback(spm ? 1 : 11), &v->bos},
                       Id{"tokenizer.ggml.eos_token_id", fallback(spm ? 2 : 11), &v->eos},
                       Id{"tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &v->unk}}) {
    absl::StatusOr<int32_t> got = OptionalId(index, id.key, id.fallback, n);
    if (!got.ok()) return got.status();
    *id.value = *got;
  }
  return absl::OkStatus();
}

// The end-of-generation set and the control marks llama.cpp adds by token text.
absl::Status FindEndOfGeneration(const GgufIndex& index, Vocab* v) {
  const int32_t n = v->size();
  std::vector<int32_t> eog;
  for (const AutoDetected& a : AutoDetectedTokens()) {
    absl::StatusOr<int32_t> id = OptionalId(index, a.key, -1, n);
    if (!id.ok()) return id.status();
    if (*id < 0 && a.deprecated_key != nullptr) {
      id = OptionalId(index, a.deprecated_key, -1, n);
      if (!id.ok()) return id.status();
    }
    if (*id < 0) {
      for (const char* text : a.texts) {
        const int32_t found = v->Find(text);
        if (found >= 0 && (*id < 0 || found < *id)) *id = found;
      }
      if (*id >= 0) v->attrs[*id] |= kAttrControl;
    }
    if (*id >= 0 && a.ends_generation) eog.push_back(*id);
  }
  for (const char* text : kEogTexts) {
    const int32_t id = v->Find(text);
    if (id < 0) continue;
    eog.push_back(id);
    v->attrs[id] |= kAttrControl;
  }
  for (const char* text : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    if (const int32_t id = v->Find(text); id >= 0) v->attrs[id] = kAttrUserDefined;
  }
  if (v->eos >= 0) eog.push_back(v->eos);
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  v->eog = std::move(eog);

  // Vocabularies with <|return|> and <|call|> (or <|calls|> and <|flush|>) end turns that
  // continue with <|end|>, so <|end|> is not an end of generation there; and where
  // <|tool_response> or <|plamo:eos|> ends generation, </s> is ordinary text.
  auto has = [v](const char* text) {
    const int32_t id = v->Find(text);
    return id >= 0 && v->IsEog(id);
  };
  auto drop = [v](const char* text, uint32_t attr) {
    const int32_t id = v->Find(text);
    v->eog.erase(std::remove(v->eog.begin(), v->eog.end(), id), v->eog.end());
    v->attrs[id] = attr;
  };
  const bool has_call = has("<|call|>") || has("<|calls|>");
  if (has("<|end|>") && has_call && (has("<|return|>") || has("<|flush|>"))) {
    drop("<|end|>", kAttrUserDefined);
  }
  if (has("</s>") && (has("<|tool_response>") || has("<|plamo:eos|>"))) {
    drop("</s>", kAttrNormal);
  }
  return absl::OkStatus();
}

void BuildDerived(Vocab* v) {
  const int32_t n = v->size();
  for (int32_t id = 0; id < n; ++id) {
    if (v->attrs[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) v->special.push_back(id);
  }
  std::sort(v->special.begin(), v->special.end(), [v](int32_t a, int32_t b) {
    const size_t la = v->texts[a].size(), lb = v->texts[b].size();
    return la != lb ? la > lb : a < b;
  });

  v->pieces.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const uint32_t attr = v->attrs[id];
    const std::string& text = v->texts[id];
    std::string& piece = v->pieces[id];
    if (attr & (kAttrControl | kAttrUnknown | kAttrUserDefined)) {
      piece = text;
    } else if (attr & kAttrNormal) {
      piece = v->type == VocabType::kBpe ? DecodeByteLevel(text)
                                         : absl::StrReplaceAll(text, {{"▁", " "}});
    } else if (attr & kAttrByte) {
      piece = std::string(1, static_cast<char>(ByteTokenValue(text)));
    }
  }

  for (int b = 0; b < 256; ++b) {
    int32_t id = v->Find(absl::StrFormat("<0x%02X>", b));
    if (id < 0) id = v->Find(std::string(1, static_cast<char>(b)));
    v->byte_fallback[b] = id >= 0 ? id : v->unk;
  }
}

}  // namespace

bool Vocab::IsEog(int32_t id) const { return std::binary_search(eog.begin(), eog.end(), id); }

absl::StatusOr<std::unique_ptr<Vocab>> LoadVocab(const GgufIndex& index) {
  auto v = std::make_unique<Vocab>();
  if (absl::Status s = ReadModel(index, v.get()); !s.ok()) return s;
  if (absl::Status s = ReadTokens(index, v.get()); !s.ok()) return s;
  if (absl::Status s = ReadFlagsAndIds(index, v.get()); !s.ok()) return s;
  if (absl::Status s = FindEndOfGeneration(index, v.get()); !s.ok()) return s;
  BuildDerived(v.get());
  return v;
}

}  // namespace clusterkv::llama::internal
