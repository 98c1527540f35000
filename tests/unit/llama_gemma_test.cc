// Gemma 3 in clusterkv_llama: the config read from GGUF metadata (explicit keys and the
// architecture's defaults), the GGUF round trip of a Gemma-shaped model, the local-window
// decode path against the prefill, and how global layers map onto a ClusterKV sequence.
#include <cmath>
#include <vector>

#include "gpu/backend.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/llama_test_util.h"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/local_window.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/model_writer.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::TempDir;

// A tiny Gemma 3: 4 layers (local, global, local, global), window 5, 2 query heads on 1 kv head.
ModelConfig TinyGemma() {
  ModelConfig c;
  c.arch = Architecture::kGemma3;
  c.dim = 24;
  c.n_layers = 4;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 8;
  c.ffn_dim = 40;
  c.vocab = 60;
  c.rope_theta = 1000000.0f;
  c.rope_theta_local = 10000.0f;
  c.norm_eps = 1e-6f;
  c.max_context = 256;
  c.activation = Activation::kGeluTanh;
  c.qk_norm = true;
  c.post_norms = true;
  c.embed_scale = std::sqrt(24.0f);
  c.sliding_window = 5;
  c.layer_is_local = {1, 0, 1, 0};
  return c;
}

ModelWeights RandomGemma(uint64_t seed) {
  RandomModelOptions o;
  o.config = TinyGemma();
  o.seed = seed;
  o.qk_gain = 1.5f;
  o.qk_shared = 0.8f;
  o.tie_embeddings = true;
  absl::StatusOr<ModelWeights> w = MakeRandomWeights(o);
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

std::vector<int32_t> Tokens(int64_t n, int32_t vocab, uint64_t seed) {
  std::vector<int32_t> t;
  uint64_t x = seed;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    t.push_back(static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab)));
  }
  return t;
}

TEST(LlamaGemmaTest, GgufRoundTripKeepsTheArchitecture) {
  TempDir dir("gemma_rt");
  ModelWeights w = RandomGemma(1);
  w.config.attention_scale = 0.3f;
  w.config.final_logit_softcap = 30.0f;
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("g.gguf"), ModelFormat::kGguf));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights got, LoadModel(dir.Sub("g.gguf")));
  const ModelConfig& c = got.config;
  EXPECT_EQ(c.arch, Architecture::kGemma3);
  EXPECT_EQ(got.rope_style, RopeStyle::kRotateHalf);
  EXPECT_EQ(c.layer_is_local, w.config.layer_is_local);
  EXPECT_EQ(c.sliding_window, 5);
  EXPECT_FLOAT_EQ(c.rope_theta_local, 10000.0f);
  EXPECT_FLOAT_EQ(c.attention_scale, 0.3f);
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 30.0f);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_TRUE(c.post_norms);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_FLOAT_EQ(c.embed_scale, std::sqrt(24.0f));
  EXPECT_EQ(got.layers[2].q_norm, w.layers[2].q_norm);
  EXPECT_EQ(got.layers[3].post_ffn_norm, w.layers[3].post_ffn_norm);
  EXPECT_EQ(got.layers[1].wq, w.layers[1].wq);  // no Q/K permutation for Gemma
  EXPECT_TRUE(got.lm_head.empty());             // tied
  EXPECT_EQ(c.GlobalLayers(), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(c.ToKvLayout(DType::kFloat16).num_layers, 2);
  // Safetensors holds Llama models only.
  EXPECT_TRUE(
      absl::IsInvalidArgument(WriteModel(w, dir.Sub("g.safetensors"), ModelFormat::kSafetensors)));
}

// Writes a GGUF holding only metadata and returns the config read from it.
absl::StatusOr<ModelConfig> ConfigOf(const TempDir& dir, GgufMetadata md) {
  const std::string path = dir.Sub("meta.gguf");
  absl::Status s = WriteGguf(path, md, {});
  if (!s.ok()) return s;
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  if (!f.ok()) return f.status();
  return ConfigFromGguf((*f)->index());
}

GgufMetadata Gemma270mLikeMetadata(int layers) {
  GgufMetadata md;
  md.emplace_back("general.architecture", GgufValue::String("gemma3"));
  md.emplace_back("gemma3.context_length", GgufValue::Uint32(32768));
  md.emplace_back("gemma3.embedding_length", GgufValue::Uint32(640));
  md.emplace_back("gemma3.block_count", GgufValue::Uint32(layers));
  md.emplace_back("gemma3.feed_forward_length", GgufValue::Uint32(2048));
  md.emplace_back("gemma3.attention.head_count", GgufValue::Uint32(4));
  md.emplace_back("gemma3.attention.head_count_kv", GgufValue::Uint32(1));
  md.emplace_back("gemma3.attention.key_length", GgufValue::Uint32(256));
  md.emplace_back("gemma3.attention.value_length", GgufValue::Uint32(256));
  md.emplace_back("gemma3.attention.layer_norm_rms_epsilon", GgufValue::Float32(1e-6f));
  md.emplace_back("gemma3.rope.freq_base", GgufValue::Float32(1e6f));
  md.emplace_back("gemma3.attention.sliding_window", GgufValue::Uint32(512));
  md.emplace_back("gemma3.vocab_size", GgufValue::Uint32(1000));
  return md;
}

