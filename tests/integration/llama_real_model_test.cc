// clusterkv_llama with the two real models (deploy/models.sh fetches them) through a real
// clusterkvd: text in, text out over the UCX data plane, ClusterKV with a budget covering every
// token reproducing full attention's greedy tokens exactly, and the binary's answers to bad
// input. No quality threshold is asserted: how much a small budget loses is measured by the
// evaluation tool, not tested.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/daemon_process.h"
#include "tests/testing/model_files.h"
#include "tests/testing/temp_dir.h"
#include "tests/unit/llama_test_util.h"
#include "tools/clusterkv_llama/generate.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/quality_eval.h"
#include "tools/clusterkv_llama/text_source.h"
#include "tools/clusterkv_llama/tokenizer.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::DaemonProcess;
using clusterkv::testing::DaemonProcessOptions;
using clusterkv::testing::ModelPath;
using clusterkv::testing::ProcessResult;
using clusterkv::testing::RunProcess;
using clusterkv::testing::TempDir;

std::string ReadText(const std::string& name) {
  std::ifstream in(std::string(CLUSTERKV_TEST_DATA_DIR) + "/llama/" + name);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_FALSE(text.empty()) << name;
  return text;
}

struct Loaded {
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;
};

absl::StatusOr<Loaded> Load(const std::string& file) {
  const std::string missing = clusterkv::testing::MissingModelMessage(file);
  if (!missing.empty()) return absl::NotFoundError(missing);
  Loaded l;
  absl::StatusOr<ModelWeights> w = LoadModel(ModelPath(file));
  if (!w.ok()) return w.status();
  l.weights = *std::move(w);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(ModelPath(file));
  if (!f.ok()) return f.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromGguf((*f)->index());
  if (!t.ok()) return t.status();
  l.tokenizer = *std::move(t);
  return l;
}

DaemonProcessOptions BigEnoughDaemon() {
  DaemonProcessOptions o;
  o.flags = {"--host_capacity_mib=256"};
  return o;
}

// The prompt's K/V go to clusterkvd, a small budget makes the step recall clusters, and the
// recalls go over UCX (the daemon is on this host).
TEST(LlamaRealModelTest, SmolLm2GeneratesTextThroughClusterkvdOverUcx) {
  LLAMA_ASSERT_OK_AND_ASSIGN(Loaded m, Load(clusterkv::testing::kSmolLm2File));
  DaemonProcess daemon(BigEnoughDaemon());
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> prompt,
                             m.tokenizer->Encode(ReadText("pride_and_prejudice_ch1.txt"), {}));
  GenerateOptions o;
  o.target = daemon.target();
  o.tenant = "llama-real";
  o.data_plane = "ucx";
  o.budget = 64;
  o.max_new_tokens = 12;
  o.stop_at_end = false;
  o.threads = 2;
  std::string streamed;
  o.on_text = [&](absl::string_view variant, absl::string_view text) {
    if (absl::StartsWith(variant, "clusterkv")) streamed += std::string(text);
  };
  LLAMA_ASSERT_OK_AND_ASSIGN(GenerateResult r, Generate(m.weights, *m.tokenizer, prompt, o));
  ASSERT_EQ(r.runs.size(), 2u);
  const GeneratedRun& sparse = r.runs[1];
  EXPECT_EQ(sparse.variant, "clusterkv_b64");
  EXPECT_EQ(sparse.tokens.size(), 12u);
  EXPECT_EQ(sparse.data_plane_configured, "ucx");
  EXPECT_EQ(sparse.data_plane, "ucx");
  EXPECT_GT(sparse.totals.bytes_fetched, 0);
  EXPECT_FALSE(sparse.text.empty());
  EXPECT_EQ(streamed, sparse.text);  // streamed as produced, nothing lost
  EXPECT_EQ(sparse.text, m.tokenizer->Decode(sparse.tokens, /*render_special=*/false));
  ASSERT_TRUE(daemon.Stop().ok());
}

