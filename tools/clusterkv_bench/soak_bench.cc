// clusterkv_bench soak: the load of tests/integration/soak_test.cc as figures, then a mixed
// workload (see RunMixedPhase): host-tier fetch p50/p99 alone vs beside SSD-bound fetches, an
// appender and a slow reader, on a daemon with a small host tier. N client threads
// (each its own gRPC channel) loop open / put / fetch / fetch of a missing sequence / close(drop)
// against a real clusterkvd; every call is timed. One row per operation type plus one for all
// of them: requests/s while the mix runs and the per-call p50/p99 latency. The baseline is the
// same loop issued by a single client in the same process against the same daemon, so
// ratio = requests/s with N clients / requests/s with 1 (> 1: the daemon serves concurrent
// clients faster than one at a time). The only accepted error is the missing sequence's
// NOT_FOUND; anything else fails the benchmark.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "core/kv_layout.h"
#include "core/status_macros.h"
#include "core/tensor_view.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_daemon.h"
#include "tools/clusterkv_bench/bench_report.h"

namespace clusterkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kKvHeads = 4;
constexpr int32_t kQHeads = 8;
constexpr int32_t kHeadDim = 128;
constexpr int kMaxMessageBytes = 64 << 20;

enum Op { kOpen, kPut, kFetch, kFetchMissing, kClose, kNumOps };
constexpr const char* kOpNames[kNumOps] = {"open", "put", "fetch", "fetch_missing", "close"};

// What one client sends for every sequence: the same blocks and indexes under fresh ids.
struct SequencePayload {
  std::vector<v1::ClusterBlock> blocks;
  std::vector<v1::HeadIndex> indexes;
  std::vector<v1::ClusterRef> refs;
  int64_t num_tokens = 0;
  int64_t block_bytes = 0;
};

// A block of `tokens` Gaussian keys and values of head (0, kv_head), fp16.
absl::StatusOr<v1::ClusterBlock> RandomBlock(int32_t kv_head, int32_t cluster, int32_t tokens,
                                             std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> keys(static_cast<size_t>(tokens) * kHeadDim);
  std::vector<float> values(keys.size());
  for (float& x : keys) x = normal(rng);
  for (float& x : values) x = normal(rng);
  std::vector<int32_t> positions(static_cast<size_t>(tokens));
  for (int32_t i = 0; i < tokens; ++i) positions[i] = cluster * tokens + i;
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                   storage::EncodeClusterBlock(
                       positions, ConstMatrixView(keys.data(), tokens, kHeadDim),
                       ConstMatrixView(values.data(), tokens, kHeadDim), DType::kFloat16));
  v1::ClusterBlock block;
  block.mutable_id()->set_layer(0);
  block.mutable_id()->set_kv_head(kv_head);
  block.mutable_id()->set_cluster(cluster);
  block.set_num_tokens(tokens);
  block.set_data(bytes.data(), bytes.size());
  return block;
}

// Creates sequence `id` with the benchmarks' layout: 1 layer, kKvHeads kv heads, fp16.
v1::OpenSequenceRequest OpenRequest(const std::string& id) {
  v1::OpenSequenceRequest open;
  open.set_sequence_id(id);
  v1::KvLayout* layout = open.mutable_layout();
  layout->set_num_layers(1);
  layout->set_num_q_heads(kQHeads);
  layout->set_num_kv_heads(kKvHeads);
  layout->set_head_dim(kHeadDim);
  layout->set_dtype(v1::DTYPE_FP16);
  return open;
}

