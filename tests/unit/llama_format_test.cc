// clusterkv_llama's checkpoint formats: safetensors and GGUF files written by the model writer
// and read back tensor by tensor (bit-exact), GGUF metadata of every value type (arrays and
// nested arrays included) skipped correctly, and malformed or truncated files answered with
// clear errors, never a crash.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/llama_test_util.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/model_writer.h"
#include "tools/clusterkv_llama/safetensors.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::TempDir;
using testing::TinyConfig;

ModelWeights TinyModel(uint64_t seed = 3, bool tied = false) {
  RandomModelOptions o;
  o.config = TinyConfig();
  o.seed = seed;
  o.qk_gain = 1.3f;
  o.qk_shared = 0.5f;
  o.tie_embeddings = tied;
  absl::StatusOr<ModelWeights> w = MakeRandomWeights(o);
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

// Bit patterns, so that -0.0 and NaN payloads would count too.
void ExpectBitEqual(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if (got.empty()) return;  // e.g. the output head of tied embeddings (memcmp of null is UB)
  ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << what;
}

// What a file of `dtype` holds for each tensor of `w` (1-D tensors are always F32) in the
// format's Q/K order.
ModelWeights Expected(const ModelWeights& w, StoredDType dtype, RopeStyle style) {
  ModelWeights e = w;
  const ModelConfig& c = w.config;
  auto round = [&](std::vector<float>& v) { v = RoundTrip(v, dtype); };
  round(e.embed);
  if (!e.lm_head.empty()) round(e.lm_head);
  for (LayerWeights& l : e.layers) {
    for (std::vector<float>* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      round(*m);
    }
    if (style == RopeStyle::kInterleaved) {
      l.wq = PermuteQkToInterleaved(l.wq, c.n_heads, c.head_dim, c.dim);
      l.wk = PermuteQkToInterleaved(l.wk, c.n_kv_heads, c.head_dim, c.dim);
    }
  }
  e.rope_style = style;
  return e;
}

void ExpectSameWeights(const ModelWeights& got, const ModelWeights& want) {
  EXPECT_EQ(got.rope_style, want.rope_style);
  EXPECT_EQ(got.config.DebugString(), want.config.DebugString());
  ExpectBitEqual(got.embed, want.embed, "embed");
  ExpectBitEqual(got.final_norm, want.final_norm, "final_norm");
  ExpectBitEqual(got.lm_head, want.lm_head, "lm_head");
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (size_t i = 0; i < got.layers.size(); ++i) {
    const LayerWeights &g = got.layers[i], &w = want.layers[i];
    ExpectBitEqual(g.attn_norm, w.attn_norm, "attn_norm");
    ExpectBitEqual(g.wq, w.wq, "wq");
    ExpectBitEqual(g.wk, w.wk, "wk");
    ExpectBitEqual(g.wv, w.wv, "wv");
    ExpectBitEqual(g.wo, w.wo, "wo");
    ExpectBitEqual(g.ffn_norm, w.ffn_norm, "ffn_norm");
    ExpectBitEqual(g.w_gate, w.w_gate, "w_gate");
    ExpectBitEqual(g.w_up, w.w_up, "w_up");
    ExpectBitEqual(g.w_down, w.w_down, "w_down");
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(LlamaSafetensorsTest, RoundTripsEveryTensorBitExact) {
  TempDir dir("llama_st");
  for (bool tied : {false, true}) {
    const ModelWeights w = TinyModel(5, tied);
    for (StoredDType dtype : {StoredDType::kF32, StoredDType::kF16, StoredDType::kBF16}) {
      const std::string path = dir.Sub("model.safetensors");
      WriteOptions o;
      o.dtype = dtype;
      LLAMA_ASSERT_OK(WriteModel(w, path, ModelFormat::kSafetensors, o));
      ASSERT_TRUE(std::filesystem::exists(dir.Sub("config.json")));
      LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights got, LoadModel(path));
      ExpectSameWeights(got, Expected(w, dtype, RopeStyle::kRotateHalf));
      EXPECT_EQ(got.lm_head.empty(), tied);
      // The header names the HF tensors with their dtype.
      LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SafetensorsFile> file,
                                 SafetensorsFile::Open(path));
      const StoredTensor* q = file->index().Find("model.layers.1.self_attn.q_proj.weight");
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(q->dtype, dtype);
      EXPECT_EQ(q->shape, (std::vector<int64_t>{32, 32}));
      EXPECT_EQ(file->index().metadata.at("format"), "pt");
    }
  }
}

TEST(LlamaGgufTest, RoundTripsEveryTensorBitExactWithPermutedQk) {
  TempDir dir("llama_gguf");
  const ModelWeights w = TinyModel(6);
  for (StoredDType dtype : {StoredDType::kF32, StoredDType::kF16, StoredDType::kBF16}) {
    for (uint32_t alignment : {32u, 64u, 8u}) {
      for (uint32_t version : {2u, 3u}) {
        const std::string path = dir.Sub("model.gguf");
        WriteOptions o;
        o.dtype = dtype;
        o.gguf_alignment = alignment;
        o.gguf_version = version;
        LLAMA_ASSERT_OK(WriteModel(w, path, ModelFormat::kGguf, o));
        LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights got, LoadModel(path));
        ExpectSameWeights(got, Expected(w, dtype, RopeStyle::kInterleaved));
        ASSERT_EQ(got.token_strings.size(), 50u);
        EXPECT_EQ(got.token_strings[7], "<t7>");
        LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
        EXPECT_EQ(file->index().version, version);
        EXPECT_EQ(file->index().alignment, alignment);
        EXPECT_EQ(file->index().data_offset % alignment, 0u);
        // GGUF lists dims innermost first; the reader turns them outermost first.
        const StoredTensor* embd = file->index().FindTensor("token_embd.weight");
        ASSERT_NE(embd, nullptr);
        EXPECT_EQ(embd->shape, (std::vector<int64_t>{50, 32}));
      }
    }
  }
}