// A budget covering every token attends exactly what full attention attends (fp32 K/V on both
// sides), so the greedy continuations are the same token for token, on both architectures (for
// Gemma 3 the prompt is longer than its 512-token window: local and global layers both count).
TEST(LlamaRealModelTest, FullBudgetReproducesFullAttentionOnBothModels) {
  for (const auto& [file, text] :
       {std::pair<std::string, std::string>{clusterkv::testing::kSmolLm2File,
                                            "pride_and_prejudice_ch1.txt"},
        {clusterkv::testing::kGemma3File, "pride_and_prejudice_ch1_long.txt"}}) {
    SCOPED_TRACE(file);
    LLAMA_ASSERT_OK_AND_ASSIGN(Loaded m, Load(file));
    DaemonProcess daemon(BigEnoughDaemon());
    ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
    LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> prompt,
                               m.tokenizer->Encode(ReadText(text), {}));
    GenerateOptions o;
    o.target = daemon.target();
    o.tenant = "llama-real";
    o.kv_dtype = DType::kFloat32;
    o.budget = 8192;
    o.max_new_tokens = 8;
    o.stop_at_end = false;
    o.threads = 2;
    LLAMA_ASSERT_OK_AND_ASSIGN(GenerateResult r, Generate(m.weights, *m.tokenizer, prompt, o));
    ASSERT_EQ(r.runs.size(), 2u);
    EXPECT_EQ(r.runs[1].tokens, r.runs[0].tokens);
    EXPECT_EQ(r.agreeing_prefix, 8);
    EXPECT_GT(r.runs[1].totals.bytes_fetched, 0);  // the clusters really came from the daemon
    ASSERT_TRUE(daemon.Stop().ok());
  }
}

// The evaluation pipeline end to end on a real model, small: every method and task runs and
// reports finite figures, and at a budget covering the whole context every method attends what
// full attention attends (fp32 K/V), so its perplexity and greedy tokens are full attention's.
TEST(LlamaRealModelTest, EvaluationPipelineRunsEveryMethodAndTask) {
  LLAMA_ASSERT_OK_AND_ASSIGN(Loaded m, Load(clusterkv::testing::kSmolLm2File));
  DaemonProcess daemon(BigEnoughDaemon());
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  QualityEvalOptions o;
  o.target = daemon.target();
  o.tenant = "llama-eval";
  o.data_plane = "ucx";
  o.kv_dtype = DType::kFloat32;
  // 400 clusters for 512 tokens would make most clusters a single token (one block each on
  // the daemon); 32 keeps the paper's tokens-per-cluster scale and the test quick.
  o.config.num_prefill_clusters = 32;
  o.contexts = {512};
  o.budgets = {64, 4096};
  o.ppl_tokens = 16;
  o.agreement_tokens = 8;
  o.passkey_depths = 1;
  o.threads = 2;
  o.model_name = "smollm2";
  std::ostringstream table;
  LLAMA_ASSERT_OK_AND_ASSIGN(nlohmann::ordered_json rows,
                             RunQualityEval(m.weights, *m.tokenizer, o, table));
  // (1 full + 4 methods x 2 budgets) x (perplexity, agreement, passkey).
  ASSERT_EQ(rows.size(), 27u) << table.str();
  double full_ppl = 0;
  for (const auto& r : rows) {
    const double v = r["value"].get<double>();
    ASSERT_TRUE(std::isfinite(v)) << r.dump();
    const std::string task = r["params"]["task"];
    if (task == "perplexity" && r["variant"] == "full_attention") full_ppl = v;
    if (task != "perplexity") {
      EXPECT_GE(v, 0.0);
      EXPECT_LE(v, 1.0);
    }
    if (r["params"]["budget"] == 4096 && task == "perplexity") {
      EXPECT_NEAR(v, full_ppl, 1e-3 * full_ppl) << r["variant"];
    }
    if (r["params"]["budget"] == 4096 && task == "agreement") {
      EXPECT_EQ(v, 1.0) << r["variant"];
    }
    if (r["params"]["method"] == "clusterkv" && task == "perplexity") {
      EXPECT_EQ(r["data_plane"], "ucx");
    }
  }
  EXPECT_GT(full_ppl, 1.0);
  EXPECT_NE(table.str().find("passkey retrieval at context 512"), std::string::npos);
  ASSERT_TRUE(daemon.Stop().ok());
}

