// Cluster mode under node failure: a real etcd and three clusterkvd processes with a
// 2 s membership lease; node 1, the owner, is killed with SIGKILL.
//   - replication 2: the sequence stays readable through the other nodes; once node 1's lease
//     has expired its replica owns the sequence (an etcd transaction), takes new writes, and
//     serves them bit-exact;
//   - replication 1: a recall through node 3 answers UNAVAILABLE naming node-1; when node 1
//     comes back (same data dir) its write-through sequence is served again;
//   - etcd killed: the owner keeps serving its own sequences; other nodes' calls and new
//     sequences are UNAVAILABLE (the directory cannot be read), and every daemon still stops
//     cleanly.
//   - replication 2, owners dying in turn: the first take-over re-replicates the sequence to the
//     third node, which takes it over when the second owner dies and serves everything;
//   - with UCX pulls between daemons, a node whose pull session points at the dead owner gets
//     the recall from the replica (over UCX);
//   - a hung owner (SIGSTOP: its sockets accept, nothing answers) holds up only the recalls
//     that need it: another node keeps serving its own sequences meanwhile.
// All waits poll etcd or the daemons with a bounded deadline.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster_fixture.h"

namespace clusterkv::testing {
namespace {

constexpr absl::Duration kFailoverDeadline = absl::Seconds(30);

class ClusterFaultTest : public ::testing::Test {
 protected:
  // `ucx_pulls`: every node serves UCX and pulls other nodes' blocks over it (tcp, loopback).
  void StartCluster(int replication, bool ucx_pulls = false) {
    ClusterBenchOptions options;
    options.replication = replication;
    if (ucx_pulls) {
      options.node_flags.assign(3, {"--ucx=true", "--cluster_peer_ucx_transports=tcp"});
    }
    const absl::Status s = bench_.Start(options);
    if (absl::IsFailedPrecondition(s)) GTEST_SKIP() << s;
    ASSERT_TRUE(s.ok()) << s;
  }
  void TearDown() override {
    for (int code : bench_.StopAll()) EXPECT_EQ(code, 0);
  }
  ClusterBench bench_;
};

TEST_F(ClusterFaultTest, WithReplicationTheSequenceOutlivesItsOwner) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replication=*/2));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const SequenceData data = MakeSequenceData(/*seed=*/60, /*clusters=*/3, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n1, "s"));
  ASSERT_GRPC_OK(PutSequence(n1, "s", data, /*write_through=*/true));
  std::optional<server::cluster::DirectoryEntry> entry = bench_.Entry("t", "s");
  ASSERT_TRUE(entry.has_value());
  ASSERT_EQ(entry->owner, "node-1");
  ASSERT_EQ(entry->replicas.size(), 1u);
  const std::string replica = entry->replicas[0];
  const int replica_index = replica == "node-2" ? 1 : 2;
  const int other_index = replica_index == 1 ? 2 : 1;  // neither owner nor replica
  const KvCacheClient via_other = bench_.Client(other_index, "t");
  const KvCacheClient via_replica = bench_.Client(replica_index, "t");

  ASSERT_TRUE(bench_.node(0).Kill().ok());
  // Right away (node 1 still registered): the replica answers instead of the dead owner.
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_other, "s", data.blocks));

  // Once node 1's lease has expired, the replica takes the sequence over.
  ASSERT_TRUE(PollUntil([&] { return !bench_.Registered(0); }, kFailoverDeadline))
      << "node 1's lease did not expire";
  ASSERT_TRUE(PollUntil(
      [&] {
        std::optional<server::cluster::DirectoryEntry> e = bench_.Entry("t", "s");
        return e.has_value() && e->owner == replica;
      },
      kFailoverDeadline))
      << "the replica did not take the sequence over";
  // The new owner re-replicates to the only live node that does not hold it.
  const std::string other = other_index == 1 ? "node-2" : "node-3";
  ASSERT_TRUE(PollUntil(
      [&] {
        std::optional<server::cluster::DirectoryEntry> e = bench_.Entry("t", "s");
        return e.has_value() && e->replicas == std::vector<std::string>{other};
      },
      kFailoverDeadline))
      << "the new owner did not re-replicate the sequence";
  entry = bench_.Entry("t", "s");
  EXPECT_EQ(entry->owner, replica);
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_other, "s", data.blocks));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_replica, "s", data.blocks));

  // The new owner takes writes (through the third node) and serves them.
  v1::AppendClustersRequest append;
  append.set_sequence_id("s");
  v1::HeadIndex* head = append.add_appended();
  head->set_layer(1);
  head->set_kv_head(3);
  for (int j = 0; j < TestLayout().head_dim(); ++j) head->add_centroids(j == 1 ? 1.0f : 0.0f);
  head->add_sizes(24);
  const v1::ClusterBlock appended = MakeBlock(Ref(1, 3, 3), 24, 4242);
  *append.add_blocks() = appended;
  append.set_write_through(true);
  v1::AppendClustersResponse response;
  ASSERT_GRPC_OK(via_other.stub->AppendClusters(via_other.Context().get(), append, &response));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_replica, "s", {appended}));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_other, "s", {appended}));

  // Node 1 comes back: it is no longer the owner, drops its stale copy, and serves the
  // sequence from the new owner like any other node.
  ASSERT_TRUE(bench_.StartNode(0).ok()) << bench_.node(0).output();
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n1, "s", {appended}));
  EXPECT_EQ(bench_.Entry("t", "s")->owner, replica);
}

