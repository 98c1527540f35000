// ClusterHeat (decayed recall counts, bounded memory, the per-sequence heat map) and the
// tiered store's eviction order under EvictionPolicy::kHeat against kLru, on a real arena and a
// real RocksDB.
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "storage/cluster_heat.h"
#include "storage/tiered_store.h"
#include "tests/testing/blocks.h"
#include "tests/testing/temp_dir.h"

namespace clusterkv::storage {
namespace {

using ::clusterkv::testing::BlockBytes;
using ::clusterkv::testing::Key;
using ::clusterkv::testing::TempDir;

constexpr uint64_t kMiB = uint64_t{1} << 20;

SequenceKey Seq(const std::string& name) { return Key("t", name, 0, 0, 0).sequence; }
ClusterId Cluster(int layer, int head, int c) { return Key("t", "x", layer, head, c).cluster; }

TEST(ClusterHeatTest, CountsRecallsAndHalvesEveryHalfLife) {
  ClusterHeat heat({.half_life_fetches = 2.0});
  const SequenceKey s = Seq("s");
  const ClusterId a = Cluster(0, 0, 1);
  const ClusterId b = Cluster(0, 0, 2);
  EXPECT_EQ(heat.Score(s, a), 0.0);  // never recalled
  heat.RecordFetch(s, {a, a, b});    // a twice in one fetch
  EXPECT_DOUBLE_EQ(heat.Score(s, a), 2.0);
  EXPECT_DOUBLE_EQ(heat.Score(s, b), 1.0);
  heat.RecordFetch(s, {b});
  heat.RecordFetch(s, {b});  // two fetches later: a's 2 has halved once
  EXPECT_DOUBLE_EQ(heat.Score(s, a), 1.0);
  // b: (1 * 2^-1/2 + 1) * 2^-1/2 + 1, one fetch apart each.
  EXPECT_DOUBLE_EQ(heat.Score(s, b), 1.5 + std::exp2(-0.5));
  // The same cluster id in another sequence is another cluster.
  EXPECT_EQ(heat.Score(Seq("other"), a), 0.0);
  const ClusterHeatStats stats = heat.Stats();
  EXPECT_EQ(stats.fetches, 3u);
  EXPECT_EQ(stats.recalls, 5u);
  EXPECT_EQ(stats.tracked_clusters, 2u);
  heat.DropSequence(s);
  EXPECT_EQ(heat.Score(s, a), 0.0);
  EXPECT_EQ(heat.Stats().tracked_clusters, 0u);
}

TEST(ClusterHeatTest, StaysUnderMaxClustersByForgettingTheColdest) {
  ClusterHeat heat({.half_life_fetches = 1e9, .max_clusters = 4});
  const SequenceKey s = Seq("s");
  for (int i = 0; i < 3; ++i) heat.RecordFetch(s, {Cluster(0, 0, 100)});  // the hot one
  for (int c = 0; c < 10; ++c) heat.RecordFetch(s, {Cluster(0, 0, c)});
  const ClusterHeatStats stats = heat.Stats();
  EXPECT_LE(stats.tracked_clusters, 4u);
  EXPECT_GT(stats.forgotten, 0u);
  EXPECT_EQ(stats.tracked_clusters + stats.forgotten, 11u);
  EXPECT_NEAR(heat.Score(s, Cluster(0, 0, 100)), 3.0, 1e-6);  // kept (decay ~1e-8)
}

TEST(ClusterHeatTest, HeatMapBucketsFetchesAndRanksRowsByRecalls) {
  ClusterHeat heat({.map_fetches_per_bucket = 2, .map_buckets = 2, .map_bucket_clusters = 2});
  const SequenceKey s = Seq("s");
  const ClusterId a = Cluster(1, 0, 1);
  const ClusterId b = Cluster(1, 0, 2);
  const ClusterId c = Cluster(1, 1, 3);
  EXPECT_FALSE(heat.Map(s, 8).has_value());
  heat.RecordFetch(s, {a});        // fetch 0, bucket [0, 2): dropped once a third one starts
  heat.RecordFetch(s, {a, b});     // fetch 1
  heat.RecordFetch(s, {b});        // fetch 2, bucket [2, 4)
  heat.RecordFetch(s, {b, a, c});  // fetch 3: c is past the 2 distinct clusters of the bucket
  heat.RecordFetch(s, {c});        // fetch 4, bucket [4, 6)
  std::optional<HeatMap> map = heat.Map(s, 8);
  ASSERT_TRUE(map.has_value());
  EXPECT_EQ(map->fetches_per_bucket, 2);
  EXPECT_EQ(map->fetches, 5u);
  EXPECT_EQ(map->first_fetch, 2u);
  ASSERT_EQ(map->rows.size(), 3u);
  EXPECT_EQ(map->rows[0], b);  // 2 recalls in the kept buckets
  EXPECT_EQ(map->rows[1], a);  // 1, before c (1) in id order
  EXPECT_EQ(map->rows[2], c);
  EXPECT_EQ(map->counts[0], (std::vector<uint32_t>{2, 0}));
  EXPECT_EQ(map->counts[1], (std::vector<uint32_t>{1, 0}));
  EXPECT_EQ(map->counts[2], (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(map->other, (std::vector<uint32_t>{1, 0}));
  EXPECT_EQ(heat.Map(s, 1)->rows.size(), 1u);
  heat.DropSequence(s);
  EXPECT_FALSE(heat.Map(s, 8).has_value());
}

TEST(ClusterHeatTest, KeepsMapsOfTheMostRecentlyFetchedSequences) {
  ClusterHeat heat({.map_sequences = 2});
  heat.RecordFetch(Seq("a"), {Cluster(0, 0, 0)});
  heat.RecordFetch(Seq("b"), {Cluster(0, 0, 0)});
  heat.RecordFetch(Seq("a"), {Cluster(0, 0, 0)});
  heat.RecordFetch(Seq("c"), {Cluster(0, 0, 0)});  // b is the idle one
  EXPECT_TRUE(heat.Map(Seq("a"), 4).has_value());
  EXPECT_FALSE(heat.Map(Seq("b"), 4).has_value());
  EXPECT_TRUE(heat.Map(Seq("c"), 4).has_value());
}

TEST(EvictionPolicyTest, ParsesNames) {
  EXPECT_EQ(*ParseEvictionPolicy("lru"), EvictionPolicy::kLru);
  EXPECT_EQ(*ParseEvictionPolicy("heat"), EvictionPolicy::kHeat);
  EXPECT_EQ(ParseEvictionPolicy("lfu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_STREQ(EvictionPolicyName(EvictionPolicy::kHeat), "heat");
}

// 12 blocks of 512 KiB in an 8 MiB host tier; blocks 0-3 are recalled by fetches (hot), then
// blocks 8-11 are read last (most recent). One pass down to the 4 MiB low watermark evicts 4.
// Returns which blocks are still in the host tier.
std::vector<bool> HostResidentAfterEviction(EvictionPolicy policy, StoreStats* stats) {
  TempDir dir("tiered_heat");
  TieredStoreOptions o;
  o.path = dir.path();
  o.host_capacity_bytes = 8 * kMiB;
  o.high_watermark = 0.9;
  o.low_watermark = 0.5;
  o.huge_pages = false;
  o.background_eviction = false;
  o.eviction_policy = policy;
  auto store = TieredStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return {};
  std::vector<BlockKey> keys;
  std::vector<ClusterId> clusters;
  for (int c = 0; c < 12; ++c) {
    keys.push_back(Key("t", "s", 2, 0, c));
    clusters.push_back(keys.back().cluster);
    EXPECT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), 512 * 1024)).ok());
  }
  const SequenceKey seq = keys[0].sequence;
  for (int round = 0; round < 3; ++round) {
    (*store)->RecordFetch(seq, absl::MakeConstSpan(clusters).subspan(0, 4));
  }
  for (int c = 8; c < 12; ++c) EXPECT_TRUE((*store)->GetBlock(keys[c]).ok());
  EXPECT_TRUE((*store)->EvictToLowWatermark().ok());
  *stats = (*store)->Stats();
  PinnedBlockSet resident = (*store)->PinResident(seq, clusters);
  std::vector<bool> out;
  for (size_t i = 0; i < clusters.size(); ++i) out.push_back(resident.data(i) != nullptr);
  return out;
}

TEST(EvictionPolicyTest, HeatEvictsNeverRecalledBlocksFirstInLruOrder) {
  StoreStats stats;
  const std::vector<bool> host = HostResidentAfterEviction(EvictionPolicy::kHeat, &stats);
  // Hot 0-3 stay although least recently touched; 4-7 (never recalled, oldest) go.
  EXPECT_EQ(host, (std::vector<bool>{true, true, true, true, false, false, false, false, true,
                                     true, true, true}));
  EXPECT_EQ(stats.evictions, 4u);
  EXPECT_EQ(stats.heat_evictions, 4u);
  EXPECT_EQ(stats.heat_evictions_never_recalled, 4u);
}

TEST(EvictionPolicyTest, LruEvictsLeastRecentlyTouchedWhateverTheHeat) {
  StoreStats stats;
  const std::vector<bool> host = HostResidentAfterEviction(EvictionPolicy::kLru, &stats);
  EXPECT_EQ(host, (std::vector<bool>{false, false, false, false, true, true, true, true, true,
                                     true, true, true}));
  EXPECT_EQ(stats.evictions, 4u);
  EXPECT_EQ(stats.heat_evictions, 0u);
}

TEST(EvictionPolicyTest, HeatKeepsTheHotterOfTwoRecalledBlocks) {
  TempDir dir("tiered_heat2");
  TieredStoreOptions o;
  o.path = dir.path();
  o.host_capacity_bytes = 4 * kMiB;
  o.high_watermark = 0.9;
  o.low_watermark = 0.5;
  o.huge_pages = false;
  o.background_eviction = false;
  o.eviction_policy = EvictionPolicy::kHeat;
  auto store = TieredStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  const BlockKey warm = Key("t", "s", 0, 0, 0);
  const BlockKey hot = Key("t", "s", 0, 0, 1);
  ASSERT_TRUE((*store)->PutBlock(warm, BlockBytes(warm, 1536 * 1024)).ok());
  ASSERT_TRUE((*store)->PutBlock(hot, BlockBytes(hot, 1536 * 1024)).ok());
  (*store)->RecordFetch(warm.sequence, {hot.cluster, warm.cluster});
  (*store)->RecordFetch(warm.sequence, {hot.cluster});
  ASSERT_TRUE((*store)->GetBlock(warm).ok());  // warm is the most recently touched
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  PinnedBlockSet resident = (*store)->PinResident(warm.sequence, {warm.cluster, hot.cluster});
  EXPECT_EQ(resident.data(0), nullptr);  // warm (1 recall) went to the SSD
  EXPECT_NE(resident.data(1), nullptr);  // hot (2 recalls) stayed
  EXPECT_EQ((*store)->Stats().heat_evictions_never_recalled, 0u);
}

}  // namespace
}  // namespace clusterkv::storage