// A stub on its own channel (one connection per client), with the benchmark's message limits.
std::unique_ptr<v1::KvCache::Stub> MakeStub(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per client
  return v1::KvCache::NewStub(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

absl::StatusOr<SequencePayload> MakePayload(const SoakBenchConfig& config, uint64_t seed) {
  std::mt19937_64 rng(seed);
  SequencePayload p;
  const int32_t tokens = config.tokens_per_block;
  for (int32_t h = 0; h < kKvHeads; ++h) {
    v1::HeadIndex index;
    index.set_layer(0);
    index.set_kv_head(h);
    for (int32_t c = 0; c < config.clusters_per_head; ++c) {
      ASSIGN_OR_RETURN(v1::ClusterBlock block, RandomBlock(h, c, tokens, rng));
      p.block_bytes = static_cast<int64_t>(block.data().size());
      p.refs.push_back(block.id());
      p.blocks.push_back(std::move(block));
      const float inv = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
      for (int32_t j = 0; j < kHeadDim; ++j) index.add_centroids(inv);
      index.add_sizes(tokens);
      if (h == 0) p.num_tokens += tokens;
    }
    p.indexes.push_back(std::move(index));
  }
  return p;
}

// Per-operation call latencies of one phase.
struct PhaseResult {
  std::vector<double> op_us[kNumOps];
  double wall_s = 0;
};

class SoakClient {
 public:
  SoakClient(const std::string& target, std::string tenant, double timeout_s)
      : tenant_(std::move(tenant)), timeout_s_(timeout_s), stub_(MakeStub(target)) {}

  // One loop over a fresh sequence; appends each call's latency to `out`.
  absl::Status Iteration(const std::string& id, const SequencePayload& p, PhaseResult& out) {
    const v1::OpenSequenceRequest open = OpenRequest(id);
    v1::OpenSequenceResponse opened;
    RETURN_IF_ERROR(Timed(kOpen, out, [&](grpc::ClientContext* c) {
      return stub_->OpenSequence(c, open, &opened);
    }));

    v1::PutClustersRequest put;
    put.set_sequence_id(id);
    for (const v1::ClusterBlock& b : p.blocks) *put.add_blocks() = b;
    for (const v1::HeadIndex& index : p.indexes) *put.add_indexes() = index;
    put.set_num_tokens(p.num_tokens);
    RETURN_IF_ERROR(Timed(kPut, out, [&](grpc::ClientContext* c) {
      v1::PutClustersResponse response;
      auto writer = stub_->PutClusters(c, &response);
      writer->Write(put);
      writer->WritesDone();
      return writer->Finish();
    }));

    RETURN_IF_ERROR(Timed(kFetch, out, [&](grpc::ClientContext* c) {
      return FetchAll(c, id, p.refs, static_cast<int>(p.blocks.size()));
    }));
    const absl::Status missing = Timed(kFetchMissing, out, [&](grpc::ClientContext* c) {
      return FetchAll(c, id + "-missing", {p.refs[0]}, 1);
    });
    if (!absl::IsNotFound(missing)) {
      return absl::InternalError(absl::StrCat("fetch of a missing sequence: ", missing.ToString()));
    }

    v1::CloseSequenceRequest close;
    close.set_sequence_id(id);
    close.set_drop(true);
    v1::CloseSequenceResponse closed;
    return Timed(kClose, out, [&](grpc::ClientContext* c) {
      return stub_->CloseSequence(c, close, &closed);
    });
  }

 private:
  grpc::Status FetchAll(grpc::ClientContext* c, const std::string& id,
                        const std::vector<v1::ClusterRef>& refs, int expected) {
    v1::FetchClustersRequest request;
    request.set_sequence_id(id);
    for (const v1::ClusterRef& r : refs) *request.add_clusters() = r;
    auto reader = stub_->FetchClusters(c, request);
    v1::FetchClustersResponse message;
    int blocks = 0;
    while (reader->Read(&message)) blocks += message.blocks_size();
    grpc::Status s = reader->Finish();
    if (s.ok() && blocks != expected) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("fetched ", blocks, " blocks, expected ", expected));
    }
    return s;
  }

  template <typename Fn>
  absl::Status Timed(Op op, PhaseResult& out, Fn&& call) {
    grpc::ClientContext context;
    context.AddMetadata(rpc::kTenantMetadataKey, tenant_);
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(static_cast<int64_t>(timeout_s_ * 1e6)));
    const Clock::time_point start = Clock::now();
    const grpc::Status s = call(&context);
    out.op_us[op].push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    return rpc::FromGrpcStatus(s);
  }

  std::string tenant_;
  double timeout_s_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
};

