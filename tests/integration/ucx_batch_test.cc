// UcxTransport::FetchBatchInto against a real clusterkvd: several sequences' recalls in one
// batch request and one completion. Bit-exact slots and one request counted in /metrics, a
// sequence of another tenant NOT_FOUND with its slots untouched while the others are served, a
// missing block or sequence failing alone, results identical to FetchInto per sequence and to
// DataPlane's default (one FetchInto per sequence), sequences resolved on the worker pool
// (after a restart), a batch beyond the daemon's limit refused as a whole, batches beyond the
// protocol's ceiling split, and a daemon restart survived.
#include <httplib.h>

#include <cstring>
#include <map>
#include <regex>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "client/sequence.h"
#include "gtest/gtest.h"
#include "proto/ucx_wire.h"
#include "tests/integration/ucx_test_util.h"

namespace clusterkv {
namespace {

using ::clusterkv::testing::DaemonProcess;
using ::clusterkv::testing::DaemonProcessOptions;
using namespace ::clusterkv::testing::ucx_test;  // NOLINT: the shared test vocabulary

// Blocks recalled per sequence; sequence s's block i goes to slot s * kPerSequence + i.
constexpr int kPerSequence = 8;

uint64_t SlotOffset(int sequence) { return uint64_t{kPerSequence} * sequence * PayloadSize(); }

std::string SequenceName(int s) { return absl::StrCat("seq-", s); }

// A daemon with its metrics on an ephemeral port (and `flags`), started.
class BatchDaemon {
 public:
  explicit BatchDaemon(std::vector<std::string> flags = {}) {
    DaemonProcessOptions options;
    options.flags = std::move(flags);
    options.flags.push_back("--metrics_address=127.0.0.1:0");
    daemon_ = std::make_unique<DaemonProcess>(options);
  }

  absl::Status Start() {
    if (absl::Status s = daemon_->Start(); !s.ok()) return s;
    std::smatch m;
    const std::string out = daemon_->output();
    if (!std::regex_search(out, m, std::regex("metrics on http://127\\.0\\.0\\.1:(\\d+)"))) {
      return absl::InternalError("no metrics address in the daemon's output:\n" + out);
    }
    port_ = std::stoi(m[1]);
    return absl::OkStatus();
  }

  // The value of one unlabelled series (or "name{labels}") of /metrics; -1 when absent.
  double Metric(const std::string& series) {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(10, 0);
    auto result = client.Get("/metrics");
    if (!result) return -1;
    for (absl::string_view line : absl::StrSplit(result->body, '\n')) {
      if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
      double v = 0;
      return absl::SimpleAtod(line, &v) ? v : -1;
    }
    return -1;
  }

  DaemonProcess& process() { return *daemon_; }
  std::string target() const { return daemon_->target(); }

