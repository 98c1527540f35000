// The tokenizer (tools/clusterkv_llama/tokenizer.h) against llama.cpp's own: every case of
// tests/data/llama/tokenizer_golden.json (made by reference/make_tokenizer_golden.py with
// llama-cpp-python) gives the same ids and the same decoded text, and the same BOS/EOS,
// end-of-generation and control tokens, for the real GGUF models (SmolLM2: byte-level BPE;
// Gemma 3: SentencePiece-style) and SmolLM2's vocabulary under the "default" and "gpt-2"
// pre-tokenizers. Then: decode(encode(x)) == x, encode time on 200k characters, and tiny
// hand-built vocabularies (written with WriteGguf) for merge order, byte fallback,
// special-token matching, malformed metadata, invalid UTF-8 and the streaming decoder.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/model_files.h"
#include "tests/testing/temp_dir.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/tokenizer.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::TempDir;
using Ids = std::vector<int32_t>;

// ---------------------------------------------------------------------------------------------
// Real models and the golden file.

const nlohmann::json& Golden() {
  static const nlohmann::json* const golden = [] {
    std::ifstream in(std::string(CLUSTERKV_TEST_DATA_DIR) + "/llama/tokenizer_golden.json");
    auto* j = new nlohmann::json(nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false));
    return j;
  }();
  return *golden;
}

