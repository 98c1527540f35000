// clusterkv_llama's forward pass and model files end to end: the GGUF and safetensors copies of
// one random model give the same logits (which proves the Q/K permutation and RoPE convention
// handling: with the wrong convention they differ), prefill and decode agree, and the random
// model and synthetic prompt are deterministic and do what their comments say.
#include <cmath>
#include <set>
#include <vector>

#include "gpu/backend.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/llama_test_util.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/model_writer.h"
#include "tools/clusterkv_llama/prompt.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::TempDir;
using testing::TinyConfig;

ModelWeights Random(uint64_t seed, float gain = 1.3f, float shared = 0.8f) {
  RandomModelOptions o;
  o.config = TinyConfig();
  o.seed = seed;
  o.qk_gain = gain;
  o.qk_shared = shared;
  absl::StatusOr<ModelWeights> w = MakeRandomWeights(o);
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

double RelL2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Prefill `prompt`, then `steps` greedy decode steps with full attention in fp32; returns the
// prefill logits followed by each step's.
std::vector<std::vector<float>> RunGreedy(const ModelWeights& w, const std::vector<int32_t>& prompt,
                                          int steps) {
  DecoderModel model(&w, 2);
  absl::StatusOr<PrefillResult> prefill = model.Prefill(prompt);
  EXPECT_TRUE(prefill.ok()) << prefill.status();
  std::vector<std::vector<float>> logits = {prefill->last_logits};
  absl::StatusOr<gpu::ExecContext> exec = gpu::MakeExecContext("cpu", 2);
  FullAttentionBackend full(w.config, DType::kFloat32, prompt.size() + steps, *exec);
  for (int32_t l = 0; l < w.config.n_layers; ++l) {
    EXPECT_TRUE(
        full.LoadPrefill(l, prefill->KeyView(w.config, l), prefill->ValueView(w.config, l)).ok());
  }
  for (int s = 0; s < steps; ++s) {
    const std::vector<float>& last = logits.back();
    const int32_t token = ArgMax(last.data(), last.size());
    std::vector<float> out(w.config.vocab);
    const absl::Status st =
        model.DecodeStep(token, prompt.size() + s, full, out.data(), nullptr, nullptr);
    EXPECT_TRUE(st.ok()) << st;
    logits.push_back(out);
  }
  return logits;
}

std::vector<int32_t> Prompt(int64_t n, uint64_t seed = 3) {
  SyntheticPromptOptions o;
  o.length = n;
  o.seed = seed;
  o.topics = 4;
  o.topic_tokens = 10;
  absl::StatusOr<std::vector<int32_t>> p = SyntheticPrompt(o, TinyConfig().vocab);
  EXPECT_TRUE(p.ok());
  return *p;
}

TEST(LlamaModelTest, GgufAndSafetensorsCopiesGiveTheSameLogits) {
  TempDir dir("llama_same");
  const ModelWeights w = Random(21);
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.safetensors"), ModelFormat::kSafetensors));
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.gguf"), ModelFormat::kGguf));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights st, LoadModel(dir.Sub("m.safetensors")));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights gg, LoadModel(dir.Sub("m.gguf")));
  ASSERT_EQ(st.rope_style, RopeStyle::kRotateHalf);
  ASSERT_EQ(gg.rope_style, RopeStyle::kInterleaved);
  ASSERT_NE(st.layers[0].wq, gg.layers[0].wq);  // the GGUF rows really are permuted
  const std::vector<int32_t> prompt = Prompt(60);
  const auto a = RunGreedy(st, prompt, 4);
  const auto b = RunGreedy(gg, prompt, 4);
  ASSERT_EQ(a.size(), b.size());
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_LT(RelL2(b[s], a[s]), 1e-5) << "step " << s;
    EXPECT_EQ(ArgMax(a[s].data(), a[s].size()), ArgMax(b[s].data(), b[s].size()));
  }
  // Reading the GGUF rows with the HF convention (what a loader that ignores the permutation
  // would do) changes the model: the check above is sensitive to it.
  ModelWeights wrong = gg;
  wrong.rope_style = RopeStyle::kRotateHalf;
  const auto c = RunGreedy(wrong, prompt, 1);
  EXPECT_GT(RelL2(c[0], a[0]), 1e-3);
}

