// `clusterkv_bench fetch`: recall of host-tier cluster blocks from a real clusterkvd (DESIGN.md
// sections 5 and 9) against the machine's ceiling, in one process:
//   grpc_fetch        client::Connection::FetchClusters of `clusters_per_request` random
//                     clusters (seeded) per request over the daemon's Unix socket, each block
//                     copied into a destination ring as the client's device cache does.
//   grpc_minimal      what gRPC itself streams here (grpc_minimal.h): the same requests from a
//                     minimal raw-bytes service in its own process on a Unix socket, serving
//                     the same bytes from a pre-built pool as slices (no copy, no protobuf), in
//                     the daemon's message grouping; the client copies each block into the same
//                     ring. grpc_fetch_vs_minimal is grpc_fetch against it (baseline
//                     grpc_minimal): how much of gRPC's own bandwidth FetchClusters keeps. The
//                     two take turns request by request within each pass, so load from
//                     elsewhere on the machine falls on both alike.
//   memcpy_cold       the baseline: the same requests as plain memcpy of the same bytes from a
//                     source spread over --fetch_cold_bytes into the same destination ring.
//   memcpy_stream     the same copies with StreamCopy (core/stream_copy.h: non-temporal
//                     stores), the copy the daemon makes into a same-host client's region;
//                     shows how much of the ucx row's figure is the copy itself.
//   ucx               clusterkv's UCX data plane (client/ucx_transport.h): FetchInto of the
//                     same requests; the daemon writes each block's keys+values straight
//                     into a UCP_MEM_MAP_ALLOCATE'd destination ring of the client (no client
//                     copy): a StreamCopy into the ring mapped with ucp_rkey_ptr on the same
//                     host, ucp_put_nbx otherwise. GB/s counts the keys+values bytes moved
//                     (positions are skipped).
//   ucx_perftest_put  UCX's own ucp_put_bw between two processes on loopback (shared memory),
//                     the peer figure for the UCX data path.
// Rows are bandwidths (ratio = value / memcpy_cold, > 1 better); p50/p99 are per request.
// Every block stays in the host tier (checked with the daemon's Stats).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/connection.h"
#if defined(CLUSTERKV_WITH_UCX)
#include "client/ucx_transport.h"
#include "core/ucx/ucx_version.h"
#endif
#include "clusterkv/v1/kvcache.pb.h"
#include "core/kv_layout.h"
#include "core/status_macros.h"
#include "core/stream_copy.h"
#include "storage/cluster_block.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_bench/bench_daemon.h"
#include "tools/clusterkv_bench/bench_report.h"
#include "tools/clusterkv_bench/grpc_minimal.h"
#include "tools/clusterkv_bench/ucx_perftest.h"

namespace clusterkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kHeadDim = 128;
constexpr DType kDType = DType::kFloat16;
constexpr double kGB = 1e9;
constexpr int64_t kPutCallBytes = int64_t{64} << 20;    // blocks per PutClusters stream
constexpr int64_t kPutMessageBytes = int64_t{4} << 20;  // blocks per stream message
constexpr int64_t kMinRequests = 8;
constexpr int64_t kMaxUcxIterations = 200000;
// The daemon's grouping of a FetchClusters answer (server::HandlerOptions::fetch_message_bytes,
// which clusterkvd leaves at its default); grpc_minimal groups its messages the same way.
constexpr int64_t kDaemonFetchMessageBytes = int64_t{4} << 20;
constexpr int kMaxMessageBytes = 64 << 20;  // client::ConnectionOptions and clusterkvd default

// One block size of the run.
struct BlockShape {
  int64_t target = 0;
  int32_t tokens = 0;
  int64_t bytes = 0;  // ClusterBlockBytes(tokens, 128, fp16) <= target
  int32_t layer = 0;  // each size lives in its own layer of the sequence
  int64_t stored = 0;
};