// Per-variant ClusterKV overrides share the prefill with the plain method and are reported in
// the rows; --passkey_depth_indices runs only the named depths; bad entries are refused before
// any work.
TEST(LlamaRealModelTest, EvaluationOverridesAndDepthIndices) {
  LLAMA_ASSERT_OK_AND_ASSIGN(Loaded m, Load(clusterkv::testing::kSmolLm2File));
  QualityEvalOptions o;
  o.tenant = "llama-eval";
  o.data_plane = "ucx";
  o.kv_dtype = DType::kFloat32;
  o.config.num_prefill_clusters = 16;
  o.contexts = {256};
  o.budgets = {4096};
  o.ppl_tokens = 8;
  o.agreement_tokens = 4;
  o.passkey_depths = 3;
  o.passkey_depth_indices = {2};
  o.threads = 2;
  o.model_name = "smollm2";
  std::ostringstream refused;
  for (const std::vector<std::string>& methods :
       {std::vector<std::string>{"quest+sinks=4"}, {"clusterkv+bogus=1"},
        {"clusterkv+centroid_scoring=sharp"}, {"clusterkv+sinks=x"}}) {
    QualityEvalOptions bad = o;
    bad.methods = methods;
    EXPECT_EQ(RunQualityEval(m.weights, *m.tokenizer, bad, refused).status().code(),
              absl::StatusCode::kInvalidArgument)
        << methods[0];
  }
  for (int64_t index : {int64_t{3}, (int64_t{1} << 32) + 1}) {  // the second would wrap to 1
    QualityEvalOptions bad_depth = o;
    bad_depth.passkey_depth_indices = {index};
    EXPECT_EQ(RunQualityEval(m.weights, *m.tokenizer, bad_depth, refused).status().code(),
              absl::StatusCode::kInvalidArgument)
        << index;
  }

  DaemonProcess daemon(BigEnoughDaemon());
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  o.target = daemon.target();
  const std::string overrides = "centroid_scoring=key_norm+prefill_segment_tokens=128";
  o.methods = {"clusterkv", "clusterkv+" + overrides};
  std::ostringstream table;
  LLAMA_ASSERT_OK_AND_ASSIGN(nlohmann::ordered_json rows,
                             RunQualityEval(m.weights, *m.tokenizer, o, table));
  // 3 variants x (perplexity, agreement, passkey).
  ASSERT_EQ(rows.size(), 9u) << table.str();
  double full_ppl = 0;
  int overridden = 0;
  for (const auto& r : rows) {
    const std::string task = r["params"]["task"];
    if (task == "perplexity" && r["variant"] == "full_attention") full_ppl = r["value"];
    if (r["params"].contains("config_overrides")) {
      ++overridden;
      EXPECT_EQ(r["params"]["config_overrides"], overrides);
      EXPECT_EQ(r["variant"], "clusterkv+" + overrides + "_b4096");
    }
    if (task == "perplexity") {  // the whole context fits the budget: full attention's figures
      EXPECT_NEAR(r["value"].get<double>(), full_ppl, 1e-3 * full_ppl) << r["variant"];
    }
    if (task == "passkey") {
      EXPECT_EQ(r["depths"], nlohmann::ordered_json::array({1.0})) << r.dump();
    }
  }
  EXPECT_EQ(overridden, 3);
  ASSERT_TRUE(daemon.Stop().ok());
}

// The evaluation encodes only an opening of a book; its tokens must be the whole book's, on
// both vocabularies and both texts, and on text whose lines hold few tokens per character.
TEST(LlamaRealModelTest, EncodingAnOpeningGivesTheWholeTextsTokens) {
  std::string sparse;
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&sparse, "line ", i, std::string(60, ' '), "\n");
  for (const char* file : {clusterkv::testing::kSmolLm2File, clusterkv::testing::kGemma3File}) {
    ASSERT_EQ(clusterkv::testing::MissingModelMessage(file), "");
    LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GgufFile> f, GgufFile::Open(ModelPath(file)));
    LLAMA_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok, Tokenizer::FromGguf(f->index()));
    EncodeOptions plain;
    plain.add_bos = false;
    for (const std::string& source : {std::string("austen"), std::string("kjv"), sparse}) {
      std::string text = source;
      if (source == "austen" || source == "kjv") {
        LLAMA_ASSERT_OK_AND_ASSIGN(text, LoadText(source));
        text.resize(text.rfind('\n', 400000));  // a tenth of the book keeps it quick
      }
      LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> whole, tok->Encode(text, plain));
      for (int64_t n : {int64_t{1}, int64_t{3000}, int64_t{20000}}) {
        LLAMA_ASSERT_OK_AND_ASSIGN(std::vector<int32_t> opening, EncodeOpening(*tok, text, n));
        ASSERT_EQ(opening.size(), std::min<size_t>(whole.size(), static_cast<size_t>(n)))
            << file << " " << source.substr(0, 6) << " " << n;
        EXPECT_TRUE(std::equal(opening.begin(), opening.end(), whole.begin()))
            << file << " " << source.substr(0, 6) << " " << n;
      }
    }
  }
}

