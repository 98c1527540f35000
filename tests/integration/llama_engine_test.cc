// clusterkv_llama against a real clusterkvd: the Llama decode loop with its attention through
// libclusterkv (OffloadPrefill, AppendToken, Attend over the daemon's FetchClusters / UCX path)
// compared with full attention in the same process, and the tool binary end to end.
//
// What is asserted, and why it is safe to assert:
//  - a budget covering every token (and decode windows re-clustered and offloaded on the way)
//    attends exactly the tokens full attention does, in another order: the greedy tokens must
//    match on every step and the logits agree to float rounding;
//  - with every layer dense, no token ever leaves the client: same result, nothing fetched;
//  - a small budget must complete, attend fewer tokens, change the logits (finite, nonzero
//    error) and report an agreement within [0, 1]. No quality threshold is asserted for it:
//    how much a small budget loses depends on the model.
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/daemon_process.h"
#include "tests/testing/temp_dir.h"
#include "tools/clusterkv_llama/comparison.h"
#include "tools/clusterkv_llama/ops.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/model_writer.h"
#include "tools/clusterkv_llama/prompt.h"
#include "tools/clusterkv_llama/reuse_bench.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::DaemonProcess;
using clusterkv::testing::ProcessResult;
using clusterkv::testing::RunProcess;
using clusterkv::testing::TempDir;

constexpr char kTenant[] = "llama-test";

ModelConfig SmallConfig() {
  ModelConfig c;
  c.dim = 64;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 96;
  c.vocab = 97;
  c.rope_theta = 10000.0f;
  c.max_context = 1024;
  return c;
}

ModelWeights SmallModel() {
  RandomModelOptions o;
  o.config = SmallConfig();
  o.seed = 5;
  o.qk_gain = 1.3f;
  o.qk_shared = 0.8f;
  absl::StatusOr<ModelWeights> w = MakeRandomWeights(o);
  EXPECT_TRUE(w.ok()) << w.status();
  return *std::move(w);
}

// The small model, or a variant whose layers 0 and 2 are sliding-window layers (Gemma 3's
// pattern in miniature).
absl::StatusOr<ModelWeights> SmallModelWithLocalLayers(bool local) {
  RandomModelOptions o;
  o.config = SmallConfig();
  if (local) {
    o.config.sliding_window = 24;
    o.config.layer_is_local = {1, 0, 1};
  }
  o.seed = 9;
  return MakeRandomWeights(o);
}

std::vector<int32_t> SmallPrompt() {
  SyntheticPromptOptions o;
  o.length = 200;
  o.topics = 5;
  o.topic_tokens = 12;
  o.segment_mean = 20;
  absl::StatusOr<std::vector<int32_t>> p = SyntheticPrompt(o, SmallConfig().vocab);
  EXPECT_TRUE(p.ok());
  return *p;
}

ComparisonOptions SmallOptions(const std::string& target) {
  ComparisonOptions o;
  o.target = target;
  o.tenant = kTenant;
  o.steps = 8;
  o.threads = 2;
  o.config.num_sink_tokens = 4;
  o.config.num_prefill_clusters = 12;
  o.config.kmeans_iterations = 5;
  o.config.dense_layers = {0};
  // Every 4 decode tokens the window is clustered and appended: 8 steps exercise it twice.
  o.config.recluster_interval = 4;
  o.config.clusters_per_recluster = 2;
  return o;
}

