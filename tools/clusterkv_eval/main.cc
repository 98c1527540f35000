// clusterkv_eval: thin main over the evaluation library (tool.h). Flags are grouped by
// subsystem; `--help` prints the usage text (with the .npy layout) and these groups, exit 0.
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "core/cli_help.h"
#include "core/config.h"
#include "tools/clusterkv_eval/tool.h"

// Input.
ABSL_FLAG(std::string, npy_dir, "", "Directory of a K/V/Q dump (layout in the usage text).");
ABSL_FLAG(bool, bf16, false, "Read 2-byte '<V2'/'|V2'/'<u2' arrays as bfloat16 bit patterns.");
ABSL_FLAG(bool, synthetic, false,
          "Evaluate generated data (the default when --npy_dir is not given).");

// Synthetic data.
ABSL_FLAG(int64_t, context, 32768, "Synthetic: context tokens per sequence.");
ABSL_FLAG(int32_t, layers, 4, "Synthetic: layers (those in --dense_layers are skipped).");
ABSL_FLAG(int32_t, kv_heads, 8, "Synthetic: kv heads per layer.");
ABSL_FLAG(int32_t, q_heads, 32, "Synthetic: query heads per layer (a multiple of --kv_heads).");
ABSL_FLAG(int32_t, head_dim, 128, "Synthetic: head dimension (even).");
ABSL_FLAG(int32_t, queries, 16, "Synthetic: decode queries per head.");
ABSL_FLAG(uint64_t, seed, 1, "Synthetic: generator seed.");
ABSL_FLAG(int32_t, topics, 200, "Synthetic: topic directions per kv head.");
ABSL_FLAG(double, segment_tokens, 48.0, "Synthetic: mean topic segment length in tokens.");
ABSL_FLAG(std::string, rope, "half",
          "Synthetic: RoPE pairing, 'half' (i, i+d/2) as HF Llama or 'adjacent' (2i, 2i+1).");
ABSL_FLAG(double, rope_theta, 500000.0, "Synthetic: RoPE base (Llama 3: 500000).");
ABSL_FLAG(double, peak_mass, 0.8,
          "Synthetic: attention mass held by the top 1/32 of the tokens for each query.");

// ClusterKV.
ABSL_FLAG(int32_t, sinks, 16, "Sink tokens kept by every method (never clustered).");
ABSL_FLAG(int32_t, clusters, 400, "C0: K-means clusters per kv head.");
ABSL_FLAG(int32_t, kmeans_iters, 20, "K-means iterations.");
ABSL_FLAG(uint64_t, kmeans_seed, clusterkv::ClusterKvConfig().seed,
          "K-means seed (head i of layer L uses seed + L * 1000003 + i).");
ABSL_FLAG(std::string, dense_layers, "0,1", "Layers with full attention: skipped.");
ABSL_FLAG(std::string, centroid_scoring, "unit",
          "How clusters are scored: 'unit' (the unit-norm cosine centroid, as libclusterkv) or "
          "'mean_key' (the mean of the cluster's keys: its mean attention logit).");

// Evaluation.
ABSL_FLAG(std::string, budgets, "256,512,1024,2048",
          "Token budgets beyond the sinks, comma-separated.");
ABSL_FLAG(int32_t, quest_page, 16, "Quest page size in tokens.");
ABSL_FLAG(std::string, backend, "auto", "Compute backend: cpu, cuda or auto.");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0 = all cores).");

// Output.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(std::string, calibration_png, "",
          "Write the calibration plot of libclusterkv's estimated recall (PNG) to this file.");
ABSL_FLAG(std::string, dump_npy, "", "Write the synthetic data as .npy files to this directory.");
ABSL_FLAG(std::string, dump_dtype, "fp16", "dtype of --dump_npy files: fp16, bf16 or fp32.");
ABSL_FLAG(bool, dump_only, false, "With --dump_npy: write the files and skip the evaluation.");
ABSL_FLAG(bool, quiet, false, "No progress output on stderr.");