// The published Gemma 3 270M file carries no layer pattern and no local RoPE base: the
// architecture's values apply (every 6th layer global, base 10000, scale 1/sqrt(head_dim)).
TEST(LlamaGemmaTest, MissingKeysTakeTheArchitecturesValues) {
  TempDir dir("gemma_meta");
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelConfig c, ConfigOf(dir, Gemma270mLikeMetadata(18)));
  EXPECT_EQ(c.GlobalLayers(), (std::vector<int32_t>{5, 11, 17}));
  EXPECT_FLOAT_EQ(c.rope_theta_local, 10000.0f);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(c.AttentionScale(), 1.0f / 16.0f);
  EXPECT_EQ(c.sliding_window, 512);
  EXPECT_EQ(c.max_context, 32768);
  EXPECT_FLOAT_EQ(c.final_logit_softcap, 0.0f);

  GgufMetadata md = Gemma270mLikeMetadata(8);
  md.emplace_back("gemma3.attention.sliding_window_pattern", GgufValue::Uint32(4));
  md.emplace_back("gemma3.rope.freq_base_swa", GgufValue::Float32(5000.0f));
  md.emplace_back("gemma3.rope.scaling.type", GgufValue::String("linear"));
  md.emplace_back("gemma3.rope.scaling.factor", GgufValue::Float32(8.0f));
  LLAMA_ASSERT_OK_AND_ASSIGN(c, ConfigOf(dir, md));
  EXPECT_EQ(c.GlobalLayers(), (std::vector<int32_t>{3, 7}));
  EXPECT_FLOAT_EQ(c.rope_theta_local, 5000.0f);
  EXPECT_FLOAT_EQ(c.rope_linear_scale, 8.0f);
}

TEST(LlamaGemmaTest, BadMetadataIsRefusedByName) {
  TempDir dir("gemma_bad");
  GgufMetadata md = Gemma270mLikeMetadata(6);
  md[0].second = GgufValue::String("mamba");
  absl::StatusOr<ModelConfig> c = ConfigOf(dir, md);
  ASSERT_TRUE(absl::IsInvalidArgument(c.status()));
  EXPECT_NE(c.status().message().find("mamba"), std::string::npos);

  md = Gemma270mLikeMetadata(6);
  md.emplace_back("gemma3.attention.sliding_window_pattern",
                  GgufValue::NumberArray(GgufType::kBool, {1, 0, 1}));
  c = ConfigOf(dir, md);
  ASSERT_TRUE(absl::IsInvalidArgument(c.status()));
  EXPECT_NE(c.status().message().find("sliding_window_pattern"), std::string::npos);

  md = Gemma270mLikeMetadata(6);  // every layer local: nothing global to compress
  md.emplace_back("gemma3.attention.sliding_window_pattern",
                  GgufValue::NumberArray(GgufType::kBool, {1, 1, 1, 1, 1, 1}));
  EXPECT_TRUE(absl::IsInvalidArgument(ConfigOf(dir, md).status()));

  md = Gemma270mLikeMetadata(6);
  md.erase(md.begin() + 11);  // sliding_window
  EXPECT_FALSE(ConfigOf(dir, md).ok());

  md = Gemma270mLikeMetadata(6);
  md.emplace_back("gemma3.rope.scaling.type", GgufValue::String("yarn"));
  c = ConfigOf(dir, md);
  ASSERT_TRUE(absl::IsInvalidArgument(c.status()));
  EXPECT_NE(c.status().message().find("yarn"), std::string::npos);
}

// Decoding token t through LocalWindowBackend + full attention gives the logits a prefill of
// tokens 0..t gives, across window wrap-arounds and on both layer kinds.
TEST(LlamaGemmaTest, DecodeThroughLocalWindowsMatchesPrefill) {
  const ModelWeights w = RandomGemma(2);
  const ModelConfig& c = w.config;
  const std::vector<int32_t> tokens = Tokens(40, c.vocab, 3);
  DecoderModel model(&w, 2);
  const int64_t head = 30;
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult prefill,
                             model.Prefill(absl::MakeConstSpan(tokens.data(), head)));
  // Local layers keep only their window.
  EXPECT_EQ(static_cast<int64_t>(prefill.keys[0].size()), c.sliding_window * c.KvDim());
  EXPECT_EQ(static_cast<int64_t>(prefill.keys[1].size()), head * c.KvDim());
  LLAMA_ASSERT_OK_AND_ASSIGN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", 2));
  std::unique_ptr<AttentionBackend> backend =
      ForModelLayers(c, std::make_unique<FullAttentionBackend>(c, DType::kFloat32, 40, exec));
  LLAMA_ASSERT_OK(LoadPrefillInto(c, prefill, *backend));
  std::vector<float> logits(c.vocab);
  for (int64_t t = head; t < 40; ++t) {
    LLAMA_ASSERT_OK(model.DecodeStep(tokens[t], t, *backend, logits.data(), nullptr, nullptr));
    LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult want,
                               model.Prefill(absl::MakeConstSpan(tokens.data(), t + 1)));
    EXPECT_LT(MaxAbsDiff(logits, want.last_logits), 2e-4) << "position " << t;
  }
  // The window matters: the same model with every layer global disagrees.
  ModelWeights global = w;
  global.config.layer_is_local.clear();
  DecoderModel other(&global, 2);
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult all, other.Prefill(tokens));
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult windowed, model.Prefill(tokens));
  EXPECT_GT(MaxAbsDiff(all.last_logits, windowed.last_logits), 1e-3);
}

