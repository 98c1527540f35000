// The clusterkv_bench command line: flags grouped by subcommand, --help on the binary and on
// every subcommand, and dispatch to the Run*Bench functions of bench.h.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/status_macros.h"
#include "tools/clusterkv_bench/bench.h"

// ---- Common flags ------------------------------------------------------------------------
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file.");
ABSL_FLAG(int, threads, 0, "CPU threads for ours and the baseline; 0 = all cores.");
ABSL_FLAG(int, repeats, 3, "Timed runs per measurement; value = median, with p50/p99.");
ABSL_FLAG(int, warmup, 1, "Untimed runs before the timed ones.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of every synthetic input and of both K-means runs.");
ABSL_FLAG(bool, quick, false,
          "Tiny sizes for smoke tests (overrides the size flags; repeats capped at 2).");

// ---- kmeans ------------------------------------------------------------------------------
ABSL_FLAG(int64_t, kmeans_rows, 32768, "Keys to cluster.");
ABSL_FLAG(int32_t, kmeans_dim, 128, "Key dimension (head_dim).");
ABSL_FLAG(int32_t, kmeans_clusters, 400, "Clusters C (ClusterKV's C0).");
ABSL_FLAG(int32_t, kmeans_iterations, 20, "Iterations for both ours and FAISS.");
ABSL_FLAG(int32_t, kmeans_directions, 256,
          "Mixture components (random directions) of the synthetic keys.");
ABSL_FLAG(double, kmeans_noise, 0.6, "Noise around each direction, relative to its unit norm.");
ABSL_FLAG(std::string, kmeans_threads, "",
          "Comma-separated thread counts to sweep; empty = 1 and --threads (all cores).");

// ---- select ------------------------------------------------------------------------------
ABSL_FLAG(int32_t, layers, 32,
          "Layers of the Llama-3-8B layout (8 kv heads, 32 q heads, d 128); fewer saves "
          "memory (4 GiB of K/V at 32 layers and 32k) and adds linearly scaled figures.");
ABSL_FLAG(int64_t, select_context, 32768, "Context tokens per (layer, kv head).");
ABSL_FLAG(int32_t, select_centroids, 400, "Centroids per (layer, kv head).");
ABSL_FLAG(int64_t, select_budget, 1024, "Token budget B per (layer, kv head).");

// ---- decode ------------------------------------------------------------------------------
ABSL_FLAG(std::string, decode_contexts, "32768,131072", "Comma-separated context lengths.");
ABSL_FLAG(std::string, decode_budgets, "1024,2048", "Comma-separated token budgets B.");
ABSL_FLAG(int64_t, decode_sinks, 16, "Sink tokens attended by the sparse step.");
ABSL_FLAG(int64_t, decode_recent, 320, "Recent-window tokens attended by the sparse step.");
ABSL_FLAG(int64_t, decode_cluster_tokens, 80,
          "Mean tokens per recalled cluster range (about context / C at 32k and C = 400).");

// ---- heat ----------------------------------------------------------------------------------
ABSL_FLAG(std::string, heat_trace, CLUSTERKV_HEAT_TRACE,
          "heat: the fetch trace to replay (clusterkvd --fetch_trace_file); default: the "
          "SmolLM2-135M decode recorded in docs/results/.");
ABSL_FLAG(int64_t, heat_max_fetches, 0, "heat: replay only the first N fetches (0: all).");
ABSL_FLAG(double, heat_host_fraction, 0.5,
          "heat: host tier size as a share of the trace's block bytes (0..1).");
ABSL_FLAG(double, heat_half_life_fetches, 32,
          "heat: the heat policy's half-life in fetches (clusterkvd --heat_half_life_fetches).");
ABSL_FLAG(double, heat_put_score, 1.0,
          "heat: the score a new block starts with (clusterkvd --heat_put_score).");
ABSL_FLAG(std::string, heat_dir, "", "heat: parent of the scratch SSD tiers (default /tmp).");

// ---- storage -----------------------------------------------------------------------------
ABSL_FLAG(std::string, storage_dir, "",
          "Parent of the scratch directory (a fresh subdirectory, removed at the end); "
          "empty = /tmp.");
ABSL_FLAG(std::string, storage_host_block_bytes, "65536,262144,1048576",
          "Comma-separated block sizes of the host-tier put/get rows.");