int SequencesOnDaemon(const DaemonProcess& daemon) {
  clusterkv::testing::KvCacheClient client =
      clusterkv::testing::MakeKvCacheClient(daemon.target(), kTenant);
  v1::ListSequencesResponse response;
  auto context = client.Context();
  const grpc::Status s =
      client.stub->ListSequences(context.get(), v1::ListSequencesRequest(), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response.sequences_size();
}

TEST(LlamaEngineTest, BudgetCoveringEveryTokenReproducesFullAttention) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  const ModelWeights w = SmallModel();
  ComparisonOptions o = SmallOptions(daemon.target());
  o.kv_dtype = DType::kFloat32;  // both backends hold the same K/V bits
  o.budgets = {1024};            // > prompt + steps
  absl::StatusOr<ComparisonResult> r = RunComparison(w, SmallPrompt(), o);
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << daemon.output();
  ASSERT_EQ(r->clusterkv.size(), 1u);
  const VariantResult& ckv = r->clusterkv[0];
  ASSERT_EQ(ckv.argmax.size(), 8u);
  for (size_t s = 0; s < ckv.argmax.size(); ++s) {
    EXPECT_EQ(ckv.argmax[s], r->greedy_tokens[s + 1]) << "step " << s;
  }
  EXPECT_EQ(ckv.token_agreement, 1.0);
  EXPECT_LT(ckv.logit_rel_l2_max, 1e-5);
  EXPECT_LT(ckv.logit_max_abs, 1e-4);
  // The same tokens were attended (sinks + every cluster + window = everything) and they came
  // through the daemon.
  EXPECT_EQ(ckv.totals.attended_tokens, r->full.totals.attended_tokens);
  EXPECT_GT(ckv.totals.bytes_fetched, 0);
  EXPECT_NE(ckv.data_plane, "none");
  EXPECT_EQ(SequencesOnDaemon(daemon), 0);  // dropped after the run
  ASSERT_TRUE(daemon.Stop().ok());
}

TEST(LlamaEngineTest, AllLayersDenseNeverFetches) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  const ModelWeights w = SmallModel();
  ComparisonOptions o = SmallOptions(daemon.target());
  o.kv_dtype = DType::kFloat32;
  o.config.dense_layers = {0, 1, 2};
  o.budgets = {8};
  absl::StatusOr<ComparisonResult> r = RunComparison(w, SmallPrompt(), o);
  ASSERT_TRUE(r.ok()) << r.status();
  const VariantResult& ckv = r->clusterkv[0];
  EXPECT_EQ(ckv.token_agreement, 1.0);
  EXPECT_LT(ckv.logit_rel_l2_max, 1e-5);
  EXPECT_EQ(ckv.totals.bytes_fetched, 0);
  EXPECT_EQ(ckv.totals.attended_tokens, r->full.totals.attended_tokens);
}

// Speculative prefetch (each sparse layer's recall started from a query predicted from the
// previous layer's input) changes which clusters are resident when a layer attends, never what
// it attends: the decode must be bit-identical to the same decode without it, and the
// prefetches must have fetched something the steps then used.
TEST(LlamaEngineTest, SpeculativePrefetchDecodesExactlyAsWithout) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  const ModelWeights w = SmallModel();
  const ModelConfig& c = w.config;
  ComparisonOptions o = SmallOptions(daemon.target());
  const std::vector<int32_t> prompt = SmallPrompt();
  DecoderModel model(&w, /*threads=*/2);
  absl::StatusOr<PrefillResult> prefill = model.Prefill(prompt);
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  std::vector<std::vector<float>> logits[2];
  AttentionStepStats totals[2];
  for (int speculate = 0; speculate < 2; ++speculate) {
    absl::StatusOr<ClusterKvSession> session =
        OpenClusterKv(c, o, /*budget=*/16, absl::StrCat("prefetch-", speculate), 2);
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE(LoadPrefillInto(c, *prefill, *session->backend).ok());
    model.set_speculative_prefetch(speculate == 1);
    int32_t token = ArgMax(prefill->last_logits.data(), c.vocab);
    for (int step = 0; step < 8; ++step) {
      std::vector<float> out(static_cast<size_t>(c.vocab));
      AttentionStepStats stats;
      ASSERT_TRUE(model
                      .DecodeStep(token, static_cast<int64_t>(prompt.size()) + step,
                                  *session->backend, out.data(), nullptr, &stats)
                      .ok());
      totals[speculate].Add(stats);
      token = ArgMax(out.data(), c.vocab);
      logits[speculate].push_back(std::move(out));
    }
    model.set_speculative_prefetch(false);
    ASSERT_TRUE(session->sparse->sequence().Close(/*drop=*/true).ok());
  }
  for (size_t step = 0; step < logits[0].size(); ++step) {
    EXPECT_EQ(logits[0][step], logits[1][step]) << "step " << step;
  }
  EXPECT_EQ(totals[0].prefetched_tokens, 0);
  EXPECT_GT(totals[1].prefetched_tokens, 0);
  EXPECT_GT(totals[1].prefetch_used_tokens, 0);
  EXPECT_EQ(totals[1].attended_tokens, totals[0].attended_tokens);
}