TEST(LlamaModelTest, F16CheckpointsStayCloseToF32) {
  TempDir dir("llama_f16");
  const ModelWeights w = Random(22);
  WriteOptions o;
  o.dtype = StoredDType::kF16;
  LLAMA_ASSERT_OK(WriteModel(w, dir.Sub("m.gguf"), ModelFormat::kGguf, o));
  LLAMA_ASSERT_OK_AND_ASSIGN(ModelWeights half, LoadModel(dir.Sub("m.gguf")));
  const std::vector<int32_t> prompt = Prompt(40);
  EXPECT_LT(RelL2(RunGreedy(half, prompt, 0)[0], RunGreedy(w, prompt, 0)[0]), 1e-2);
}

// The last prompt token's logits from a prefill of N tokens equal those of a prefill of N - 1
// tokens followed by one decode step of the N-th: the chunked prefill (crossing the 256-token
// chunk boundary) and the decode path compute the same model.
TEST(LlamaModelTest, PrefillAndDecodeAgree) {
  const ModelWeights w = Random(23);
  const std::vector<int32_t> prompt = Prompt(300);
  DecoderModel model(&w, 2);
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult whole, model.Prefill(prompt));
  const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult part, model.Prefill(head));
  LLAMA_ASSERT_OK_AND_ASSIGN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", 2));
  FullAttentionBackend full(w.config, DType::kFloat32, prompt.size(), exec);
  for (int32_t l = 0; l < w.config.n_layers; ++l) {
    LLAMA_ASSERT_OK(full.LoadPrefill(l, part.KeyView(w.config, l), part.ValueView(w.config, l)));
  }
  std::vector<float> logits(w.config.vocab);
  DecodeTiming timing;
  LLAMA_ASSERT_OK(
      model.DecodeStep(prompt.back(), head.size(), full, logits.data(), &timing, nullptr));
  EXPECT_LT(RelL2(logits, whole.last_logits), 1e-5);
  EXPECT_GE(timing.total_us, timing.attention_us);
  // The K/V the prefill hands to backends are those of the decode path too (to fp32 rounding:
  // OpenBLAS's blocking, hence its summation order, depends on the product's row count, which
  // differs between the two prefills' last chunks).
  for (int32_t l = 0; l < w.config.n_layers; ++l) {
    for (int64_t t = 0; t < static_cast<int64_t>(head.size()); ++t) {
      for (int64_t i = 0; i < w.config.KvDim(); ++i) {
        const float want = whole.keys[l][t * w.config.KvDim() + i];
        ASSERT_NEAR(part.keys[l][t * w.config.KvDim() + i], want, 1e-5 * (1 + std::abs(want)));
      }
    }
  }
}

// The residual hook sees each layer's input; PredictQuery on it reproduces the query that
// layer hands its backend, and on the previous layer's input gives a different (speculated)
// query of the same shape.
TEST(LlamaModelTest, PredictQueryFromALayersInputIsItsQuery) {
  const ModelWeights w = Random(29);
  const ModelConfig& c = w.config;
  const std::vector<int32_t> prompt = Prompt(40);
  DecoderModel model(&w, 2);
  LLAMA_ASSERT_OK_AND_ASSIGN(PrefillResult prefill, model.Prefill(prompt));
  LLAMA_ASSERT_OK_AND_ASSIGN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", 2));
  FullAttentionBackend full(c, DType::kFloat32, prompt.size() + 1, exec);
  for (int32_t l = 0; l < c.n_layers; ++l) {
    LLAMA_ASSERT_OK(full.LoadPrefill(l, prefill.KeyView(c, l), prefill.ValueView(c, l)));
  }
  std::vector<std::vector<float>> inputs(c.n_layers), queries(c.n_layers);
  model.set_residual_hook([&](int32_t l, int64_t pos, const float* x) {
    EXPECT_EQ(pos, static_cast<int64_t>(prompt.size()));
    inputs[l].assign(x, x + c.dim);
  });
  model.set_query_hook([&](int32_t l, const float* q) { queries[l].assign(q, q + c.QDim()); });
  std::vector<float> logits(c.vocab);
  LLAMA_ASSERT_OK(model.DecodeStep(prompt.back(), prompt.size(), full, logits.data(), nullptr,
                                   nullptr));
  std::vector<float> q(c.QDim());
  for (int32_t l = 0; l < c.n_layers; ++l) {
    ASSERT_EQ(inputs[l].size(), static_cast<size_t>(c.dim)) << "layer " << l;
    model.PredictQuery(l, prompt.size(), inputs[l].data(), q.data());
    EXPECT_LT(RelL2(q, queries[l]), 1e-6) << "layer " << l;
    if (l > 0) {
      model.PredictQuery(l, prompt.size(), inputs[l - 1].data(), q.data());
      EXPECT_GT(RelL2(q, queries[l]), 1e-3) << "layer " << l;
    }
  }
}