#if defined(CLUSTERKV_WITH_UCX)
TEST_F(ClusterFaultTest, WithUcxPullsADeadOwnersReplicaServesTheRecall) {
  // Node 3 (or 2) holds a UCX pull session to node 1 when node 1 is killed; the next pull
  // from it fails (over UCX, then gRPC) and the replica serves the recall, over UCX again.
  ::setenv("UCX_NET_DEVICES", "lo", 1);  // the daemons inherit it: tcp over loopback
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replication=*/2, /*ucx_pulls=*/true));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const SequenceData first = MakeSequenceData(/*seed=*/70, /*clusters=*/2, /*layers=*/2);
  const SequenceData second = MakeSequenceData(/*seed=*/71, /*clusters=*/2, /*layers=*/2);
  for (const auto& [id, data] : {std::pair{"s1", &first}, std::pair{"s2", &second}}) {
    ASSERT_GRPC_OK(OpenSequence(n1, id));
    ASSERT_GRPC_OK(PutSequence(n1, id, *data, /*write_through=*/true));
    ASSERT_EQ(bench_.Entry("t", id)->owner, "node-1");
  }
  const std::string replica = bench_.Entry("t", "s2")->replicas.at(0);
  const int other_index = replica == "node-2" ? 2 : 1;  // neither owner nor replica of s2
  const KvCacheClient via_other = bench_.Client(other_index, "t");
  // s1 through the other node: opens its UCX session with node 1 (unless it replicates s1).
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_other, "s1", first.blocks));
  const double before = MetricValue(Scrape(bench_.metrics_port(other_index)),
                                    "clusterkv_cluster_remote_ucx_bytes_total");

  ASSERT_TRUE(bench_.node(0).Kill().ok());
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_other, "s2", second.blocks));
  const std::string m = Scrape(bench_.metrics_port(other_index));
  EXPECT_GT(MetricValue(m, "clusterkv_cluster_remote_ucx_bytes_total"), before)
      << "the replica's blocks did not come over UCX";
  ::unsetenv("UCX_NET_DEVICES");
}
#endif

TEST_F(ClusterFaultTest, WithReplicationTwoOwnersDyingInTurnLoseNothing) {
  // Node 1 (owner) dies: its replica takes over and copies the sequence to the third node.
  // Then the new owner dies too: the third node takes over and serves every block.
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replication=*/2));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const SequenceData data = MakeSequenceData(/*seed=*/90, /*clusters=*/3, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n1, "s"));
  ASSERT_GRPC_OK(PutSequence(n1, "s", data, /*write_through=*/true));
  std::optional<server::cluster::DirectoryEntry> entry = bench_.Entry("t", "s");
  ASSERT_TRUE(entry.has_value());
  ASSERT_EQ(entry->owner, "node-1");
  const std::string second = entry->replicas.at(0);
  const int second_index = second == "node-2" ? 1 : 2;
  const int third_index = second_index == 1 ? 2 : 1;
  const std::string third = ClusterBench::NodeId(third_index);

  ASSERT_TRUE(bench_.node(0).Kill().ok());
  ASSERT_TRUE(PollUntil(
      [&] {
        std::optional<server::cluster::DirectoryEntry> e = bench_.Entry("t", "s");
        return e.has_value() && e->owner == second &&
               e->replicas == std::vector<std::string>{third};
      },
      kFailoverDeadline))
      << "no take-over and re-replication after node 1 died";
  ASSERT_TRUE(bench_.node(second_index).Kill().ok());
  ASSERT_TRUE(PollUntil(
      [&] {
        std::optional<server::cluster::DirectoryEntry> e = bench_.Entry("t", "s");
        return e.has_value() && e->owner == third;
      },
      kFailoverDeadline))
      << "the re-replicated copy was not taken over after the second owner died";
  const KvCacheClient via_third = bench_.Client(third_index, "t");
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(via_third, "s", data.blocks));
  v1::GetIndexRequest index;
  index.set_sequence_id("s");
  v1::GetIndexResponse got;
  ASSERT_GRPC_OK(via_third.stub->GetIndex(via_third.Context().get(), index, &got));
  EXPECT_EQ(got.num_tokens(), data.num_tokens);
  EXPECT_EQ(static_cast<size_t>(got.indexes_size()), data.indexes.size());
}