// The tokenizer of a model file of the cache, with tokenizer.ggml.pre replaced when
// `pre_override` is set; cached per (file, override). Null (and a test failure naming the fix)
// when the file is missing.
const Tokenizer* ModelTokenizer(const std::string& file, const std::string& pre_override = "") {
  static auto* const cache = new std::map<std::string, std::unique_ptr<Tokenizer>>();
  const std::string key = file + "|" + pre_override;
  if (auto it = cache->find(key); it != cache->end()) return it->second.get();
  const std::string path = clusterkv::testing::ModelPath(file);
  if (const std::string missing = clusterkv::testing::MissingModelMessage(file); !missing.empty()) {
    ADD_FAILURE() << missing;
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<GgufFile>> gguf = GgufFile::Open(path);
  if (!gguf.ok()) {
    ADD_FAILURE() << gguf.status();
    return nullptr;
  }
  GgufIndex index = (*gguf)->index();
  if (!pre_override.empty()) {
    for (auto& [k, v] : index.metadata) {
      if (k == "tokenizer.ggml.pre") v = GgufValue::String(pre_override);
    }
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromGguf(index);
  if (!tok.ok()) {
    ADD_FAILURE() << path << ": " << tok.status();
    return nullptr;
  }
  return cache->emplace(key, *std::move(tok)).first->second.get();
}

const Tokenizer* SmolLm() { return ModelTokenizer("SmolLM2-135M-Instruct.Q4_1.gguf"); }
const Tokenizer* Gemma() { return ModelTokenizer("gemma-3-270m-q4_k_m.gguf"); }

std::string Describe(const Tokenizer& tok, const Ids& ids) {
  std::string out;
  for (const int32_t id : ids) {
    absl::StrAppend(&out, id, ":\"", absl::CHexEscape(tok.TokenPiece(id)), "\" ");
  }
  return out;
}

// The expected decoded text of a case: "decoded" as text, or "decoded_hex" as bytes.
std::string GoldenText(const nlohmann::json& c, const std::string& key) {
  if (c.contains(key)) return c[key].get<std::string>();
  std::string bytes;
  const std::string hex = c[key + "_hex"].get<std::string>();
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

TEST(LlamaTokenizerGoldenTest, EveryCaseMatchesLlamaCpp) {
  const nlohmann::json& golden = Golden();
  ASSERT_FALSE(golden.is_discarded()) << "cannot read tests/data/llama/tokenizer_golden.json";
  ASSERT_GE(golden["models"].size(), 2u);
  for (const nlohmann::json& model : golden["models"]) {
    const std::string name = model["name"].get<std::string>();
    SCOPED_TRACE(name);
    const std::string pre =
        model["pre_override"].is_null() ? "" : model["pre_override"].get<std::string>();
    const Tokenizer* tok = ModelTokenizer(model["file"].get<std::string>(), pre);
    if (tok == nullptr) continue;

    EXPECT_EQ(tok->vocab_size(), model["vocab_size"].get<int32_t>());
    EXPECT_EQ(tok->bos_id(), model["bos"].get<int32_t>());
    EXPECT_EQ(tok->eos_id(), model["eos"].get<int32_t>());
    EXPECT_EQ(tok->add_bos_default(), model["add_bos"].get<bool>());
    EXPECT_EQ(tok->add_eos_default(), model["add_eos"].get<bool>());
    const auto eog = model["eog"].get<std::vector<int32_t>>();
    Ids our_eog;
    for (int32_t id = 0; id < tok->vocab_size(); ++id) {
      if (tok->IsEndOfGeneration(id)) our_eog.push_back(id);
    }
    EXPECT_EQ(our_eog, eog);
    for (const int32_t id : model["control"].get<Ids>()) EXPECT_TRUE(tok->IsControl(id)) << id;
    if (model.contains("control_count")) {
      int32_t controls = 0;
      for (int32_t id = 0; id < tok->vocab_size(); ++id) controls += tok->IsControl(id);
      EXPECT_EQ(controls, model["control_count"].get<int32_t>());
    }

    int checked = 0;
    for (const nlohmann::json& c : model["cases"]) {
      const std::string text = c["text"].get<std::string>();
      const bool add_special = c["add_special"].get<bool>();
      const bool parse_special = c["parse_special"].get<bool>();
      SCOPED_TRACE(absl::StrCat(c["name"].get<std::string>(), " add_special=", add_special,
                                " parse_special=", parse_special));
      EncodeOptions options;
      if (!add_special) options.add_bos = options.add_eos = false;
      options.parse_special = parse_special;
      absl::StatusOr<Ids> ids = tok->Encode(text, options);
      ASSERT_TRUE(ids.ok()) << ids.status();
      const Ids want = c["ids"].get<Ids>();
      EXPECT_EQ(*ids, want) << "text \"" << absl::CHexEscape(text.substr(0, 200))
                            << "\"\n got:  " << Describe(*tok, *ids).substr(0, 2000)
                            << "\n want: " << Describe(*tok, want).substr(0, 2000);
      EXPECT_EQ(tok->Decode(want, /*render_special=*/true), GoldenText(c, "decoded"));
      EXPECT_EQ(tok->Decode(want, /*render_special=*/false), GoldenText(c, "decoded_plain"));
      ++checked;
    }
    EXPECT_GT(checked, 20);
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips and speed on the real vocabularies.

// The texts of the golden file's first model (none when the file cannot be read; the golden
// test reports that).
std::vector<std::pair<std::string, std::string>> GoldenTexts() {
  std::vector<std::pair<std::string, std::string>> texts;
  const nlohmann::json& golden = Golden();
  if (golden.is_discarded() || golden["models"].empty()) return texts;
  for (const nlohmann::json& c : golden["models"][0]["cases"]) {
    texts.emplace_back(c["name"].get<std::string>(), c["text"].get<std::string>());
  }
  return texts;
}

std::vector<std::string> RoundTripTexts() {
  std::vector<std::string> texts;
  for (const auto& [name, text] : GoldenTexts()) {
    if (texts.empty() || texts.back() != text) texts.push_back(text);
  }
  // Seeded random strings over ASCII, Latin, Greek, CJK, emoji and odd white space.
  const std::vector<std::string> alphabet = {
      "a", "b", "Z",      "0",      "7", " ", " ", "\n", "\t", "\r", "'",  "s",
      ".", ",", "!",      "<",      "|", ">", "é", "ß",  "Ω",  "ж",  "中", "文",
      "😀", "👍", "\u00A0", "\u3000", "١", "½", "_", "-",  "\\", "\"", "ll", "\xF0\x9F\x8F\xBD"};
  std::mt19937 rng(12345);
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 48);
    for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    texts.push_back(s);
  }
  return texts;
}

TEST(LlamaTokenizerTest, DecodeOfEncodeIsTheText) {
  for (const Tokenizer* tok : {SmolLm(), Gemma()}) {
    if (tok == nullptr) continue;
    SCOPED_TRACE(tok->model_name());
    for (const std::string& text : RoundTripTexts()) {
      EncodeOptions plain;
      plain.add_bos = plain.add_eos = false;
      absl::StatusOr<Ids> ids = tok->Encode(text, plain);
      ASSERT_TRUE(ids.ok()) << ids.status();
      // SentencePiece vocabularies write spaces as U+2581, so a U+2581 in the text comes back
      // as a space (in llama.cpp too).
      const std::string want =
          tok->model_name() == "llama" ? absl::StrReplaceAll(text, {{"\xE2\x96\x81", " "}}) : text;
      EXPECT_EQ(tok->Decode(*ids, /*render_special=*/true), want) << absl::CHexEscape(text);
    }
  }
}

TEST(LlamaTokenizerTest, ArbitraryBytesAndIdsNeverCrash) {
  std::mt19937 rng(777);
  for (const Tokenizer* tok : {SmolLm(), Gemma()}) {
    if (tok == nullptr) continue;
    for (int i = 0; i < 500; ++i) {
      std::string bytes(rng() % 64, '\0');
      for (char& c : bytes) c = static_cast<char>(rng() % 256);
      EncodeOptions o;
      o.parse_special = (i % 2) == 0;
      absl::StatusOr<Ids> ids = tok->Encode(bytes, o);
      if (!ids.ok()) {
        EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
        EXPECT_TRUE(absl::StrContains(ids.status().message(), "byte offset")) << ids.status();
      }
      Ids random_ids(rng() % 32);
      for (int32_t& id : random_ids) {
        id = static_cast<int32_t>(rng() % (tok->vocab_size() + 20)) - 10;
      }
      TokenStreamDecoder stream(*tok, (i % 3) == 0);
      std::string streamed;
      for (const int32_t id : random_ids) streamed += stream.Push(id);
      streamed += stream.Flush();
      EXPECT_TRUE(tok->Encode(streamed, {}).ok()) << "stream output is not valid UTF-8";
      (void)tok->Decode(random_ids, (i % 2) == 0);
    }
  }
}

TEST(LlamaTokenizerTest, BosFollowsTheFileUnlessOverridden) {
  const Tokenizer* smol = SmolLm();
  const Tokenizer* gemma = Gemma();
  if (smol == nullptr || gemma == nullptr) return;
  EncodeOptions with_bos;
  with_bos.add_bos = true;
  EncodeOptions without_bos;
  without_bos.add_bos = false;
  // SmolLM2's file says no BOS; Gemma's says BOS.
  EXPECT_EQ(smol->Encode("Hi", {})->front(), smol->Encode("Hi", without_bos)->front());
  EXPECT_EQ(smol->Encode("Hi", with_bos)->front(), 1);
  EXPECT_EQ(gemma->Encode("Hi", {})->front(), 2);
  EXPECT_NE(gemma->Encode("Hi", without_bos)->front(), 2);
  EXPECT_EQ(*gemma->Encode("", {}), Ids{2});
  EXPECT_TRUE(smol->Encode("", {})->empty());
  EXPECT_TRUE(smol->IsEndOfGeneration(2));     // <|im_end|>
  EXPECT_TRUE(gemma->IsEndOfGeneration(106));  // <end_of_turn>
  EXPECT_EQ(smol->model_name(), "gpt2");
  EXPECT_EQ(gemma->model_name(), "llama");
}

std::string LongText(size_t chars) {
  std::string base;
  for (const auto& [name, text] : GoldenTexts()) {
    if (name == "austen") base = text;
  }
  if (base.empty()) base = "It is a truth universally acknowledged, that a single man.\n";
  std::string text;
  while (text.size() < chars) text += base + "\n\n";
  text.resize(chars);
  return text;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr double kEncodeSecondsLimit = 30.0;  // sanitizers run about ten times slower
#else
constexpr double kEncodeSecondsLimit = 3.0;  // well under 0.5 s when the machine is idle
#endif

TEST(LlamaTokenizerTest, EncodesTwoHundredThousandCharactersQuickly) {
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"austen", LongText(200000)},
      {"one letter", std::string(200000, 'a')},
      {"spaces", std::string(200000, ' ')},
      {"digits", std::string(200000, '7')},
      {"newlines", std::string(200000, '\n')},
      {"angle brackets", std::string(200000, '<')},
  };
  for (const Tokenizer* tok : {SmolLm(), Gemma()}) {
    if (tok == nullptr) continue;
    for (const auto& [name, text] : inputs) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<Ids> ids = tok->Encode(text, {});
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ASSERT_TRUE(ids.ok()) << ids.status();
      std::cout << tok->model_name() << " " << name << ": " << text.size() << " bytes -> "
                << ids->size() << " tokens in " << seconds * 1e3 << " ms\n";
      // A quadratic merge loop takes minutes here; the bound leaves room for a loaded machine.
      EXPECT_LT(seconds, kEncodeSecondsLimit) << tok->model_name() << " " << name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tiny hand-built vocabularies.

GgufValue Types(std::vector<double> types) {
  return GgufValue::NumberArray(GgufType::kInt32, std::move(types));
}

// Writes `metadata` with WriteGguf and reads the tokenizer back.
absl::StatusOr<std::unique_ptr<Tokenizer>> TinyTokenizer(const GgufMetadata& metadata) {
  TempDir dir("tokenizer");
  const std::string path = dir.Sub("vocab.gguf");
  if (absl::Status s = WriteGguf(path, metadata, {}); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  return Tokenizer::FromGguf((*file)->index());
}

void Set(GgufMetadata* md, const std::string& key, GgufValue value) {
  for (auto& [k, v] : *md) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  md->emplace_back(key, std::move(value));
}

void Erase(GgufMetadata* md, const std::string& key) {
  for (auto it = md->begin(); it != md->end(); ++it) {
    if (it->first == key) {
      md->erase(it);
      return;
    }
  }
}

// Byte-level BPE. Ids: 0 <|endoftext|> (control), 1 a, 2 b, 3 c, 4 Ġ (space), 5 ab, 6 bc,
// 7 Ġa, 8 aa, 9 <|im_end|> (control), 10 <ud> (user-defined), 11 cc, 12 ccc (user-defined).
GgufMetadata TinyBpe() {
  GgufMetadata md;
  md.emplace_back("tokenizer.ggml.model", GgufValue::String("gpt2"));
  md.emplace_back("tokenizer.ggml.pre", GgufValue::String("gpt-2"));
  md.emplace_back("tokenizer.ggml.tokens",
                  GgufValue::StringArray({"<|endoftext|>", "a", "b", "c", "\xC4\xA0", "ab", "bc",
                                          "\xC4\xA0"
                                          "a",
                                          "aa", "<|im_end|>", "<ud>", "cc", "ccc"}));
  md.emplace_back("tokenizer.ggml.token_type", Types({3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 4, 4}));
  // "b c" outranks "a b"; "a a" ties are taken leftmost.
  md.emplace_back("tokenizer.ggml.merges",
                  GgufValue::StringArray({"b c", "a b", "\xC4\xA0 a", "a a"}));
  md.emplace_back("tokenizer.ggml.bos_token_id", GgufValue::Uint32(0));
  md.emplace_back("tokenizer.ggml.eos_token_id", GgufValue::Uint32(0));
  return md;
}

Ids EncodeOrDie(const Tokenizer& tok, const std::string& text, bool parse_special = false) {
  EncodeOptions o;
  o.parse_special = parse_special;
  absl::StatusOr<Ids> ids = tok.Encode(text, o);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : Ids{};
}

TEST(LlamaTokenizerTinyTest, BpeMergesByRankThenLeftmost) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(TinyBpe());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(EncodeOrDie(**tok, "abc"), (Ids{1, 6}));  // b+c (rank 0) before a+b (rank 1)
  EXPECT_EQ(EncodeOrDie(**tok, "ab"), (Ids{5}));
  EXPECT_EQ(EncodeOrDie(**tok, "aaa"), (Ids{8, 1}));  // equal ranks: leftmost first
  EXPECT_EQ(EncodeOrDie(**tok, "b a"), (Ids{2, 7}));  // " a" is one word, Ġ+a merges
  EXPECT_EQ(EncodeOrDie(**tok, "adb"), (Ids{1, 2}));  // no token for 'd': dropped
  EXPECT_EQ((*tok)->Decode({2, 7, 5}, false), "b aab");
  EXPECT_FALSE((*tok)->add_bos_default());
  EXPECT_TRUE((*tok)->IsEndOfGeneration(0));
  EXPECT_TRUE((*tok)->IsEndOfGeneration(9));  // <|im_end|> by its text
  EXPECT_FALSE((*tok)->IsEndOfGeneration(1));
}

TEST(LlamaTokenizerTinyTest, SpecialTokensMatchAsWholeStrings) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(TinyBpe());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(EncodeOrDie(**tok, "a<|im_end|>b", /*parse_special=*/true), (Ids{1, 9, 2}));
  // Without parse_special the control token is text (none of its characters is a token).
  EXPECT_EQ(EncodeOrDie(**tok, "a<|im_end|>b", /*parse_special=*/false), (Ids{1, 2}));
  // User-defined tokens match either way; the longest text first.
  EXPECT_EQ(EncodeOrDie(**tok, "a<ud>b"), (Ids{1, 10, 2}));
  EXPECT_EQ(EncodeOrDie(**tok, "cccc"), (Ids{12, 3}));
  EXPECT_EQ(EncodeOrDie(**tok, "ccccc"), (Ids{12, 11}));
  EXPECT_EQ((*tok)->Decode({1, 9, 2}, /*render_special=*/true), "a<|im_end|>b");
  EXPECT_EQ((*tok)->Decode({1, 9, 2}, /*render_special=*/false), "ab");
  EXPECT_EQ((*tok)->Decode({1, 10, 2}, /*render_special=*/false), "a<ud>b");
  EncodeOptions bos;
  bos.add_bos = true;
  EXPECT_EQ(*(*tok)->Encode("a", bos), (Ids{0, 1}));
}

// SentencePiece style. Ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, 259 ▁, 260 a,
// 261 b, 262 c, 263 ab, 264 bc, 265 ▁a, 266 <ctl> (control).
GgufMetadata TinySpm(float ab_score, float bc_score) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<double> types = {2, 3, 3};
  std::vector<double> scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tokens.push_back(name);
    types.push_back(6);
    scores.push_back(0);
  }
  for (const auto& [text, score] : std::vector<std::pair<std::string, float>>{{"\xE2\x96\x81", -5},
                                                                              {"a", -3},
                                                                              {"b", -3},
                                                                              {"c", -3},
                                                                              {"ab", ab_score},
                                                                              {"bc", bc_score},
                                                                              {"\xE2\x96\x81"
                                                                               "a",
                                                                               -0.5f}}) {
    tokens.push_back(text);
    types.push_back(1);
    scores.push_back(score);
  }
  tokens.push_back("<ctl>");
  types.push_back(3);
  scores.push_back(0);
  GgufMetadata md;
  md.emplace_back("tokenizer.ggml.model", GgufValue::String("llama"));
  md.emplace_back("tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  md.emplace_back("tokenizer.ggml.scores",
                  GgufValue::NumberArray(GgufType::kFloat32, std::move(scores)));
  md.emplace_back("tokenizer.ggml.token_type", Types(std::move(types)));
  md.emplace_back("tokenizer.ggml.add_space_prefix", GgufValue::Bool(false));
  return md;
}

constexpr int32_t kByte0 = 3;

TEST(LlamaTokenizerTinyTest, SpmMergesByScoreThenLeftmost) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> higher_ab = TinyTokenizer(TinySpm(-1, -2));
  ASSERT_TRUE(higher_ab.ok()) << higher_ab.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> higher_bc = TinyTokenizer(TinySpm(-2, -1));
  ASSERT_TRUE(higher_bc.ok()) << higher_bc.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tie = TinyTokenizer(TinySpm(-1, -1));
  ASSERT_TRUE(tie.ok()) << tie.status();
  EncodeOptions plain;
  plain.add_bos = false;
  EXPECT_EQ(*(*higher_ab)->Encode("abc", plain), (Ids{263, 262}));
  EXPECT_EQ(*(*higher_bc)->Encode("abc", plain), (Ids{260, 264}));
  EXPECT_EQ(*(*tie)->Encode("abc", plain), (Ids{263, 262}));
  EXPECT_EQ(*(*tie)->Encode("c a", plain), (Ids{262, 265}));  // ' ' is ▁, ▁a a token
  EXPECT_EQ(*(*tie)->Encode("abc", {}), (Ids{1, 263, 262}));  // llama vocabularies add BOS
  EXPECT_EQ((*tie)->Decode({262, 265}, false), "c a");
}

