// The daemon's process lifecycle: the socket lock against a second daemon, a clean SIGTERM
// shutdown that flushes write-back blocks, and a SIGKILL after write-through puts; each restart
// serves the same data bit-exact from the same data dir.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_fixture.h"
#include "tools/clusterkv/health_check.h"

namespace clusterkv::testing {
namespace {

void ExpectSequenceIntact(const KvCacheClient& client, const std::string& id,
                          const SequenceData& data) {
  v1::OpenSequenceRequest open;
  open.set_sequence_id(id);
  open.set_must_exist(true);
  v1::OpenSequenceResponse opened;
  ASSERT_GRPC_OK(client.stub->OpenSequence(client.Context().get(), open, &opened));
  EXPECT_EQ(opened.num_tokens(), data.num_tokens);
  EXPECT_EQ(opened.layout().SerializeAsString(), TestLayout().SerializeAsString());
  ExpectFetchMatches(client, id, data.blocks);
  v1::GetIndexRequest request;
  request.set_sequence_id(id);
  v1::GetIndexResponse index;
  ASSERT_GRPC_OK(client.stub->GetIndex(client.Context().get(), request, &index));
  ASSERT_EQ(index.indexes_size(), static_cast<int>(data.indexes.size()));
  for (int i = 0; i < index.indexes_size(); ++i) {
    EXPECT_EQ(index.indexes(i).SerializeAsString(), data.indexes[i].SerializeAsString());
  }
}

TEST_F(DaemonTest, SecondDaemonOnTheSameSocketExitsNamingTheLock) {
  ScratchDir other_data("clusterkvd_second");
  DaemonProcessOptions options;
  options.socket_path = daemon_.socket_path();
  options.data_dir = other_data.Sub("data");
  DaemonProcess second(options);
  const absl::Status started = second.Start();
  EXPECT_TRUE(absl::IsAborted(started)) << started;
  ASSERT_TRUE(second.exit_status().has_value());
  EXPECT_NE(*second.exit_status(), 0);
  EXPECT_TRUE(absl::StrContains(second.output(), "lock")) << second.output();
  EXPECT_FALSE(second.running());

  // The first daemon still owns its socket and serves.
  KvCacheClient client = Client();
  const SequenceData data = MakeSequenceData(/*seed=*/41, /*clusters=*/2, /*layers=*/1);
  ASSERT_GRPC_OK(OpenSequence(client, "after-second"));
  ASSERT_GRPC_OK(PutSequence(client, "after-second", data, /*write_through=*/false));
  ExpectFetchMatches(client, "after-second", data.blocks);
  absl::StatusOr<admin::HealthStatus> health =
      admin::CheckHealth(client.channel, "", absl::Seconds(30));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, admin::HealthStatus::kServing);
}

TEST_F(DaemonTest, SigtermFlushesWriteBackBlocksAndRestartServesThem) {
  const SequenceData data = MakeSequenceData(/*seed=*/42, /*clusters=*/4);
  {
    KvCacheClient client = Client("durable");
    ASSERT_GRPC_OK(OpenSequence(client, "write-back"));
    ASSERT_GRPC_OK(PutSequence(client, "write-back", data, /*write_through=*/false));
    v1::StatsResponse stats;
    ASSERT_GRPC_OK(client.stub->Stats(client.Context().get(), v1::StatsRequest(), &stats));
    EXPECT_EQ(stats.write_through_puts(), 0u);
  }
  absl::StatusOr<int> code = daemon_.Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << daemon_.output();
  EXPECT_TRUE(absl::StrContains(daemon_.output(), "clusterkvd: stopped cleanly"))
      << daemon_.output();

  const absl::Status restarted = daemon_.Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  KvCacheClient client = Client("durable");
  ExpectSequenceIntact(client, "write-back", data);
}

TEST_F(DaemonTest, SigkillAfterWriteThroughPutsLosesNothing) {
  const SequenceData data = MakeSequenceData(/*seed=*/43, /*clusters=*/4);
  {
    KvCacheClient client = Client("durable");
    ASSERT_GRPC_OK(OpenSequence(client, "write-through"));
    ASSERT_GRPC_OK(PutSequence(client, "write-through", data, /*write_through=*/true));
  }
  const absl::Status killed = daemon_.Kill();
  ASSERT_TRUE(killed.ok()) << killed;
  EXPECT_EQ(daemon_.exit_status(), 128 + 9);

  // The crashed daemon left its socket file; the restart takes the lock and replaces it.
  const absl::Status restarted = daemon_.Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  KvCacheClient client = Client("durable");
  ExpectSequenceIntact(client, "write-through", data);
  v1::StatsResponse stats;
  ASSERT_GRPC_OK(client.stub->Stats(client.Context().get(), v1::StatsRequest(), &stats));
  EXPECT_EQ(stats.sequences(), 1u);
}

}  // namespace
}  // namespace clusterkv::testing
