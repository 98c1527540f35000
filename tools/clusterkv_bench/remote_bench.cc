// `clusterkv_bench remote`: recall through a node that does not own the sequence (cluster mode)
// against recall from the owner, in one run. It starts a real etcd and three
// clusterkvd in one cluster (TLS between them with a self-signed certificate made by the
// openssl CLI, unless --remote_peer_tls=false or openssl is missing: then plaintext loopback),
// stores a fresh sequence per pass through node 1 (its owner), and recalls every block once,
// `clusters_per_request` random clusters a FetchClusters request, over each node's Unix socket:
//   local                  from node 1, which holds the sequence (the baseline);
//   remote_cold            from node 2: it looks the sequence up in etcd and pulls the blocks
//                          from node 1 over node 1's UCX data plane (--remote_peer_ucx_tls,
//                          tcp by default) into its read-only copy before serving them;
//   remote_warm            from node 2 again: served from its copy (plus the etcd lookup);
//   remote_cold_grpc_pull  from node 3, which pulls over gRPC streaming instead
//                          (--cluster_peer_ucx=false): the previous path, side by side.
// Rows: bandwidth (ratio = remote / local, > 1 better) with per-request p50/p99, per-request
// latency (ratio = local / remote, > 1 faster), and remote_cold against remote_cold_grpc_pull.
// Every recalled block is checked bit-exact. Every node runs with --prefault_host_tier, so a
// cold recall measures the transfer rather than first touches of the copy's fresh memory.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "core/status_macros.h"
#include "server/cluster/testing/etcd_process.h"
#include "storage/cluster_block.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_bench/bench_report.h"
#include "tools/clusterkv_demo/daemon_launcher.h"

namespace clusterkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kHeadDim = 128;
constexpr DType kDType = DType::kFloat16;
constexpr double kGB = 1e9;
constexpr int64_t kPutMessageBytes = int64_t{4} << 20;
constexpr int64_t kPutCallBytes = int64_t{64} << 20;
constexpr char kOpenssl[] = "/usr/bin/openssl";

struct Series {
  std::vector<double> request_us;
  std::vector<double> pass_gbps;
};

