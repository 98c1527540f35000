// Faults at the level of the real clusterkvd process:
//   - SIGKILL during a write-through put storm: every PutClusters call the daemon acknowledged
//     (one block each) is served bit-exact after a restart on the same data dir;
//   - clients that vanish mid-stream (cancelled FetchClusters after the first message,
//     PutClusters cancelled before WritesDone), many times over: the daemon keeps serving and
//     its RSS returns to within a bound of its warmed-up baseline;
//   - slow clients: a 1 ms deadline on a large fetch is DEADLINE_EXCEEDED and the daemon goes on;
//     a FetchClusters stream whose client stops reading does not hold up another client.
#include <sys/types.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_fixture.h"

namespace clusterkv::testing {
namespace {

using grpc::StatusCode;

// Block i of the storm: (layer, kv head) cycle over the test layout, the cluster id grows.
v1::ClusterBlock StormBlock(int i) {
  return MakeBlock(Ref(i % 4, (i / 4) % 4, i / 16), /*tokens=*/32, /*seed=*/1000u + i);
}

grpc::Status PutOneBlock(const KvCacheClient& client, const std::string& id,
                         const v1::ClusterBlock& block) {
  v1::PutClustersRequest m;
  m.set_sequence_id(id);
  *m.add_blocks() = block;
  return PutMessages(client, {m});
}

grpc::Status Open(const KvCacheClient& client, const std::string& id, bool must_exist) {
  v1::OpenSequenceRequest request;
  request.set_sequence_id(id);
  if (!must_exist) *request.mutable_layout() = TestLayout();
  request.set_must_exist(must_exist);
  v1::OpenSequenceResponse response;
  return client.stub->OpenSequence(client.Context().get(), request, &response);
}

TEST(DaemonFaultTest, SigkillDuringWriteThroughPutStormKeepsEveryAcknowledgedBlock) {
  DaemonProcessOptions options;
  options.flags = {"--write_through"};
  DaemonProcess daemon(options);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  {
    KvCacheClient client = MakeKvCacheClient(daemon.target(), "storm");
    ASSERT_GRPC_OK(Open(client, "storm", false));
  }

  // The storm: one block per PutClusters call until a call fails (the daemon was killed).
  constexpr int kAcknowledgedBeforeKill = 300;
  constexpr int kMaxBlocks = 100000;  // a bound; the kill ends the storm long before
  absl::Mutex mu;
  int acknowledged = 0;  // calls 0..acknowledged-1 returned OK, in order
  grpc::Status first_failure;
  bool storm_done = false;
  std::thread storm([&] {
    KvCacheClient client = MakeKvCacheClient(daemon.target(), "storm");
    for (int i = 0; i < kMaxBlocks; ++i) {
      grpc::Status s = PutOneBlock(client, "storm", StormBlock(i));
      absl::MutexLock lock(&mu);
      if (!s.ok()) {
        first_failure = s;
        break;
      }
      ++acknowledged;
    }
    absl::MutexLock lock(&mu);
    storm_done = true;
  });
  {
    absl::MutexLock lock(&mu);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) {
      return acknowledged >= kAcknowledgedBeforeKill || storm_done;
    };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(120)));
    ASSERT_FALSE(storm_done) << "storm failed early: " << first_failure.error_message();
  }
  ASSERT_TRUE(daemon.Kill().ok());  // while the storm thread is mid-call
  storm.join();
  EXPECT_EQ(daemon.exit_status(), 128 + 9);
  int acked = 0;
  {
    absl::MutexLock lock(&mu);
    acked = acknowledged;
    EXPECT_FALSE(first_failure.ok());
  }
  ASSERT_GE(acked, kAcknowledgedBeforeKill);
  std::cout << "storm: " << acked << " puts acknowledged before SIGKILL; the next failed with code "
            << first_failure.error_code() << "\n";

  ASSERT_TRUE(daemon.Restart().ok()) << daemon.output();
  KvCacheClient client = MakeKvCacheClient(daemon.target(), "storm");
  ASSERT_GRPC_OK(Open(client, "storm", true));
  std::vector<v1::ClusterBlock> expected;
  for (int i = 0; i < acked; ++i) expected.push_back(StormBlock(i));
  ExpectFetchMatches(client, "storm", expected);

  // The call in flight at the kill may or may not have landed; if it did, it is whole.
  FetchResult in_flight = Fetch(client, "storm", {StormBlock(acked).id()});
  if (in_flight.status.ok()) {
    ASSERT_EQ(in_flight.blocks.size(), 1u);
    EXPECT_TRUE(in_flight.blocks[0].data() == StormBlock(acked).data());
  }
  // And the restarted daemon takes new write-through puts.
  ASSERT_GRPC_OK(PutOneBlock(client, "storm", StormBlock(acked + 1000)));
  ExpectFetchMatches(client, "storm", {StormBlock(acked + 1000)});
  absl::StatusOr<int> code = daemon.Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << daemon.output();
}