TEST(LlamaTokenizerTinyTest, SpmFallsBackToBytesThenUnk) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(TinySpm(-1, -1));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EncodeOptions plain;
  plain.add_bos = false;
  EXPECT_EQ(*(*tok)->Encode("aé", plain), (Ids{260, kByte0 + 0xC3, kByte0 + 0xA9}));
  EXPECT_EQ((*tok)->Decode({260, kByte0 + 0xC3, kByte0 + 0xA9}, false), "aé");
  // Without byte tokens, UNK stands for each byte.
  GgufMetadata md = TinySpm(-1, -1);
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "a"};
  Set(&md, "tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  Set(&md, "tokenizer.ggml.token_type", Types({2, 3, 3, 1}));
  Set(&md, "tokenizer.ggml.scores", GgufValue::NumberArray(GgufType::kFloat32, {0, 0, 0, 0}));
  absl::StatusOr<std::unique_ptr<Tokenizer>> no_bytes = TinyTokenizer(md);
  ASSERT_TRUE(no_bytes.ok()) << no_bytes.status();
  EXPECT_EQ(*(*no_bytes)->Encode("aé", plain), (Ids{3, 0, 0}));
}

TEST(LlamaTokenizerTinyTest, SpmSpacePrefixFollowsTheFile) {
  GgufMetadata md = TinySpm(-1, -1);
  Erase(&md, "tokenizer.ggml.add_space_prefix");  // "llama" default: prefix on
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(md);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EncodeOptions plain;
  plain.add_bos = false;
  plain.parse_special = true;
  EXPECT_EQ(*(*tok)->Encode("a", plain), (Ids{265}));
  // The prefix also follows each special token.
  EXPECT_EQ(*(*tok)->Encode("a<ctl>a", plain), (Ids{265, 266, 265}));
  // llama.cpp drops the first piece's leading space, and only the first piece's.
  EXPECT_EQ((*tok)->Decode({265, 265}, false), "a a");
  EXPECT_EQ((*tok)->Decode({1, 265}, false), " a");
}