TEST(LlamaGgufTest, WritingTheLoadedGgufAsSafetensorsRestoresTheHfOrder) {
  TempDir dir("llama_conv");
  const ModelWeights w = TinyModel(8);
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.gguf"), ModelFormat::kGguf));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights from_gguf, LoadModel(dir.Sub("m.gguf")));
  LLAMA_ASSERT_OK(WriteModel(from_gguf, dir.Sub("m.safetensors"), ModelFormat::kSafetensors));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights back, LoadModel(dir.Sub("m.safetensors")));
  ExpectSameWeights(back, Expected(w, StoredDType::kF32, RopeStyle::kRotateHalf));
}

// Metadata of every value type, including string arrays, numeric arrays of each width and
// nested arrays, written before the model's keys: the reader must step over each exactly.
GgufMetadata AwkwardMetadata() {
  GgufMetadata md;
  md.emplace_back("test.u8", [] {
    GgufValue v;
    v.type = GgufType::kUint8;
    v.uint_value = 200;
    return v;
  }());
  md.emplace_back("test.i8", [] {
    GgufValue v;
    v.type = GgufType::kInt8;
    v.int_value = -5;
    return v;
  }());
  md.emplace_back("test.u16", [] {
    GgufValue v;
    v.type = GgufType::kUint16;
    v.uint_value = 60000;
    return v;
  }());
  md.emplace_back("test.i16", [] {
    GgufValue v;
    v.type = GgufType::kInt16;
    v.int_value = -30000;
    return v;
  }());
  md.emplace_back("test.i64", [] {
    GgufValue v;
    v.type = GgufType::kInt64;
    v.int_value = -(int64_t{1} << 40);
    return v;
  }());
  md.emplace_back("test.u64", GgufValue::Uint64(uint64_t{1} << 50));
  md.emplace_back("test.f64", [] {
    GgufValue v;
    v.type = GgufType::kFloat64;
    v.float_value = 2.5;
    return v;
  }());
  md.emplace_back("test.bool", GgufValue::Bool(true));
  md.emplace_back("test.empty_string", GgufValue::String(""));
  md.emplace_back("test.string", GgufValue::String(std::string(1000, 'x')));
  for (GgufType t : {GgufType::kUint8, GgufType::kInt8, GgufType::kUint16, GgufType::kInt16,
                     GgufType::kUint32, GgufType::kInt32, GgufType::kFloat32, GgufType::kBool,
                     GgufType::kUint64, GgufType::kInt64, GgufType::kFloat64}) {
    md.emplace_back(absl::StrCat("test.array.", GgufTypeName(t)),
                    GgufValue::NumberArray(t, {1, 0, 1, 1, 0, 1, 1}));
  }
  md.emplace_back("test.array.empty", GgufValue::NumberArray(GgufType::kUint32, {}));
  md.emplace_back("test.array.strings", GgufValue::StringArray({"a", "", "long string here"}));
  md.emplace_back(
      "test.array.nested",
      GgufValue::ArrayOfArrays(
          {GgufValue::StringArray({"x", "yy"}), GgufValue::NumberArray(GgufType::kInt16, {1, 2, 3}),
           GgufValue::ArrayOfArrays({GgufValue::NumberArray(GgufType::kFloat64, {0.5})})}));
  return md;
}