// A daemon holding one large sequence ("big": 4 layers x 4 heads x 16 clusters of 200 tokens,
// about 26 MB, several 4 MiB FetchClusters messages).
class DaemonStreamFaultTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFatalFailure()) return;
    KvCacheClient client = Client();
    ASSERT_GRPC_OK(Open(client, "big", false));
    for (int l = 0; l < 4; ++l) {
      for (int h = 0; h < 4; ++h) {
        for (int c = 0; c < 16; ++c) {
          big_.push_back(MakeBlock(Ref(l, h, c), 200, static_cast<uint32_t>(l * 1000 + h * 100 + c)));
        }
      }
    }
    std::vector<v1::PutClustersRequest> messages;
    for (const v1::ClusterBlock& block : big_) {
      v1::PutClustersRequest m;
      m.set_sequence_id("big");
      *m.add_blocks() = block;
      messages.push_back(std::move(m));
    }
    ASSERT_GRPC_OK(PutMessages(client, messages));
  }

  v1::FetchClustersRequest BigFetch() const {
    v1::FetchClustersRequest request;
    request.set_sequence_id("big");
    for (const v1::ClusterBlock& b : big_) *request.add_clusters() = b.id();
    return request;
  }

  // One round of vanishing clients: `fetches` concurrent large fetches cancelled after their
  // first message, and a PutClusters stream cancelled after two blocks, before WritesDone.
  void AbandonRound(const KvCacheClient& client, int round, int fetches) {
    const v1::FetchClustersRequest request = BigFetch();
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::FetchClustersResponse>>> readers;
    for (int i = 0; i < fetches; ++i) {
      contexts.push_back(client.Context());
      readers.push_back(client.stub->FetchClusters(contexts.back().get(), request));
    }
    for (int i = 0; i < fetches; ++i) {
      v1::FetchClustersResponse first;
      ASSERT_TRUE(readers[i]->Read(&first)) << "round " << round;
      ASSERT_GT(first.blocks_size(), 0);
      contexts[i]->TryCancel();
    }
    for (int i = 0; i < fetches; ++i) {
      v1::FetchClustersResponse rest;
      while (readers[i]->Read(&rest)) {
      }
      const grpc::Status s = readers[i]->Finish();
      EXPECT_TRUE(s.error_code() == StatusCode::CANCELLED || s.ok()) << s.error_code();
    }

    ASSERT_GRPC_OK(Open(client, "abandoned", false));
    {
      v1::PutClustersResponse response;
      auto context = client.Context();
      auto writer = client.stub->PutClusters(context.get(), &response);
      for (int c = 0; c < 2; ++c) {
        v1::PutClustersRequest m;
        m.set_sequence_id("abandoned");
        *m.add_blocks() = big_[static_cast<size_t>(c)];
        if (!writer->Write(m)) break;
      }
      context->TryCancel();
      const grpc::Status s = writer->Finish();
      EXPECT_EQ(s.error_code(), StatusCode::CANCELLED) << s.error_message();
    }
    v1::CloseSequenceRequest drop;
    drop.set_sequence_id("abandoned");
    drop.set_drop(true);
    v1::CloseSequenceResponse dropped;
    ASSERT_GRPC_OK(client.stub->CloseSequence(client.Context().get(), drop, &dropped));
  }

  std::vector<v1::ClusterBlock> big_;
};