TEST(LlamaTokenizerTinyTest, StreamDecoderWaitsForWholeCharacters) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(TinySpm(-1, -1));
  ASSERT_TRUE(tok.ok()) << tok.status();
  TokenStreamDecoder stream(**tok, /*render_special=*/false);
  EXPECT_EQ(stream.Push(260), "a");
  const std::string emoji = "\xF0\x9F\x98\x80";
  for (size_t i = 0; i + 1 < emoji.size(); ++i) {
    EXPECT_EQ(stream.Push(kByte0 + static_cast<uint8_t>(emoji[i])), "") << i;
  }
  EXPECT_EQ(stream.Push(kByte0 + static_cast<uint8_t>(emoji.back())), emoji);
  EXPECT_EQ(stream.Push(1), "");                          // <s> not rendered
  EXPECT_EQ(stream.Push(kByte0 + 0xFF), "\xEF\xBF\xBD");  // never valid UTF-8
  EXPECT_EQ(stream.Push(kByte0 + 0xC3), "");
  EXPECT_EQ(stream.Push(260),
            "\xEF\xBF\xBD"
            "a");  // the character was cut short
  EXPECT_EQ(stream.Push(kByte0 + 0xE2), "");
  EXPECT_EQ(stream.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.Flush(), "");
}

TEST(LlamaTokenizerTinyTest, InvalidUtf8IsRefusedWithItsOffset) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(TinyBpe());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<std::pair<std::string, std::string>> bad = {
      {std::string("ab\xFF"
                   "cd"),
       "offset 2"},
      {std::string("\xC0\xAF"), "offset 0"},
      {std::string("a\xED\xA0\x80"), "offset 1"},
      {std::string("abc\xE2\x82"), "offset 3"},
      {std::string("\x80"), "offset 0"},
      {std::string("a\xF4\x90\x80\x80"), "offset 1"},
  };
  for (const auto& [text, where] : bad) {
    absl::StatusOr<Ids> ids = (*tok)->Encode(text, {});
    ASSERT_FALSE(ids.ok()) << absl::CHexEscape(text);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(ids.status().message(), where)) << ids.status();
  }
}