TEST(LlamaGgufTest, MetadataOfEveryTypeIsParsedAndSkipped) {
  TempDir dir("llama_md");
  const ModelWeights w = TinyModel(9);
  WriteOptions o;
  o.gguf_extra_metadata = AwkwardMetadata();
  const std::string path = dir.Sub("m.gguf");
  LLAMA_ASSERT_OK(WriteModel(w, path, ModelFormat::kGguf, o));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights got, LoadModel(path));
  ExpectSameWeights(got, Expected(w, StoredDType::kF32, RopeStyle::kInterleaved));
  LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  const GgufIndex& index = file->index();
  EXPECT_EQ(*index.GetInt("test.u8"), 200);
  EXPECT_EQ(*index.GetInt("test.i8"), -5);
  EXPECT_EQ(*index.GetInt("test.u16"), 60000);
  EXPECT_EQ(*index.GetInt("test.i16"), -30000);
  EXPECT_EQ(*index.GetInt("test.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(*index.GetInt("test.u64"), int64_t{1} << 50);
  EXPECT_DOUBLE_EQ(*index.GetFloat("test.f64"), 2.5);
  EXPECT_EQ(index.Find("test.bool")->bool_value, true);
  EXPECT_EQ(index.Find("test.string")->string_value.size(), 1000u);
  EXPECT_EQ(index.Find("test.array.float64")->numbers, (std::vector<double>{1, 0, 1, 1, 0, 1, 1}));
  EXPECT_EQ(index.Find("test.array.strings")->strings[2], "long string here");
  const GgufValue* nested = index.Find("test.array.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->arrays.size(), 3u);
  EXPECT_EQ(nested->arrays[0].strings[1], "yy");
  EXPECT_EQ(nested->arrays[2].arrays[0].numbers[0], 0.5);
  EXPECT_EQ(index.Find("tokenizer.ggml.scores")->ArraySize(), 50u);
  EXPECT_FALSE(index.GetInt("test.string").ok());  // wrong type: InvalidArgument
  EXPECT_TRUE(absl::IsNotFound(index.GetInt("no.such.key").status()));
}

TEST(LlamaGgufTest, ConfigComesFromLlamaMetadata) {
  TempDir dir("llama_cfg");
  ModelWeights w = TinyModel(10);
  w.config.rope_theta = 123456.0f;
  w.config.norm_eps = 1e-6f;
  w.config.max_context = 2048;
  // Without the tokenizer the vocabulary comes from the output tensor's shape.
  WriteOptions o;
  o.gguf_tokenizer = false;
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.gguf"), ModelFormat::kGguf, o));
  LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> file, GgufFile::Open(dir.Sub("m.gguf")));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelConfig c, ConfigFromGguf(file->index()));
  EXPECT_EQ(c.DebugString(), w.config.DebugString());
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights got, LoadModel(dir.Sub("m.gguf")));
  EXPECT_TRUE(got.token_strings.empty());
}

TEST(LlamaGgufTest, RopeFreqsTensorBecomesFrequencyFactors) {
  TempDir dir("llama_freqs");
  ModelWeights w = TinyModel(11);
  w.config.rope_freq_factors = Llama3RopeFactors(8, w.config.rope_theta, 8, 1, 4, 64);
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.gguf"), ModelFormat::kGguf));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights got, LoadModel(dir.Sub("m.gguf")));
  EXPECT_EQ(got.config.rope_freq_factors, w.config.rope_freq_factors);
  // safetensors cannot carry arbitrary factors: refused, not silently dropped.
  EXPECT_TRUE(
      absl::IsInvalidArgument(WriteModel(w, dir.Sub("m.safetensors"), ModelFormat::kSafetensors)));
}

