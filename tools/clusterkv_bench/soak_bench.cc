// clusterkv_bench soak: the load of tests/integration/soak_test.cc as figures. N client threads
// (each its own gRPC channel) loop open / put / fetch / fetch of a missing sequence / close(drop)
// against a real clusterkvd; every call is timed. One row per operation type plus one for all
// of them: requests/s while the mix runs and the per-call p50/p99 latency. The baseline is the
// same loop issued by a single client in the same process against the same daemon, so
// ratio = requests/s with N clients / requests/s with 1 (> 1: the daemon serves concurrent
// clients faster than one at a time). The only accepted error is the missing sequence's
// NOT_FOUND; anything else fails the benchmark.
#include <chrono>
#include <cmath>
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

absl::StatusOr<SequencePayload> MakePayload(const SoakBenchConfig& config, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  SequencePayload p;
  const int32_t tokens = config.tokens_per_block;
  for (int32_t h = 0; h < kKvHeads; ++h) {
    v1::HeadIndex index;
    index.set_layer(0);
    index.set_kv_head(h);
    for (int32_t c = 0; c < config.clusters_per_head; ++c) {
      std::vector<float> keys(static_cast<size_t>(tokens) * kHeadDim);
      std::vector<float> values(keys.size());
      for (float& x : keys) x = normal(rng);
      for (float& x : values) x = normal(rng);
      std::vector<int32_t> positions(static_cast<size_t>(tokens));
      for (int32_t i = 0; i < tokens; ++i) positions[i] = c * tokens + i;
      ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                       storage::EncodeClusterBlock(
                           positions, ConstMatrixView(keys.data(), tokens, kHeadDim),
                           ConstMatrixView(values.data(), tokens, kHeadDim), DType::kFloat16));
      v1::ClusterBlock block;
      block.mutable_id()->set_layer(0);
      block.mutable_id()->set_kv_head(h);
      block.mutable_id()->set_cluster(c);
      block.set_num_tokens(tokens);
      block.set_data(bytes.data(), bytes.size());
      p.block_bytes = static_cast<int64_t>(bytes.size());
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
      : tenant_(std::move(tenant)), timeout_s_(timeout_s) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per client
    stub_ = v1::KvCache::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }

  // One loop over a fresh sequence; appends each call's latency to `out`.
  absl::Status Iteration(const std::string& id, const SequencePayload& p, PhaseResult& out) {
    v1::OpenSequenceRequest open;
    open.set_sequence_id(id);
    v1::KvLayout* layout = open.mutable_layout();
    layout->set_num_layers(1);
    layout->set_num_q_heads(kQHeads);
    layout->set_num_kv_heads(kKvHeads);
    layout->set_head_dim(kHeadDim);
    layout->set_dtype(v1::DTYPE_FP16);
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
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
