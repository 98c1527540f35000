// clusterkv_demo: the end-to-end demo (see demo.h). Flags grouped by subsystem; --help.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "core/cli_help.h"
#include "tools/clusterkv_demo/demo.h"

ABSL_FLAG(std::string, daemon, "", "clusterkvd binary to start (default: next to this binary, "
          "else the one this build produced).");
ABSL_FLAG(std::string, target, "", "Use this running daemon (e.g. unix:/run/clusterkv/"
          "clusterkvd.sock) instead of starting one.");
ABSL_FLAG(std::string, work_dir, "", "Socket and data directory of the started daemon "
          "(default: a temporary directory, removed afterwards).");
ABSL_FLAG(bool, keep_work_dir, false, "Keep the temporary work directory.");
ABSL_FLAG(int64_t, host_capacity_mib, 2048, "Host tier of the started daemon, MiB (the 4 GiB "
          "sequence then also exercises the SSD tier).");
ABSL_FLAG(int64_t, context, 32768, "Prefill tokens.");
ABSL_FLAG(int32_t, steps, 16, "Decode steps.");
ABSL_FLAG(int32_t, layers, 32, "Layers (Llama-3-8B: 32).");
ABSL_FLAG(int32_t, q_heads, 32, "Query heads.");
ABSL_FLAG(int32_t, kv_heads, 8, "KV heads.");
ABSL_FLAG(int32_t, head_dim, 128, "Head dimension.");
ABSL_FLAG(std::string, dtype, "fp16", "K/V dtype: fp16, bf16, fp32.");
ABSL_FLAG(int32_t, budget, 1024, "B: cluster tokens recalled per step, layer and kv head.");
ABSL_FLAG(int32_t, clusters, 400, "C0: prefill clusters per kv head.");
ABSL_FLAG(int32_t, kmeans_iters, 20, "K-means iterations.");
ABSL_FLAG(int32_t, sinks, 16, "Sink tokens.");
ABSL_FLAG(std::string, text, "", "Plain-text file for the token stream (default: Jane Austen's "
          "novels from r-cran-janeaustenr).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the text-driven K/V model.");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0 = all cores).");
ABSL_FLAG(std::string, backend, "auto", "Compute backend: cpu, cuda, auto.");
ABSL_FLAG(std::string, json, "", "Write the summary as JSON to this file.");

namespace {

constexpr char kUsage[] =
    "clusterkv_demo: an inference worker simulation against a real clusterkvd.\n"
    "Starts the daemon on a Unix socket, offloads a 32k-token Llama-3-8B-shaped prefill (keys\n"
    "clustered with K-means, blocks streamed to the daemon), runs decode steps through\n"
    "libclusterkv (select clusters, fetch the device-cache misses, sparse attention, append\n"
    "decode tokens) and compares each step with full attention. K/V come from a text-driven\n"
    "synthetic model (no pretrained weights here): real words drive the keys' semantics.\n\n"
    "Usage: clusterkv_demo [--steps=16] [--context=32768] [--target=unix:/path.sock]\n";

std::string DefaultDaemon() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto sibling = self.parent_path() / "clusterkvd";
    if (std::filesystem::exists(sibling)) return sibling.string();
  }
  return CLUSTERKV_DAEMON_BIN;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  if (clusterkv::WantsHelp(argc, argv)) {
    clusterkv::PrintHelp(
        kUsage,
        {{"Daemon", {"daemon", "target", "work_dir", "keep_work_dir", "host_capacity_mib"}},
         {"Workload", {"context", "steps", "layers", "q_heads", "kv_heads", "head_dim", "dtype",
                       "text", "seed"}},
         {"ClusterKV", {"budget", "clusters", "kmeans_iters", "sinks"}},
         {"Compute and output", {"threads", "backend", "json"}}},
        std::cout);
    return 0;
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << "clusterkv_demo: unexpected argument '" << rest[1] << "' (see --help)\n";
    return 2;
  }
  clusterkv::demo::DemoOptions o;
  o.daemon_binary = absl::GetFlag(FLAGS_daemon).empty() ? DefaultDaemon()
                                                         : absl::GetFlag(FLAGS_daemon);
  o.target = absl::GetFlag(FLAGS_target);
  o.work_dir = absl::GetFlag(FLAGS_work_dir);
  o.keep_work_dir = absl::GetFlag(FLAGS_keep_work_dir);
  o.host_capacity_mib = absl::GetFlag(FLAGS_host_capacity_mib);
  o.context = absl::GetFlag(FLAGS_context);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.layout.num_layers = absl::GetFlag(FLAGS_layers);
  o.layout.num_q_heads = absl::GetFlag(FLAGS_q_heads);
  o.layout.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  o.layout.head_dim = absl::GetFlag(FLAGS_head_dim);
  absl::StatusOr<clusterkv::DType> dtype = clusterkv::ParseDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) {
    std::cerr << "clusterkv_demo: " << dtype.status().message() << "\n";
    return 2;
  }
  o.layout.dtype = *dtype;
  o.config.token_budget = absl::GetFlag(FLAGS_budget);
  o.config.num_prefill_clusters = absl::GetFlag(FLAGS_clusters);
  o.config.kmeans_iterations = absl::GetFlag(FLAGS_kmeans_iters);
  o.config.num_sink_tokens = absl::GetFlag(FLAGS_sinks);
  o.text_file = absl::GetFlag(FLAGS_text);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.backend = absl::GetFlag(FLAGS_backend);
  o.json_path = absl::GetFlag(FLAGS_json);
  const absl::Status status = clusterkv::demo::RunDemo(o, std::cout);
  if (!status.ok()) {
    std::cerr << "clusterkv_demo: FAILED: " << status << "\n";
    return 1;
  }
  std::cout << "clusterkv_demo: OK\n";
  return 0;
}