// Types the engine does not decode (the IQ* codebook types) are refused by name; the decodable
// quantized types are llama_quant_test's.
TEST(LlamaGgufTest, UndecodableTensorTypeIsRefusedNamingIt) {
  TempDir dir("llama_quant");
  const ModelWeights w = TinyModel(12);
  // A real GGUF whose token embedding is IQ2_XXS (256 elements per 66-byte block): the reader
  // accepts the file (the byte range is valid) and the loader refuses the tensor. ne[0] must
  // be a multiple of the block.
  GgufMetadata md = {{"general.architecture", GgufValue::String("llama")}};
  GgufTensorToWrite t;
  t.name = "token_embd.weight";
  t.ggml_type = 16;
  t.shape = {2, 256};
  t.bytes.assign(2 * 66, '\0');
  LLAMA_ASSERT_OK(WriteGguf(dir.Sub("q.gguf"), md, {t}));
  LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> file, GgufFile::Open(dir.Sub("q.gguf")));
  const StoredTensor* q = file->index().FindTensor("token_embd.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type_name, "IQ2_XXS");
  absl::StatusOr<std::vector<float>> values = ReadAsFloat(*q, {2, 256});
  ASSERT_TRUE(absl::IsInvalidArgument(values.status()));
  EXPECT_TRUE(absl::StrContains(values.status().message(), "IQ2_XXS"));
  EXPECT_TRUE(absl::StrContains(values.status().message(), "token_embd.weight"));

  // Through the whole loader: a model whose attn_q is IQ4_NL.
  WriteOptions o;
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.gguf"), ModelFormat::kGguf, o));
  LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> good, GgufFile::Open(dir.Sub("m.gguf")));
  GgufMetadata all = good->index().metadata;
  std::vector<GgufTensorToWrite> tensors;
  for (const StoredTensor& s : good->index().tensors) {
    GgufTensorToWrite g;
    g.name = s.name;
    g.shape = s.shape;
    g.ggml_type = kGgmlTypeF32;
    g.bytes.assign(reinterpret_cast<const char*>(s.bytes.data()), s.bytes.size());
    if (s.name == "blk.1.attn_q.weight") {
      g.ggml_type = 20;  // IQ4_NL: 32 elements in 18 bytes; 32 x 32 -> 32 blocks
      g.bytes.assign(32 * 18, '\0');
    }
    tensors.push_back(std::move(g));
  }
  LLAMA_ASSERT_OK(WriteGguf(dir.Sub("q8.gguf"), all, tensors));
  absl::StatusOr<ModelWeights> loaded = LoadModel(dir.Sub("q8.gguf"));
  ASSERT_TRUE(absl::IsInvalidArgument(loaded.status())) << loaded.status();
  EXPECT_TRUE(absl::StrContains(loaded.status().message(), "IQ4_NL"));
  EXPECT_TRUE(absl::StrContains(loaded.status().message(), "blk.1.attn_q.weight"));
}

// Every prefix of a valid file is a truncated file: each must be answered with an error.
TEST(LlamaFormatTest, EveryTruncationIsAnErrorNotACrash) {
  TempDir dir("llama_trunc");
  ModelConfig c = TinyConfig();
  c.n_layers = 1;
  c.vocab = 8;
  RandomModelOptions ro;
  ro.config = c;
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights w, MakeRandomWeights(ro));
  for (ModelFormat format : {ModelFormat::kGguf, ModelFormat::kSafetensors}) {
    const std::string path = dir.Sub(format == ModelFormat::kGguf ? "m.gguf" : "m.safetensors");
    WriteOptions o;
    o.dtype = StoredDType::kF16;
    o.gguf_extra_metadata = AwkwardMetadata();
    LLAMA_ASSERT_OK(WriteModel(w, path, format, o));
    const std::string bytes = ReadFile(path);
    LLAMA_ASSERT_OK(LoadModel(path).status());
    // Every length through the headers, then strides through the data: parsed in memory.
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    for (size_t n = 0; n < bytes.size(); n += (n < 4096 ? 1 : 97)) {
      const absl::Span<const uint8_t> prefix(data, n);
      const absl::Status s = format == ModelFormat::kGguf ? ParseGguf(prefix).status()
                                                          : ParseSafetensors(prefix).status();
      ASSERT_FALSE(s.ok()) << "a " << n << "-byte prefix of " << bytes.size() << " parsed";
      EXPECT_TRUE(absl::IsDataLoss(s) || absl::IsInvalidArgument(s)) << n << ": " << s;
    }
    // And a few as files, through the loader.
    const std::string cut = dir.Sub(format == ModelFormat::kGguf ? "cut.gguf" : "cut.safetensors");
    for (size_t n :
         {size_t{0}, size_t{3}, size_t{9}, size_t{200}, bytes.size() / 2, bytes.size() - 1}) {
      WriteFile(cut, bytes.substr(0, n));
      absl::StatusOr<ModelWeights> got =
          format == ModelFormat::kGguf ? LoadGgufModel(cut) : LoadSafetensorsModel(cut);
      ASSERT_FALSE(got.ok()) << "a " << n << "-byte prefix of " << bytes.size() << " loaded";
      EXPECT_TRUE(absl::IsDataLoss(got.status()) || absl::IsInvalidArgument(got.status()))
          << n << ": " << got.status();
    }
  }
}

