// The pieces of clusterkv_llama's accuracy evaluation: passkey prompts and answers, the real
// texts from Debian packages, and the engine-side baselines (Quest, StreamingLLM, oracle) as
// attention backends.
#include <cmath>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "gpu/backend.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/llama_test_util.h"
#include "tools/clusterkv_llama/baseline_attention.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/model_profile.h"
#include "tools/clusterkv_llama/passkey.h"
#include "tools/clusterkv_llama/text_source.h"
#include "tools/clusterkv_llama/tokenizer.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::TempDir;
using testing::RandomVector;
using testing::TinyConfig;

// A byte-level vocabulary: a space token and every byte (SentencePiece with byte fallback), so
// any text encodes to one token per byte and decodes back to itself.
std::unique_ptr<Tokenizer> ByteTokenizer(const TempDir& dir, bool add_bos) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "\u2581"};
  std::vector<double> scores(4, 0.0), types = {2, 3, 3, 1};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    tokens.push_back(name);
    scores.push_back(0.0);
    types.push_back(6);  // byte
  }
  GgufMetadata md = {{"tokenizer.ggml.model", GgufValue::String("llama")},
                     {"tokenizer.ggml.tokens", GgufValue::StringArray(tokens)},
                     {"tokenizer.ggml.scores", GgufValue::NumberArray(GgufType::kFloat32, scores)},
                     {"tokenizer.ggml.token_type", GgufValue::NumberArray(GgufType::kInt32, types)},
                     {"tokenizer.ggml.bos_token_id", GgufValue::Uint32(1)},
                     {"tokenizer.ggml.eos_token_id", GgufValue::Uint32(2)},
                     {"tokenizer.ggml.unknown_token_id", GgufValue::Uint32(0)},
                     {"tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos)},
                     {"tokenizer.ggml.add_space_prefix", GgufValue::Bool(false)}};
  EXPECT_TRUE(WriteGguf(dir.Sub("vocab.gguf"), md, {}).ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(dir.Sub("vocab.gguf"));
  EXPECT_TRUE(f.ok()) << f.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromGguf((*f)->index());
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

// QK-norm models get key-norm scoring and 200 clusters per later segment; other models and
// the fields the user set keep their values.
TEST(LlamaModelProfileTest, QkNormModelsGetKeyNormScoringAndFinerSegments) {
  ModelConfig plain;
  ClusterKvConfig config;
  EXPECT_EQ(ApplyModelProfile(plain, {}, &config), "");
  EXPECT_EQ(config.centroid_scoring, CentroidScoring::kUnit);
  EXPECT_EQ(config.prefill_segment_clusters, 0);

  ModelConfig qk;
  qk.qk_norm = true;
  EXPECT_EQ(ApplyModelProfile(qk, {}, &config),
            "centroid_scoring=key_norm, prefill_segment_clusters=200");
  EXPECT_EQ(config.centroid_scoring, CentroidScoring::kKeyNorm);
  EXPECT_EQ(config.prefill_segment_clusters, 200);
  EXPECT_TRUE(config.Validate().ok());

  ClusterKvConfig given;
  ProfileOverrides user;
  user.centroid_scoring = true;
  user.prefill_segment_clusters = true;
  EXPECT_EQ(ApplyModelProfile(qk, user, &given), "");
  EXPECT_EQ(given.centroid_scoring, CentroidScoring::kUnit);
  EXPECT_EQ(given.prefill_segment_clusters, 0);

  ClusterKvConfig whole;  // whole-prompt clustering has no segments to refine
  whole.prefill_segment_tokens = 0;
  EXPECT_EQ(ApplyModelProfile(qk, {}, &whole), "centroid_scoring=key_norm");
  EXPECT_EQ(whole.prefill_segment_clusters, 0);
}

TEST(LlamaPasskeyTest, PromptHasTheExactLengthAndTheNeedleAtItsDepth) {
  TempDir dir("passkey");
  for (bool bos : {false, true}) {
    std::unique_ptr<Tokenizer> tok = ByteTokenizer(dir, bos);
    EncodeOptions plain;
    plain.add_bos = false;
    absl::StatusOr<std::vector<int32_t>> hay = tok->Encode(std::string(2000, 'x'), plain);
    ASSERT_TRUE(hay.ok());
    for (double depth : {0.0, 0.5, 1.0}) {
      LLAMA_ASSERT_OK_AND_ASSIGN(PasskeyPrompt p, MakePasskeyPrompt(*tok, *hay, 600, depth, 7));
      ASSERT_EQ(p.tokens.size(), 600u);
      EXPECT_EQ(p.passkey.size(), 5u);
      EXPECT_EQ(p.tokens[0] == 1, bos);
      const std::string text = tok->Decode(p.tokens, /*render_special=*/false);
      const std::string needle =
          "\nThe pass key is " + p.passkey + ". Remember it. " + p.passkey + " is the pass key.\n";
      // One token per byte: the needle starts at its token's offset (after BOS).
      ASSERT_EQ(text.find(needle), static_cast<size_t>(p.needle_token - (bos ? 1 : 0))) << text;
      EXPECT_TRUE(absl::EndsWith(text, "\nWhat is the pass key? The pass key is"));
      // The needle's place in the haystack follows the depth: 0 first, 1 just before the
      // question.
      const int64_t fill = 600 - (bos ? 1 : 0) - static_cast<int64_t>(needle.size()) - 38;
      EXPECT_EQ(p.needle_token - (bos ? 1 : 0), std::llround(depth * fill)) << depth;
    }
    // Seeds choose the key.
    LLAMA_ASSERT_OK_AND_ASSIGN(PasskeyPrompt a, MakePasskeyPrompt(*tok, *hay, 600, 0.5, 1));
    LLAMA_ASSERT_OK_AND_ASSIGN(PasskeyPrompt b, MakePasskeyPrompt(*tok, *hay, 600, 0.5, 2));
    EXPECT_NE(a.passkey, b.passkey);
    EXPECT_TRUE(absl::IsInvalidArgument(MakePasskeyPrompt(*tok, *hay, 60, 0.5, 1).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(MakePasskeyPrompt(*tok, *hay, 6000, 0.5, 1).status()));
    EXPECT_TRUE(absl::IsInvalidArgument(MakePasskeyPrompt(*tok, *hay, 600, 1.5, 1).status()));
  }
}

TEST(LlamaPasskeyTest, AnswersAreTheFirstRunOfExactlyFiveDigits) {
  EXPECT_EQ(ExtractPasskey(" 43647. Remember"), "43647");
  EXPECT_EQ(ExtractPasskey("It is 123456 or 98765"), "98765");
  EXPECT_EQ(ExtractPasskey("1234 12 99999x"), "99999");
  EXPECT_EQ(ExtractPasskey("no digits"), "");
  EXPECT_EQ(ExtractPasskey("4364"), "");
}

// The real texts ship in Debian packages that deploy/setup.sh installs.
TEST(LlamaTextSourceTest, ReadsAustenAndTheKingJamesBible) {
  LLAMA_ASSERT_OK_AND_ASSIGN(std::string austen, LoadText("austen"));
  EXPECT_GT(austen.size(), size_t{3} << 20);
  EXPECT_TRUE(absl::StartsWith(austen, "EMMA")) << austen.substr(0, 40);
  EXPECT_NE(austen.find("It is a truth universally acknowledged"), std::string::npos);
  LLAMA_ASSERT_OK_AND_ASSIGN(std::string kjv, LoadText("kjv"));
  EXPECT_GT(kjv.size(), size_t{4} << 20);
  EXPECT_NE(kjv.find("In the beginning God created the heaven and the earth."), std::string::npos);
  EXPECT_NE(kjv.find("Revelation 22"), std::string::npos);
  EXPECT_TRUE(absl::IsNotFound(LoadText("/nonexistent/book.txt").status()));
  EXPECT_NE(DescribeTextSource("austen").find("r-cran-janeaustenr"), std::string::npos);
}

// Fills a global-layer store with `tokens` random keys/values per kv head.
void LoadRandomPrompt(const ModelConfig& c, int64_t tokens, uint64_t seed,
                      AttentionBackend& backend) {
  const std::vector<float> k = RandomVector(c.n_kv_heads * tokens * c.head_dim, seed, 1.5f);
  const std::vector<float> v = RandomVector(c.n_kv_heads * tokens * c.head_dim, seed + 1);
  const Tensor3View kv(k.data(), DType::kFloat32, {c.n_kv_heads, tokens, c.head_dim});
  const Tensor3View vv(v.data(), DType::kFloat32, {c.n_kv_heads, tokens, c.head_dim});
  for (int32_t l = 0; l < c.n_layers; ++l) ASSERT_TRUE(backend.LoadPrefill(l, kv, vv).ok());
}

// Every baseline equals full attention when its budget covers the prompt, and on dense layers;
// below that it attends sinks + B + the decoded tokens, and differs from full attention.
TEST(LlamaBaselineTest, BaselinesAttendWhatTheyShould) {
  const ModelConfig c = TinyConfig();  // 2 layers, 4 q heads over 2 kv heads of 8 dims
  LLAMA_ASSERT_OK_AND_ASSIGN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", 1));
  ClusterKvConfig config;
  config.num_sink_tokens = 4;
  config.dense_layers = {0};
  const int64_t prompt = 120;
  const std::vector<float> q = RandomVector(c.QDim(), 9, 1.5f);
  const std::vector<float> k = RandomVector(c.KvDim(), 10), v = RandomVector(c.KvDim(), 11);
  FullAttentionBackend full(c, DType::kFloat32, prompt + 1, exec);
  LoadRandomPrompt(c, prompt, 3, full);
  std::vector<float> want0(c.QDim()), want1(c.QDim());
  LLAMA_ASSERT_OK(full.AppendAndAttend(0, q.data(), k.data(), v.data(), want0.data(), nullptr));
  LLAMA_ASSERT_OK(full.AppendAndAttend(1, q.data(), k.data(), v.data(), want1.data(), nullptr));
  for (BaselineMethod m :
       {BaselineMethod::kOracle, BaselineMethod::kQuest, BaselineMethod::kStreamingLlm}) {
    for (int64_t budget : {int64_t{20}, prompt}) {
      BaselineBackend b(m, c, config, budget, DType::kFloat32, prompt + 1, exec);
      LoadRandomPrompt(c, prompt, 3, b);
      std::vector<float> out0(c.QDim()), out1(c.QDim());
      AttentionStepStats s0, s1;
      LLAMA_ASSERT_OK(b.AppendAndAttend(0, q.data(), k.data(), v.data(), out0.data(), &s0));
      LLAMA_ASSERT_OK(b.AppendAndAttend(1, q.data(), k.data(), v.data(), out1.data(), &s1));
      EXPECT_EQ(out0, want0) << b.Name();  // dense layer
      EXPECT_EQ(s0.attended_tokens, (prompt + 1) * c.n_kv_heads);
      if (budget >= prompt) {
        EXPECT_EQ(out1, want1) << b.Name();
      } else {
        // Sinks + B + the one decoded token per kv head (Quest's last page may be cut).
        EXPECT_EQ(s1.attended_tokens, (4 + budget + 1) * c.n_kv_heads) << b.Name();
        double diff = 0;
        for (int i = 0; i < c.QDim(); ++i)
          diff = std::max(diff, double(std::abs(out1[i] - want1[i])));
        EXPECT_GT(diff, 1e-6) << b.Name();
      }
    }
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ParseBaselineMethod("h2o").status()));
  EXPECT_EQ(ParseBaselineMethod("quest").value(), BaselineMethod::kQuest);
}

// The oracle keeps the tokens of highest attention weight: with one key made to match the
// query, a budget of one token attends exactly the sinks, that key and the decoded token.
TEST(LlamaBaselineTest, OracleFindsTheMatchingKey) {
  ModelConfig c = TinyConfig();
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  LLAMA_ASSERT_OK_AND_ASSIGN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", 1));
  ClusterKvConfig config;
  config.num_sink_tokens = 2;
  config.dense_layers = {};
  const int64_t prompt = 50;
  std::vector<float> keys = RandomVector(prompt * c.head_dim, 21, 0.1f);
  std::vector<float> values(prompt * c.head_dim, 0.0f);
  const std::vector<float> q = RandomVector(c.QDim(), 22, 3.0f);
  for (int d = 0; d < c.head_dim; ++d) {
    keys[37 * c.head_dim + d] = q[d] * 4.0f;  // token 37 matches query head 0 strongly
    values[37 * c.head_dim + d] = 1.0f;
  }
  BaselineBackend b(BaselineMethod::kOracle, c, config, 1, DType::kFloat32, prompt + 1, exec);
  const Tensor3View kv(keys.data(), DType::kFloat32, {1, prompt, c.head_dim});
  const Tensor3View vv(values.data(), DType::kFloat32, {1, prompt, c.head_dim});
  LLAMA_ASSERT_OK(b.LoadPrefill(0, kv, vv));
  const std::vector<float> zero(c.KvDim(), 0.0f);
  std::vector<float> out(c.QDim());
  AttentionStepStats s;
  LLAMA_ASSERT_OK(b.AppendAndAttend(0, q.data(), zero.data(), zero.data(), out.data(), &s));
  EXPECT_EQ(s.attended_tokens, 2 + 1 + 1);
  EXPECT_GT(out[0], 0.9f);  // almost all of head 0's weight is on token 37, whose value is 1
}

}  // namespace
}  // namespace clusterkv::llama