// A prefill that continues a stored prefix (DecoderModel::Prefill with `prefix`: what a request
// over a shared document runs) computes what one prefill of the whole prompt computes, for a
// model with only global layers and for one with sliding-window layers, whose prefix is only
// its last windows.
TEST(LlamaEngineTest, PrefillContinuesAStoredPrefix) {
  for (bool local : {false, true}) {
    SCOPED_TRACE(local ? "with local layers" : "global layers only");
    absl::StatusOr<ModelWeights> w = SmallModelWithLocalLayers(local);
    ASSERT_TRUE(w.ok()) << w.status();
    const ModelConfig& c = w->config;
    DecoderModel model(&*w, /*threads=*/2);
    const std::vector<int32_t> prompt = SmallPrompt();
    const int64_t n = static_cast<int64_t>(prompt.size()), m = 128;
    absl::StatusOr<PrefillResult> whole = model.Prefill(prompt);
    absl::StatusOr<PrefillResult> prefix =
        model.Prefill(absl::MakeConstSpan(prompt).subspan(0, m));
    ASSERT_TRUE(whole.ok() && prefix.ok());
    absl::StatusOr<PrefillResult> rest =
        model.Prefill(absl::MakeConstSpan(prompt).subspan(m), nullptr, nullptr, &*prefix);
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(rest->tokens, n);
    float worst = 0;
    for (int32_t v = 0; v < c.vocab; ++v) {
      worst = std::max(worst, std::abs(rest->last_logits[v] - whole->last_logits[v]));
    }
    EXPECT_LT(worst, 1e-3f);
    for (int32_t l = 0; l < c.n_layers; ++l) {
      ASSERT_EQ(rest->keys[l].size(), whole->keys[l].size()) << "layer " << l;
      for (size_t i = 0; i < rest->keys[l].size(); ++i) {
        ASSERT_NEAR(rest->keys[l][i], whole->keys[l][i], 1e-3f) << "layer " << l << " at " << i;
      }
    }
    // The whole prompt's window snapshot at m is the prefix's own windows.
    absl::StatusOr<PrefillResult> snap = model.Prefill(prompt, nullptr, nullptr, nullptr, m);
    ASSERT_TRUE(snap.ok());
    for (int32_t l = 0; l < c.n_layers && local; ++l) {
      if (!c.IsLocalLayer(l)) continue;
      ASSERT_EQ(snap->snapshot_keys[l].size(), prefix->keys[l].size()) << "layer " << l;
      for (size_t i = 0; i < prefix->keys[l].size(); ++i) {
        ASSERT_NEAR(snap->snapshot_keys[l][i], prefix->keys[l][i], 1e-3f) << "layer " << l;
        ASSERT_NEAR(snap->snapshot_values[l][i], prefix->values[l][i], 1e-3f) << "layer " << l;
      }
    }
    // A prefix of the wrong shape is refused.
    PrefillResult bad = *prefix;
    bad.keys.pop_back();
    EXPECT_EQ(model.Prefill(absl::MakeConstSpan(prompt).subspan(m), nullptr, nullptr, &bad)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// --mode=reuse end to end on the small model, with and without local layers: a document
// published, found and forked, its rest prefilled, a parked sequence resumed; the resumed
// sequence's next token is the one the uninterrupted sequence computes (the resume is exact).
TEST(LlamaEngineTest, ReuseBenchForksADocumentAndResumesAParkedSequence) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  for (bool local : {false, true}) {
    SCOPED_TRACE(local ? "with local layers" : "global layers only");
    absl::StatusOr<ModelWeights> w = SmallModelWithLocalLayers(local);
    ASSERT_TRUE(w.ok()) << w.status();
    ReuseBenchOptions o;
    static_cast<ServiceOptions&>(o) = SmallOptions(daemon.target());
    o.config.dense_layers = {};
    o.config.prefill_segment_tokens = 64;
    o.config.prefill_segment_clusters = 6;
    o.budget = 32;
    o.steps = 6;
    o.model_name = local ? "small-local" : "small";
    o.sequence_prefix = local ? "reuse-local" : "reuse";
    std::ostringstream table;
    absl::StatusOr<nlohmann::ordered_json> rows =
        RunReuseBench(*w, SmallPrompt(), o, table);
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_EQ(rows->size(), 4u) << table.str();
    EXPECT_EQ((*rows)[1]["shared_tokens"], 192);
    EXPECT_TRUE((*rows)[2]["next_token_equal"].get<bool>()) << table.str();
    EXPECT_GT((*rows)[3]["document_tier_bytes"].get<uint64_t>(),
              (*rows)[3]["later_fork_tier_bytes_each"].get<uint64_t>());
  }
}

// A batch of sequences stepping together (DecoderModel::DecodeBatchStep): with their attention
// through one Sequence::AttendBatch per layer the logits are bit-identical to the same batch
// attended one sequence at a time, and they match each sequence decoded alone by DecodeStep
// up to the rounding of a many-row matrix product.
TEST(LlamaEngineTest, BatchedDecodeMatchesEachSequenceAlone) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  const ModelWeights w = SmallModel();
  const ModelConfig& c = w.config;
  ComparisonOptions o = SmallOptions(daemon.target());
  const std::vector<int32_t> prompt = SmallPrompt();
  const int64_t n = static_cast<int64_t>(prompt.size());
  DecoderModel model(&w, /*threads=*/2);
  absl::StatusOr<PrefillResult> prefill = model.Prefill(prompt);
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  constexpr int kSeqs = 3, kSteps = 6;
  const int64_t q_dim = c.QDim(), kv_dim = c.KvDim();
  std::vector<std::vector<float>> logits[2];  // per step [kSeqs * vocab]: batched, one by one
  for (int variant = 0; variant < 2; ++variant) {
    absl::StatusOr<ClusterKvBatch> batch =
        OpenClusterKvBatch(c, o, /*budget=*/16, absl::StrCat("batch-", variant), 2, kSeqs);
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (auto& be : batch->backends) ASSERT_TRUE(LoadPrefillInto(c, *prefill, *be).ok());
    DecoderModel::BatchAttention attention = [&](int32_t l, const float* q, const float* k,
                                                 const float* v, float* out,
                                                 int32_t rows) -> absl::Status {
      if (variant == 1) {
        for (int32_t i = 0; i < rows; ++i) {
          absl::Status s = batch->backends[i]->AppendAndAttend(
              l, q + i * q_dim, k + i * kv_dim, v + i * kv_dim, out + i * q_dim, nullptr);
          if (!s.ok()) return s;
        }
        return absl::OkStatus();
      }
      std::vector<client::BatchAttendItem> items(static_cast<size_t>(rows));
      for (int32_t i = 0; i < rows; ++i) {
        client::Sequence& seq = batch->sparse[i]->sequence();
        absl::Status s =
            seq.AppendToken(l, ConstMatrixView(k + i * kv_dim, c.n_kv_heads, c.head_dim),
                            ConstMatrixView(v + i * kv_dim, c.n_kv_heads, c.head_dim));
        if (!s.ok()) return s;
        items[i] = client::BatchAttendItem{
            &seq, ConstMatrixView(q + i * q_dim, c.n_heads, c.head_dim),
            MatrixView(out + i * q_dim, c.n_heads, c.head_dim), nullptr, absl::OkStatus()};
      }
      return client::Sequence::AttendBatch(l, absl::MakeSpan(items));
    };
    std::vector<int32_t> tokens = {3, 17, 42};  // three sequences diverging from one prompt
    for (int step = 0; step < kSteps; ++step) {
      for (auto& be : batch->backends) be->BeginStep();
      std::vector<float> out(static_cast<size_t>(kSeqs) * c.vocab);
      ASSERT_TRUE(model.DecodeBatchStep(tokens, n + step, attention, out.data()).ok());
      for (int i = 0; i < kSeqs; ++i) tokens[i] = ArgMax(&out[i * c.vocab], c.vocab);
      logits[variant].push_back(std::move(out));
    }
    for (ClusterKvBackend* sparse : batch->sparse) {
      ASSERT_TRUE(sparse->sequence().Close(/*drop=*/true).ok());
    }
  }
  for (int step = 0; step < kSteps; ++step) {
    EXPECT_EQ(logits[0][step], logits[1][step]) << "step " << step;
  }
  // Sequence 0 alone through DecodeStep, fed the batch's tokens.
  absl::StatusOr<ClusterKvSession> alone = OpenClusterKv(c, o, /*budget=*/16, "alone", 2);
  ASSERT_TRUE(alone.ok()) << alone.status();
  ASSERT_TRUE(LoadPrefillInto(c, *prefill, *alone->backend).ok());
  int32_t token = 3;
  for (int step = 0; step < kSteps; ++step) {
    std::vector<float> out(static_cast<size_t>(c.vocab));
    ASSERT_TRUE(model.DecodeStep(token, n + step, *alone->backend, out.data(), nullptr, nullptr)
                    .ok());
    for (int32_t t = 0; t < c.vocab; ++t) {
      ASSERT_NEAR(out[t], logits[0][step][t], 1e-3f * (1.0f + std::fabs(out[t])))
          << "step " << step << " token " << t;
    }
    token = ArgMax(logits[0][step].data(), c.vocab);
  }
  ASSERT_TRUE(alone->sparse->sequence().Close(/*drop=*/true).ok());
}

TEST(LlamaEngineTest, SmallBudgetCompletesAndReportsBoundedAgreement) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  const ModelWeights w = SmallModel();
  ComparisonOptions o = SmallOptions(daemon.target());  // fp16 K/V, as an engine keeps them
  o.budgets = {16, 1024};
  absl::StatusOr<ComparisonResult> r = RunComparison(w, SmallPrompt(), o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->clusterkv.size(), 2u);
  const VariantResult& small = r->clusterkv[0];
  const VariantResult& all = r->clusterkv[1];
  EXPECT_GE(small.token_agreement, 0.0);
  EXPECT_LE(small.token_agreement, 1.0);
  EXPECT_TRUE(std::isfinite(small.logit_max_abs));
  EXPECT_TRUE(std::isfinite(small.logit_rel_l2_mean));
  // The budget took effect: fewer tokens attended, logits changed.
  EXPECT_LT(small.totals.attended_tokens, r->full.totals.attended_tokens);
  EXPECT_GT(small.logit_rel_l2_mean, 0.0);
  EXPECT_GT(small.totals.fetch_us + small.totals.score_us, 0);
  // With fp16 K/V the full-coverage run differs from full attention only by the recent
  // window, which Sequence keeps in fp32: far below the small budget's error.
  EXPECT_LT(all.logit_rel_l2_mean, 1e-2);
  EXPECT_LT(all.logit_rel_l2_mean, small.logit_rel_l2_mean);
  EXPECT_EQ(small.step_us.size(), 8u);
  EXPECT_EQ(small.paired_full_step_us.size(), 8u);
  // The oracle concentration is a fraction that grows with the budget.
  ASSERT_EQ(r->oracle_top_mass.size(), 2u);
  EXPECT_GT(r->oracle_top_mass[0], 0.0);
  EXPECT_LE(r->oracle_top_mass[0], r->oracle_top_mass[1] + 1e-9);
  EXPECT_NEAR(r->oracle_top_mass[1], 1.0, 1e-4);
  EXPECT_EQ(SequencesOnDaemon(daemon), 0);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

std::vector<std::string> ModelFlags() {
  return {"--dim=64",     "--layers=3", "--heads=4",          "--kv_heads=2", "--head_dim=16",
          "--ffn_dim=96", "--vocab=97", "--max_context=1024", "--qk_gain=1.3"};
}

std::vector<std::string> RunFlags() {
  return {"--prompt_len=150", "--steps=4",  "--budgets=8,1000", "--clusters=10",
          "--kmeans_iters=3", "--sinks=4",  "--dense_layers=0", "--kv_dtype=fp32",
          "--quiet",          "--threads=2"};
}

// --mode=park then --mode=resume, in two processes over one daemon: the parked decode
// continues exactly where it stopped, with no prompt and no prefill; 6 + 6 tokens are the 12 of
// one uninterrupted run.
TEST(LlamaToolTest, ParkedDecodeResumesInAnotherProcess) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  TempDir dir("llama_park");
  const std::string model = dir.Sub("m.gguf");
  std::vector<std::string> write = {CLUSTERKV_LLAMA_BIN, "--write_random_model=" + model};
  for (const std::string& f : ModelFlags()) write.push_back(f);
  absl::StatusOr<ProcessResult> written = RunProcess(write);
  ASSERT_TRUE(written.ok() && written->exit_status == 0) << written->output;
  // The generated text of one run.
  auto run = [&](const std::string& mode, const std::string& session,
                 int tokens) -> std::string {
    std::vector<std::string> argv = {CLUSTERKV_LLAMA_BIN,    "--model=" + model,
                                     "--mode=" + mode,       "--session=" + session,
                                     "--target=" + daemon.target(), "--tenant=llama-test",
                                     "--prompt_len=150",     "--budget=16",
                                     "--clusters=10",        "--kmeans_iters=3",
                                     "--sinks=4",            "--dense_layers=0",
                                     "--recluster_interval=4", "--clusters_per_recluster=2",
                                     "--threads=2",          "--quiet",
                                     absl::StrCat("--max_new_tokens=", tokens)};
    absl::StatusOr<ProcessResult> ran = RunProcess(argv);
    EXPECT_TRUE(ran.ok()) << ran.status();
    if (!ran.ok()) return "";
    EXPECT_EQ(ran->exit_status, 0) << ran->output;
    const size_t at = ran->output.find("generated: ");
    EXPECT_NE(at, std::string::npos) << ran->output;
    if (at == std::string::npos) return "";
    const size_t begin = at + std::strlen("generated: ");
    return ran->output.substr(begin, ran->output.find('\n', begin) - begin);
  };
  const std::string first = run("park", "split", 6);
  const std::string second = run("resume", "split", 6);
  const std::string whole = run("park", "whole", 12);
  EXPECT_FALSE(first.empty());
  EXPECT_EQ(first + second, whole);
  // A second park under a taken name is refused; a resume of an unknown one is NOT_FOUND.
  std::vector<std::string> again = {CLUSTERKV_LLAMA_BIN, "--model=" + model, "--mode=resume",
                                    "--session=nobody", "--target=" + daemon.target(),
                                    "--tenant=llama-test", "--quiet"};
  absl::StatusOr<ProcessResult> missing = RunProcess(again);
  ASSERT_TRUE(missing.ok());
  EXPECT_NE(missing->exit_status, 0);
  EXPECT_NE(missing->output.find("nobody"), std::string::npos) << missing->output;
}