 private:
  std::unique_ptr<DaemonProcess> daemon_;
  int port_ = 0;
};

// Requests, sequences and blocks the daemon has counted on the UCX data plane.
struct Counts {
  double requests = 0;
  double sequences = 0;
  double blocks = 0;
};

Counts Count(BatchDaemon& daemon) {
  return Counts{daemon.Metric("clusterkv_ucx_requests_total"),
                daemon.Metric("clusterkv_ucx_request_sequences_total"),
                daemon.Metric("clusterkv_fetch_block_duration_seconds_count{transport=\"ucx\"}")};
}

// The batch part of each of `requests` (views into them).
std::vector<client::SequenceFetch> Batch(
    const std::vector<std::string>& ids,
    const std::vector<std::vector<client::DirectFetch>>& requests) {
  std::vector<client::SequenceFetch> batch;
  for (size_t s = 0; s < ids.size(); ++s)
    batch.push_back(client::SequenceFetch{ids[s], requests[s]});
  return batch;
}

// What a recall answered, comparable across calls: each block's code, tokens and bytes.
std::string Describe(const client::SequenceFetchResult& result) {
  if (!result.ok())
    return absl::StrCat("sequence ", absl::StatusCodeToString(result.status().code()));
  std::string out = "ok";
  for (const client::DirectFetchResult& r : *result) {
    absl::StrAppend(&out, " [", absl::StatusCodeToString(r.status.code()), " ", r.num_tokens, " ",
                    r.bytes, "]");
  }
  return out;
}

TEST(UcxBatchTest, EightSequencesAreOneRequestAndLandBitExact) {
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  std::vector<std::string> ids;
  std::vector<std::vector<client::DirectFetch>> requests;
  for (int s = 0; s < 8; ++s) {
    ids.push_back(SequenceName(s));
    ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", ids.back()).ok());
    requests.push_back(Requests(kPerSequence, SlotOffset(s)));
  }
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  ASSERT_TRUE(t.Connect().ok());

  const Counts before = Count(daemon);
  ASSERT_GE(before.requests, 0) << "clusterkv_ucx_requests_total is not exported";
  std::memset(t.region_base(), 0, t.region_bytes());
  auto results = t.FetchBatchInto(Batch(ids, requests));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 8u);
  for (int s = 0; s < 8; ++s) {
    const client::SequenceFetchResult& r = (*results)[s];
    ASSERT_TRUE(r.ok()) << s << ": " << r.status();
    ASSERT_EQ(r->size(), size_t{kPerSequence});
    for (const client::DirectFetchResult& b : *r) {
      EXPECT_TRUE(b.status.ok()) << b.status;
      EXPECT_EQ(b.num_tokens, kTokens);
      EXPECT_EQ(b.bytes, PayloadSize());
    }
    EXPECT_TRUE(CheckSlots(t, "tenant-a", ids[s], kPerSequence, SlotOffset(s)).ok()) << s;
  }
  const Counts after = Count(daemon);
  EXPECT_EQ(after.requests - before.requests, 1);
  EXPECT_EQ(after.sequences - before.sequences, 8);
  EXPECT_EQ(after.blocks - before.blocks, 8 * kPerSequence);

  // An empty batch and sequences without blocks ask the daemon nothing.
  auto empty = t.FetchBatchInto({});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  const std::vector<std::string> two = {"seq-0", "no-such-sequence"};
  auto blockless = t.FetchBatchInto(Batch(two, {{}, {}}));
  ASSERT_TRUE(blockless.ok()) << blockless.status();
  ASSERT_EQ(blockless->size(), 2u);
  for (const client::SequenceFetchResult& r : *blockless) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->empty());
  }
  EXPECT_EQ(Count(daemon).requests, after.requests);
}

TEST(UcxBatchTest, AnotherTenantsSequenceIsNotFoundAndItsSlotsStayUntouched) {
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "secret").ok());
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "shared-name").ok());
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-b", "mine").ok());
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-b", "shared-name").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-b");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  const std::vector<std::string> ids = {"mine", "secret", "shared-name"};
  const std::vector<std::vector<client::DirectFetch>> requests = {
      Requests(kPerSequence, SlotOffset(0)), Requests(kPerSequence, SlotOffset(1)),
      Requests(kPerSequence, SlotOffset(2))};
  std::memset(t.region_base(), 0, t.region_bytes());
  auto results = t.FetchBatchInto(Batch(ids, requests));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[1].status().code(), absl::StatusCode::kNotFound) << (*results)[1].status();
  for (uint64_t i = SlotOffset(1); i < SlotOffset(2); ++i) {
    ASSERT_EQ(t.region_base()[i], 0) << "byte " << i << " of tenant-a's sequence was written";
  }
  // The caller's own sequences are served, "shared-name" from its own tenant.
  for (int s : {0, 2}) {
    ASSERT_TRUE((*results)[s].ok()) << (*results)[s].status();
    for (const client::DirectFetchResult& b : *(*results)[s])
      EXPECT_TRUE(b.status.ok()) << b.status;
    EXPECT_TRUE(CheckSlots(t, "tenant-b", ids[s], kPerSequence, SlotOffset(s)).ok()) << s;
  }
}

