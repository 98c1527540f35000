// The UCX data plane against a real clusterkvd: bit-exact recalls into the client's registered
// region over shared memory and over TCP, per-block errors, tenant isolation, refused
// ConnectDataPlane calls, and a Sequence recalling over UCX exactly what it recalls over gRPC.
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "client/client.h"
#include "core/ucx/ucx_handles.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/small_client_options.h"
#include "tests/integration/ucx_test_util.h"

namespace clusterkv {
namespace {

using ::clusterkv::testing::DaemonProcess;
using ::clusterkv::testing::DaemonProcessOptions;
using ::clusterkv::testing::MakeKvCacheClient;
using namespace ::clusterkv::testing::ucx_test;  // NOLINT: the shared test vocabulary

void ExpectServing(const std::string& target) {
  auto c = MakeKvCacheClient(target, "probe");
  v1::StatsResponse stats;
  auto ctx = c.Context();
  EXPECT_TRUE(c.stub->Stats(ctx.get(), v1::StatsRequest(), &stats).ok());
}

void RecallBitExact(DaemonProcess& daemon,
                    std::optional<absl::Duration> fetch_spin = std::nullopt) {
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a", absl::Seconds(10), fetch_spin);
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  ASSERT_TRUE(ucx->transport->Connect().ok());
  EXPECT_NE(ucx->transport->session_id(), 0u);
  for (int round = 0; round < 3; ++round) {
    std::memset(ucx->transport->region_base(), 0, ucx->transport->region_bytes());
    auto results = ucx->transport->FetchInto("seq", Requests(kClusters));
    ASSERT_TRUE(results.ok()) << results.status();
    ASSERT_EQ(results->size(), size_t{kClusters});
    for (const client::DirectFetchResult& r : *results) {
      EXPECT_TRUE(r.status.ok()) << r.status;
      EXPECT_EQ(r.num_tokens, kTokens);
      EXPECT_EQ(r.bytes, PayloadSize());
    }
    EXPECT_TRUE(CheckSlots(*ucx->transport, "tenant-a", "seq", kClusters).ok());
  }
}

TEST(UcxDataPlaneTest, RecallIsBitExactOverDefaultTransports) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  RecallBitExact(daemon);
}

TEST(UcxDataPlaneTest, RecallIsBitExactOverSharedMemoryWithoutPeerErrors) {
  DaemonProcessOptions options;
  options.flags = {"--ucx_peer_errors=false"};  // lets UCX 1.13 put over posix/sysv/cma
  DaemonProcess daemon(options);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  RecallBitExact(daemon);
}

TEST(UcxDataPlaneTest, RecallIsBitExactOverSharedMemoryWithPutsInsteadOfDirectCopies) {
  DaemonProcessOptions options;
  options.flags = {"--ucx_peer_errors=false", "--ucx_direct_shm=false"};  // one put per block
  DaemonProcess daemon(options);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  RecallBitExact(daemon);
}

TEST(UcxDataPlaneTest, RecallIsBitExactWhenEveryCompletionIsHandedToTheProgressThread) {
  // fetch_spin 0: FetchInto sends and hands its wait over at once, so every completion is
  // taken by the client's progress thread from the event fd (ProgressThread::Handoff).
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  RecallBitExact(daemon, absl::ZeroDuration());
}

TEST(UcxDataPlaneTest, WholeBlocksArriveAsStoredAndOversizedOnesAreOutOfRange) {
  // How a daemon pulls a peer's blocks (cluster mode): positions, keys and values, as stored.
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  const auto slot = static_cast<uint32_t>(BlockSize() + 100);  // room to spare, not to fill
  std::vector<client::DirectFetch> blocks;
  for (int i = 0; i < kClusters; ++i) {
    blocks.push_back(client::DirectFetch{ClusterId{HeadId{0, 0}, i}, uint64_t{slot} * i, 0});
  }
  std::memset(ucx->transport->region_base(), 0xEE, ucx->transport->region_bytes());
  auto results = ucx->transport->FetchBlocksInto("seq", blocks, slot);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), size_t{kClusters});
  for (int i = 0; i < kClusters; ++i) {
    const client::DirectFetchResult& r = (*results)[i];
    ASSERT_TRUE(r.status.ok()) << r.status;
    EXPECT_EQ(r.num_tokens, kTokens);
    EXPECT_EQ(r.bytes, BlockSize());
    const uint8_t* got = ucx->transport->region_base() + uint64_t{slot} * i;
    const std::vector<uint8_t> want =
        testing::BlockBytes(testing::Key("tenant-a", "seq", 0, 0, i), BlockSize());
    EXPECT_EQ(std::memcmp(got, want.data(), want.size()), 0) << "block " << i;
    EXPECT_EQ(got[BlockSize()], 0xEE) << "wrote past block " << i;
  }
  // Slots one byte too small: every block is OUT_OF_RANGE with its size, nothing written.
  std::memset(ucx->transport->region_base(), 0xEE, ucx->transport->region_bytes());
  results = ucx->transport->FetchBlocksInto("seq", blocks, static_cast<uint32_t>(BlockSize() - 1));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const client::DirectFetchResult& r : *results) {
    EXPECT_TRUE(absl::IsOutOfRange(r.status)) << r.status;
    EXPECT_EQ(r.bytes, BlockSize());
  }
  EXPECT_EQ(ucx->transport->region_base()[0], 0xEE);
  EXPECT_TRUE(absl::IsInvalidArgument(ucx->transport->FetchBlocksInto("seq", blocks, 0).status()));
}

