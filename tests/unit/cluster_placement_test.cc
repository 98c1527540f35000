// Pure parts of cluster mode, no etcd: placement of new sequences over fake load
// data, the key layout and its escaping, and the JSON records (node info, directory entries).
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/cluster/cluster_keys.h"
#include "server/cluster/directory.h"
#include "server/cluster/node_info.h"
#include "server/cluster/placement.h"

namespace clusterkv::server::cluster {
namespace {

// A node holding `held_mib` against a 100 MiB host tier with a 0.9 high watermark.
NodeInfo Node(const std::string& id, uint64_t held_mib) {
  NodeInfo n;
  n.node_id = id;
  n.grpc_address = id + ":1";
  n.load.host_capacity_bytes = uint64_t{100} << 20;
  n.load.host_bytes = std::min<uint64_t>(held_mib, 75) << 20;
  n.load.ssd_bytes = (held_mib - std::min<uint64_t>(held_mib, 75)) << 20;
  n.load.high_watermark = 0.9;
  return n;
}

TEST(PlacementTest, LocalNodeBelowItsWatermarkOwns) {
  const std::vector<NodeInfo> live = {Node("a", 10), Node("b", 80), Node("c", 5)};
  absl::StatusOr<Placement> p = PlaceSequence("b", live, 1);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->owner, "b");  // 0.8 < 0.9: stays local even though c is emptier
  EXPECT_TRUE(p->replicas.empty());
}

TEST(PlacementTest, LocalNodeAboveItsWatermarkPlacesOnTheLeastLoaded) {
  const std::vector<NodeInfo> live = {Node("a", 50), Node("b", 95), Node("c", 20),
                                      Node("d", 20)};
  absl::StatusOr<Placement> p = PlaceSequence("b", live, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->owner, "c");  // c and d tie at 0.2: the lower id wins
  // Every node full: the least loaded of all, nothing refused.
  const std::vector<NodeInfo> full = {Node("a", 200), Node("b", 120), Node("c", 150)};
  p = PlaceSequence("c", full, 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->owner, "b");
}

TEST(PlacementTest, ReplicasAreTheLeastLoadedOthersPreferringRoom) {
  const std::vector<NodeInfo> live = {Node("a", 10), Node("b", 95), Node("c", 30),
                                      Node("d", 60)};
  absl::StatusOr<Placement> p = PlaceSequence("a", live, 2);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->owner, "a");
  EXPECT_EQ(p->replicas, std::vector<std::string>{"c"});
  p = PlaceSequence("b", live, 3);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->owner, "a");
  EXPECT_EQ(p->replicas, (std::vector<std::string>{"c", "d"}));  // b (full) comes last
  // A full local node may still hold a replica when no one else can.
  const std::vector<NodeInfo> two = {Node("a", 10), Node("b", 95)};
  p = PlaceSequence("b", two, 2);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->owner, "a");
  EXPECT_EQ(p->replicas, std::vector<std::string>{"b"});
}