// `clients` threads, each running warm-up then `iterations` timed loops; the timed loops start
// together. The first error of any client is returned.
absl::StatusOr<PhaseResult> RunPhase(const std::string& target, const SoakBenchConfig& config,
                                     const std::vector<SequencePayload>& payloads, int clients,
                                     const std::string& phase) {
  std::vector<PhaseResult> per_client(static_cast<size_t>(clients));
  absl::Mutex mu;
  absl::Status first_error;
  struct Barrier {
    int arrived = 0;
    int expected = 0;
    bool Done() const { return arrived == expected; }
  } barrier{0, clients};
  Clock::time_point start;
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      SoakClient client(target, absl::StrCat("soak-", t % 2), config.call_timeout_s);
      const SequencePayload& p = payloads[static_cast<size_t>(t) % payloads.size()];
      auto loop = [&](int from, int count, PhaseResult& out) {
        for (int i = from; i < from + count; ++i) {
          absl::Status s = client.Iteration(absl::StrCat(phase, "-", t, "-", i), p, out);
          if (!s.ok()) {
            absl::MutexLock lock(&mu);
            if (first_error.ok()) first_error = s;
            return;
          }
        }
      };
      PhaseResult ignored;
      loop(0, config.warmup_iterations, ignored);
      {
        absl::MutexLock lock(&mu);
        if (++barrier.arrived == clients) start = Clock::now();
        mu.Await(absl::Condition(&barrier, &Barrier::Done));
      }
      loop(config.warmup_iterations, config.iterations, per_client[t]);
    });
  }
  for (std::thread& thread : threads) thread.join();
  PhaseResult all;
  all.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!first_error.ok()) return first_error;
  for (const PhaseResult& r : per_client) {
    for (int op = 0; op < kNumOps; ++op) {
      all.op_us[op].insert(all.op_us[op].end(), r.op_us[op].begin(), r.op_us[op].end());
    }
  }
  return all;
}

ResultRow SoakRow(const std::string& variant, const std::vector<double>& ours, double ours_s,
                  const std::vector<double>& base, double base_s, const SoakBenchConfig& config,
                  const SequencePayload& p) {
  Json params = {{"clients", config.clients},
                 {"iterations_per_client", config.iterations},
                 {"blocks_per_sequence", static_cast<int64_t>(p.blocks.size())},
                 {"block_bytes", p.block_bytes}};
  const TimingStats o = TimingStats::FromSamples(ours);
  const TimingStats b = TimingStats::FromSamples(base);
  ResultRow row = HigherBetterRow(variant, std::move(params), ours.size() / ours_s, "req/s",
                                  "1_client", base.size() / base_s);
  row.p50_us = o.p50_us;
  row.p99_us = o.p99_us;
  row.extra["baseline_p50_us"] = b.p50_us;
  row.extra["baseline_p99_us"] = b.p99_us;
  row.extra["requests"] = static_cast<int64_t>(ours.size());
  row.extra["baseline_requests"] = static_cast<int64_t>(base.size());
  return row;
}

// ---- the mixed workload: host-tier fetches beside SSD-bound, appending and slow clients ----

constexpr int32_t kMixedTokens = 256;      // ~129 KiB blocks
constexpr int kHotBlocks = 16;             // the host-tier sequence
constexpr int kColdBlocks = 512;           // ~66 MiB: twice the mixed daemon's host tier
constexpr int64_t kMixedHostMib = 32;
constexpr int kHotFetchBlocks = 4;         // blocks per host-tier fetch