TEST(UcxDataPlaneTest, RecallIsBitExactOverTcp) {
  ScopedEnv tls("UCX_TLS", "tcp,self");
  ScopedEnv devices("UCX_NET_DEVICES", "lo");
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  RecallBitExact(daemon);
}

TEST(UcxDataPlaneTest, RecallMixingHostAndSsdBlocksIsBitExact) {
  // After a restart every block is on the SSD only. Recalling the even clusters promotes them;
  // a recall of all 32 then takes the batch-pinned host path for the even ones and the
  // promote-from-SSD path for the odd ones in one request.
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  ASSERT_TRUE(daemon.Stop().ok());
  ASSERT_TRUE(daemon.Restart().ok()) << daemon.output();
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  auto promotions = [&]() -> int64_t {
    auto c = MakeKvCacheClient(daemon.target(), "tenant-a");
    v1::StatsResponse stats;
    auto ctx = c.Context();
    EXPECT_TRUE(c.stub->Stats(ctx.get(), v1::StatsRequest(), &stats).ok());
    return static_cast<int64_t>(stats.promotions());
  };
  ASSERT_EQ(promotions(), 0);
  std::vector<client::DirectFetch> evens;
  for (const client::DirectFetch& f : Requests(kClusters)) {
    if (f.id.cluster % 2 == 0) evens.push_back(f);
  }
  auto first = ucx->transport->FetchInto("seq", evens);
  ASSERT_TRUE(first.ok()) << first.status();
  for (const client::DirectFetchResult& r : *first) EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(promotions(), kClusters / 2);
  std::memset(ucx->transport->region_base(), 0, ucx->transport->region_bytes());
  auto all = ucx->transport->FetchInto("seq", Requests(kClusters));
  ASSERT_TRUE(all.ok()) << all.status();
  for (const client::DirectFetchResult& r : *all) {
    EXPECT_TRUE(r.status.ok()) << r.status;
    EXPECT_EQ(r.num_tokens, kTokens);
  }
  EXPECT_EQ(promotions(), kClusters);
  EXPECT_TRUE(CheckSlots(*ucx->transport, "tenant-a", "seq", kClusters).ok());
}

TEST(UcxDataPlaneTest, OutOfRangeSlotIsInvalidArgumentAndNothingIsWritten) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  client::UcxTransport& t = *ucx->transport;
  std::vector<client::DirectFetch> requests = Requests(3);
  requests[1].region_offset = t.region_bytes() - 16;  // the block would cross the end
  requests[2].region_offset = ~uint64_t{0} - 8;       // and offset + size would overflow
  std::memset(t.region_base(), 0, t.region_bytes());
  auto results = t.FetchInto("seq", requests);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE((*results)[0].status.ok());
  EXPECT_EQ((*results)[1].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*results)[2].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*results)[1].bytes, 0u);
  for (size_t i = t.region_bytes() - 16; i < t.region_bytes(); ++i) {
    ASSERT_EQ(t.region_base()[i], 0) << "byte " << i << " was written";
  }
  // The daemon and the session keep serving.
  auto again = t.FetchInto("seq", Requests(kClusters));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(CheckSlots(t, "tenant-a", "seq", kClusters).ok());
  ExpectServing(daemon.target());
}