TEST(LlamaGemmaTest, PrefillCanReportEveryPositionsLogits) {
  const ModelWeights w = RandomGemma(4);
  const std::vector<int32_t> tokens = Tokens(20, w.config.vocab, 5);
  DecoderModel model(&w, 1);
  std::vector<std::vector<float>> rows;
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult r,
                             model.Prefill(tokens, nullptr, [&](int64_t pos, const float* logits) {
                               EXPECT_EQ(pos, static_cast<int64_t>(rows.size()));
                               rows.emplace_back(logits, logits + w.config.vocab);
                             }));
  ASSERT_EQ(rows.size(), tokens.size());
  EXPECT_LT(MaxAbsDiff(rows.back(), r.last_logits), 1e-5);
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult shorter,
                             model.Prefill(absl::MakeConstSpan(tokens.data(), 7)));
  EXPECT_LT(MaxAbsDiff(rows[6], shorter.last_logits), 1e-4);
}

// Teacher forcing in chunks gives the logits of one decode step per token (both kinds of layer,
// the local windows wrapping inside the chunk).
TEST(LlamaGemmaTest, DecodeChunkMatchesStepByStep) {
  const ModelWeights w = RandomGemma(6);
  const ModelConfig& c = w.config;
  const std::vector<int32_t> tokens = Tokens(60, c.vocab, 7);
  DecoderModel model(&w, 2);
  const int64_t head = 40;
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult prefill,
                             model.Prefill(absl::MakeConstSpan(tokens.data(), head)));
  LLAMA_ASSERT_OK_AND_ASSIGN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", 2));
  auto fresh = [&] {
    std::unique_ptr<AttentionBackend> b =
        ForModelLayers(c, std::make_unique<FullAttentionBackend>(c, DType::kFloat32, 60, exec));
    EXPECT_TRUE(LoadPrefillInto(c, prefill, *b).ok());
    return b;
  };
  std::unique_ptr<AttentionBackend> stepwise = fresh(), chunked = fresh();
  std::vector<std::vector<float>> want;
  std::vector<float> logits(c.vocab);
  for (int64_t t = head; t < 60; ++t) {
    LLAMA_ASSERT_OK(model.DecodeStep(tokens[t], t, *stepwise, logits.data(), nullptr, nullptr));
    want.push_back(logits);
  }
  std::vector<std::vector<float>> got;
  int64_t next = head;
  for (int64_t t0 = head; t0 < 60; t0 += 7) {  // chunks of 7, the last one shorter
    const int64_t n = std::min<int64_t>(7, 60 - t0);
    LLAMA_ASSERT_OK(model.DecodeChunk(
        absl::MakeConstSpan(tokens.data() + t0, n), t0, *chunked,
        [&](int64_t pos, const float* l) {
          EXPECT_EQ(pos, next++);
          got.emplace_back(l, l + c.vocab);
        },
        nullptr));
  }
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(MaxAbsDiff(got[i], want[i]), 1e-4) << i;
  EXPECT_TRUE(absl::IsInvalidArgument(model.DecodeChunk({}, 60, *chunked, nullptr, nullptr)));
}

// ClusterKV sees the global layers only; dense layers name model layers.
TEST(LlamaGemmaTest, SequenceConfigRenumbersDenseLayers) {
  ModelConfig c = TinyGemma();
  ClusterKvConfig k;
  k.dense_layers = {0, 1};  // layer 0 is local (dropped), layer 1 is global index 0
  EXPECT_EQ(SequenceConfig(c, k).dense_layers, (std::vector<int32_t>{0}));
  k.dense_layers = {3};
  EXPECT_EQ(SequenceConfig(c, k).dense_layers, (std::vector<int32_t>{1}));
  c.layer_is_local.clear();  // Llama-like: identity
  k.dense_layers = {0, 2};
  EXPECT_EQ(SequenceConfig(c, k).dense_layers, (std::vector<int32_t>{0, 2}));
}

}  // namespace
}  // namespace clusterkv::llama