ABSL_FLAG(int64_t, storage_host_bytes, int64_t{512} << 20,
          "Bytes put and read per host-tier block size and pass.");
ABSL_FLAG(std::string, storage_ssd_block_bytes, "65536,262144",
          "Comma-separated block sizes of the SSD-tier and write-through rows.");
ABSL_FLAG(int64_t, storage_ssd_bytes, int64_t{256} << 20,
          "Bytes put and read per SSD-tier block size and pass (ours and raw RocksDB each).");
ABSL_FLAG(int64_t, storage_sync_bytes, int64_t{64} << 20,
          "Bytes put per block size and pass by the synced (write-through) rows.");
ABSL_FLAG(int64_t, storage_evict_capacity, int64_t{256} << 20,
          "Host capacity of the eviction row (filled to ~98%, evicted to the 0.5 low mark).");
ABSL_FLAG(int64_t, storage_evict_block_bytes, int64_t{256} << 10,
          "Block size of the eviction row.");
ABSL_FLAG(int64_t, storage_cold_bytes, int64_t{256} << 20,
          "Span of the source blocks and of the read / memcpy destination ring.");

// ---- fetch and e2e: the clusterkvd child ---------------------------------------------------
#ifndef CLUSTERKV_DAEMON_BIN
#define CLUSTERKV_DAEMON_BIN "clusterkvd"
#endif
ABSL_FLAG(std::string, daemon, CLUSTERKV_DAEMON_BIN,
          "clusterkvd binary started by fetch and e2e (default: the one of this build).");
ABSL_FLAG(std::string, daemon_dir, "",
          "Parent of the daemon's scratch directory (socket, data; removed at the end); "
          "empty = /tmp.");

// ---- fetch -------------------------------------------------------------------------------
ABSL_FLAG(std::string, fetch_block_bytes, "16384,65536,262144,1048576",
          "Comma-separated target block sizes; each is the largest whole-token cluster block "
          "(head_dim 128, fp16: 516 bytes a token) that fits, reported exactly.");
ABSL_FLAG(int32_t, fetch_clusters_per_request, 32, "Clusters per FetchClusters request.");
ABSL_FLAG(int64_t, fetch_bytes, int64_t{512} << 20,
          "Bytes recalled (and memcpy'd) per block size and timed pass.");
ABSL_FLAG(int64_t, fetch_cold_bytes, int64_t{256} << 20,
          "Span of the stored blocks per size, of the memcpy source and of the destination ring.");
ABSL_FLAG(int64_t, fetch_host_mib, 2048,
          "Host tier of the daemon, MiB (raised to twice the stored bytes; nothing may spill).");
ABSL_FLAG(std::string, fetch_ucx_perftest, "/usr/bin/ucx_perftest",
          "ucx_perftest binary for the ucp_put_bw peer rows; a missing binary skips them.");
ABSL_FLAG(std::string, fetch_ucx_tls, "posix,sysv,self",
          "UCX_TLS of the ucx_perftest processes (UCX_NET_DEVICES is lo).");
ABSL_FLAG(double, fetch_ucx_timeout_s, 30, "Time limit of each ucx_perftest run, seconds.");
#ifndef CLUSTERKV_GRPC_MINIMAL_BIN
#define CLUSTERKV_GRPC_MINIMAL_BIN "clusterkv_grpc_minimal_server"
#endif
ABSL_FLAG(std::string, fetch_grpc_minimal_server, CLUSTERKV_GRPC_MINIMAL_BIN,
          "Server of the grpc_minimal row, a raw-bytes gRPC stream (default: the one of this "
          "build).");

// ---- e2e ---------------------------------------------------------------------------------
ABSL_FLAG(int32_t, e2e_layers, 4,
          "Layers of the Llama-3-8B layout to prefill and decode; every one is sparse "
          "(dense_layers is empty in this benchmark).");
ABSL_FLAG(int64_t, e2e_context, 32768, "Prefill tokens.");
ABSL_FLAG(int32_t, e2e_steps, 8, "Decode steps timed (every layer each step).");
ABSL_FLAG(int32_t, e2e_budget, 1024, "Token budget B per (step, layer, kv head).");
ABSL_FLAG(int32_t, e2e_centroids, 400, "Prefill clusters C0 per (layer, kv head).");
ABSL_FLAG(int32_t, e2e_kmeans_iterations, 20, "K-means iterations of the prefill clustering.");
ABSL_FLAG(std::string, e2e_text_file, "",
          "Plain text for the token stream; empty = Jane Austen's novels (r-cran-janeaustenr), "
          "or synthetic words when that package is missing.");