struct Series {
  std::vector<double> request_us;  // every request of every timed pass
  std::vector<double> pass_gbps;
  // CPU time per request of this (client) process and of the serving process, where measured
  // (InterleavedPass): what a request costs whatever else runs on the machine.
  std::vector<double> client_cpu_us;
  std::vector<double> server_cpu_us;
};

// CPU time consumed so far by the process whose CPU-time clock is `clock`, in microseconds.
double CpuUs(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0.0;
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) * 1e-3;
}

// The request sequence of one pass: `requests` x `per_request` distinct cluster ids, seeded.
std::vector<std::vector<int32_t>> RequestIds(int64_t requests, int32_t per_request,
                                             int64_t stored, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, stored - 1);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(requests));
  for (std::vector<int32_t>& ids : out) {
    while (static_cast<int32_t>(ids.size()) < per_request) {
      const auto id = static_cast<int32_t>(pick(rng));
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
  }
  return out;
}

// Times request(r) for every r; adds the pass to `out` unless null (warmup).
absl::Status TimedPass(int64_t requests, int64_t bytes_per_request,
                       const std::function<absl::Status(int64_t)>& request, Series* out) {
  std::vector<double> us;
  us.reserve(static_cast<size_t>(requests));
  const Clock::time_point start = Clock::now();
  for (int64_t r = 0; r < requests; ++r) {
    const Clock::time_point t0 = Clock::now();
    RETURN_IF_ERROR(request(r));
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double total_us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  if (out != nullptr) {
    out->request_us.insert(out->request_us.end(), us.begin(), us.end());
    out->pass_gbps.push_back(static_cast<double>(requests * bytes_per_request) /
                             (total_us * 1e-6) / kGB);
  }
  return absl::OkStatus();
}

// Times each of `variants` on every request r, the variants taking turns (in alternating order)
// request by request; variant v's pass is requests * bytes_per_request over the sum of its own
// request times. Also records each request's CPU time of this process and of the process that
// serves variant v (its CPU-time clock servers[v]). Adds each pass to out[v] unless that is
// null (warmup).
absl::Status InterleavedPass(int64_t requests, int64_t bytes_per_request,
                             const std::vector<std::function<absl::Status(int64_t)>>& variants,
                             const std::vector<clockid_t>& servers,
                             const std::vector<Series*>& out) {
  const size_t n = variants.size();
  std::vector<Series> pass(n);
  std::vector<double> total_us(n, 0.0);
  for (int64_t r = 0; r < requests; ++r) {
    for (size_t i = 0; i < n; ++i) {
      const size_t v = (r % 2 == 0) ? i : n - 1 - i;
      const double client0 = CpuUs(CLOCK_PROCESS_CPUTIME_ID);
      const double server0 = CpuUs(servers[v]);
      const Clock::time_point t0 = Clock::now();
      RETURN_IF_ERROR(variants[v](r));
      const double t = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      pass[v].request_us.push_back(t);
      pass[v].client_cpu_us.push_back(CpuUs(CLOCK_PROCESS_CPUTIME_ID) - client0);
      pass[v].server_cpu_us.push_back(CpuUs(servers[v]) - server0);
      total_us[v] += t;
    }
  }
  for (size_t v = 0; v < n; ++v) {
    if (out[v] == nullptr) continue;
    auto append = [](std::vector<double>& to, const std::vector<double>& from) {
      to.insert(to.end(), from.begin(), from.end());
    };
    append(out[v]->request_us, pass[v].request_us);
    append(out[v]->client_cpu_us, pass[v].client_cpu_us);
    append(out[v]->server_cpu_us, pass[v].server_cpu_us);
    out[v]->pass_gbps.push_back(static_cast<double>(requests * bytes_per_request) /
                                (total_us[v] * 1e-6) / kGB);
  }
  return absl::OkStatus();
}

// The CPU-time clock of process `pid` (clock_getcpuclockid). Internal when there is none.
absl::StatusOr<clockid_t> ProcessCpuClock(pid_t pid) {
  clockid_t clock;
  if (pid <= 0 || clock_getcpuclockid(pid, &clock) != 0) {
    return absl::InternalError(absl::StrCat("fetch: no CPU-time clock for process ", pid));
  }
  return clock;
}

// Mean of `v` (0 when empty).
double Mean(const std::vector<double>& v) {
  double sum = 0.0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

absl::Status ValidateConfig(const FetchBenchConfig& c) {
  if (c.block_bytes.empty() || c.clusters_per_request < 1 || c.fetch_bytes < 1 ||
      c.host_capacity_mib < 1 || c.call_timeout_s <= 0 || c.ucx_timeout_s <= 0) {
    return absl::InvalidArgumentError(
        "fetch: need block sizes, clusters_per_request >= 1, positive fetch bytes, capacity "
        "and timeouts");
  }
  for (int64_t b : c.block_bytes) {
    if (b < static_cast<int64_t>(storage::ClusterBlockBytes(1, kHeadDim, kDType))) {
      return absl::InvalidArgumentError(absl::StrCat("fetch: block size ", b, " below one token"));
    }
    if (c.cold_bytes < 2 * b * c.clusters_per_request) {
      return absl::InvalidArgumentError(
          "fetch: cold_bytes must hold 2 x clusters_per_request blocks of every size");
    }
  }
  return absl::OkStatus();
}

std::vector<BlockShape> Shapes(const FetchBenchConfig& cfg) {
  const int64_t per_token = static_cast<int64_t>(storage::ClusterBlockBytes(1, kHeadDim, kDType));
  std::vector<BlockShape> shapes;
  for (int64_t target : cfg.block_bytes) {
    BlockShape s;
    s.target = target;
    s.tokens = static_cast<int32_t>(std::max<int64_t>(1, target / per_token));
    s.bytes = static_cast<int64_t>(storage::ClusterBlockBytes(s.tokens, kHeadDim, kDType));
    s.layer = static_cast<int32_t>(shapes.size());
    s.stored = std::max<int64_t>(cfg.clusters_per_request, cfg.cold_bytes / s.bytes);
    shapes.push_back(s);
  }
  return shapes;
}

// Stores every cluster of `shape` (block j = pool slot j) in PutClusters streams.
absl::Status PutBlocks(client::Connection& conn, const std::string& sequence,
                       const BlockShape& shape, Ring& pool) {
  int64_t next = 0;
  while (next < shape.stored) {
    std::vector<v1::PutClustersRequest> messages;
    int64_t call_bytes = 0, message_bytes = 0, blocks = 0;
    for (; next < shape.stored && call_bytes < kPutCallBytes; ++next, ++blocks) {
      if (messages.empty() || message_bytes + shape.bytes > kPutMessageBytes) {
        messages.emplace_back().set_sequence_id(sequence);
        message_bytes = 0;
      }
      v1::ClusterBlock* block = messages.back().add_blocks();
      block->mutable_id()->set_layer(shape.layer);
      block->mutable_id()->set_kv_head(0);
      block->mutable_id()->set_cluster(static_cast<int32_t>(next));
      block->set_num_tokens(shape.tokens);
      block->set_data(pool.Slot(next, shape.bytes), static_cast<size_t>(shape.bytes));
      message_bytes += shape.bytes;
      call_bytes += shape.bytes;
    }
    ASSIGN_OR_RETURN(v1::PutClustersResponse r, conn.PutClusters(messages));
    if (r.blocks_stored() != blocks) {
      return absl::InternalError(
          absl::StrCat("fetch: the daemon stored ", r.blocks_stored(), " of ", blocks, " blocks"));
    }
  }
  return absl::OkStatus();
}

ResultRow BandwidthRow(std::string variant, Json params, const Series& ours, const Series& base) {
  ResultRow row = HigherBetterRow(std::move(variant), std::move(params),
                                  Percentile(ours.pass_gbps, 0.5), "GB/s", "memcpy_cold",
                                  Percentile(base.pass_gbps, 0.5));
  row.p50_us = Percentile(ours.request_us, 0.5);
  row.p99_us = Percentile(ours.request_us, 0.99);
  row.extra["p50_p99_of"] = "one request";
  row.extra["baseline_p50_us"] = Percentile(base.request_us, 0.5);
  row.extra["baseline_p99_us"] = Percentile(base.request_us, 0.99);
  row.extra["repeats"] = ours.pass_gbps.size();
  return row;
}

// Everything one block size needs.
struct Context {
  const BenchOptions& options;
  client::Connection& conn;
  const std::string& sequence;
  Ring& pool;  // the stored blocks' bytes and the memcpy source
  Ring& ring;  // destination of recalls and of the memcpy baseline
  Report& report;
  const GrpcMinimalClient& minimal;  // the grpc_minimal row's client
  clockid_t daemon_cpu;              // CPU-time clocks of the daemon and the minimal server
  clockid_t minimal_cpu;
  client::DataPlane* ucx = nullptr;  // the UCX data plane (null: no ucx row)
  uint8_t* ucx_base = nullptr;       // its registered region (the ucx row's destination ring)
  int64_t ucx_bytes = 0;
  absl::Duration ucx_fetch_spin = absl::ZeroDuration();  // the client's completion spin (UcxTransportOptions)
};

// The `ucx` row: the same seeded requests as FetchInto into the registered region.
absl::Status MeasureUcx(Context& ctx, const BlockShape& shape, const Series& copy,
                        const Json& params) {
  const FetchBenchConfig& cfg = ctx.options.fetch;
  const int32_t per = cfg.clusters_per_request;
  const int64_t positions = shape.tokens * static_cast<int64_t>(sizeof(int32_t));
  const int64_t payload = shape.bytes - positions;
  const int64_t slots = ctx.ucx_bytes / payload;
  if (slots < per) return absl::InternalError("fetch: the UCX region is too small");
  const int64_t requests = std::max<int64_t>(kMinRequests, cfg.fetch_bytes / (per * shape.bytes));
  Series ucx;
  int64_t slot = 0;
  for (int pass = 0; pass < ctx.options.warmup + ctx.options.repeats; ++pass) {
    const std::vector<std::vector<int32_t>> ids =
        RequestIds(requests, per, shape.stored, ctx.options.seed * 131 + shape.layer * 7 + pass);
    int64_t last_first_slot = 0;
    RETURN_IF_ERROR(TimedPass(
        requests, per * payload,
        [&](int64_t r) -> absl::Status {
          std::vector<client::DirectFetch> blocks;
          blocks.reserve(per);
          last_first_slot = slot;
          for (int32_t id : ids[r]) {
            blocks.push_back(client::DirectFetch{ClusterId{HeadId{shape.layer, 0}, id},
                                                 static_cast<uint64_t>((slot++ % slots) * payload),
                                                 shape.tokens});
          }
          ASSIGN_OR_RETURN(std::vector<client::DirectFetchResult> results,
                           ctx.ucx->FetchInto(ctx.sequence, blocks));
          for (const client::DirectFetchResult& b : results) RETURN_IF_ERROR(b.status);
          return absl::OkStatus();
        },
        pass >= ctx.options.warmup ? &ucx : nullptr));
    for (int32_t k = 0; k < per; ++k) {  // the last request landed bit-exact
      const uint8_t* got = ctx.ucx_base + ((last_first_slot + k) % slots) * payload;
      const uint8_t* want = ctx.pool.Slot(ids.back()[k], shape.bytes) + positions;
      if (std::memcmp(got, want, static_cast<size_t>(payload)) != 0) {
        return absl::DataLossError("fetch: a UCX-recalled block differs from the stored bytes");
      }
    }
  }
  ResultRow row = BandwidthRow("ucx", params, ucx, copy);
  row.extra["transport"] =
      "UCX active-message request + daemon ucp_put into the client's UCP_MEM_MAP_ALLOCATE ring";
  row.extra["bytes_counted"] = "keys+values written per block (int32 positions skipped)";
  // Client and daemon are this build's, so they load the same UCX (Debian's or the wheel's).
#if defined(CLUSTERKV_WITH_UCX)
  row.extra["ucx_version"] = ucx::RuntimeVersion();
#endif
  row.extra["waiting"] = absl::StrCat(
      "defaults: the client thread progresses its worker while it waits (fetch_spin ",
      absl::FormatDuration(ctx.ucx_fetch_spin),
      "); the daemon's progress thread polls after each event (--ucx_busy_poll_us)");
  ctx.report.Add(std::move(row));
  return absl::OkStatus();
}

absl::Status MeasureShape(Context& ctx, const BlockShape& shape) {
  const FetchBenchConfig& cfg = ctx.options.fetch;
  const int32_t per = cfg.clusters_per_request;
  const int64_t request_bytes = per * shape.bytes;
  const int64_t requests = std::max<int64_t>(kMinRequests, cfg.fetch_bytes / request_bytes);
  std::cerr << "fetch: " << SizeText(shape.bytes) << " blocks (" << shape.tokens << " tokens), "
            << shape.stored << " stored, " << requests << " requests of " << per << "\n";
  Series grpc, minimal, copy, stream;
  int64_t slot = 0;  // next destination slot, advancing through the ring
  for (int pass = 0; pass < ctx.options.warmup + ctx.options.repeats; ++pass) {
    const bool timed = pass >= ctx.options.warmup;
    const std::vector<std::vector<int32_t>> ids =
        RequestIds(requests, per, shape.stored, ctx.options.seed * 131 + shape.layer * 7 + pass);
    // grpc_fetch and grpc_minimal take turns request by request, so that whatever else runs on
    // the machine slows both alike and their ratio holds.
    int64_t grpc_first_slot = 0, minimal_first_slot = 0;  // of the last request of each
    auto grpc_request = [&](int64_t r) -> absl::Status {
      v1::FetchClustersRequest req;
      req.set_sequence_id(ctx.sequence);
      for (int32_t id : ids[r]) {
        v1::ClusterRef* ref = req.add_clusters();
        ref->set_layer(shape.layer);
        ref->set_kv_head(0);
        ref->set_cluster(id);
      }
      int32_t got = 0;
      RETURN_IF_ERROR(ctx.conn.FetchClusters(req, [&](const v1::ClusterBlock& b) {
        if (static_cast<int64_t>(b.data().size()) != shape.bytes || got >= per) {
          return absl::DataLossError("fetch: unexpected block size or count");
        }
        std::memcpy(ctx.ring.Slot(slot + got, shape.bytes), b.data().data(),
                    static_cast<size_t>(shape.bytes));
        ++got;
        return absl::OkStatus();
      }));
      if (got != per) return absl::DataLossError("fetch: blocks missing from the answer");
      grpc_first_slot = slot;
      slot += per;
      return absl::OkStatus();
    };
    // The same requests from the minimal gRPC stream, into the same ring.
    auto minimal_request = [&](int64_t r) -> absl::Status {
      GrpcMinimalRequest req;
      req.block_bytes = shape.bytes;
      req.message_bytes = kDaemonFetchMessageBytes;
      req.slots.assign(ids[r].begin(), ids[r].end());
      RETURN_IF_ERROR(ctx.minimal.Fetch(
          req, [&](int64_t k) { return ctx.ring.Slot(slot + k, shape.bytes); },
          absl::Seconds(cfg.call_timeout_s)));
      minimal_first_slot = slot;
      slot += per;
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(InterleavedPass(requests, request_bytes, {grpc_request, minimal_request},
                                    {ctx.daemon_cpu, ctx.minimal_cpu},
                                    {timed ? &grpc : nullptr, timed ? &minimal : nullptr}));
    // The last request of each landed bit-exact (the ring holds >= 2 * per slots).
    for (int32_t k = 0; k < per; ++k) {
      const uint8_t* want = ctx.pool.Slot(ids.back()[k], shape.bytes);
      if (std::memcmp(ctx.ring.Slot(grpc_first_slot + k, shape.bytes), want,
                      static_cast<size_t>(shape.bytes)) != 0) {
        return absl::DataLossError("fetch: a recalled block differs from the stored bytes");
      }
      if (std::memcmp(ctx.ring.Slot(minimal_first_slot + k, shape.bytes), want,
                      static_cast<size_t>(shape.bytes)) != 0) {
        return absl::DataLossError("fetch: a grpc_minimal block differs from the pool's bytes");
      }
    }
    // The same requests as local copies of the same bytes: the baseline (memcpy) and the
    // daemon's streaming copy.
    auto copy_pass = [&](void (*copy_fn)(void*, const void*, size_t), Series* into) {
      return TimedPass(
          requests, request_bytes,
          [&](int64_t r) {
            for (int32_t id : ids[r]) {
              copy_fn(ctx.ring.Slot(slot++, shape.bytes), ctx.pool.Slot(id, shape.bytes),
                      static_cast<size_t>(shape.bytes));
            }
            return absl::OkStatus();
          },
          timed ? into : nullptr);
    };
    RETURN_IF_ERROR(copy_pass(
        [](void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }, &copy));
    RETURN_IF_ERROR(copy_pass(&StreamCopy, &stream));
  }
  const std::vector<int64_t> grouping =
      MessageBlockCounts(per, shape.bytes, kDaemonFetchMessageBytes);
  Json params = {{"block_bytes", shape.bytes},
                 {"block_bytes_target", shape.target},
                 {"tokens_per_block", shape.tokens},
                 {"head_dim", kHeadDim},
                 {"kv_dtype", "fp16"},
                 {"clusters_per_request", per},
                 {"requests_per_pass", requests},
                 {"stored_blocks", shape.stored},
                 {"cold_bytes", ctx.ring.bytes()},
                 {"messages_per_request", grouping.size()},
                 {"blocks_per_message", grouping.front()}};
  ResultRow streamed = BandwidthRow("memcpy_stream", params, stream, copy);
  streamed.extra["copy"] = absl::StrCat("StreamCopy (", StreamCopyKind(),
                                        " non-temporal stores), the daemon's same-host copy");
  ctx.report.Add(std::move(streamed));
  const double grpc_gbps = Percentile(grpc.pass_gbps, 0.5);
  const double minimal_gbps = Percentile(minimal.pass_gbps, 0.5);
  // CPU per request of the client and of the serving process, and both per GB moved.
  auto add_cpu = [&](ResultRow& row, const Series& s) {
    const double client = Mean(s.client_cpu_us), server = Mean(s.server_cpu_us);
    row.extra["client_cpu_us_per_request"] = client;
    row.extra["server_cpu_us_per_request"] = server;
    row.extra["cpu_s_per_gb"] =
        (client + server) * 1e-6 / (static_cast<double>(request_bytes) / kGB);
  };
  ResultRow base = BandwidthRow("grpc_minimal", params, minimal, copy);
  add_cpu(base, minimal);
  base.extra["transport"] =
      "minimal raw-bytes gRPC server stream (own process, Unix socket): pre-built pool slices, "
      "no protobuf; the client copies each block from the received slices into the ring";
  ctx.report.Add(std::move(base));
  ResultRow row = BandwidthRow("grpc_fetch", params, grpc, copy);
  row.extra["transport"] = "gRPC FetchClusters over the daemon's Unix socket, host tier";
  row.extra["grpc_minimal_gbps"] = minimal_gbps;
  row.extra["ratio_to_grpc_minimal"] = grpc_gbps / minimal_gbps;
  add_cpu(row, grpc);
  ctx.report.Add(std::move(row));
  ResultRow vs = HigherBetterRow("grpc_fetch_vs_minimal", params, grpc_gbps, "GB/s",
                                 "grpc_minimal", minimal_gbps);
  vs.p50_us = Percentile(grpc.request_us, 0.5);
  vs.p99_us = Percentile(grpc.request_us, 0.99);
  vs.extra["p50_p99_of"] = "one request";
  vs.extra["baseline_p50_us"] = Percentile(minimal.request_us, 0.5);
  vs.extra["baseline_p99_us"] = Percentile(minimal.request_us, 0.99);
  vs.extra["memcpy_cold_gbps"] = Percentile(copy.pass_gbps, 0.5);
  // The same comparison in CPU time (client + server per byte; > 1: grpc_fetch costs less),
  // which load from elsewhere on the machine does not move.
  vs.extra["cpu_ratio_minimal_over_fetch"] =
      (Mean(minimal.client_cpu_us) + Mean(minimal.server_cpu_us)) /
      (Mean(grpc.client_cpu_us) + Mean(grpc.server_cpu_us));
  ctx.report.Add(std::move(vs));
  if (ctx.ucx != nullptr) RETURN_IF_ERROR(MeasureUcx(ctx, shape, copy, params));

  UcxPerftestOptions uo;
  uo.binary = cfg.ucx_perftest;
  uo.transports = cfg.ucx_transports;
  uo.timeout_s = cfg.ucx_timeout_s;
  const int64_t iters =
      std::clamp<int64_t>(cfg.fetch_bytes / shape.bytes, 100, kMaxUcxIterations);
  absl::StatusOr<UcxPerftestResult> ucx = RunUcxPutBandwidth(uo, shape.bytes, iters);
  if (absl::IsNotFound(ucx.status())) {
    std::cerr << "fetch: no ucx_perftest row: " << ucx.status().message() << "\n";
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(ucx.status());
  Json uparams = params;
  uparams.erase("requests_per_pass");
  uparams.erase("stored_blocks");
  uparams.erase("clusters_per_request");
  uparams.erase("messages_per_request");
  uparams.erase("blocks_per_message");
  uparams["iterations"] = ucx->iterations;
  ResultRow u = HigherBetterRow("ucx_perftest_put", std::move(uparams), ucx->bandwidth_gbps,
                                "GB/s", "memcpy_cold", Percentile(copy.pass_gbps, 0.5));
  u.extra["note"] =
      "peer tool, not our code: ucx_perftest ucp_put_bw between two processes on loopback, "
      "one message buffer reused (cache-hot), no request protocol; clusterkv's own UCX fetch "
      "path is the `ucx` row";
  u.extra["ucx_tls"] = cfg.ucx_transports;
  u.extra["overhead_p50_us_per_message"] = ucx->overhead_p50_us;
  u.extra["grpc_fetch_gbps"] = Percentile(grpc.pass_gbps, 0.5);
  ctx.report.Add(std::move(u));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunFetchBench(const BenchOptions& options) {
  const FetchBenchConfig& cfg = options.fetch;
  RETURN_IF_ERROR(ValidateConfig(cfg));
  const std::vector<BlockShape> shapes = Shapes(cfg);
  int64_t stored_bytes = 0;
  for (const BlockShape& s : shapes) stored_bytes += s.stored * s.bytes;
  // Below the daemon's high watermark (0.9) with room for slab rounding.
  const int64_t capacity_mib = std::max<int64_t>(cfg.host_capacity_mib, 2 * (stored_bytes >> 20));
  std::cerr << "fetch: preparing " << SizeText(cfg.cold_bytes) << " of seeded random blocks\n";
  Ring pool(cfg.cold_bytes);
  pool.FillRandom(options.seed);
  Ring ring(cfg.cold_bytes);

  ASSIGN_OR_RETURN(std::unique_ptr<BenchDaemon> daemon,
                   BenchDaemon::Start(options.daemon, "fetch", capacity_mib));
  Report report("fetch");
  {
    client::ConnectionOptions co;
    co.target = daemon->target();
    co.tenant = "bench";
    co.call_timeout = absl::Seconds(cfg.call_timeout_s);
    ASSIGN_OR_RETURN(std::unique_ptr<client::Connection> conn, client::Connection::Create(co));
    const std::string sequence = "fetch-bench";
    v1::OpenSequenceRequest open;
    open.set_sequence_id(sequence);
    v1::KvLayout* layout = open.mutable_layout();
    layout->set_num_layers(static_cast<int32_t>(shapes.size()));
    layout->set_num_q_heads(1);
    layout->set_num_kv_heads(1);
    layout->set_head_dim(kHeadDim);
    layout->set_dtype(v1::DTYPE_FP16);
    RETURN_IF_ERROR(conn->OpenSequence(open).status());
    const Clock::time_point put_start = Clock::now();
    for (const BlockShape& s : shapes) RETURN_IF_ERROR(PutBlocks(*conn, sequence, s, pool));
    std::cerr << "fetch: stored " << SizeText(stored_bytes) << " in "
              << std::chrono::duration<double>(Clock::now() - put_start).count() << " s\n";
    ASSIGN_OR_RETURN(v1::StatsResponse before, conn->Stats());
    if (before.spilled_puts() != 0 || before.evictions() != 0 || before.ssd().blocks() != 0) {
      return absl::InternalError("fetch: blocks left the host tier; raise --fetch_host_mib");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<GrpcMinimalProcess> minimal_server,
                     GrpcMinimalProcess::Start(cfg.grpc_minimal_server, options.daemon.dir,
                                               cfg.cold_bytes, options.seed));
    ASSIGN_OR_RETURN(std::unique_ptr<GrpcMinimalClient> minimal,
                     GrpcMinimalClient::Create(minimal_server->target(), kMaxMessageBytes));
    ASSIGN_OR_RETURN(const clockid_t daemon_cpu, ProcessCpuClock(daemon->pid()));
    ASSIGN_OR_RETURN(const clockid_t minimal_cpu, ProcessCpuClock(minimal_server->pid()));
    Context ctx{options, *conn, sequence, pool, ring, report, *minimal, daemon_cpu, minimal_cpu};
#if defined(CLUSTERKV_WITH_UCX)
    client::UcxTransportOptions uo;
    uo.region_bytes = static_cast<size_t>(cfg.cold_bytes);
    uo.fetch_timeout = absl::Seconds(cfg.call_timeout_s);
    ASSIGN_OR_RETURN(std::unique_ptr<client::UcxTransport> ucx,
                     client::UcxTransport::Create(conn.get(), uo));
    if (absl::Status s = ucx->Connect(); s.ok()) {
      ctx.ucx = ucx.get();
      ctx.ucx_base = ucx->region_base();
      ctx.ucx_bytes = static_cast<int64_t>(ucx->region_bytes());
      ctx.ucx_fetch_spin = uo.fetch_spin;
    } else {
      std::cerr << "fetch: no ucx row: " << s.message() << "\n";
    }
#endif
    for (const BlockShape& s : shapes) RETURN_IF_ERROR(MeasureShape(ctx, s));
    ASSIGN_OR_RETURN(v1::StatsResponse after, conn->Stats());
    if (after.evictions() != 0 || after.promotions() != 0) {
      return absl::InternalError("fetch: the daemon evicted or promoted during the run");
    }
    v1::CloseSequenceRequest close;
    close.set_sequence_id(sequence);
    close.set_drop(true);
    RETURN_IF_ERROR(conn->CloseSequence(close));
  }
  RETURN_IF_ERROR(daemon->Stop());
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