void ExpectRefused(const GgufMetadata& md, const std::string& needle) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(md);
  ASSERT_FALSE(tok.ok()) << "accepted; expected an error naming " << needle;
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << tok.status();
  EXPECT_TRUE(absl::StrContains(tok.status().message(), needle)) << tok.status();
}

TEST(LlamaTokenizerTinyTest, UnknownModelsAndPreTokenizersAreRefusedByName) {
  GgufMetadata md = TinyBpe();
  Set(&md, "tokenizer.ggml.model", GgufValue::String("bert"));
  ExpectRefused(md, "'bert'");
  md = TinyBpe();
  Set(&md, "tokenizer.ggml.pre", GgufValue::String("qwen2"));
  ExpectRefused(md, "'qwen2'");
  md = TinyBpe();
  Erase(&md, "tokenizer.ggml.model");
  ExpectRefused(md, "tokenizer.ggml.model");
  md = TinyBpe();
  Erase(&md, "tokenizer.ggml.pre");  // llama.cpp's fallback: the default pre-tokenizer
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = TinyTokenizer(md);
  EXPECT_TRUE(tok.ok()) << tok.status();
}

TEST(LlamaTokenizerTinyTest, MalformedVocabulariesAreRefused) {
  GgufMetadata md = TinyBpe();
  Erase(&md, "tokenizer.ggml.tokens");
  ExpectRefused(md, "tokenizer.ggml.tokens");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.tokens", GgufValue::NumberArray(GgufType::kInt32, {1, 2}));
  ExpectRefused(md, "tokenizer.ggml.tokens");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.token_type", Types({1, 1, 1}));
  ExpectRefused(md, "tokenizer.ggml.token_type");

  md = TinySpm(-1, -1);
  Set(&md, "tokenizer.ggml.scores", GgufValue::StringArray({"x"}));
  ExpectRefused(md, "tokenizer.ggml.scores");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.tokens",
      GgufValue::StringArray({"<|endoftext|>", "a", "b", "c", "\xC4\xA0", "ab", "bc",
                              "\xC4\xA0"
                              "a",
                              "a", "<|im_end|>", "<ud>", "cc", "ccc"}));
  ExpectRefused(md, "repeats");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.tokens",
      GgufValue::StringArray({"<|endoftext|>", "a", "b", "c", "\xC4\xA0", "ab", "bc",
                              "\xC4\xA0"
                              "a",
                              "", "<|im_end|>", "<ud>", "cc", "ccc"}));
  ExpectRefused(md, "empty");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.bos_token_id", GgufValue::Uint32(13));
  ExpectRefused(md, "tokenizer.ggml.bos_token_id");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.merges", GgufValue::StringArray({"b c", "a x"}));
  ExpectRefused(md, "\"x\"");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.merges", GgufValue::StringArray({"bc"}));
  ExpectRefused(md, "tokenizer.ggml.merges[0]");

  md = TinyBpe();
  Erase(&md, "tokenizer.ggml.merges");
  ExpectRefused(md, "tokenizer.ggml.merges");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.merges", GgufValue::NumberArray(GgufType::kInt32, {1}));
  ExpectRefused(md, "tokenizer.ggml.merges");

  md = TinyBpe();
  Set(&md, "tokenizer.ggml.add_bos_token", GgufValue::Uint32(1));
  ExpectRefused(md, "tokenizer.ggml.add_bos_token");

  md = TinySpm(-1, -1);
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "<0xZZ>"};
  Set(&md, "tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  Set(&md, "tokenizer.ggml.token_type", Types({2, 3, 3, 6}));
  Set(&md, "tokenizer.ggml.scores", GgufValue::NumberArray(GgufType::kFloat32, {0, 0, 0, 0}));
  ExpectRefused(md, "<0xZZ>");
}

}  // namespace
}  // namespace clusterkv::llama