TEST(PlacementTest, ErrorsNameTheProblem) {
  const std::vector<NodeInfo> live = {Node("a", 10)};
  EXPECT_TRUE(absl::IsUnavailable(PlaceSequence("a", live, 2).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(PlaceSequence("z", live, 1).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(PlaceSequence("a", live, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(PlaceSequence("a", live, 4).status()));
}

TEST(PlacementTest, IsDeterministicWhateverTheInputOrder) {
  std::vector<NodeInfo> live = {Node("x", 95), Node("c", 40), Node("a", 40), Node("b", 41)};
  const absl::StatusOr<Placement> first = PlaceSequence("x", live, 2);
  ASSERT_TRUE(first.ok());
  std::reverse(live.begin(), live.end());
  const absl::StatusOr<Placement> second = PlaceSequence("x", live, 2);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(first->owner, "a");
  EXPECT_EQ(first->replicas, std::vector<std::string>{"c"});
}

TEST(NodeLoadTest, FractionCountsEveryHeldByteAgainstTheHostTier) {
  NodeLoad load;
  EXPECT_EQ(load.Fraction(), 0.0);
  load.host_capacity_bytes = 100;
  load.host_bytes = 60;
  load.ssd_bytes = 35;
  EXPECT_DOUBLE_EQ(load.Fraction(), 0.95);
  EXPECT_TRUE(load.AboveHighWatermark());
}

TEST(ClusterKeysTest, EscapingKeepsTenantsApartAndRoundTrips) {
  const ClusterKeys keys("prod");
  EXPECT_EQ(keys.Node("n1"), "/clusterkv/prod/nodes/n1");
  EXPECT_EQ(keys.Sequence({"t", "s"}), "/clusterkv/prod/seq/t/s");
  // "a" must not be a prefix of tenant "a/b"'s keys.
  const std::string ab = keys.Sequence({"a/b", "c"});
  EXPECT_EQ(ab, "/clusterkv/prod/seq/a%2Fb/c");
  EXPECT_NE(ab.rfind(keys.TenantPrefix("a"), 0), 0u);
  for (const SequenceKey& k : std::vector<SequenceKey>{
           {"a/b", "c/d"}, {"100%", "x y"}, {"t", std::string("\x7f\xc3\xa9", 3)}}) {
    absl::StatusOr<SequenceKey> back = keys.ParseSequence(keys.Sequence(k));
    if (k.Validate().ok()) {
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, k);
    }
  }
  EXPECT_FALSE(keys.ParseSequence("/clusterkv/prod/seq/only-tenant").ok());
  EXPECT_FALSE(keys.ParseSequence("/clusterkv/other/seq/t/s").ok());
  EXPECT_FALSE(keys.ParseSequence("/clusterkv/prod/seq/t/s%2").ok());
  EXPECT_FALSE(keys.ParseSequence("/clusterkv/prod/seq/t/s%zz").ok());
  absl::StatusOr<std::string> node = keys.ParseNode(keys.Node("node-3"));
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(*node, "node-3");
}

TEST(ClusterKeysTest, NamesAreRestricted) {
  EXPECT_TRUE(ValidateName("node id", "node-1.a_b").ok());
  for (const char* bad : {"", "a/b", "a b", "ü", "0123456789012345678901234567890123456789012345678901234567890123456789"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateName("node id", bad))) << bad;
  }
}

TEST(RecordsTest, NodeInfoRoundTripsAndRejectsGarbage) {
  NodeInfo n = Node("n-2", 42);
  n.ucx = true;
  n.ucx_address = std::string("\x00\x01ucx\xff worker", 13);  // binary, as UCX packs it
  absl::StatusOr<NodeInfo> back = DecodeNodeInfo(EncodeNodeInfo(n));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->node_id, "n-2");
  EXPECT_EQ(back->grpc_address, "n-2:1");
  EXPECT_TRUE(back->ucx);
  EXPECT_EQ(back->ucx_address, n.ucx_address);
  // A record from a node that predates ucx_address still decodes (no address).
  absl::StatusOr<NodeInfo> older = DecodeNodeInfo(
      R"({"node_id":"a","grpc_address":"x","ucx":true,"load":{"host_capacity_bytes":1,"host_bytes":0,"ssd_bytes":0,"high_watermark":0.9}})");
  ASSERT_TRUE(older.ok()) << older.status();
  EXPECT_TRUE(older->ucx_address.empty());
  EXPECT_EQ(back->load.host_bytes, n.load.host_bytes);
  EXPECT_EQ(back->load.ssd_bytes, n.load.ssd_bytes);
  EXPECT_EQ(back->load.host_capacity_bytes, n.load.host_capacity_bytes);
  EXPECT_DOUBLE_EQ(back->load.high_watermark, 0.9);
  for (const char* bad :
       {"", "{}", "[]", R"({"node_id": 5})",
        R"({"node_id":"a/b","grpc_address":"x","ucx":false,"load":{"host_capacity_bytes":1,"host_bytes":0,"ssd_bytes":0,"high_watermark":0.9}})",
        R"({"node_id":"a","grpc_address":"x","ucx":false,"load":{"host_capacity_bytes":-1,"host_bytes":0,"ssd_bytes":0,"high_watermark":0.9}})",
        R"({"node_id":"a","grpc_address":"x","ucx":true,"ucx_address":"not base64!","load":{"host_capacity_bytes":1,"host_bytes":0,"ssd_bytes":0,"high_watermark":0.9}})"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeNodeInfo(bad).status())) << bad;
  }
}

TEST(RecordsTest, DirectoryEntryRoundTripsAndRejectsGarbage) {
  DirectoryEntry e;
  e.owner = "n1";
  e.replicas = {"n2"};
  e.layout = KvLayout::Llama3_8B();
  e.layout.dtype = DType::kBFloat16;
  absl::StatusOr<DirectoryEntry> back = DecodeDirectoryEntry(EncodeDirectoryEntry(e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->owner, "n1");
  EXPECT_EQ(back->replicas, std::vector<std::string>{"n2"});
  EXPECT_EQ(back->layout, e.layout);
  EXPECT_EQ(back->Holders(), (std::vector<std::string>{"n1", "n2"}));
  EXPECT_TRUE(back->Holds("n2"));
  EXPECT_FALSE(back->Holds("n3"));
  for (const char* bad :
       {"", "7", R"({"owner":"n1","replicas":[],"layout":{}})",
        R"({"owner":"n1","replicas":[3],"layout":{"num_layers":1,"num_q_heads":1,"num_kv_heads":1,"head_dim":2,"dtype":"fp16"}})",
        R"({"owner":"n1","replicas":[],"layout":{"num_layers":1,"num_q_heads":3,"num_kv_heads":2,"head_dim":2,"dtype":"fp16"}})",
        R"({"owner":"n1","replicas":[],"layout":{"num_layers":1,"num_q_heads":1,"num_kv_heads":1,"head_dim":2,"dtype":"int8"}})"}) {
    EXPECT_FALSE(DecodeDirectoryEntry(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace clusterkv::server::cluster