TEST(UcxBatchTest, MissingBlockOrSequenceFailsAloneAndMatchesFetchInto) {
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  for (int s = 0; s < 3; ++s)
    ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", SequenceName(s)).ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;

  // seq-0: all good; seq-1: a missing cluster, a wrong token count and a slot past the region;
  // "gone": no such sequence; seq-2: no blocks asked; seq-2 again: good.
  const std::vector<std::string> ids = {"seq-0", "seq-1", "gone", "seq-2", "seq-2"};
  std::vector<std::vector<client::DirectFetch>> requests = {Requests(kPerSequence, SlotOffset(0)),
                                                            Requests(kPerSequence, SlotOffset(1)),
                                                            Requests(kPerSequence, SlotOffset(2)),
                                                            {},
                                                            Requests(kPerSequence, SlotOffset(3))};
  requests[1][2].id.cluster = kClusters + 5;
  requests[1][4].expected_tokens = kTokens - 1;
  requests[1][6].region_offset = t.region_bytes() - 16;
  const std::vector<client::SequenceFetch> batch = Batch(ids, requests);

  auto run = [&](auto&& recall) {
    std::memset(t.region_base(), 0, t.region_bytes());
    std::vector<std::string> described;
    for (const client::SequenceFetchResult& r : recall()) described.push_back(Describe(r));
    return std::make_pair(
        described, std::vector<uint8_t>(t.region_base(), t.region_base() + t.region_bytes()));
  };
  const Counts before = Count(daemon);
  const auto batched = run([&] {
    auto results = t.FetchBatchInto(batch);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *results : std::vector<client::SequenceFetchResult>();
  });
  EXPECT_EQ(Count(daemon).requests - before.requests, 1);
  ASSERT_EQ(batched.first.size(), 5u);
  const std::string ok_block = absl::StrCat(" [OK ", kTokens, " ", PayloadSize(), "]");
  std::string all_ok = "ok";
  for (int i = 0; i < kPerSequence; ++i) all_ok += ok_block;
  EXPECT_EQ(batched.first[0], all_ok);
  EXPECT_EQ(batched.first[2], "sequence NOT_FOUND");
  EXPECT_EQ(batched.first[3], "ok");
  EXPECT_EQ(batched.first[4], all_ok);
  auto one = t.FetchBatchInto(absl::MakeConstSpan(batch).subspan(1, 1));
  ASSERT_TRUE(one.ok()) << one.status();
  const client::SequenceFetchResult& seq1 = (*one)[0];
  ASSERT_TRUE(seq1.ok()) << seq1.status();
  EXPECT_EQ((*seq1)[2].status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*seq1)[4].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*seq1)[6].status.code(), absl::StatusCode::kInvalidArgument);
  for (int i : {0, 1, 3, 5, 7}) EXPECT_TRUE((*seq1)[i].status.ok()) << i;
  EXPECT_TRUE(CheckSlots(t, "tenant-a", "seq-0", kPerSequence, SlotOffset(0)).ok());

  // The same recalls one FetchInto per sequence, and through DataPlane's default (which is
  // exactly that): the same results and the same region bytes.
  const auto per_sequence = run([&] {
    std::vector<client::SequenceFetchResult> out;
    for (const client::SequenceFetch& part : batch) {
      out.push_back(t.FetchInto(part.sequence_id, part.blocks));
    }
    return out;
  });
  const auto by_default = run([&] {
    auto results = t.DataPlane::FetchBatchInto(batch);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *results : std::vector<client::SequenceFetchResult>();
  });
  EXPECT_EQ(batched.first, per_sequence.first);
  EXPECT_EQ(batched.first, by_default.first);
  EXPECT_TRUE(batched.second == per_sequence.second) << "the region differs from FetchInto's";
  EXPECT_TRUE(batched.second == by_default.second) << "the region differs from the default's";
}

TEST(UcxBatchTest, SequencesResolvedOnTheWorkerPoolAreBitExact) {
  // After a restart no sequence is loaded and every block is on the SSD only: each sequence of
  // the batch is resolved by its own pool task. One of them is first recalled alone, so the
  // batch mixes a loaded, host-resident sequence with ones that need I/O.
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  std::vector<std::string> ids;
  std::vector<std::vector<client::DirectFetch>> requests;
  for (int s = 0; s < 4; ++s) {
    ids.push_back(SequenceName(s));
    ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", ids.back()).ok());
    requests.push_back(Requests(kPerSequence, SlotOffset(s)));
  }
  ASSERT_TRUE(daemon.process().Stop().ok());
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  auto warm = t.FetchInto(ids[2], requests[2]);
  ASSERT_TRUE(warm.ok()) << warm.status();

  const Counts before = Count(daemon);
  std::memset(t.region_base(), 0, t.region_bytes());
  auto results = t.FetchBatchInto(Batch(ids, requests));
  ASSERT_TRUE(results.ok()) << results.status();
  for (int s = 0; s < 4; ++s) {
    ASSERT_TRUE((*results)[s].ok()) << s << ": " << (*results)[s].status();
    for (const client::DirectFetchResult& b : *(*results)[s])
      EXPECT_TRUE(b.status.ok()) << b.status;
    EXPECT_TRUE(CheckSlots(t, "tenant-a", ids[s], kPerSequence, SlotOffset(s)).ok()) << s;
  }
  EXPECT_EQ(Count(daemon).requests - before.requests, 1);
}

