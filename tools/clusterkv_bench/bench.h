// clusterkv_bench: the benchmarks behind DESIGN.md section 9. Each subcommand measures one of
// our ops against a baseline run in the same process, prints a table and, when
// BenchOptions::json_path is set, writes the JSON report described in bench_report.h.
//
// Subcommands:
//   kmeans  gpu::SphericalKMeans (CPU) vs FAISS spherical K-means on the same keys.
//   select  centroid scoring + budgeted selection + indexing for every (layer, kv head) vs one
//           full-attention decode step over the same layout.
//   decode  one layer's sparse attention (sinks + recalled clusters + recent window) vs full
//           attention at long contexts.
//   storage host tier put/get vs cold memcpy, SSD tier put/get (unsynced and write-through) vs
//           raw RocksDB with the same BlobDB options, and eviction throughput vs raw puts.
//
// Example:
//   BenchOptions opt;
//   opt.quick = true;
//   RETURN_IF_ERROR(RunKMeansBench(opt));
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace clusterkv::bench {

struct KMeansBenchConfig {
  int64_t rows = 32768;
  int32_t dim = 128;
  int32_t clusters = 400;
  int32_t iterations = 20;
  // Mixture components of the synthetic keys and the per-coordinate noise around them.
  int32_t directions = 256;
  double noise = 0.6;
  // Thread counts to sweep; empty means {1, BenchOptions::threads} (deduplicated).
  std::vector<int> thread_counts;
};

struct SelectBenchConfig {
  int32_t layers = 32;  // of a Llama-3-8B layout (8 kv heads, 32 q heads, head_dim 128)
  int64_t context = 32768;
  int32_t centroids = 400;
  int64_t budget = 1024;
};

struct DecodeBenchConfig {
  std::vector<int64_t> contexts = {32768, 131072};
  std::vector<int64_t> budgets = {1024, 2048};
  int64_t sinks = 16;
  int64_t recent = 320;
  // Mean tokens per recalled cluster range (32768 tokens / 400 clusters is about 80).
  int64_t cluster_tokens = 80;
};

struct StorageBenchConfig {
  // Parent of the scratch directory (a fresh subdirectory, removed at the end); empty: /tmp.
  std::string dir;
  std::vector<int64_t> host_block_bytes = {int64_t{64} << 10, int64_t{256} << 10, int64_t{1} << 20};
  int64_t host_total_bytes = int64_t{512} << 20;  // per block size and pass
  std::vector<int64_t> ssd_block_bytes = {int64_t{64} << 10, int64_t{256} << 10};
  int64_t ssd_total_bytes = int64_t{256} << 20;  // per block size and pass
  int64_t sync_total_bytes = int64_t{64} << 20;  // per block size and pass, synced puts
  int64_t evict_capacity_bytes = int64_t{256} << 20;
  int64_t evict_block_bytes = int64_t{256} << 10;
  // Span of the source blocks and of the read / memcpy destination, so no cache holds them.
  int64_t cold_bytes = int64_t{256} << 20;
};

// Options shared by every subcommand plus each subcommand's own settings.
struct BenchOptions {
  std::string json_path;  // empty: table only
  int threads = 0;        // 0: all cores
  int repeats = 3;        // timed runs per measurement (median and p50/p99 over them)
  int warmup = 1;         // untimed runs before the timed ones
  uint64_t seed = 1;
  // Tiny sizes for smoke tests: every config is shrunk by ApplyQuick().
  bool quick = false;

  KMeansBenchConfig kmeans;
  SelectBenchConfig select;
  DecodeBenchConfig decode;
  StorageBenchConfig storage;
};

// Shrinks every size in `options` to a smoke-test scale (seconds in total).
void ApplyQuick(BenchOptions& options);

// Each returns InvalidArgument on bad options, the error of a failing op, or Internal /
// Unavailable when the JSON file cannot be written. Tables go to stdout.
absl::Status RunKMeansBench(const BenchOptions& options);
absl::Status RunSelectBench(const BenchOptions& options);
absl::Status RunDecodeBench(const BenchOptions& options);
absl::Status RunStorageBench(const BenchOptions& options);

// The whole command-line tool (flags, subcommand dispatch, --help); returns the exit code:
// 0 success, 1 a benchmark failed, 2 usage error (no or unknown subcommand).
int BenchToolMain(int argc, char** argv);

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_H_