TEST_F(DaemonStreamFaultTest, ClientsVanishingMidStreamLeakNothing) {
  ASSERT_GT(daemon_.pid(), 0) << "the daemon is not running";
  KvCacheClient client = Client();
  constexpr int kFetchesPerRound = 4;
  // Warm-up: the same rounds, so allocator pools and gRPC buffers reach their steady size.
  for (int round = 0; round < 5; ++round) {
    AbandonRound(client, round, kFetchesPerRound);
    if (HasFatalFailure()) return;
  }
  ExpectFetchMatches(client, "big", big_);
  const int64_t baseline = daemon_.RssKib();
  ASSERT_GT(baseline, 0);
  for (int round = 0; round < 50; ++round) {
    AbandonRound(client, round, kFetchesPerRound);
    if (HasFatalFailure()) return;
  }
  // Still serving, every byte intact.
  ExpectFetchMatches(client, "big", big_);
  v1::StatsResponse stats;
  ASSERT_GRPC_OK(client.stub->Stats(client.Context().get(), v1::StatsRequest(), &stats));
  const int64_t end = daemon_.RssKib();
  std::cout << "daemon VmRSS " << baseline << " KiB after warm-up, " << end
            << " KiB after 50 rounds of abandoned streams\n";
  EXPECT_LE(end, baseline + 64 * 1024) << "daemon RSS grew by " << (end - baseline) << " KiB";
}

TEST_F(DaemonStreamFaultTest, TinyDeadlineOnLargeFetchIsDeadlineExceeded) {
  KvCacheClient client = Client();
  for (int i = 0; i < 10; ++i) {
    auto context = client.Context(absl::Milliseconds(1));
    auto reader = client.stub->FetchClusters(context.get(), BigFetch());
    v1::FetchClustersResponse message;
    size_t blocks = 0;
    while (reader->Read(&message)) blocks += static_cast<size_t>(message.blocks_size());
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), StatusCode::DEADLINE_EXCEEDED) << s.error_message();
    EXPECT_LT(blocks, big_.size());
  }
  // The daemon keeps serving.
  v1::StatsResponse stats;
  ASSERT_GRPC_OK(client.stub->Stats(client.Context().get(), v1::StatsRequest(), &stats));
  ExpectFetchMatches(client, "big", big_);
}

TEST_F(DaemonStreamFaultTest, StalledReaderDoesNotBlockOtherClients) {
  // Client 1: its own channel; reads one message, then stops reading.
  KvCacheClient stalled = Client();
  auto context = stalled.Context();
  auto reader = stalled.stub->FetchClusters(context.get(), BigFetch());
  std::vector<v1::ClusterBlock> got;
  v1::FetchClustersResponse message;
  ASSERT_TRUE(reader->Read(&message));
  for (const v1::ClusterBlock& b : message.blocks()) got.push_back(b);
  ASSERT_LT(got.size(), big_.size());

  // Client 2, another channel, while client 1's stream is stalled: a full round trip on a new
  // sequence, a full fetch of the same large sequence, and Stats.
  {
    KvCacheClient other = Client();
    const SequenceData data = MakeSequenceData(/*seed=*/7, /*clusters=*/2, /*layers=*/2);
    ASSERT_GRPC_OK(OpenSequence(other, "other"));
    ASSERT_GRPC_OK(PutSequence(other, "other", data, /*write_through=*/false));
    ExpectFetchMatches(other, "other", data.blocks);
    ExpectFetchMatches(other, "big", big_);
    v1::StatsResponse stats;
    ASSERT_GRPC_OK(other.stub->Stats(other.Context().get(), v1::StatsRequest(), &stats));
  }

  // Client 1 resumes and receives the rest, bit-exact.
  while (reader->Read(&message)) {
    for (const v1::ClusterBlock& b : message.blocks()) got.push_back(b);
  }
  const grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  ASSERT_EQ(got.size(), big_.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(SameRef(got[i].id(), big_[i].id())) << i;
    ASSERT_TRUE(got[i].data() == big_[i].data()) << "block " << i << " differs";
  }
}

}  // namespace
}  // namespace clusterkv::testing