TEST(UcxBatchTest, BatchBeyondTheDaemonsClusterLimitIsRefusedAsAWhole) {
  // 3 sequences x 8 blocks = 24 blocks, over --max_fetch_clusters: the daemon answers the batch
  // INVALID_ARGUMENT at once (no timeout) and the session keeps serving.
  BatchDaemon daemon({"--max_fetch_clusters=16"});
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  std::vector<std::string> ids;
  std::vector<std::vector<client::DirectFetch>> requests;
  for (int s = 0; s < 3; ++s) {
    ids.push_back(SequenceName(s));
    ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", ids.back()).ok());
    requests.push_back(Requests(kPerSequence, SlotOffset(s)));
  }
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a", absl::Seconds(60));
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  auto refused = t.FetchBatchInto(Batch(ids, requests));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  const uint64_t session = t.session_id();
  EXPECT_NE(session, 0u);
  auto two = t.FetchBatchInto(Batch({ids[0], ids[1]}, {requests[0], requests[1]}));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_TRUE(CheckSlots(t, "tenant-a", ids[1], kPerSequence, SlotOffset(1)).ok());
  EXPECT_EQ(t.session_id(), session);
}

TEST(UcxBatchTest, BatchBeyondTheProtocolCeilingGoesOutInTwoRequests) {
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "real").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  // kMaxBatchSequences missing sequences, then a real one: the real one is in the second request.
  const size_t n = wire::kMaxBatchSequences + 1;
  std::vector<std::string> ids;
  for (size_t s = 0; s + 1 < n; ++s) ids.push_back(absl::StrCat("missing-", s));
  ids.push_back("real");
  const std::vector<client::DirectFetch> one_block = Requests(1);
  std::vector<client::SequenceFetch> batch;
  for (const std::string& id : ids) batch.push_back(client::SequenceFetch{id, one_block});
  const Counts before = Count(daemon);
  std::memset(t.region_base(), 0, t.region_bytes());
  auto results = t.FetchBatchInto(batch);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), n);
  for (size_t s = 0; s + 1 < n; ++s) {
    ASSERT_EQ((*results)[s].status().code(), absl::StatusCode::kNotFound) << s;
  }
  ASSERT_TRUE(results->back().ok()) << results->back().status();
  EXPECT_TRUE(CheckSlots(t, "tenant-a", "real", 1).ok());
  const Counts after = Count(daemon);
  EXPECT_EQ(after.requests - before.requests, 2);
  EXPECT_EQ(after.sequences - before.sequences, static_cast<double>(n));
}

TEST(UcxBatchTest, DaemonRestartIsSurvivedByFallbackThenReconnect) {
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  const std::vector<std::string> ids = {"seq-0", "seq-1"};
  for (const std::string& id : ids) ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", id).ok());
  const std::vector<std::vector<client::DirectFetch>> requests = {
      Requests(kPerSequence, SlotOffset(0)), Requests(kPerSequence, SlotOffset(1))};
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a", absl::Seconds(2));
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  ASSERT_TRUE(t.FetchBatchInto(Batch(ids, requests)).ok());

  ASSERT_TRUE(daemon.process().Stop().ok());
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  // The old session is dead: a batch either fails as a whole with a fall-back code (the caller
  // then uses gRPC) or has already reconnected; a later one reconnects.
  bool served = false;
  for (int attempt = 0; attempt < 3 && !served; ++attempt) {
    std::memset(t.region_base(), 0, t.region_bytes());
    auto results = t.FetchBatchInto(Batch(ids, requests));
    if (!results.ok()) {
      EXPECT_TRUE(client::IsDataPlaneUnavailable(results.status())) << results.status();
      continue;
    }
    for (const client::SequenceFetchResult& r : *results) ASSERT_TRUE(r.ok()) << r.status();
    for (int s = 0; s < 2; ++s) {
      EXPECT_TRUE(CheckSlots(t, "tenant-a", ids[s], kPerSequence, SlotOffset(s)).ok()) << s;
    }
    served = true;
  }
  EXPECT_TRUE(served) << "the data plane never reconnected";
}

}  // namespace
// ---- Sequence::AttendBatch over UCX ----------------------------------------------------------