TEST(LlamaToolTest, WritesModelsAndComparesThemOnARunningDaemon) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  TempDir dir("llama_tool");
  for (const char* name : {"m.gguf", "m.safetensors"}) {
    std::vector<std::string> write = {CLUSTERKV_LLAMA_BIN,
                                      absl::StrCat("--write_random_model=", dir.Sub(name)),
                                      "--weight_dtype=f16"};
    for (const std::string& f : ModelFlags()) write.push_back(f);
    absl::StatusOr<ProcessResult> written = RunProcess(write);
    ASSERT_TRUE(written.ok()) << written.status();
    ASSERT_EQ(written->exit_status, 0) << written->output;

    const std::string json = dir.Sub(absl::StrCat(name, ".json"));
    std::vector<std::string> run = {CLUSTERKV_LLAMA_BIN, absl::StrCat("--model=", dir.Sub(name)),
                                    "--target=" + daemon.target(), "--tenant=llama-test",
                                    "--json=" + json};
    for (const std::string& f : RunFlags()) run.push_back(f);
    absl::StatusOr<ProcessResult> ran = RunProcess(run);
    ASSERT_TRUE(ran.ok()) << ran.status();
    ASSERT_EQ(ran->exit_status, 0) << ran->output;
    EXPECT_NE(ran->output.find("clusterkv_b1000"), std::string::npos) << ran->output;

    const nlohmann::json report = ReadJson(json);
    ASSERT_FALSE(report.is_discarded());
    EXPECT_EQ(report["bench"], "llama");
    ASSERT_TRUE(report["machine"].is_object());
    ASSERT_EQ(report["results"].size(), 4u);  // (time, agreement) x 2 budgets
    for (const auto& row : report["results"]) {
      for (const char* field : {"variant", "params", "value", "unit", "baseline", "baseline_value",
                                "ratio", "ratio_meaning"}) {
        EXPECT_TRUE(row.contains(field)) << field << " in " << row.dump();
      }
      EXPECT_EQ(row["baseline"], "full_attention");
    }
    const auto& agree_all = report["results"][3];
    EXPECT_EQ(agree_all["variant"], "clusterkv_b1000");
    EXPECT_EQ(agree_all["params"]["metric"], "token_agreement");
    EXPECT_EQ(agree_all["value"], 1.0);  // every token within the budget: exact
    EXPECT_LT(agree_all["logit_rel_l2_error_max"].get<double>(), 1e-5);
  }
}