TEST(UcxDataPlaneTest, MissingClusterIsNotFoundPerBlock) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  std::vector<client::DirectFetch> requests = Requests(2);
  requests[1].id.cluster = kClusters + 5;
  auto results = ucx->transport->FetchInto("seq", requests);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE((*results)[0].status.ok());
  EXPECT_EQ((*results)[1].status.code(), absl::StatusCode::kNotFound);
}

TEST(UcxDataPlaneTest, AnotherTenantsSequenceIsNotFound) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  auto other = MakeUcxClient(daemon.target(), "tenant-b");
  ASSERT_TRUE(other.ok()) << other.status();
  std::memset(other->transport->region_base(), 0, other->transport->region_bytes());
  auto results = other->transport->FetchInto("seq", Requests(kClusters));
  EXPECT_EQ(results.status().code(), absl::StatusCode::kNotFound) << results.status();
  for (size_t i = 0; i < kClusters * PayloadSize(); ++i) {
    ASSERT_EQ(other->transport->region_base()[i], 0) << "byte " << i << " was written";
  }
  // The owner still recalls it.
  auto owner = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(owner.ok()) << owner.status();
  auto mine = owner->transport->FetchInto("seq", Requests(kClusters));
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_TRUE(CheckSlots(*owner->transport, "tenant-a", "seq", kClusters).ok());
}

TEST(UcxDataPlaneTest, BadConnectRequestsAreRefusedAndTheDaemonKeepsServing) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  // A real worker address, so only the rkey is at fault.
  auto context = ucx::Context::Create({});
  ASSERT_TRUE(context.ok()) << context.status();
  auto worker = ucx::Worker::Create(std::shared_ptr<ucx::Context>(*std::move(context)));
  ASSERT_TRUE(worker.ok()) << worker.status();
  auto address = (*worker)->Address();
  ASSERT_TRUE(address.ok()) << address.status();

  std::mt19937 rng(7);
  std::string garbage(64, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {*address, ""},                          // empty rkey
      {*address, std::string(3, '\xff')},      // truncated
      {*address, std::string(256, '\xff')},    // every md bit set
      {*address, garbage},                     // random bytes
      {"", garbage},                           // no worker address
      {std::string(40, '\x01'), garbage},      // garbage address
  };
  auto c = MakeKvCacheClient(daemon.target(), "tenant-a");
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::ConnectDataPlaneRequest request;
    request.set_worker_address(cases[i].first);
    request.set_rkey(cases[i].second);
    request.set_region_base(0x10000);
    request.set_region_bytes(1 << 20);
    v1::ConnectDataPlaneResponse response;
    auto ctx = c.Context();
    grpc::Status s = c.stub->ConnectDataPlane(ctx.get(), request, &response);
    EXPECT_FALSE(s.ok()) << "case " << i << " was accepted";
    auto probe = c.Context();
    v1::StatsResponse stats;
    ASSERT_TRUE(c.stub->Stats(probe.get(), v1::StatsRequest(), &stats).ok())
        << "case " << i << " (" << s.error_message() << ") took the daemon down:\n"
        << daemon.output();
  }
  RecallBitExact(daemon);
}