client::ClientOptions EngineOptions(const std::string& target, const std::string& plane) {
  client::ClientOptions o;
  o.target = target;
  o.tenant = "engine";
  o.data_plane = plane;
  o.config.num_sink_tokens = 4;
  o.config.dense_layers = {0};
  o.config.num_prefill_clusters = 8;
  o.config.kmeans_iterations = 4;
  o.config.token_budget = 64;
  o.threads = 1;
  o.ucx_region_bytes = size_t{16} << 20;
  o.ucx_fetch_timeout = absl::Seconds(5);
  return o;
}

TEST(UcxBatchTest, SequenceAttendBatchIsOneRequestAndAttendsAsEachSequenceAlone) {
  constexpr int kSequences = 4, kTokens = 256, kDim = 32;
  const KvLayout layout{2, 4, 2, kDim, DType::kFloat16};
  BatchDaemon daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.process().output();
  auto ucx = client::Client::Connect(EngineOptions(daemon.target(), "ucx"));
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  auto grpc = client::Client::Connect(EngineOptions(daemon.target(), "grpc"));
  ASSERT_TRUE(grpc.ok()) << grpc.status();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  auto random = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
  };
  // Each sequence prefilled once over UCX, then opened fresh twice: batched over UCX and
  // alone over gRPC.
  std::vector<std::unique_ptr<client::Sequence>> batched, alone;
  for (int s = 0; s < kSequences; ++s) {
    const std::string id = absl::StrCat("engine-", s);
    {
      auto seq = (*ucx)->OpenSequence(id, layout);
      ASSERT_TRUE(seq.ok()) << seq.status();
      const std::vector<float> k = random(size_t{2} * kTokens * kDim), v = random(k.size());
      const Tensor3View kv(k.data(), DType::kFloat32, {2, kTokens, kDim});
      const Tensor3View vv(v.data(), DType::kFloat32, {2, kTokens, kDim});
      for (int layer = 0; layer < 2; ++layer) {
        ASSERT_TRUE((*seq)->OffloadPrefill(layer, kv, vv).ok());
      }
    }
    auto b = (*ucx)->ReopenSequence(id);
    auto a = (*grpc)->ReopenSequence(id);
    ASSERT_TRUE(b.ok() && a.ok());
    batched.push_back(*std::move(b));
    alone.push_back(*std::move(a));
  }
  std::vector<std::vector<float>> q(kSequences), out(kSequences), want(kSequences);
  std::vector<client::StepStats> stats(kSequences);
  std::vector<client::BatchAttendItem> items(kSequences);
  for (int s = 0; s < kSequences; ++s) {
    q[s] = random(size_t{4} * kDim);
    out[s].assign(q[s].size(), 0.0f);
    want[s].assign(q[s].size(), 0.0f);
    items[s].sequence = batched[s].get();
    items[s].queries = ConstMatrixView(q[s].data(), 4, kDim);
    items[s].out = MatrixView(out[s].data(), 4, kDim);
    items[s].stats = &stats[s];
  }
  const Counts before = Count(daemon);
  ASSERT_TRUE(client::Sequence::AttendBatch(1, absl::MakeSpan(items)).ok());
  const Counts after = Count(daemon);
  EXPECT_EQ(after.requests - before.requests, 1);  // every sequence's misses in one request
  EXPECT_EQ(after.sequences - before.sequences, kSequences);
  for (int s = 0; s < kSequences; ++s) {
    EXPECT_TRUE(items[s].status.ok()) << items[s].status;
    EXPECT_GT(stats[s].miss_tokens, 0);
    EXPECT_GT(batched[s]->blocks_fetched_direct(), 0);
    ASSERT_TRUE(alone[s]->Attend(1, ConstMatrixView(q[s].data(), 4, kDim),
                                 MatrixView(want[s].data(), 4, kDim)).ok());
    EXPECT_EQ(0, std::memcmp(out[s].data(), want[s].data(), out[s].size() * sizeof(float)))
        << "sequence " << s;
  }
}

}  // namespace clusterkv