// A client on its own channel, calls carrying its tenant and a deadline.
class MixedClient {
 public:
  MixedClient(const std::string& target, std::string tenant)
      : tenant_(std::move(tenant)), stub_(MakeStub(target)) {}
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata(rpc::kTenantMetadataKey, tenant_);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return c;
  }
  v1::KvCache::Stub& stub() { return *stub_; }

  absl::Status Open(const std::string& id) {
    const v1::OpenSequenceRequest open = OpenRequest(id);
    v1::OpenSequenceResponse opened;
    return rpc::FromGrpcStatus(stub_->OpenSequence(Context().get(), open, &opened));
  }
  absl::Status Put(const std::string& id, const std::vector<v1::ClusterBlock>& blocks) {
    auto context = Context();
    v1::PutClustersResponse response;
    auto writer = stub_->PutClusters(context.get(), &response);
    for (const v1::ClusterBlock& b : blocks) {
      v1::PutClustersRequest m;
      m.set_sequence_id(id);
      *m.add_blocks() = b;
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return rpc::FromGrpcStatus(writer->Finish());
  }
  // Fetches `clusters` of head 0; `pause` between messages makes a slow reader.
  absl::Status Fetch(const std::string& id, const std::vector<int32_t>& clusters,
                     absl::Duration pause = absl::ZeroDuration()) {
    v1::FetchClustersRequest request;
    request.set_sequence_id(id);
    for (int32_t c : clusters) {
      v1::ClusterRef* ref = request.add_clusters();
      ref->set_layer(0);
      ref->set_kv_head(0);
      ref->set_cluster(c);
    }
    auto context = Context();
    auto reader = stub_->FetchClusters(context.get(), request);
    v1::FetchClustersResponse message;
    size_t blocks = 0;
    while (reader->Read(&message)) {
      blocks += static_cast<size_t>(message.blocks_size());
      if (pause > absl::ZeroDuration()) absl::SleepFor(pause);  // a slow client, on purpose
    }
    RETURN_IF_ERROR(rpc::FromGrpcStatus(reader->Finish()));
    if (blocks != clusters.size()) return absl::InternalError("short fetch");
    return absl::OkStatus();
  }

 private:
  std::string tenant_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
};

absl::StatusOr<v1::ClusterBlock> MixedBlock(int32_t cluster, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return RandomBlock(/*kv_head=*/0, cluster, kMixedTokens, rng);
}