TEST(UcxDataPlaneTest, DaemonWithoutUcxAnswersFailedPreconditionAndClientsFallBack) {
  DaemonProcessOptions options;
  options.flags = {"--ucx=false"};
  DaemonProcess daemon(options);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  EXPECT_EQ(ucx->transport->Connect().code(), absl::StatusCode::kFailedPrecondition);

  client::ClientOptions auto_options;
  auto_options.target = daemon.target();
  auto_options.tenant = "tenant-a";
  auto automatic = client::Client::Connect(auto_options);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_STREQ((*automatic)->data_plane_name(), "grpc");
  EXPECT_EQ((*automatic)->data_plane_status().code(), absl::StatusCode::kFailedPrecondition);

  client::ClientOptions forced = auto_options;
  forced.data_plane = "ucx";
  EXPECT_EQ(client::Client::Connect(forced).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// ---- Sequence over UCX vs gRPC ---------------------------------------------------------------

client::ClientOptions SequenceClientOptions(const std::string& target, const std::string& plane) {
  client::ClientOptions o = testing::SmallClientOptions(target, "engine", plane);
  o.config.num_prefill_clusters = 8;
  o.config.recluster_interval = 16;
  o.config.token_budget = 64;
  o.ucx_region_bytes = size_t{8} << 20;
  o.ucx_fetch_timeout = absl::Seconds(2);
  return o;
}

constexpr int kSeqTokens = 256;
constexpr int kSeqDim = 32;
const KvLayout kSeqLayout{2, 4, 2, kSeqDim, DType::kFloat16};

std::vector<float> Normal(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

absl::Status Prefill(client::Client& c, const std::string& id) {
  auto seq = c.OpenSequence(id, kSeqLayout);
  if (!seq.ok()) return seq.status();
  const std::vector<float> k = Normal(size_t{2} * kSeqTokens * kSeqDim, 1);
  const std::vector<float> v = Normal(k.size(), 2);
  const Tensor3View kv(k.data(), DType::kFloat32, {2, kSeqTokens, kSeqDim});
  const Tensor3View vv(v.data(), DType::kFloat32, {2, kSeqTokens, kSeqDim});
  for (int layer = 0; layer < 2; ++layer) {
    if (absl::Status s = (*seq)->OffloadPrefill(layer, kv, vv); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// A freshly reopened sequence's layer-1 output for a fixed query (every cluster a miss).
absl::StatusOr<std::vector<float>> AttendFresh(client::Client& c, const std::string& id,
                                               int64_t* direct_blocks = nullptr) {
  auto seq = c.ReopenSequence(id);
  if (!seq.ok()) return seq.status();
  const std::vector<float> q = Normal(size_t{4} * kSeqDim, 3);
  std::vector<float> out(q.size());
  absl::Status s = (*seq)->Attend(1, ConstMatrixView(q.data(), 4, kSeqDim),
                                  MatrixView(out.data(), 4, kSeqDim));
  if (!s.ok()) return s;
  if (direct_blocks != nullptr) *direct_blocks = (*seq)->blocks_fetched_direct();
  return out;
}

TEST(UcxDataPlaneTest, SequenceRecallsOverUcxExactlyWhatGrpcRecalls) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  auto ucx = client::Client::Connect(SequenceClientOptions(daemon.target(), "ucx"));
  ASSERT_TRUE(ucx.ok()) << ucx.status();
  ASSERT_STREQ((*ucx)->data_plane_name(), "ucx");
  auto grpc = client::Client::Connect(SequenceClientOptions(daemon.target(), "grpc"));
  ASSERT_TRUE(grpc.ok()) << grpc.status();
  ASSERT_STREQ((*grpc)->data_plane_name(), "grpc");
  ASSERT_TRUE(Prefill(**ucx, "s").ok());

  int64_t direct = 0;
  auto over_ucx = AttendFresh(**ucx, "s", &direct);
  ASSERT_TRUE(over_ucx.ok()) << over_ucx.status();
  EXPECT_GT(direct, 0);
  int64_t none = -1;
  auto over_grpc = AttendFresh(**grpc, "s", &none);
  ASSERT_TRUE(over_grpc.ok()) << over_grpc.status();
  EXPECT_EQ(none, 0);
  ASSERT_EQ(over_ucx->size(), over_grpc->size());
  EXPECT_EQ(0, std::memcmp(over_ucx->data(), over_grpc->data(), over_ucx->size() * sizeof(float)));
}

TEST(UcxDataPlaneTest, DaemonRestartIsSurvivedByFallbackThenReconnect) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  auto c = client::Client::Connect(SequenceClientOptions(daemon.target(), "auto"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_STREQ((*c)->data_plane_name(), "ucx");
  ASSERT_TRUE(Prefill(**c, "s").ok());
  auto before = AttendFresh(**c, "s");
  ASSERT_TRUE(before.ok()) << before.status();

  auto stopped = daemon.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  ASSERT_TRUE(daemon.Restart().ok()) << daemon.output();

  // The old session is dead: the first fetch falls back to gRPC (or has already reconnected);
  // a later one reconnects. Every one succeeds with the same output.
  int64_t direct = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto after = AttendFresh(**c, "s", &direct);
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_EQ(0, std::memcmp(before->data(), after->data(), before->size() * sizeof(float)));
    if (direct > 0) break;
  }
  EXPECT_GT(direct, 0) << "the client never reconnected its data plane";
}

}  // namespace
}  // namespace clusterkv