TEST(LlamaFormatTest, MalformedHeadersGiveClearErrors) {
  auto bytes = [](const std::string& s) {
    return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  auto u32 = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [](uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); };
  // GGUF: bad magic, version 1, a big-endian version, an absurd count, an unknown value type.
  EXPECT_TRUE(
      absl::IsInvalidArgument(ParseGguf(bytes("GGUX" + u32(3) + u64(0) + u64(0))).status()));
  absl::Status v1 = ParseGguf(bytes("GGUF" + u32(1) + u64(0) + u64(0))).status();
  EXPECT_TRUE(absl::IsInvalidArgument(v1));
  EXPECT_TRUE(absl::StrContains(v1.message(), "version 1"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParseGguf(bytes("GGUF" + u32(0x03000000) + u64(0) + u64(0))).status()));
  EXPECT_TRUE(absl::IsDataLoss(ParseGguf(bytes("GGUF" + u32(3) + u64(~0ull) + u64(0))).status()));
  EXPECT_TRUE(absl::IsDataLoss(
      ParseGguf(bytes("GGUF" + u32(3) + u64(0) + u64(1) + u64(1) + "k" + u32(99) + u64(0)))
          .status()));
  // An array claiming more elements than the file holds.
  EXPECT_TRUE(absl::IsDataLoss(ParseGguf(bytes("GGUF" + u32(3) + u64(0) + u64(1) + u64(1) + "k" +
                                               u32(9) + u32(4) + u64(uint64_t{1} << 40)))
                                   .status()));
  // A tensor whose data lies past the end, one at a misaligned offset, an unknown GGML type.
  const std::string one_tensor_head =
      "GGUF" + u32(3) + u64(1) + u64(0) + u64(1) + "t" + u32(1) + u64(8);
  EXPECT_TRUE(absl::IsDataLoss(ParseGguf(bytes(one_tensor_head + u32(0) + u64(0))).status()));
  std::string padded = one_tensor_head + u32(0) + u64(4);
  padded.resize(64 + 64, '\0');
  EXPECT_TRUE(absl::IsDataLoss(ParseGguf(bytes(padded)).status()));
  std::string unknown = one_tensor_head + u32(77) + u64(0);
  unknown.resize(128, '\0');
  absl::Status unknown_type = ParseGguf(bytes(unknown)).status();
  EXPECT_TRUE(absl::IsDataLoss(unknown_type));
  EXPECT_TRUE(absl::StrContains(unknown_type.message(), "77"));

  // safetensors: a header length past the file, a non-JSON header, offsets out of range, a
  // size that disagrees with the shape.
  EXPECT_TRUE(absl::IsDataLoss(ParseSafetensors(bytes(u64(100) + "{}")).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseSafetensors(bytes(u64(4) + "nope")).status()));
  const std::string past = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_TRUE(absl::IsDataLoss(ParseSafetensors(bytes(u64(past.size()) + past + "1234")).status()));
  const std::string bad_size = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  EXPECT_TRUE(absl::IsDataLoss(
      ParseSafetensors(bytes(u64(bad_size.size()) + bad_size + "12345678")).status()));
  const std::string reversed = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})";
  EXPECT_TRUE(absl::IsDataLoss(
      ParseSafetensors(bytes(u64(reversed.size()) + reversed + "12345678")).status()));
  const std::string negative = R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})";
  EXPECT_TRUE(absl::IsDataLoss(
      ParseSafetensors(bytes(u64(negative.size()) + negative + "12345678")).status()));
  // An integer tensor is indexed (its bytes checked) but refused when read.
  const std::string ints = R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})";
  LLAMA_ASSERT_OK_AND_ASSIGN(SafetensorsIndex index,
                             ParseSafetensors(bytes(u64(ints.size()) + ints + "12345678")));
  EXPECT_TRUE(absl::IsInvalidArgument(ReadAsFloat(index.tensors[0], {1}).status()));
}