// Host-tier fetch latencies of `hot_clients` clients, `fetches` each, while `load` runs on
// other threads until they are done.
absl::StatusOr<std::vector<double>> TimeHotFetches(const std::string& target, int hot_clients,
                                                   int fetches,
                                                   const std::function<void(const std::atomic<bool>&)>& load,
                                                   int load_threads) {
  std::vector<std::vector<double>> per(static_cast<size_t>(hot_clients));
  std::vector<absl::Status> errors(static_cast<size_t>(hot_clients));
  std::atomic<bool> stop{false};
  std::vector<std::thread> loaders;
  for (int i = 0; i < load_threads; ++i) loaders.emplace_back([&] { load(stop); });
  std::vector<std::thread> threads;
  for (int t = 0; t < hot_clients; ++t) {
    threads.emplace_back([&, t] {
      MixedClient client(target, "hot");
      std::mt19937 rng(static_cast<uint32_t>(t));
      for (int i = 0; i < fetches; ++i) {
        std::vector<int32_t> clusters;
        const int first = static_cast<int>(rng() % (kHotBlocks - kHotFetchBlocks + 1));
        for (int c = 0; c < kHotFetchBlocks; ++c) clusters.push_back(first + c);
        const Clock::time_point start = Clock::now();
        absl::Status s = client.Fetch("hot", clusters);
        per[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
        if (!s.ok()) {
          errors[t] = s;
          return;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // The measured clients are done: each loader finishes its current call and returns.
  stop.store(true);
  for (std::thread& t : loaders) t.join();
  std::vector<double> all;
  for (int t = 0; t < hot_clients; ++t) {
    RETURN_IF_ERROR(errors[t]);
    all.insert(all.end(), per[t].begin(), per[t].end());
  }
  return all;
}

absl::Status RunMixedPhase(const BenchOptions& options, Report& report) {
  const SoakBenchConfig& config = options.soak;
  std::cerr << "soak: mixed workload: a " << kMixedHostMib << " MiB host tier, " << kHotBlocks
            << " host-tier blocks, " << kColdBlocks << " blocks mostly on the SSD\n";
  ASSIGN_OR_RETURN(std::unique_ptr<BenchDaemon> daemon,
                   BenchDaemon::Start(options.daemon, "soak-mixed", kMixedHostMib));
  const std::string target = daemon->target();
  {
    MixedClient cold(target, "cold");
    RETURN_IF_ERROR(cold.Open("cold"));
    for (int first = 0; first < kColdBlocks; first += 64) {
      std::vector<v1::ClusterBlock> blocks;
      for (int c = first; c < first + 64; ++c) {
        ASSIGN_OR_RETURN(v1::ClusterBlock b, MixedBlock(c, options.seed + 1000 + c));
        blocks.push_back(std::move(b));
      }
      RETURN_IF_ERROR(cold.Put("cold", blocks));
    }
    MixedClient hot(target, "hot");
    RETURN_IF_ERROR(hot.Open("hot"));
    std::vector<v1::ClusterBlock> blocks;
    for (int c = 0; c < kHotBlocks; ++c) {
      ASSIGN_OR_RETURN(v1::ClusterBlock b, MixedBlock(c, options.seed + c));
      blocks.push_back(std::move(b));
    }
    RETURN_IF_ERROR(hot.Put("hot", blocks));
    RETURN_IF_ERROR(hot.Fetch("hot", {0, 1, 2, 3}));  // warm the session
  }
  const int hot_clients = std::max(1, std::min(config.clients, 4));
  const int fetches = std::max(config.iterations, 20);
  auto no_load = [](const std::atomic<bool>&) {};
  ASSIGN_OR_RETURN(std::vector<double> alone,
                   TimeHotFetches(target, hot_clients, fetches, no_load, 0));

  // The load: two clients fetching random SSD-resident blocks (promotions, evictions), one
  // appending to its own sequence, one reading a 64-block fetch slowly. `pace` > 0 spaces each
  // loader's calls (a load that leaves the cores some room); zero: back to back.
  absl::Duration pace = absl::ZeroDuration();
  std::atomic<int> role{0};
  std::atomic<int64_t> ssd_fetches{0}, appends{0}, slow_fetches{0};
  std::atomic<int> appender_round{0};
  absl::Mutex load_mu;
  absl::Status load_error;
  auto load = [&](const std::atomic<bool>& stop) {
    const int r = role.fetch_add(1) % 4;
    auto done = [&stop] { return stop.load(); };
    auto fail = [&](const absl::Status& s) {
      absl::MutexLock lock(&load_mu);
      if (load_error.ok()) load_error = s;
    };
    if (r < 2) {  // SSD-bound
      MixedClient client(target, "cold");
      std::mt19937 rng(static_cast<uint32_t>(100 + r));
      while (!done()) {
        std::vector<int32_t> clusters;
        const int first = static_cast<int>(rng() % (kColdBlocks - 4));
        for (int c = 0; c < 4; ++c) clusters.push_back(first + c);
        if (absl::Status s = client.Fetch("cold", clusters); !s.ok()) return fail(s);
        ++ssd_fetches;
        if (pace > absl::ZeroDuration()) absl::SleepFor(pace);  // a paced loader, on purpose
      }
    } else if (r == 2) {  // appender
      MixedClient client(target, "appender");
      const std::string id = absl::StrCat("appends-", appender_round.fetch_add(1));
      if (absl::Status s = client.Open(id); !s.ok()) return fail(s);
      for (int32_t next = 0; !done(); ++next) {
        absl::StatusOr<v1::ClusterBlock> block = MixedBlock(next, 7000 + next);
        if (!block.ok()) return fail(block.status());
        v1::AppendClustersRequest request;
        request.set_sequence_id(id);
        v1::HeadIndex* appended = request.add_appended();
        appended->set_layer(0);
        appended->set_kv_head(0);
        for (int32_t j = 0; j < kHeadDim; ++j) appended->add_centroids(j == 0 ? 1.0f : 0.0f);
        appended->add_sizes(kMixedTokens);
        appended->set_first_cluster(next);
        *request.add_blocks() = *std::move(block);
        request.set_num_tokens(int64_t{next + 1} * kMixedTokens);
        v1::AppendClustersResponse response;
        const absl::Status s = rpc::FromGrpcStatus(
            client.stub().AppendClusters(client.Context().get(), request, &response));
        if (!s.ok()) return fail(s);
        ++appends;
        if (pace > absl::ZeroDuration()) absl::SleepFor(pace);
      }
    } else {  // a slow reader of large fetches
      MixedClient client(target, "cold");
      std::vector<int32_t> clusters;
      for (int c = 0; c < 64; ++c) clusters.push_back(c * 7 % kColdBlocks);
      while (!done()) {
        if (absl::Status s = client.Fetch("cold", clusters, absl::Milliseconds(20)); !s.ok()) {
          return fail(s);
        }
        ++slow_fetches;
      }
    }
  };
  std::vector<ResultRow> rows;
  for (const absl::Duration p : {absl::ZeroDuration(), absl::Milliseconds(10)}) {
    pace = p;
    ssd_fetches = 0;
    appends = 0;
    slow_fetches = 0;
    ASSIGN_OR_RETURN(std::vector<double> mixed,
                     TimeHotFetches(target, hot_clients, fetches, load, 4));
    RETURN_IF_ERROR(load_error);
    const TimingStats a = TimingStats::FromSamples(alone);
    const TimingStats m = TimingStats::FromSamples(mixed);
    const bool paced = p > absl::ZeroDuration();
    Json params = {{"hot_clients", hot_clients},
                   {"fetches_per_client", fetches},
                   {"blocks_per_fetch", kHotFetchBlocks},
                   {"host_tier_mib", kMixedHostMib},
                   {"cold_blocks", kColdBlocks},
                   {"loader_pace_ms", absl::ToDoubleMilliseconds(p)}};
    // Higher is better as 1/p99: ratio = unloaded p99 / mixed p99 (target: >= 0.5, i.e. the
    // mixed p99 within 2x of the unloaded one).
    ResultRow row = HigherBetterRow(paced ? "mixed_paced_host_fetch_p99" : "mixed_host_fetch_p99",
                                    std::move(params), 1e6 / m.p99_us, "1/s (1 / p99)",
                                    "host_fetch_alone", 1e6 / a.p99_us);
    row.p50_us = m.p50_us;
    row.p99_us = m.p99_us;
    row.extra["baseline_p50_us"] = a.p50_us;
    row.extra["baseline_p99_us"] = a.p99_us;
    row.extra["p99_mixed_over_alone"] = m.p99_us / a.p99_us;
    row.extra["ssd_fetches"] = ssd_fetches.load();
    row.extra["appends"] = appends.load();
    row.extra["slow_fetches"] = slow_fetches.load();
    rows.push_back(std::move(row));
    std::cerr << "soak: host-tier fetch p50/p99 alone " << a.p50_us << "/" << a.p99_us
              << " us, under " << (paced ? "paced " : "back-to-back ") << "mixed load "
              << m.p50_us << "/" << m.p99_us << " us (" << ssd_fetches.load()
              << " SSD fetches, " << appends.load() << " appends, " << slow_fetches.load()
              << " slow fetches beside)\n";
  }
  RETURN_IF_ERROR(daemon->Stop());
  for (ResultRow& row : rows) report.Add(std::move(row));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSoakBench(const BenchOptions& options) {
  const SoakBenchConfig& config = options.soak;
  if (config.clients < 1 || config.iterations < 1 || config.warmup_iterations < 0 ||
      config.clusters_per_head < 1 || config.tokens_per_block < 1) {
    return absl::InvalidArgumentError(
        "soak: clients, iterations, clusters and tokens must be >= 1, warm-up >= 0");
  }
  std::vector<SequencePayload> payloads;
  for (int i = 0; i < 4; ++i) {
    ASSIGN_OR_RETURN(SequencePayload p, MakePayload(config, options.seed + i));
    payloads.push_back(std::move(p));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<BenchDaemon> daemon,
                   BenchDaemon::Start(options.daemon, "soak", config.host_capacity_mib));
  // The baseline first: one client, the same loop.
  ASSIGN_OR_RETURN(PhaseResult base, RunPhase(daemon->target(), config, payloads, 1, "base"));
  ASSIGN_OR_RETURN(PhaseResult ours,
                   RunPhase(daemon->target(), config, payloads, config.clients, "load"));
  RETURN_IF_ERROR(daemon->Stop());

  Report report("soak");
  std::vector<double> all_ours, all_base;
  for (int op = 0; op < kNumOps; ++op) {
    report.Add(SoakRow(kOpNames[op], ours.op_us[op], ours.wall_s, base.op_us[op], base.wall_s,
                       config, payloads[0]));
    all_ours.insert(all_ours.end(), ours.op_us[op].begin(), ours.op_us[op].end());
    all_base.insert(all_base.end(), base.op_us[op].begin(), base.op_us[op].end());
  }
  report.Add(SoakRow("all", all_ours, ours.wall_s, all_base, base.wall_s, config, payloads[0]));
  RETURN_IF_ERROR(RunMixedPhase(options, report));
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