ProcessResult RunTool(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CLUSTERKV_LLAMA_BIN,
                                   std::string("--daemon=") + CLUSTERKV_DAEMON_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<ProcessResult> r = RunProcess(argv, absl::Seconds(300));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ProcessResult{};
}

TEST(LlamaRealModelTest, TheBinaryAnswersAChatPromptAndRefusesBadInputClearly) {
  const std::string smol = ModelPath(clusterkv::testing::kSmolLm2File);
  ASSERT_EQ(clusterkv::testing::MissingModelMessage(clusterkv::testing::kSmolLm2File), "");
  const ProcessResult chat = RunTool({"--model=" + smol, "--chat", "--prompt=Why is the sky blue?",
                                      "--max_new_tokens=6", "--full_attention=false"});
  EXPECT_EQ(chat.exit_status, 0) << chat.output;
  EXPECT_NE(chat.output.find("== clusterkv_b1024 =="), std::string::npos) << chat.output;
  EXPECT_NE(chat.output.find("recalls from clusterkvd over ucx"), std::string::npos) << chat.output;

  TempDir dir("llama_bad");
  const std::string latin1 = dir.Sub("latin1.txt");
  std::ofstream(latin1) << "caf\xe9 au lait";
  ProcessResult r = RunTool({"--model=" + smol, "--prompt_file=" + latin1});
  EXPECT_EQ(r.exit_status, 2) << r.output;
  EXPECT_NE(r.output.find("UTF-8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("offset 3"), std::string::npos) << r.output;

  // The opening of Emma straight from r-cran-janeaustenr, cut to 2,000 bytes.
  r = RunTool({"--model=" + smol, "--prompt_file=austen", "--prompt_bytes=2000",
               "--max_new_tokens=1", "--full_attention=false", "--budget=256"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_NE(r.output.find("prompt: 2000 bytes of text"), std::string::npos) << r.output;
  r = RunTool({"--model=" + smol, "--prompt_file=austen", "--prompt_bytes=-1"});
  EXPECT_EQ(r.exit_status, 2) << r.output;
  EXPECT_NE(r.output.find("--prompt_bytes must be >= 0"), std::string::npos) << r.output;

  r = RunTool({"--model=" + smol, "--prompt=hello", "--max_new_tokens=9000"});
  EXPECT_EQ(r.exit_status, 2) << r.output;
  EXPECT_NE(r.output.find("context of 8192 tokens"), std::string::npos) << r.output;

  // A truncated copy of the real file: DATA_LOSS naming the file and what is missing.
  const std::string cut = dir.Sub("cut.gguf");
  {
    std::ifstream in(smol, std::ios::binary);
    std::string head(1 << 20, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(cut, std::ios::binary) << head;
  }
  r = RunTool({"--model=" + cut, "--prompt=hello"});
  EXPECT_EQ(r.exit_status, 1) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cut.gguf"), std::string::npos) << r.output;

  r = RunTool({"--prompt=hello"});  // the random model has no tokenizer
  EXPECT_EQ(r.exit_status, 2) << r.output;
  EXPECT_NE(r.output.find("tokenizer"), std::string::npos) << r.output;

  r = RunTool({"--model=" + smol, "--mode=translate"});
  EXPECT_EQ(r.exit_status, 2) << r.output;
  EXPECT_NE(r.output.find("--mode"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace clusterkv::llama