ABSL_FLAG(int64_t, e2e_host_mib, 2048,
          "Host tier of the daemon, MiB (raised to hold every block twice over).");

// ---- batch -------------------------------------------------------------------------------
ABSL_FLAG(std::string, batch_geometry, "llama3_8b",
          "Head counts and dims of the K/V: llama3_8b (32 q / 8 kv heads of 128), smollm2 "
          "(9 / 3 of 64) or gemma3 (4 / 1 of 256).");
ABSL_FLAG(int32_t, batch_layers, 2, "Layers of every sequence (all sparse).");
ABSL_FLAG(int64_t, batch_context, 4096, "Prefill tokens of every sequence.");
ABSL_FLAG(int32_t, batch_steps, 4, "Decode steps per batch size (the first one untimed).");
ABSL_FLAG(int32_t, batch_budget, 256, "Token budget B per (step, layer, kv head).");
ABSL_FLAG(int32_t, batch_centroids, 64, "Prefill clusters C0 per (layer, kv head).");
ABSL_FLAG(std::string, batch_sizes, "1,8,32", "Batch sizes (sequences per decode step).");
ABSL_FLAG(int64_t, batch_host_mib, 2048,
          "Host tier of the daemon, MiB (raised to hold every block twice over).");

// ---- soak --------------------------------------------------------------------------------
ABSL_FLAG(int32_t, soak_clients, 8, "Concurrent clients (threads, one gRPC channel each).");
ABSL_FLAG(int32_t, soak_iterations, 200,
          "Timed open/put/fetch/fetch-missing/close loops per client.");
ABSL_FLAG(int32_t, soak_warmup_iterations, 10, "Untimed loops per client before the timed ones.");
ABSL_FLAG(int32_t, soak_clusters_per_head, 2,
          "Blocks per kv head of each sequence (1 layer x 4 kv heads, head_dim 128, fp16).");
ABSL_FLAG(int32_t, soak_tokens, 64, "Tokens per block.");
ABSL_FLAG(int64_t, soak_host_mib, 256, "Host tier of the daemon, MiB.");

// ---- remote (cluster mode) -----------------------------------------------------------------
ABSL_FLAG(std::string, remote_block_bytes, "65536,262144,1048576",
          "Comma-separated target block sizes (whole tokens, head_dim 128, fp16).");
ABSL_FLAG(int32_t, remote_clusters_per_request, 32, "Clusters per FetchClusters request.");
ABSL_FLAG(int64_t, remote_pass_bytes, int64_t{32} << 20,
          "Bytes of the fresh sequence stored and recalled (local, cold, warm) per size and pass.");
ABSL_FLAG(int64_t, remote_host_mib, 1024,
          "Host tier of each daemon, MiB (raised to hold every pass twice over).");
ABSL_FLAG(bool, remote_peer_tls, true,
          "TLS between the daemons (a self-signed certificate from /usr/bin/openssl); false or "
          "no openssl: plaintext loopback TCP.");
ABSL_FLAG(std::string, remote_peer_ucx_tls, "tcp",
          "UCX transports node 2 pulls node 1's blocks over (UCX_TLS syntax; tcp runs over "
          "loopback as it would between hosts; empty: UCX's default, shared memory here).");