namespace {

const std::vector<clusterkv::FlagGroup>& FlagGroups() {
  static const auto* groups = new std::vector<clusterkv::FlagGroup>{
      {"Input", {"npy_dir", "bf16", "synthetic"}},
      {"Synthetic data",
       {"context", "layers", "kv_heads", "q_heads", "head_dim", "queries", "seed", "topics",
        "segment_tokens", "rope", "rope_theta", "peak_mass"}},
      {"ClusterKV",
       {"sinks", "clusters", "kmeans_iters", "kmeans_seed", "dense_layers", "centroid_scoring"}},
      {"Evaluation", {"budgets", "quest_page", "backend", "threads"}},
      {"Output", {"json", "calibration_png", "dump_npy", "dump_dtype", "dump_only", "quiet"}},
  };
  return *groups;
}

absl::Status BuildOptions(clusterkv::eval::ToolOptions* o) {
  using clusterkv::eval::ParseIntList;
  o->npy_dir = absl::GetFlag(FLAGS_npy_dir);
  o->bf16 = absl::GetFlag(FLAGS_bf16);
  if (absl::GetFlag(FLAGS_synthetic) && !o->npy_dir.empty()) {
    return absl::InvalidArgumentError("--synthetic and --npy_dir exclude each other");
  }
  clusterkv::eval::SyntheticOptions& s = o->synthetic;
  s.context = absl::GetFlag(FLAGS_context);
  s.num_layers = absl::GetFlag(FLAGS_layers);
  s.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  s.num_q_heads = absl::GetFlag(FLAGS_q_heads);
  s.head_dim = absl::GetFlag(FLAGS_head_dim);
  s.num_queries = absl::GetFlag(FLAGS_queries);
  s.seed = absl::GetFlag(FLAGS_seed);
  s.num_topics = absl::GetFlag(FLAGS_topics);
  s.mean_segment_tokens = absl::GetFlag(FLAGS_segment_tokens);
  s.rope_theta = absl::GetFlag(FLAGS_rope_theta);
  s.peak_mass = absl::GetFlag(FLAGS_peak_mass);
  const std::string rope = absl::GetFlag(FLAGS_rope);
  if (rope == "half") {
    s.rope_style = clusterkv::eval::RopeStyle::kRotateHalf;
  } else if (rope == "adjacent") {
    s.rope_style = clusterkv::eval::RopeStyle::kAdjacent;
  } else {
    return absl::InvalidArgumentError("--rope must be 'half' or 'adjacent', got '" + rope + "'");
  }

  clusterkv::ClusterKvConfig& c = o->eval.config;
  c.num_sink_tokens = absl::GetFlag(FLAGS_sinks);
  c.num_prefill_clusters = absl::GetFlag(FLAGS_clusters);
  c.kmeans_iterations = absl::GetFlag(FLAGS_kmeans_iters);
  c.seed = absl::GetFlag(FLAGS_kmeans_seed);
  absl::StatusOr<std::vector<int64_t>> dense =
      ParseIntList(absl::GetFlag(FLAGS_dense_layers), "--dense_layers");
  if (!dense.ok()) return dense.status();
  c.dense_layers.assign(dense->begin(), dense->end());
  absl::StatusOr<std::vector<int64_t>> budgets =
      ParseIntList(absl::GetFlag(FLAGS_budgets), "--budgets");
  if (!budgets.ok()) return budgets.status();
  o->eval.budgets = *std::move(budgets);
  o->eval.quest_page_size = absl::GetFlag(FLAGS_quest_page);
  const std::string scoring = absl::GetFlag(FLAGS_centroid_scoring);
  if (scoring == "unit") {
    o->eval.centroid_scoring = clusterkv::eval::EvalOptions::CentroidScoring::kUnit;
  } else if (scoring == "mean_key") {
    o->eval.centroid_scoring = clusterkv::eval::EvalOptions::CentroidScoring::kMeanKey;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--centroid_scoring must be unit or mean_key, not \"", scoring, "\""));
  }
  o->backend = absl::GetFlag(FLAGS_backend);
  o->threads = absl::GetFlag(FLAGS_threads);
  if (o->threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");

  o->json_path = absl::GetFlag(FLAGS_json);
  o->calibration_png = absl::GetFlag(FLAGS_calibration_png);
  o->dump_npy_dir = absl::GetFlag(FLAGS_dump_npy);
  absl::StatusOr<clusterkv::DType> dtype = clusterkv::ParseDType(absl::GetFlag(FLAGS_dump_dtype));
  if (!dtype.ok()) return dtype.status();
  o->dump_dtype = *dtype;
  o->dump_only = absl::GetFlag(FLAGS_dump_only);
  o->progress = !absl::GetFlag(FLAGS_quiet);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(clusterkv::eval::UsageText());
  if (clusterkv::WantsHelp(argc, argv)) {
    clusterkv::PrintHelp(clusterkv::eval::UsageText(), FlagGroups(), std::cout);
    return 0;
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << "clusterkv_eval: unexpected argument '" << positional[1] << "' (see --help)\n";
    return 2;
  }
  clusterkv::eval::ToolOptions options;
  absl::Status status = BuildOptions(&options);
  if (status.ok()) status = clusterkv::eval::RunEvalTool(options, std::cout, std::cerr);
  if (!status.ok()) {
    std::cerr << "clusterkv_eval: error: " << status << "\n";
    return 1;
  }
  return 0;
}