TEST(LlamaModelTest, ForwardRejectsBadInput) {
  const ModelWeights w = Random(24);
  DecoderModel model(&w, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(model.Prefill(std::vector<int32_t>{}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(model.Prefill(std::vector<int32_t>{1, 50}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      model.Prefill(std::vector<int32_t>(w.config.max_context + 1, 1)).status()));
}

TEST(LlamaModelTest, RandomWeightsAreDeterministicAndShareQkAsDocumented) {
  const ModelWeights a = Random(30), b = Random(30), c = Random(31);
  EXPECT_EQ(a.layers[1].wq, b.layers[1].wq);
  EXPECT_EQ(a.lm_head, b.lm_head);
  EXPECT_NE(a.layers[1].wq, c.layers[1].wq);
  // qk_shared = 1: every query head's projection is its kv head's key projection.
  const ModelWeights s = Random(32, 1.5f, 1.0f);
  const ModelConfig& cfg = s.config;
  const size_t block = size_t(cfg.head_dim) * cfg.dim;
  for (int h = 0; h < cfg.n_heads; ++h) {
    const int g = h / cfg.GroupSize();
    for (size_t i = 0; i < block; ++i) {
      ASSERT_FLOAT_EQ(s.layers[0].wq[h * block + i], s.layers[0].wk[g * block + i]);
    }
  }
  RandomModelOptions bad;
  bad.config = TinyConfig();
  bad.qk_shared = 1.5f;
  EXPECT_TRUE(absl::IsInvalidArgument(MakeRandomWeights(bad).status()));
}

// The documented purpose of qk_gain / qk_shared: more peaked attention than i.i.d. weights.
TEST(LlamaModelTest, SharedQkMakesAttentionPeaked) {
  auto top_mass = [](const ModelWeights& w) {
    const std::vector<int32_t> prompt = Prompt(200);
    DecoderModel model(&w, 2);
    absl::StatusOr<PrefillResult> prefill = model.Prefill(prompt);
    EXPECT_TRUE(prefill.ok());
    absl::StatusOr<gpu::ExecContext> exec = gpu::MakeExecContext("cpu", 2);
    FullAttentionBackend full(w.config, DType::kFloat32, 201, *exec);
    for (int32_t l = 0; l < w.config.n_layers; ++l) {
      EXPECT_TRUE(
          full.LoadPrefill(l, prefill->KeyView(w.config, l), prefill->ValueView(w.config, l)).ok());
    }
    std::vector<double> mass(1, 0.0);
    const std::vector<int64_t> budget = {20};
    model.set_query_hook([&](int32_t layer, const float* q) {
      EXPECT_TRUE(full.TopMass(layer, q, budget, absl::MakeSpan(mass)).ok());
    });
    std::vector<float> logits(w.config.vocab);
    EXPECT_TRUE(model.DecodeStep(prompt[10], 200, full, logits.data(), nullptr, nullptr).ok());
    return mass[0] / w.config.n_layers;
  };
  const double iid = top_mass(Random(40, 1.0f, 0.0f));
  const double shared = top_mass(Random(40, 1.5f, 0.9f));
  EXPECT_GT(shared, iid + 0.1) << "iid " << iid << " shared " << shared;
}

TEST(LlamaPromptTest, SyntheticPromptIsDeterministicTopicalAndInRange) {
  SyntheticPromptOptions o;
  o.length = 2000;
  LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> a, SyntheticPrompt(o, 1000));
  LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> b, SyntheticPrompt(o, 1000));
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 2000u);
  std::set<int32_t> distinct(a.begin(), a.end());
  EXPECT_LE(distinct.size(), size_t(o.topics) * o.topic_tokens);  // tokens recur
  for (int32_t t : a) ASSERT_TRUE(t >= 0 && t < 1000);
  o.seed = 8;
  LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> c, SyntheticPrompt(o, 1000));
  EXPECT_NE(a, c);
  o.length = 0;
  EXPECT_FALSE(SyntheticPrompt(o, 1000).ok());
}

TEST(LlamaPromptTest, ParsesTokenLists) {
  LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> t, ParseTokenList(" 1, 2,3 ", 10));
  EXPECT_EQ(t, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(ParseTokenList("", 10).ok());
  EXPECT_FALSE(ParseTokenList("1,x", 10).ok());
  EXPECT_FALSE(ParseTokenList("10", 10).ok());
  EXPECT_FALSE(ParseTokenList("-1", 10).ok());
}

}  // namespace
}  // namespace clusterkv::llama