namespace clusterkv::bench {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Subcommand {
  absl::string_view name;
  absl::string_view summary;
  std::vector<absl::string_view> flags;
  absl::Status (*run)(const BenchOptions&);
};

const std::vector<absl::string_view>& CommonFlags() {
  static const auto* flags =
      new std::vector<absl::string_view>{"json", "threads", "repeats", "warmup", "seed", "quick"};
  return *flags;
}

const std::vector<Subcommand>& Subcommands() {
  static const auto* subs = new std::vector<Subcommand>{
      {"kmeans",
       "gpu::SphericalKMeans (CPU) vs FAISS spherical K-means on the same synthetic clustered "
       "keys, equal C, iterations and seed, at 1 thread and all cores: time ratio "
       "faiss / ours and the clustering objective of both (mean cosine to the nearest "
       "centroid).",
       {"kmeans_rows", "kmeans_dim", "kmeans_clusters", "kmeans_iterations", "kmeans_directions",
        "kmeans_noise", "kmeans_threads"},
       &RunKMeansBench},
      {"select",
       "Centroid scoring + budgeted cluster selection + indexing for every (layer, kv head) "
       "of Llama-3-8B (32 layers x 8 kv heads, GQA 4:1, 400 centroids, B = 1024) vs one "
       "full-attention decode step at 32k context over the same fp16 K/V: ratio full / "
       "select.",
       {"layers", "select_context", "select_centroids", "select_budget"},
       &RunSelectBench},
      {"decode",
       "One layer's sparse attention (16 sinks + B recalled tokens in ~80-token cluster "
       "ranges + 320 recent) vs full attention at 32k and 128k context: ratio full / sparse.",
       {"decode_contexts", "decode_budgets", "decode_sinks", "decode_recent",
        "decode_cluster_tokens"},
       &RunDecodeBench},
      {"storage",
       "Host tier put/get (64 KiB..1 MiB blocks) vs cold memcpy in GB/s; SSD tier put/get vs "
       "raw RocksDB with the same BlobDB options in MB/s, unsynced and write-through vs "
       "synced puts; EvictToLowWatermark of a full host tier vs raw RocksDB puts of the same "
       "bytes. Ratio ours / baseline (> 1 better), per-op p50/p99.",
       {"storage_dir", "storage_host_block_bytes", "storage_host_bytes", "storage_ssd_block_bytes",
        "storage_ssd_bytes", "storage_sync_bytes", "storage_evict_capacity",
        "storage_evict_block_bytes", "storage_cold_bytes"},
       &RunStorageBench},
      {"fetch",
       "Recall of host-tier cluster blocks (16 KiB..1 MiB) from a real clusterkvd, 32 random "
       "clusters a request, over the UCX data plane (straight into the client's registered "
       "ring) and over gRPC FetchClusters (each block copied into a destination ring), vs cold "
       "memcpy of the same bytes in GB/s, per-request p50/p99; plus the same copies with "
       "streaming stores (the daemon's copy), ucx_perftest ucp_put_bw on loopback as the "
       "peer figure, and a minimal raw-bytes gRPC stream of the same blocks (grpc_minimal, "
       "with grpc_fetch's ratio to it).",
       {"daemon", "daemon_dir", "fetch_block_bytes", "fetch_clusters_per_request", "fetch_bytes",
        "fetch_cold_bytes", "fetch_host_mib", "fetch_ucx_perftest", "fetch_ucx_tls",
        "fetch_ucx_timeout_s", "fetch_grpc_minimal_server"},
       &RunFetchBench},
      {"e2e",
       "A decode step through libclusterkv (Sequence::Attend: score, select, device cache, "
       "FetchClusters from a real clusterkvd, attend) vs full attention over the same fp16 "
       "K/V at 32k context on the CPU, Llama-3-8B geometry, every layer sparse; per "
       "(step, layer) p50/p99, ratio full / sparse, StepStats breakdown and cache hit rate.",
       {"daemon", "daemon_dir", "e2e_layers", "e2e_context", "e2e_steps", "e2e_budget",
        "e2e_centroids", "e2e_kmeans_iterations", "e2e_text_file", "e2e_host_mib"},
       &RunE2eBench},
      {"batch",
       "Decode throughput of 1, 8 and 32 sequences through libclusterkv (a real clusterkvd, "
       "UCX where available): Sequence::AttendBatch (one data-plane request per layer for "
       "every sequence's misses) vs Sequence::Attend per sequence vs full attention over the "
       "same fp16 K/V, in tokens/s; batched and unbatched outputs are checked bit for bit.",
       {"daemon", "daemon_dir", "batch_geometry", "batch_layers", "batch_context", "batch_steps",
        "batch_budget", "batch_centroids", "batch_sizes", "batch_host_mib"},
       &RunBatchBench},
      {"soak",
       "Concurrent clients (8) looping open / put / fetch / fetch of a missing sequence "
       "(NOT_FOUND, the expected error) / close(drop) against a real clusterkvd: requests/s "
       "and per-call p50/p99 per operation and for all of them, vs the same loop issued by 1 "
       "client (ratio = N-client req/s / 1-client req/s, > 1: concurrency helps).",
       {"daemon", "daemon_dir", "soak_clients", "soak_iterations", "soak_warmup_iterations",
        "soak_clusters_per_head", "soak_tokens", "soak_host_mib"},
       &RunSoakBench},
      {"remote",
       "Cluster mode: a real etcd and three clusterkvd in one cluster; a fresh sequence per "
       "pass stored through node 1 (its owner), then every block recalled once through node 1 "
       "(local, the baseline), twice through node 2 (remote_cold: pulled from node 1 over UCX "
       "into node 2's read-only copy; remote_warm: from that copy) and once through node 3 "
       "(remote_cold_grpc_pull: pulled over gRPC/TLS streaming). Bandwidth ratio remote / "
       "local, per-request latency ratio local / remote, p50/p99 per request, and the UCX pull "
       "vs the gRPC pull.",
       {"daemon", "daemon_dir", "remote_block_bytes", "remote_clusters_per_request",
        "remote_pass_bytes", "remote_host_mib", "remote_peer_tls", "remote_peer_ucx_tls"},
       &RunRemoteBench},
      {"heat",
       "Host-tier eviction on a real decode's recall pattern: a fetch trace of clusterkvd "
       "(SmolLM2-135M on Emma by default) replayed against two TieredStores with a real "
       "RocksDB SSD tier and a host tier smaller than the sequences, evicting least recently "
       "recalled first (lru, the baseline) and coldest by recall heat first (heat): host-tier "
       "hit rate (ratio heat / lru), fetch time p50/p99 and total (ratio lru / heat).",
       {"heat_trace", "heat_max_fetches", "heat_host_fraction", "heat_half_life_fetches",
        "heat_put_score", "heat_dir"},
       &RunHeatBench},
  };
  return *subs;
}

const Subcommand* FindSubcommand(absl::string_view name) {
  for (const Subcommand& s : Subcommands()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

void PrintFlags(std::ostream& os, absl::string_view title,
                const std::vector<absl::string_view>& names) {
  os << "\n" << title << ":\n";
  for (absl::string_view name : names) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    os << "  --" << name
       << " (default: " << (flag->DefaultValue().empty() ? "\"\"" : flag->DefaultValue())
       << ")\n      " << flag->Help() << "\n";
  }
}

void PrintUsage(std::ostream& os, const Subcommand* only) {
  if (only != nullptr) {
    os << "Usage: clusterkv_bench " << only->name << " [flags]\n\n" << only->summary << "\n";
    PrintFlags(os, absl::StrCat(only->name, " flags"), only->flags);
    PrintFlags(os, "Common flags", CommonFlags());
    return;
  }
  os << "clusterkv_bench: ClusterKV benchmarks, each measured against a baseline run in the "
        "same process.\n\n"
        "Usage: clusterkv_bench <subcommand> [flags]\n"
        "       clusterkv_bench <subcommand> --help\n\n"
        "Subcommands:\n";
  for (const Subcommand& s : Subcommands()) os << "  " << s.name << "\n      " << s.summary << "\n";
  os << "\nEach prints a table and, with --json FILE, writes {\"bench\", \"machine\", "
        "\"results\": [{\"variant\", \"params\", \"value\", \"unit\", \"baseline\", "
        "\"baseline_value\", \"ratio\", \"ratio_meaning\", \"p50_us\", \"p99_us\", ...}]}.\n"
        "For times ratio = baseline / ours: > 1 means faster than the baseline.\n"
        "Unless OMP_WAIT_POLICY is set, the binary re-runs itself once with "
        "OMP_WAIT_POLICY=PASSIVE\n(spinning OpenMP workers would slow FAISS's OpenBLAS "
        "threads); machine.omp_wait_policy records it.\n";
  PrintFlags(os, "Common flags", CommonFlags());
  for (const Subcommand& s : Subcommands()) {
    PrintFlags(os, absl::StrCat(s.name, " flags"), s.flags);
  }
}

bool IsHelpArg(const char* arg) {
  return std::strcmp(arg, "--help") == 0 || std::strcmp(arg, "-help") == 0 ||
         std::strcmp(arg, "-h") == 0;
}

template <typename T>
absl::StatusOr<std::vector<T>> ParseList(absl::string_view flag, absl::string_view text) {
  std::vector<T> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    T v;
    if (!absl::SimpleAtoi(item, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", item, "' is not an integer"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<BenchOptions> OptionsFromFlags() {
  BenchOptions o;
  o.json_path = absl::GetFlag(FLAGS_json);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.repeats = absl::GetFlag(FLAGS_repeats);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.quick = absl::GetFlag(FLAGS_quick);
  if (o.threads < 0 || o.repeats < 1 || o.warmup < 0) {
    return absl::InvalidArgumentError("need --threads >= 0, --repeats >= 1, --warmup >= 0");
  }

  o.kmeans.rows = absl::GetFlag(FLAGS_kmeans_rows);
  o.kmeans.dim = absl::GetFlag(FLAGS_kmeans_dim);
  o.kmeans.clusters = absl::GetFlag(FLAGS_kmeans_clusters);
  o.kmeans.iterations = absl::GetFlag(FLAGS_kmeans_iterations);
  o.kmeans.directions = absl::GetFlag(FLAGS_kmeans_directions);
  o.kmeans.noise = absl::GetFlag(FLAGS_kmeans_noise);
  ASSIGN_OR_RETURN(o.kmeans.thread_counts,
                   ParseList<int>("kmeans_threads", absl::GetFlag(FLAGS_kmeans_threads)));

  o.select.layers = absl::GetFlag(FLAGS_layers);
  o.select.context = absl::GetFlag(FLAGS_select_context);
  o.select.centroids = absl::GetFlag(FLAGS_select_centroids);
  o.select.budget = absl::GetFlag(FLAGS_select_budget);

  ASSIGN_OR_RETURN(o.decode.contexts,
                   ParseList<int64_t>("decode_contexts", absl::GetFlag(FLAGS_decode_contexts)));
  ASSIGN_OR_RETURN(o.decode.budgets,
                   ParseList<int64_t>("decode_budgets", absl::GetFlag(FLAGS_decode_budgets)));
  o.decode.sinks = absl::GetFlag(FLAGS_decode_sinks);
  o.decode.recent = absl::GetFlag(FLAGS_decode_recent);
  o.decode.cluster_tokens = absl::GetFlag(FLAGS_decode_cluster_tokens);

  o.storage.dir = absl::GetFlag(FLAGS_storage_dir);
  ASSIGN_OR_RETURN(o.storage.host_block_bytes,
                   ParseList<int64_t>("storage_host_block_bytes",
                                      absl::GetFlag(FLAGS_storage_host_block_bytes)));
  o.storage.host_total_bytes = absl::GetFlag(FLAGS_storage_host_bytes);
  ASSIGN_OR_RETURN(
      o.storage.ssd_block_bytes,
      ParseList<int64_t>("storage_ssd_block_bytes", absl::GetFlag(FLAGS_storage_ssd_block_bytes)));
  o.storage.ssd_total_bytes = absl::GetFlag(FLAGS_storage_ssd_bytes);
  o.storage.sync_total_bytes = absl::GetFlag(FLAGS_storage_sync_bytes);
  o.storage.evict_capacity_bytes = absl::GetFlag(FLAGS_storage_evict_capacity);
  o.storage.evict_block_bytes = absl::GetFlag(FLAGS_storage_evict_block_bytes);
  o.storage.cold_bytes = absl::GetFlag(FLAGS_storage_cold_bytes);

  o.daemon.binary = absl::GetFlag(FLAGS_daemon);
  o.daemon.dir = absl::GetFlag(FLAGS_daemon_dir);

  ASSIGN_OR_RETURN(o.fetch.block_bytes, ParseList<int64_t>("fetch_block_bytes",
                                                           absl::GetFlag(FLAGS_fetch_block_bytes)));
  o.fetch.clusters_per_request = absl::GetFlag(FLAGS_fetch_clusters_per_request);
  o.fetch.fetch_bytes = absl::GetFlag(FLAGS_fetch_bytes);
  o.fetch.cold_bytes = absl::GetFlag(FLAGS_fetch_cold_bytes);
  o.fetch.host_capacity_mib = absl::GetFlag(FLAGS_fetch_host_mib);
  o.fetch.ucx_perftest = absl::GetFlag(FLAGS_fetch_ucx_perftest);
  o.fetch.ucx_transports = absl::GetFlag(FLAGS_fetch_ucx_tls);
  o.fetch.ucx_timeout_s = absl::GetFlag(FLAGS_fetch_ucx_timeout_s);
  o.fetch.grpc_minimal_server = absl::GetFlag(FLAGS_fetch_grpc_minimal_server);

  o.e2e.layers = absl::GetFlag(FLAGS_e2e_layers);
  o.e2e.context = absl::GetFlag(FLAGS_e2e_context);
  o.e2e.steps = absl::GetFlag(FLAGS_e2e_steps);
  o.e2e.budget = absl::GetFlag(FLAGS_e2e_budget);
  o.e2e.centroids = absl::GetFlag(FLAGS_e2e_centroids);
  o.e2e.kmeans_iterations = absl::GetFlag(FLAGS_e2e_kmeans_iterations);
  o.e2e.text_file = absl::GetFlag(FLAGS_e2e_text_file);
  o.e2e.host_capacity_mib = absl::GetFlag(FLAGS_e2e_host_mib);
  o.batch.geometry = absl::GetFlag(FLAGS_batch_geometry);
  o.batch.layers = absl::GetFlag(FLAGS_batch_layers);
  o.batch.context = absl::GetFlag(FLAGS_batch_context);
  o.batch.steps = absl::GetFlag(FLAGS_batch_steps);
  o.batch.budget = absl::GetFlag(FLAGS_batch_budget);
  o.batch.centroids = absl::GetFlag(FLAGS_batch_centroids);
  o.batch.host_capacity_mib = absl::GetFlag(FLAGS_batch_host_mib);
  o.batch.batch_sizes.clear();
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_batch_sizes), ',')) {
    int32_t n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--batch_sizes: '", part, "' is not a positive integer"));
    }
    o.batch.batch_sizes.push_back(n);
  }