// Runs argv to completion (output discarded); its exit status, or Internal.
absl::StatusOr<int> RunQuietly(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot run ", argv[0]));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError("waitpid");
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The number after `marker` in `text`, or 0.
int NumberAfter(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  if (at == std::string::npos) return 0;
  const size_t begin = at + marker.size();
  int n = 0;
  return absl::SimpleAtoi(text.substr(begin, text.find_first_not_of("0123456789", begin) - begin),
                          &n)
             ? n
             : 0;
}

// etcd + two cluster nodes in a scratch directory.
struct Cluster {
  std::unique_ptr<ScratchDir> dir;
  server::cluster::EtcdProcess etcd;
  std::vector<std::unique_ptr<demo::DaemonLauncher>> nodes;
  std::vector<std::string> targets;  // "unix:<socket>"
  bool tls = false;

  absl::Status Stop() {
    absl::Status first;
    for (auto& n : nodes) {
      absl::StatusOr<int> code = n->Stop();
      if (first.ok() && (!code.ok() || *code != 0)) {
        first = code.ok() ? absl::InternalError(absl::StrCat("clusterkvd exited with ", *code))
                          : code.status();
      }
    }
    nodes.clear();
    etcd.Kill();
    return first;
  }
};

absl::StatusOr<std::unique_ptr<Cluster>> StartCluster(const BenchOptions& options,
                                                      int64_t capacity_mib) {
  const RemoteBenchConfig& cfg = options.remote;
  auto c = std::make_unique<Cluster>();
  ASSIGN_OR_RETURN(c->dir, ScratchDir::Create(options.daemon.dir, "remote"));
  RETURN_IF_ERROR(c->etcd.Start(absl::Seconds(options.daemon.ready_timeout_s)));
  std::cerr << "remote: etcd at " << c->etcd.endpoint() << "\n";
  const std::string cert = c->dir->Sub("cert.pem");
  const std::string key = c->dir->Sub("key.pem");
  if (cfg.peer_tls && access(kOpenssl, X_OK) == 0) {
    ASSIGN_OR_RETURN(int code, RunQuietly({kOpenssl, "req", "-x509", "-newkey", "rsa:2048",
                                           "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                                           "-subj", "/CN=localhost", "-addext",
                                           "subjectAltName=DNS:localhost,IP:127.0.0.1"}));
    if (code != 0) return absl::InternalError("remote: openssl could not make a certificate");
    c->tls = true;
  } else if (cfg.peer_tls) {
    std::cerr << "remote: " << kOpenssl << " is missing: plaintext between the daemons\n";
  }
  {
    std::ofstream token(c->dir->Sub("peer-token"));
    token << "clusterkv-bench-peer-token-" << options.seed << "\n";
    if (!token) return absl::UnavailableError("remote: cannot write the peer token");
  }
  for (int i = 0; i < 3; ++i) {
    const std::string name = absl::StrCat("node-", i + 1);
    const std::string socket = c->dir->Sub(name + ".sock");
    std::vector<std::string> flags = {
        "--socket=" + socket, "--data_dir=" + c->dir->Sub(name + "-data"),
        absl::StrCat("--host_capacity_mib=", capacity_mib), "--auth=none", "--metrics_address=",
        "--tcp_address=127.0.0.1:0", "--cluster_etcd=" + c->etcd.endpoint(),
        "--cluster_name=bench", "--node_id=" + name, "--lease_ttl_s=10",
        "--cluster_token_file=" + c->dir->Sub("peer-token"), "--prefault_host_tier"};
    if (i < 2) {  // node 1 serves UCX, node 2 pulls over it
      flags.push_back("--ucx=true");
      flags.push_back("--cluster_peer_ucx_transports=" + cfg.peer_ucx_tls);
    } else {  // node 3 pulls over gRPC streaming
      flags.push_back("--ucx=false");
    }
    if (c->tls) {
      flags.push_back("--tls_cert=" + cert);
      flags.push_back("--tls_key=" + key);
    } else {
      flags.push_back("--allow_insecure_tcp");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<demo::DaemonLauncher> node,
                     demo::DaemonLauncher::Start(options.daemon.binary, flags,
                                                 absl::Seconds(options.daemon.ready_timeout_s)));
    std::cerr << "remote: " << name << " serves tcp port "
              << NumberAfter(node->banner(), "tcp port ") << "\n";
    c->nodes.push_back(std::move(node));
    c->targets.push_back("unix:" + socket);
  }
  return c;
}

absl::StatusOr<std::unique_ptr<client::Connection>> Connect(const std::string& target,
                                                            double timeout_s) {
  client::ConnectionOptions co;
  co.target = target;
  co.tenant = "bench";
  co.call_timeout = absl::Seconds(timeout_s);
  return client::Connection::Create(co);
}

// Opens `sequence` (one layer, one kv head) through `conn` and stores `blocks` blocks of
// `tokens` tokens, block j = pool slot j.
absl::Status PutSequence(client::Connection& conn, const std::string& sequence, int64_t blocks,
                         int32_t tokens, int64_t block_bytes, Ring& pool) {
  v1::OpenSequenceRequest open;
  open.set_sequence_id(sequence);
  v1::KvLayout* layout = open.mutable_layout();
  layout->set_num_layers(1);
  layout->set_num_q_heads(1);
  layout->set_num_kv_heads(1);
  layout->set_head_dim(kHeadDim);
  layout->set_dtype(v1::DTYPE_FP16);
  RETURN_IF_ERROR(conn.OpenSequence(open).status());
  int64_t next = 0;
  while (next < blocks) {
    std::vector<v1::PutClustersRequest> messages;
    int64_t call_bytes = 0, message_bytes = 0, sent = 0;
    for (; next < blocks && call_bytes < kPutCallBytes; ++next, ++sent) {
      if (messages.empty() || message_bytes + block_bytes > kPutMessageBytes) {
        messages.emplace_back().set_sequence_id(sequence);
        message_bytes = 0;
      }
      v1::ClusterBlock* b = messages.back().add_blocks();
      b->mutable_id()->set_cluster(static_cast<int32_t>(next));
      b->set_num_tokens(tokens);
      b->set_data(pool.Slot(next, block_bytes), static_cast<size_t>(block_bytes));
      message_bytes += block_bytes;
      call_bytes += block_bytes;
    }
    ASSIGN_OR_RETURN(v1::PutClustersResponse r, conn.PutClusters(messages));
    if (r.blocks_stored() != sent) return absl::InternalError("remote: a put stored too few blocks");
  }
  return absl::OkStatus();
}

// One pass: every block once, `per` a request in a seeded order, copied into `ring` and
// checked against the pool. Adds the pass to `out` unless null.
absl::Status RecallPass(client::Connection& conn, const std::string& sequence, int64_t blocks,
                        int32_t per, int64_t block_bytes, uint64_t seed, Ring& pool, Ring& ring,
                        Series* out) {
  std::vector<int32_t> order(static_cast<size_t>(blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<double> us;
  int64_t slot = 0;
  const Clock::time_point start = Clock::now();
  for (int64_t first = 0; first < blocks; first += per) {
    const int64_t n = std::min<int64_t>(per, blocks - first);
    v1::FetchClustersRequest request;
    request.set_sequence_id(sequence);
    for (int64_t k = 0; k < n; ++k) request.add_clusters()->set_cluster(order[first + k]);
    const Clock::time_point t0 = Clock::now();
    int64_t got = 0;
    RETURN_IF_ERROR(conn.FetchClusters(request, [&](const v1::ClusterBlock& b) {
      if (got >= n || static_cast<int64_t>(b.data().size()) != block_bytes ||
          b.id().cluster() != order[first + got]) {
        return absl::DataLossError("remote: unexpected block in the answer");
      }
      std::memcpy(ring.Slot(slot++, block_bytes), b.data().data(), b.data().size());
      if (std::memcmp(b.data().data(), pool.Slot(order[first + got], block_bytes),
                      b.data().size()) != 0) {
        return absl::DataLossError("remote: a recalled block differs from the stored bytes");
      }
      ++got;
      return absl::OkStatus();
    }));
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (got != n) return absl::DataLossError("remote: blocks missing from the answer");
  }
  const double total_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (out != nullptr) {
    out->request_us.insert(out->request_us.end(), us.begin(), us.end());
    out->pass_gbps.push_back(static_cast<double>(blocks * block_bytes) / total_s / kGB);
  }
  return absl::OkStatus();
}

ResultRow BandwidthRow(std::string variant, const Json& params, const Series& ours,
                       const Series& local) {
  ResultRow row = HigherBetterRow(std::move(variant), params, Percentile(ours.pass_gbps, 0.5),
                                  "GB/s", "local", Percentile(local.pass_gbps, 0.5));
  row.p50_us = Percentile(ours.request_us, 0.5);
  row.p99_us = Percentile(ours.request_us, 0.99);
  row.extra["p50_p99_of"] = "one request";
  row.extra["baseline_p50_us"] = Percentile(local.request_us, 0.5);
  row.extra["baseline_p99_us"] = Percentile(local.request_us, 0.99);
  row.extra["repeats"] = ours.pass_gbps.size();
  return row;
}

absl::Status ValidateConfig(const RemoteBenchConfig& c) {
  if (c.block_bytes.empty() || c.clusters_per_request < 1 || c.pass_bytes < 1 ||
      c.host_capacity_mib < 1 || c.call_timeout_s <= 0) {
    return absl::InvalidArgumentError(
        "remote: need block sizes, clusters_per_request >= 1, positive pass bytes, capacity and "
        "timeout");
  }
  for (int64_t b : c.block_bytes) {
    if (b < static_cast<int64_t>(storage::ClusterBlockBytes(1, kHeadDim, kDType))) {
      return absl::InvalidArgumentError(absl::StrCat("remote: block size ", b, " below one token"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunRemoteBench(const BenchOptions& options) {
  const RemoteBenchConfig& cfg = options.remote;
  RETURN_IF_ERROR(ValidateConfig(cfg));
  const int passes = options.warmup + options.repeats;
  const int64_t per_token = static_cast<int64_t>(storage::ClusterBlockBytes(1, kHeadDim, kDType));
  // Node 1 holds every pass's sequence of every size; node 2 a copy of each: keep both far
  // below the high watermark (no eviction during the run).
  const int64_t stored = passes * static_cast<int64_t>(cfg.block_bytes.size()) * cfg.pass_bytes;
  const int64_t capacity_mib = std::max<int64_t>(cfg.host_capacity_mib, 2 * (stored >> 20) + 64);
  Ring pool(std::max<int64_t>(cfg.pass_bytes, *std::max_element(cfg.block_bytes.begin(),
                                                                 cfg.block_bytes.end())));
  pool.FillRandom(options.seed);
  Ring ring(std::max<int64_t>(int64_t{64} << 20, pool.bytes()));
  ASSIGN_OR_RETURN(std::unique_ptr<Cluster> cluster, StartCluster(options, capacity_mib));
  Report report("remote");
  {
    ASSIGN_OR_RETURN(std::unique_ptr<client::Connection> owner,
                     Connect(cluster->targets[0], cfg.call_timeout_s));
    ASSIGN_OR_RETURN(std::unique_ptr<client::Connection> other,
                     Connect(cluster->targets[1], cfg.call_timeout_s));
    ASSIGN_OR_RETURN(std::unique_ptr<client::Connection> grpc_puller,
                     Connect(cluster->targets[2], cfg.call_timeout_s));
    for (int64_t target : cfg.block_bytes) {
      const int32_t tokens = static_cast<int32_t>(std::max<int64_t>(1, target / per_token));
      const int64_t block_bytes =
          static_cast<int64_t>(storage::ClusterBlockBytes(tokens, kHeadDim, kDType));
      const int64_t blocks = std::max<int64_t>(cfg.clusters_per_request,
                                               cfg.pass_bytes / block_bytes);
      std::cerr << "remote: " << SizeText(block_bytes) << " blocks, " << blocks
                << " per pass, " << passes << " passes\n";
      Series local, cold, warm, cold_grpc;
      for (int pass = 0; pass < passes; ++pass) {
        const bool timed = pass >= options.warmup;
        const std::string sequence = absl::StrCat("remote-", block_bytes, "-", pass);
        RETURN_IF_ERROR(PutSequence(*owner, sequence, blocks, tokens, block_bytes, pool));
        const uint64_t seed = options.seed * 1000003 + static_cast<uint64_t>(pass);
        RETURN_IF_ERROR(RecallPass(*owner, sequence, blocks, cfg.clusters_per_request,
                                   block_bytes, seed, pool, ring, timed ? &local : nullptr));
        RETURN_IF_ERROR(RecallPass(*other, sequence, blocks, cfg.clusters_per_request,
                                   block_bytes, seed + 1, pool, ring, timed ? &cold : nullptr));
        RETURN_IF_ERROR(RecallPass(*other, sequence, blocks, cfg.clusters_per_request,
                                   block_bytes, seed + 2, pool, ring, timed ? &warm : nullptr));
        RETURN_IF_ERROR(RecallPass(*grpc_puller, sequence, blocks, cfg.clusters_per_request,
                                   block_bytes, seed + 1, pool, ring,
                                   timed ? &cold_grpc : nullptr));
      }
      const Json params = {{"block_bytes", block_bytes},
                           {"block_bytes_target", target},
                           {"tokens_per_block", tokens},
                           {"head_dim", kHeadDim},
                           {"kv_dtype", "fp16"},
                           {"clusters_per_request", cfg.clusters_per_request},
                           {"blocks_per_pass", blocks},
                           {"peer_tls", cluster->tls},
                           {"peer_ucx_tls", cfg.peer_ucx_tls.empty() ? "default" : cfg.peer_ucx_tls},
                           {"prefault_host_tier", true}};
      const std::string peer =
          cluster->tls ? "gRPC over TLS on loopback TCP" : "gRPC over plaintext loopback TCP";
      ResultRow c = BandwidthRow("remote_cold", params, cold, local);
      c.extra["path"] = absl::StrCat(
          "client -> node 2 (Unix socket); node 2: etcd lookup, whole blocks pulled from node "
          "1's UCX data plane (UCX_TLS ",
          cfg.peer_ucx_tls.empty() ? "default" : cfg.peer_ucx_tls,
          ") into its read-only copy, then serves it");
      report.Add(std::move(c));
      ResultRow g = BandwidthRow("remote_cold_grpc_pull", params, cold_grpc, local);
      g.extra["path"] = absl::StrCat(
          "client -> node 3 (Unix socket); node 3: etcd lookup, FetchClusters from node 1 (",
          peer, ") into its read-only copy, then serves it");
      report.Add(std::move(g));
      ResultRow vs = HigherBetterRow("remote_cold_ucx_vs_grpc_pull", params,
                                     Percentile(cold.pass_gbps, 0.5), "GB/s",
                                     "remote_cold_grpc_pull", Percentile(cold_grpc.pass_gbps, 0.5));
      vs.extra["note"] = "the same cold remote recall with node 2's UCX pull vs node 3's gRPC pull";
      report.Add(std::move(vs));
      ResultRow w = BandwidthRow("remote_warm", params, warm, local);
      w.extra["path"] = "client -> node 2 (Unix socket): etcd lookup, served from its copy";
      report.Add(std::move(w));
      ResultRow cl = TimeRow("remote_cold_request", params, "us",
                             TimingStats::FromSamples(cold.request_us), "local_request",
                             TimingStats::FromSamples(local.request_us));
      report.Add(std::move(cl));
      ResultRow wl = TimeRow("remote_warm_request", params, "us",
                             TimingStats::FromSamples(warm.request_us), "local_request",
                             TimingStats::FromSamples(local.request_us));
      report.Add(std::move(wl));
    }
  }
  RETURN_IF_ERROR(cluster->Stop());
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