TEST_F(ClusterFaultTest, WithoutReplicationADeadOwnerIsAClearUnavailable) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replication=*/1));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const KvCacheClient n3 = bench_.Client(2, "t");
  const SequenceData data = MakeSequenceData(/*seed=*/70, /*clusters=*/2, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n1, "s"));
  ASSERT_GRPC_OK(PutSequence(n1, "s", data, /*write_through=*/true));
  ASSERT_EQ(bench_.Entry("t", "s")->owner, "node-1");

  ASSERT_TRUE(bench_.node(0).Kill().ok());
  ASSERT_TRUE(PollUntil([&] { return !bench_.Registered(0); }, kFailoverDeadline));
  FetchResult fetched = Fetch(n3, "s", {data.blocks[0].id()});
  EXPECT_EQ(fetched.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(fetched.status.error_message(), "node-1"))
      << fetched.status.error_message();
  v1::OpenSequenceRequest open;
  open.set_sequence_id("s");
  open.set_must_exist(true);
  v1::OpenSequenceResponse opened;
  const grpc::Status o = n3.stub->OpenSequence(n3.Context().get(), open, &opened);
  EXPECT_EQ(o.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(o.error_message(), "node-1")) << o.error_message();
  // The directory still names node 1: nothing was lost, only unreachable.
  EXPECT_EQ(bench_.Entry("t", "s")->owner, "node-1");

  // Node 1 restarts on its data dir: its write-through blocks are served again.
  ASSERT_TRUE(bench_.StartNode(0).ok()) << bench_.node(0).output();
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", data.blocks));
}

TEST_F(ClusterFaultTest, AHungOwnerHoldsUpOnlyTheRecallsThatNeedIt) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replication=*/1));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const KvCacheClient n3 = bench_.Client(2, "t");
  const SequenceData remote = MakeSequenceData(/*seed=*/81, /*clusters=*/2, /*layers=*/2);
  const SequenceData local = MakeSequenceData(/*seed=*/82, /*clusters=*/2, /*layers=*/2);
  ASSERT_GRPC_OK(OpenSequence(n1, "remote"));
  ASSERT_GRPC_OK(PutSequence(n1, "remote", remote, /*write_through=*/false));
  ASSERT_GRPC_OK(OpenSequence(n3, "local"));
  ASSERT_GRPC_OK(PutSequence(n3, "local", local, /*write_through=*/false));
  ASSERT_EQ(bench_.Entry("t", "remote")->owner, "node-1");
  ASSERT_EQ(bench_.Entry("t", "local")->owner, "node-3");

  ASSERT_EQ(::kill(bench_.node(0).pid(), SIGSTOP), 0);  // node 1 hangs
  std::atomic<bool> remote_done{false};
  FetchResult remote_fetch;
  std::thread waiter([&] {
    remote_fetch = Fetch(n3, "remote", {remote.blocks[0].id()});  // waits on node 1
    remote_done = true;
  });
  // Node 3's own sequence is served, many times over, while the recall through it waits.
  for (int round = 0; round < 20; ++round) {
    ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "local", local.blocks));
  }
  EXPECT_FALSE(remote_done.load()) << "the recall of the hung owner's sequence did not wait";
  ASSERT_EQ(::kill(bench_.node(0).pid(), SIGCONT), 0);
  waiter.join();
  ASSERT_TRUE(remote_fetch.status.ok()) << remote_fetch.status.error_message();
  ASSERT_EQ(remote_fetch.blocks.size(), 1u);
  EXPECT_EQ(remote_fetch.blocks[0].data(), remote.blocks[0].data());
}

TEST_F(ClusterFaultTest, WithoutEtcdOwnersServeTheirOwnAndTheRestIsUnavailable) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replication=*/1));
  const KvCacheClient n1 = bench_.Client(0, "t");
  const KvCacheClient n3 = bench_.Client(2, "t");
  const SequenceData data = MakeSequenceData(/*seed=*/80, /*clusters=*/2, /*layers=*/1);
  ASSERT_GRPC_OK(OpenSequence(n1, "s"));
  ASSERT_GRPC_OK(PutSequence(n1, "s", data, /*write_through=*/false));
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n3, "s", data.blocks));

  bench_.KillEtcd();
  // Node 1 knows it owns "s" without asking etcd.
  ASSERT_NO_FATAL_FAILURE(ExpectFetchMatches(n1, "s", data.blocks));
  // Node 3 must check the directory before serving its copy: it cannot.
  FetchResult remote = Fetch(n3, "s", {data.blocks[0].id()});
  EXPECT_EQ(remote.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << remote.status.error_message();
  EXPECT_TRUE(absl::StrContains(remote.status.error_message(), "etcd"))
      << remote.status.error_message();
  // No new sequence can be claimed.
  const grpc::Status created = OpenSequence(n1, "new");
  EXPECT_EQ(created.error_code(), grpc::StatusCode::UNAVAILABLE) << created.error_message();
}

}  // namespace
}  // namespace clusterkv::testing