  o.soak.clients = absl::GetFlag(FLAGS_soak_clients);
  o.soak.iterations = absl::GetFlag(FLAGS_soak_iterations);
  o.soak.warmup_iterations = absl::GetFlag(FLAGS_soak_warmup_iterations);
  o.soak.clusters_per_head = absl::GetFlag(FLAGS_soak_clusters_per_head);
  o.soak.tokens_per_block = absl::GetFlag(FLAGS_soak_tokens);
  o.soak.host_capacity_mib = absl::GetFlag(FLAGS_soak_host_mib);

  ASSIGN_OR_RETURN(o.remote.block_bytes,
                   ParseList<int64_t>("remote_block_bytes", absl::GetFlag(FLAGS_remote_block_bytes)));
  o.remote.clusters_per_request = absl::GetFlag(FLAGS_remote_clusters_per_request);
  o.remote.pass_bytes = absl::GetFlag(FLAGS_remote_pass_bytes);
  o.remote.host_capacity_mib = absl::GetFlag(FLAGS_remote_host_mib);
  o.remote.peer_tls = absl::GetFlag(FLAGS_remote_peer_tls);
  o.remote.peer_ucx_tls = absl::GetFlag(FLAGS_remote_peer_ucx_tls);

  o.heat.trace = absl::GetFlag(FLAGS_heat_trace);
  o.heat.max_fetches = absl::GetFlag(FLAGS_heat_max_fetches);
  o.heat.host_fraction = absl::GetFlag(FLAGS_heat_host_fraction);
  o.heat.half_life_fetches = absl::GetFlag(FLAGS_heat_half_life_fetches);
  o.heat.dir = absl::GetFlag(FLAGS_heat_dir);
  o.heat.put_score = absl::GetFlag(FLAGS_heat_put_score);

