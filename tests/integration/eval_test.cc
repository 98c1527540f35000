// End-to-end tests of tools/clusterkv_eval:
//  (a) on structured synthetic data ClusterKV recalls more attention mass than StreamingLLM and
//      no less than Quest at B=1024, the oracle bounds every method, and every method's recall
//      grows with the budget;
//  (b) a dump written by numpy (fp16, plus Fortran-order and bf16 files) goes through the .npy
//      loader and the evaluation;
//  (c) the clusterkv_eval binary: --help exits 0, bad flag values exit non-zero, and a synthetic
//      run dumped as fp32 .npy and re-read through --npy_dir gives identical results.
#include "tools/clusterkv_eval/eval.h"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_eval/layer_data.h"
#include "tools/clusterkv_eval/npy.h"
#include "tools/clusterkv_eval/synthetic.h"

namespace clusterkv::eval {
namespace {

using ::testing::HasSubstr;

constexpr Method kAllMethods[] = {Method::kClusterKv, Method::kQuest, Method::kStreamingLlm,
                                  Method::kOracle};

// Exit status of a shell command (-1 if it did not exit normally).
int Shell(const std::string& command) {
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/eval_test_" + name;
  Shell("rm -rf '" + dir + "' && mkdir -p '" + dir + "'");
  return dir;
}

void ExpectSaneReport(const EvalReport& r) {
  ASSERT_EQ(r.rows.size(), kNumMethods * r.budgets.size());
  for (const MethodMetrics& m : r.rows) {
    SCOPED_TRACE(std::string(MethodName(m.method)) + " B=" + std::to_string(m.budget));
    EXPECT_GT(m.samples, 0);
    EXPECT_GE(m.attention_recall, 0.0);
    EXPECT_LE(m.attention_recall, 1.0 + 1e-6);
    EXPECT_GE(m.topk_overlap, 0.0);
    EXPECT_LE(m.topk_overlap, 1.0);
    EXPECT_GE(m.output_rel_error, 0.0);
    EXPECT_TRUE(std::isfinite(m.output_rel_error));
    const MethodMetrics* oracle = r.Find(Method::kOracle, m.budget);
    ASSERT_NE(oracle, nullptr);
    // The oracle takes the top-B of the group-summed attention, so its mean recall over the
    // group is maximal; 1e-6 allows fp32 summation order.
    EXPECT_GE(oracle->attention_recall + 1e-6, m.attention_recall);
  }
  EXPECT_DOUBLE_EQ(r.Find(Method::kOracle, r.budgets[0])->topk_overlap, 1.0);
  // More budget never loses mass: each method's selection at B is a prefix of its selection at
  // a larger B.
  for (Method method : kAllMethods) {
    for (size_t b = 1; b < r.budgets.size(); ++b) {
      EXPECT_GE(r.Find(method, r.budgets[b])->attention_recall + 1e-6,
                r.Find(method, r.budgets[b - 1])->attention_recall)
          << MethodName(method);
    }
  }
}

// (a) The quality comparison the tool exists for. 16k context, 2 kv heads, G=4, d=128, C0=400.
TEST(EvalSyntheticTest, ClusterKvBeatsStreamingLlmAndMatchesQuest) {
  SyntheticOptions s;
  s.context = 16384;
  s.num_layers = 1;
  s.num_kv_heads = 2;
  s.num_q_heads = 8;
  s.head_dim = 128;
  s.num_queries = 4;
  s.seed = 3;
  SyntheticSource source(s);
  EvalOptions o;
  o.config.dense_layers = {};
  o.budgets = {512, 1024};
  int heads_done = 0;
  o.on_head_done = [&heads_done](const HeadProgress& p) {
    EXPECT_EQ(p.heads_done, ++heads_done);
    EXPECT_EQ(p.heads_total, 2);
  };
  absl::StatusOr<EvalReport> r = Evaluate(source, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(heads_done, 2);
  EXPECT_EQ(r->num_clusters, 400);
  EXPECT_EQ(r->evaluated_layers, std::vector<int32_t>{0});
  ExpectSaneReport(*r);
  const double ckv = r->Find(Method::kClusterKv, 1024)->attention_recall;
  const double quest = r->Find(Method::kQuest, 1024)->attention_recall;
  const double streaming = r->Find(Method::kStreamingLlm, 1024)->attention_recall;
  const double oracle = r->Find(Method::kOracle, 1024)->attention_recall;
  RecordProperty("clusterkv_recall_1024", std::to_string(ckv));
  RecordProperty("quest_recall_1024", std::to_string(quest));
  RecordProperty("streamingllm_recall_1024", std::to_string(streaming));
  EXPECT_GT(ckv, streaming);
  EXPECT_GE(ckv, quest);
  EXPECT_GE(oracle, ckv);
  EXPECT_LE(r->Find(Method::kClusterKv, 1024)->output_rel_error,
            r->Find(Method::kStreamingLlm, 1024)->output_rel_error);
  // The estimated recall is compared on every (kv head, query) of ClusterKV's rows, only there.
  for (int64_t budget : {512, 1024}) {
    const RecallEstimateQuality& e = r->Find(Method::kClusterKv, budget)->estimate;
    EXPECT_EQ(e.pairs, 2 * 4);
    int64_t binned = 0;
    for (const CalibrationBin& b : e.bins) {
      binned += b.count;
      EXPECT_GE(b.mean_estimate, b.lower);
      EXPECT_LE(b.mean_estimate, b.lower + 0.1 + 1e-9);
    }
    EXPECT_EQ(binned, e.pairs);
    EXPECT_NEAR(e.mean_true, r->Find(Method::kClusterKv, budget)->attention_recall, 1e-9);
    EXPECT_GE(e.correlation, -1.0);
    EXPECT_LE(e.correlation, 1.0);
    EXPECT_EQ(r->Find(Method::kQuest, budget)->estimate.pairs, 0);
  }
}

TEST(EvalSyntheticTest, RejectsBadOptions) {
  SyntheticOptions s;
  s.context = 512;
  s.num_layers = 2;
  s.num_kv_heads = 1;
  s.num_q_heads = 1;
  s.head_dim = 32;
  s.num_queries = 1;
  s.num_topics = 10;
  SyntheticSource source(s);
  EvalOptions o;
  o.budgets = {64};
  // Default dense layers {0, 1} cover every layer.
  EXPECT_THAT(Evaluate(source, o).status().message(), HasSubstr("dense"));
  o.config.dense_layers = {};
  o.budgets = {0};
  EXPECT_EQ(Evaluate(source, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.budgets = {4096};  // larger than the context
  EXPECT_EQ(Evaluate(source, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.budgets = {64, 4096};  // the one that fits is evaluated, the other noted
  o.config.num_prefill_clusters = 16;
  absl::StatusOr<EvalReport> r = Evaluate(source, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->budgets, std::vector<int64_t>{64});
  EXPECT_THAT(r->notes, ::testing::Contains(HasSubstr("budget 4096 skipped")));
}

bool HaveNumpy() { return Shell("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0; }

// (b) Files written by numpy itself.
TEST(EvalNpyTest, EvaluatesANumpyDump) {
  if (!HaveNumpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  const std::string dir = Dir("numpy_dump");
  const std::string script = dir + "/make_dump.py";
  std::ofstream(script) << R"(import sys, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(5)
for layer in (0, 3):
    k = rng.standard_normal((2, 600, 64)).astype('<f2')
    v = rng.standard_normal((2, 600, 64)).astype('<f2')
    q = (3 * rng.standard_normal((4, 3, 64))).astype('<f2')
    np.save(f'{out}/layer_{layer}_k.npy', k)
    np.save(f'{out}/layer_{layer}_v.npy', v)
    np.save(f'{out}/layer_{layer}_q.npy', q)
np.save(f'{out}/ramp.npy', np.arange(12, dtype='<f2').reshape(3, 4) / 4)
np.save(f'{out}/fortran.npy', np.asfortranarray(np.ones((3, 4), dtype='<f4')))
np.save(f'{out}/bf16.npy', np.array([0x3f80, 0xc020], dtype='<u2'))
)";
  ASSERT_EQ(Shell("/usr/bin/python3 '" + script + "' '" + dir + "'"), 0);

  absl::StatusOr<NpyArray> ramp = ReadNpy(dir + "/ramp.npy");
  ASSERT_TRUE(ramp.ok()) << ramp.status();
  EXPECT_EQ(ramp->dtype, DType::kFloat16);
  EXPECT_EQ(ramp->shape, (std::vector<int64_t>{3, 4}));
  std::vector<float> f(12);
  ConvertToFloat(ramp->data.data(), ramp->dtype, 12, f.data());
  for (int i = 0; i < 12; ++i) EXPECT_EQ(f[i], i / 4.0f);
  EXPECT_EQ(ReadNpy(dir + "/fortran.npy").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<NpyArray> bf16 = ReadNpy(dir + "/bf16.npy", {.bf16 = true});
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  ConvertToFloat(bf16->data.data(), bf16->dtype, 2, f.data());
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.5f);

  absl::StatusOr<NpyDirSource> source = NpyDirSource::Open(dir, /*bf16=*/false);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ(source->layers(), (std::vector<int32_t>{0, 3}));
  EvalOptions o;
  o.config.dense_layers = {0};
  o.config.num_prefill_clusters = 16;
  o.config.kmeans_iterations = 5;
  o.budgets = {64, 128};
  absl::StatusOr<EvalReport> r = Evaluate(*source, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->context, 600);
  EXPECT_EQ(r->num_kv_heads, 2);
  EXPECT_EQ(r->num_q_heads, 4);
  EXPECT_EQ(r->head_dim, 64);
  EXPECT_EQ(r->num_queries, 3);
  EXPECT_EQ(r->evaluated_layers, std::vector<int32_t>{3});
  EXPECT_EQ(r->skipped_layers, std::vector<int32_t>{0});
  EXPECT_EQ(r->heads_evaluated, 2);
  ExpectSaneReport(*r);
  // 2 kv heads x 3 queries x G=2.
  EXPECT_EQ(r->rows[0].samples, 12);
}

TEST(EvalNpyTest, ReportsMissingAndInconsistentFiles) {
  EXPECT_EQ(NpyDirSource::Open(Dir("empty"), false).status().code(), absl::StatusCode::kNotFound);
  const std::string dir = Dir("inconsistent");
  LayerTensors t;
  t.k = NpyArray::FromFloats(std::vector<float>(2 * 40 * 8, 1.0f), {2, 40, 8}, DType::kFloat32);
  t.v = NpyArray::FromFloats(std::vector<float>(2 * 41 * 8, 1.0f), {2, 41, 8}, DType::kFloat32);
  t.q = NpyArray::FromFloats(std::vector<float>(2 * 1 * 8, 1.0f), {2, 1, 8}, DType::kFloat32);
  ASSERT_TRUE(WriteLayerNpy(dir, 0, t, DType::kFloat32).ok());
  absl::StatusOr<NpyDirSource> source = NpyDirSource::Open(dir, false);
  ASSERT_TRUE(source.ok());
  absl::StatusOr<LayerTensors> loaded = source->Load(0);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), HasSubstr("differs from v shape"));
}

// (c) The binary.
// Mean-key scoring: each cluster is represented by the plain mean of its keys (norms and spread
// kept), and an evaluation scored that way runs and stays within the oracle's bound.
TEST(EvalSyntheticTest, MeanKeyScoringUsesEachClustersMeanKey) {
  // Four keys in two clusters: {3e0, e0 + e1} and {-e1, -e1 + 2e2}; cluster 1 left empty.
  const std::vector<float> keys = {3, 0, 0, 1, 1, 0, 0, -1, 0, 0, -1, 2};
  gpu::Clustering c;
  c.num_clusters = 3;
  c.head_dim = 3;
  c.labels = {0, 0, 2, 2};
  c.sizes = {2, 0, 2};
  const std::vector<float> means = MeanKeyCentroids(ConstMatrixView(keys.data(), 4, 3), c);
  EXPECT_EQ(means, (std::vector<float>{2, 0.5f, 0, 0, 0, 0, 0, -1, 1}));

  SyntheticOptions s;
  s.context = 4096;
  s.num_layers = 1;
  s.num_kv_heads = 1;
  s.num_q_heads = 4;
  s.head_dim = 64;
  s.num_queries = 4;
  SyntheticSource source(s);
  EvalOptions o;
  o.config.dense_layers = {};
  o.config.num_prefill_clusters = 64;
  o.budgets = {256, 512};
  o.centroid_scoring = EvalOptions::CentroidScoring::kMeanKey;
  absl::StatusOr<EvalReport> r = Evaluate(source, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSaneReport(*r);
}

TEST(EvalCliTest, HelpExitsZeroAndDocumentsTheLayout) {
  const std::string out = ::testing::TempDir() + "/eval_help.txt";
  ASSERT_EQ(Shell(std::string(CLUSTERKV_EVAL_BIN) + " --help > '" + out + "' 2>&1"), 0);
  const std::string text = ReadFile(out);
  EXPECT_THAT(text, HasSubstr("layer_<L>_k.npy"));
  EXPECT_THAT(text, HasSubstr("--bf16"));
  EXPECT_THAT(text, HasSubstr("--budgets"));
}

TEST(EvalCliTest, BadFlagValuesExitNonZero) {
  const std::string bin = std::string(CLUSTERKV_EVAL_BIN) + " --quiet";
  EXPECT_NE(Shell(bin + " --context=abc >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell(bin + " --no_such_flag=1 >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell(bin + " --budgets=12x >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell(bin + " --backend=tpu >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell(bin + " --centroid_scoring=median >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell(bin + " --q_heads=3 --kv_heads=2 >/dev/null 2>&1"), 0);
  EXPECT_NE(Shell(bin + " --npy_dir=/nonexistent/dump >/dev/null 2>&1"), 0);
}

// The same data through the synthetic path and through the .npy path (fp32: lossless) must
// give the same numbers.
TEST(EvalCliTest, DumpedNpyReproducesTheSyntheticRun) {
  const std::string dir = Dir("cli");
  const std::string common =
      std::string(CLUSTERKV_EVAL_BIN) +
      " --quiet --backend=cpu --threads=1 --dense_layers=0 --clusters=32 --kmeans_iters=5"
      " --budgets=128,256";
  const std::string synthetic_args =
      " --context=2048 --layers=2 --kv_heads=1 --q_heads=2 --head_dim=64 --queries=2"
      " --topics=30";
  ASSERT_EQ(Shell(common + synthetic_args + " --dump_npy='" + dir + "/dump' --dump_dtype=fp32" +
                  " --json='" + dir + "/a.json' > '" + dir + "/a.txt' 2>&1"),
            0)
      << ReadFile(dir + "/a.txt");
  ASSERT_EQ(Shell(common + " --npy_dir='" + dir + "/dump' --json='" + dir + "/b.json' > '" + dir +
                  "/b.txt' 2>&1"),
            0)
      << ReadFile(dir + "/b.txt");
  EXPECT_THAT(ReadFile(dir + "/a.txt"), HasSubstr("clusterkv"));
  const nlohmann::json a = nlohmann::json::parse(ReadFile(dir + "/a.json"));
  const nlohmann::json b = nlohmann::json::parse(ReadFile(dir + "/b.json"));
  EXPECT_EQ(a["bench"], "eval");
  ASSERT_EQ(a["results"].size(), 8u);
  ASSERT_EQ(b["results"].size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    const nlohmann::json& ra = a["results"][i];
    const nlohmann::json& rb = b["results"][i];
    EXPECT_EQ(ra["variant"], rb["variant"]);
    EXPECT_EQ(ra["params"]["budget"], rb["params"]["budget"]);
    EXPECT_EQ(ra["params"]["context"], 2048);
    EXPECT_EQ(ra["unit"], "attention_mass_recall");
    EXPECT_DOUBLE_EQ(ra["value"].get<double>(), rb["value"].get<double>());
    EXPECT_DOUBLE_EQ(ra["output_rel_error"].get<double>(), rb["output_rel_error"].get<double>());
    EXPECT_DOUBLE_EQ(ra["topk_overlap"].get<double>(), rb["topk_overlap"].get<double>());
  }
  // The fp16 dump is readable too (the default --dump_dtype).
  ASSERT_EQ(Shell(std::string(CLUSTERKV_EVAL_BIN) + synthetic_args + " --quiet --dump_only" +
                  " --dump_npy='" + dir + "/fp16' >/dev/null 2>&1"),
            0);
  absl::StatusOr<NpyArray> k = ReadNpy(dir + "/fp16/layer_1_k.npy");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->dtype, DType::kFloat16);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{1, 2048, 64}));
}

}  // namespace
}  // namespace clusterkv::eval
