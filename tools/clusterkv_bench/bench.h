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
//   soak    N concurrent clients looping open / put / fetch / close against a real clusterkvd:
//           requests/s and p50/p99 per operation vs the same loop from 1 client.
//   remote  cluster mode: recall through a node that does not own the sequence
//           (cold: pulled from the owner; warm: from its read-only copy) vs recall from the
//           owner, with a real etcd and two clusterkvd (remote_bench.cc).
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

// The clusterkvd child of the fetch and e2e benchmarks.
struct DaemonConfig {
  std::string binary;  // the build's clusterkvd by default (bench_tool.cc)
  // Parent of the scratch directory with its socket and data (removed at the end); empty: /tmp.
  std::string dir;
  double ready_timeout_s = 60;
};

struct FetchBenchConfig {
  // Target block sizes; each becomes the ClusterBlockBytes of the token count closest to it
  // (head_dim 128, fp16: 516 bytes a token), reported exactly.
  std::vector<int64_t> block_bytes = {int64_t{16} << 10, int64_t{64} << 10, int64_t{256} << 10,
                                      int64_t{1} << 20};
  int32_t clusters_per_request = 32;
  // Bytes recalled per block size and timed pass (and copied by the memcpy baseline).
  int64_t fetch_bytes = int64_t{512} << 20;
  // Blocks stored per block size span this many bytes, as do the memcpy source and the
  // destination ring (the device cache's stand-in), so no cache holds them.
  int64_t cold_bytes = int64_t{256} << 20;
  int64_t host_capacity_mib = 2048;  // everything stays in the host tier
  double call_timeout_s = 60;        // deadline of each gRPC call
  // ucx_perftest peer rows; skipped when the binary is missing.
  std::string ucx_perftest = "/usr/bin/ucx_perftest";
  std::string ucx_transports = "posix,sysv,self";
  double ucx_timeout_s = 30;  // per message size
  // The grpc_minimal row's server binary (grpc_minimal.h); the build's by default.
  std::string grpc_minimal_server;
};

struct E2eBenchConfig {
  int32_t layers = 4;  // of the Llama-3-8B layout; every one sparse (dense_layers is empty)
  int64_t context = 32768;
  int32_t steps = 8;
  int32_t budget = 1024;
  int32_t centroids = 400;  // C0
  int32_t kmeans_iterations = 20;
  // Text of the token stream; empty: Jane Austen's novels (r-cran-janeaustenr), or a synthetic
  // word list when that package is missing.
  std::string text_file;
  int64_t host_capacity_mib = 2048;  // raised to hold every block twice over
};

struct BatchBenchConfig {
  std::string geometry = "llama3_8b";  // llama3_8b, smollm2 or gemma3 (head counts and dims)
  int32_t layers = 2;                  // every one sparse
  int64_t context = 4096;              // prefill tokens of every sequence
  int32_t steps = 4;                   // decode steps per batch size (the first one untimed)
  int32_t budget = 256;
  int32_t centroids = 64;  // C0
  int32_t kmeans_iterations = 10;
  std::vector<int32_t> batch_sizes = {1, 8, 32};
  int64_t host_capacity_mib = 2048;  // raised to hold every block twice over
};

struct SoakBenchConfig {
  int32_t clients = 8;
  int32_t iterations = 200;        // timed loops per client
  int32_t warmup_iterations = 10;  // untimed loops per client first
  // Each sequence: 1 layer x 4 kv heads x clusters_per_head blocks of tokens_per_block tokens
  // (head_dim 128, fp16: 516 bytes a token).
  int32_t clusters_per_head = 2;
  int32_t tokens_per_block = 64;
  int64_t host_capacity_mib = 256;
  double call_timeout_s = 60;  // deadline of each gRPC call
};

// Cluster mode: etcd + two clusterkvd in one cluster.
struct RemoteBenchConfig {
  std::vector<int64_t> block_bytes = {int64_t{64} << 10, int64_t{256} << 10, int64_t{1} << 20};
  int32_t clusters_per_request = 32;
  // Bytes of the fresh sequence stored, then recalled (local, remote cold, remote warm), per
  // block size and pass.
  int64_t pass_bytes = int64_t{32} << 20;
  int64_t host_capacity_mib = 1024;  // per daemon; raised to hold everything twice
  bool peer_tls = true;              // TLS between the daemons (needs /usr/bin/openssl)
  // UCX transports node 2 pulls over (--cluster_peer_ucx_transports); tcp: as between hosts.
  std::string peer_ucx_tls = "tcp";
  double call_timeout_s = 60;
};

struct HeatBenchConfig {
  // A fetch trace of clusterkvd --fetch_trace_file (server/fetch_trace.h).
  std::string trace;
  int64_t max_fetches = 0;     // replay only the first ones (0: all)
  double host_fraction = 0.5;  // host tier = this share of the trace's block bytes
  double half_life_fetches = 32;
  double put_score = 1.0;  // ClusterHeatOptions::put_score
  std::string dir;  // parent of the scratch directory; empty: /tmp
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
  DaemonConfig daemon;
  FetchBenchConfig fetch;
  E2eBenchConfig e2e;
  BatchBenchConfig batch;
  SoakBenchConfig soak;
  RemoteBenchConfig remote;
  HeatBenchConfig heat;
};

// Shrinks every size in `options` to a smoke-test scale (seconds in total).
void ApplyQuick(BenchOptions& options);

// Each returns InvalidArgument on bad options, the error of a failing op, or Internal /
// Unavailable when the JSON file cannot be written. Tables go to stdout.
absl::Status RunKMeansBench(const BenchOptions& options);
absl::Status RunSelectBench(const BenchOptions& options);
absl::Status RunDecodeBench(const BenchOptions& options);
absl::Status RunStorageBench(const BenchOptions& options);
// fetch and e2e also return Unavailable when clusterkvd does not start.
absl::Status RunFetchBench(const BenchOptions& options);
absl::Status RunE2eBench(const BenchOptions& options);
// Decode throughput of batches of sequences, Sequence::AttendBatch vs per-sequence Attend vs
// full attention (batch_bench.cc). Internal if the batched and unbatched outputs differ.
absl::Status RunBatchBench(const BenchOptions& options);
// Also Internal when a call fails with anything but the expected NOT_FOUND.
absl::Status RunSoakBench(const BenchOptions& options);
// Also Unavailable when etcd or a clusterkvd does not start; DataLoss for a wrong block.
absl::Status RunRemoteBench(const BenchOptions& options);
// LRU vs heat eviction replaying a recorded fetch trace (heat_bench.cc).
absl::Status RunHeatBench(const BenchOptions& options);

// The whole command-line tool (flags, subcommand dispatch, --help); returns the exit code:
// 0 success, 1 a benchmark failed, 2 usage error (no or unknown subcommand).
int BenchToolMain(int argc, char** argv);

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_H_