  if (o.quick) ApplyQuick(o);
  return o;
}

}  // namespace

void ApplyQuick(BenchOptions& options) {
  options.quick = true;
  options.repeats = std::min(options.repeats, 2);
  options.warmup = std::min(options.warmup, 1);
  options.kmeans.rows = 2048;
  options.kmeans.dim = 64;
  options.kmeans.clusters = 32;
  options.kmeans.iterations = 5;
  options.kmeans.directions = 16;
  options.select.layers = 2;
  options.select.context = 4096;
  options.select.centroids = 64;
  options.select.budget = 256;
  options.decode.contexts = {4096, 8192};
  options.decode.budgets = {256, 512};
  options.storage.host_total_bytes = int64_t{4} << 20;
  options.storage.ssd_total_bytes = int64_t{2} << 20;
  options.storage.sync_total_bytes = int64_t{1} << 20;
  options.storage.evict_capacity_bytes = int64_t{8} << 20;
  options.storage.cold_bytes = int64_t{8} << 20;
  options.fetch.fetch_bytes = int64_t{4} << 20;
  options.fetch.cold_bytes = int64_t{16} << 20;
  options.fetch.clusters_per_request = 8;
  options.fetch.host_capacity_mib = 256;
  options.fetch.ucx_timeout_s = std::min(options.fetch.ucx_timeout_s, 10.0);
  options.e2e.layers = 2;
  options.e2e.context = 4096;
  options.e2e.steps = 3;
  options.e2e.budget = 256;
  options.e2e.centroids = 32;
  options.e2e.kmeans_iterations = 5;
  options.e2e.host_capacity_mib = 256;
  options.batch.layers = 1;
  options.batch.context = 1024;
  options.batch.steps = 2;
  options.batch.budget = 128;
  options.batch.centroids = 16;
  options.batch.kmeans_iterations = 4;
  options.batch.batch_sizes = {1, 3};
  options.batch.host_capacity_mib = 128;
  options.soak.clients = std::min(options.soak.clients, 4);
  options.soak.iterations = std::min(options.soak.iterations, 10);
  options.soak.warmup_iterations = std::min(options.soak.warmup_iterations, 2);
  options.remote.pass_bytes = int64_t{2} << 20;
  options.remote.clusters_per_request = 8;
  options.remote.host_capacity_mib = 128;
  if (options.heat.max_fetches == 0 || options.heat.max_fetches > 300) {
    options.heat.max_fetches = 300;
  }
}