TEST(LlamaToolTest, StartsItsOwnDaemonAndExplainsItself) {
  absl::StatusOr<ProcessResult> help = RunProcess({CLUSTERKV_LLAMA_BIN, "--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->exit_status, 0);
  EXPECT_NE(help->output.find("--budgets"), std::string::npos);
  EXPECT_NE(help->output.find("GGUF"), std::string::npos);

  // No --target: the tool starts the build's clusterkvd itself (random model in memory).
  std::vector<std::string> run = {CLUSTERKV_LLAMA_BIN,
                                  std::string("--daemon=") + CLUSTERKV_DAEMON_BIN};
  for (const std::string& f : ModelFlags()) run.push_back(f);
  for (const std::string& f : RunFlags()) run.push_back(f);
  absl::StatusOr<ProcessResult> ran = RunProcess(run);
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(ran->exit_status, 0) << ran->output;
  EXPECT_NE(ran->output.find("serving on"), std::string::npos) << ran->output;

  // Bad input: a clear error and a usage exit status, no crash.
  absl::StatusOr<ProcessResult> bad =
      RunProcess({CLUSTERKV_LLAMA_BIN, "--model=/nonexistent/m.gguf"});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_status, 1) << bad->output;
  EXPECT_NE(bad->output.find("/nonexistent/m.gguf"), std::string::npos) << bad->output;
  absl::StatusOr<ProcessResult> usage = RunProcess({CLUSTERKV_LLAMA_BIN, "--budgets=x"});
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->exit_status, 2) << usage->output;
}

}  // namespace
}  // namespace clusterkv::llama