TEST(LlamaFormatTest, LoaderReportsMissingFilesTensorsAndBadConfigs) {
  TempDir dir("llama_missing");
  EXPECT_TRUE(absl::IsNotFound(LoadModel(dir.Sub("nothing.gguf")).status()));
  WriteFile(dir.Sub("empty.gguf"), "");
  EXPECT_TRUE(absl::IsDataLoss(LoadModel(dir.Sub("empty.gguf")).status()));
  const ModelWeights w = TinyModel(13);
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.safetensors"), ModelFormat::kSafetensors));
  // A config whose sizes disagree with the tensors.
  ModelConfig other = w.config;
  other.ffn_dim = 64;
  WriteFile(dir.Sub("config.json"), ToHfConfigJson(other, false));
  absl::Status shape = LoadModel(dir.Sub("m.safetensors")).status();
  EXPECT_TRUE(absl::IsInvalidArgument(shape));
  EXPECT_TRUE(absl::StrContains(shape.message(), "mlp.gate_proj")) << shape;
  // More layers than the file holds: a missing tensor, named.
  other = w.config;
  other.n_layers = 3;
  WriteFile(dir.Sub("config.json"), ToHfConfigJson(other, false));
  absl::Status missing = LoadModel(dir.Sub("m.safetensors")).status();
  EXPECT_TRUE(absl::StrContains(missing.message(), "model.layers.2.")) << missing;
  // No config at all.
  std::filesystem::remove(dir.Sub("config.json"));
  EXPECT_TRUE(absl::IsNotFound(LoadModel(dir.Sub("m.safetensors")).status()));
  // A GGUF of another architecture.
  LLAMA_ASSERT_OK(
      WriteGguf(dir.Sub("gpt2.gguf"), {{"general.architecture", GgufValue::String("gpt2")}}, {}));
  absl::Status arch = LoadModel(dir.Sub("gpt2.gguf")).status();
  EXPECT_TRUE(absl::IsInvalidArgument(arch));
  EXPECT_TRUE(absl::StrContains(arch.message(), "gpt2"));
}

TEST(LlamaConfigTest, ParsesHfConfigsAndRejectsBadOnes) {
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseHfConfigJson(R"({
      "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
      "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
      "vocab_size": 128256, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
      "max_position_embeddings": 131072,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}})"));
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.GroupSize(), 4);
  EXPECT_EQ(c.rope_freq_factors.size(), 64u);
  EXPECT_FLOAT_EQ(c.rope_freq_factors.front(), 1.0f);
  EXPECT_FLOAT_EQ(c.rope_freq_factors.back(), 8.0f);
  // num_key_value_heads defaults to num_attention_heads (no GQA).
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelConfig mha, ParseHfConfigJson(R"({"hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
      "vocab_size": 10})"));
  EXPECT_EQ(mha.n_kv_heads, 4);
  EXPECT_EQ(mha.head_dim, 16);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson("not json").status()));
  // Wrongly typed fields are errors, not exceptions.
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson(R"({"hidden_size": "64",
      "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
      "vocab_size": 10})")
                                          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson(R"({"hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
      "vocab_size": 10, "rope_scaling": {"rope_type": 5, "factor": "x"}})")
                                          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson(R"({"hidden_size": 64})").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson(R"({"hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3,
      "intermediate_size": 128, "vocab_size": 10})")
                                          .status()));  // 4 % 3 != 0
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson(R"({"hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
      "vocab_size": 10, "rope_scaling": {"type": "yarn", "factor": 4}})")
                                          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseHfConfigJson(R"({"model_type": "gpt2",
      "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 128, "vocab_size": 10})")
                                          .status()));
}

}  // namespace
}  // namespace clusterkv::llama