int BenchToolMain(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY once, when it is loaded. Under its default its idle workers
  // spin and compete with OpenBLAS's threads for the cores, which slowed FAISS K-means 1.7x
  // (idle machine) to 4x (busy machine) at 2 threads here. So unless the caller chose a
  // policy, run this binary again once with the passive policy; the report records it.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr &&
      std::getenv("CLUSTERKV_BENCH_REEXECUTED") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("CLUSTERKV_BENCH_REEXECUTED", "1", 1);
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY");  // exec failed: go on with the default policy
  }
  // absl's own --help exits with status 1 and lists every linked flag; ours exits 0 and lists
  // the flags of the binary (or of one subcommand), so take the help arguments out first.
  bool help = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && IsHelpArg(argv[i])) {
      help = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  absl::SetProgramUsageMessage(
      "ClusterKV benchmarks. Usage: clusterkv_bench "
      "<kmeans|select|decode|storage|fetch|e2e|batch|soak|remote|heat> "
      "[flags]; "
      "clusterkv_bench --help");
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());

  if (positional.size() < 2) {
    if (help) {
      PrintUsage(std::cout, nullptr);
      return kExitOk;
    }
    std::cerr << "clusterkv_bench: missing subcommand\n\n";
    PrintUsage(std::cerr, nullptr);
    return kExitUsage;
  }
  const Subcommand* sub = FindSubcommand(positional[1]);
  if (sub == nullptr) {
    std::cerr << "clusterkv_bench: unknown subcommand '" << positional[1] << "'\n\n";
    PrintUsage(std::cerr, nullptr);
    return kExitUsage;
  }
  if (help) {
    PrintUsage(std::cout, sub);
    return kExitOk;
  }
  if (positional.size() > 2) {
    std::cerr << "clusterkv_bench " << sub->name << ": unexpected argument '" << positional[2]
              << "'\n\n";
    PrintUsage(std::cerr, sub);
    return kExitUsage;
  }
  absl::StatusOr<BenchOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "clusterkv_bench " << sub->name << ": " << options.status() << "\n";
    return kExitUsage;
  }
  const absl::Status status = sub->run(*options);
  if (!status.ok()) {
    std::cerr << "clusterkv_bench " << sub->name << ": " << status << "\n";
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace clusterkv::bench
