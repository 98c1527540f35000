// Device cluster cache bookkeeping: hits within R steps, slot allocation, eviction and errors.
#include "gpu/device_cache.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"

namespace clusterkv::gpu {
namespace {

ClusterId Id(int c, int head = 0) { return ClusterId{HeadId{0, head}, c}; }

bool Overlap(const TokenRange& a, const TokenRange& b) {
  return a.begin < b.end && b.begin < a.end;
}

TEST(ClusterCacheTest, HitsWithinResidencyWindow) {
  ClusterCache cache(100, /*residency_steps=*/1);
  auto p0 = cache.Access(0, std::vector<CacheRequest>{{Id(1), 10}, {Id(2), 20}});
  ASSERT_TRUE(p0.ok()) << p0.status();
  EXPECT_TRUE(p0->hits.empty());
  EXPECT_EQ(p0->misses.size(), 2u);
  EXPECT_FALSE(Overlap(p0->misses[0].slot, p0->misses[1].slot));

  auto p1 = cache.Access(1, std::vector<CacheRequest>{{Id(1), 10}, {Id(3), 5}});
  ASSERT_TRUE(p1.ok());
  ASSERT_EQ(p1->hits.size(), 1u);
  EXPECT_EQ(p1->hits[0].id, Id(1));
  EXPECT_EQ(p1->misses.size(), 1u);

  // Cluster 2 was last used at step 0: at step 2 it is older than R = 1 and must be re-fetched.
  auto p2 = cache.Access(2, std::vector<CacheRequest>{{Id(2), 20}});
  ASSERT_TRUE(p2.ok());
  EXPECT_TRUE(p2->hits.empty());
  EXPECT_EQ(cache.stats().hit_clusters, 1);
  EXPECT_EQ(cache.stats().miss_clusters, 4);
  EXPECT_DOUBLE_EQ(cache.stats().HitRate(), 10.0 / 65.0);
}

TEST(ClusterCacheTest, LongerResidencyKeepsClusters) {
  ClusterCache cache(100, /*residency_steps=*/3);
  ASSERT_TRUE(cache.Access(0, std::vector<CacheRequest>{{Id(7), 8}}).ok());
  auto p = cache.Access(3, std::vector<CacheRequest>{{Id(7), 8}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->hits.size(), 1u);
  p = cache.Access(7, std::vector<CacheRequest>{{Id(7), 8}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->misses.size(), 1u);
}

TEST(ClusterCacheTest, TruncatedHitsAndGrowingRequests) {
  ClusterCache cache(100, 1);
  auto p = cache.Access(0, std::vector<CacheRequest>{{Id(1), 10}});
  ASSERT_TRUE(p.ok());
  const TokenRange first = p->misses[0].slot;
  // Fewer rows than resident: a hit on the slot's first rows.
  p = cache.Access(1, std::vector<CacheRequest>{{Id(1), 4}});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->hits.size(), 1u);
  EXPECT_EQ(p->hits[0].slot, (TokenRange{first.begin, first.begin + 4}));
  // More rows than resident: a miss with a new slot.
  p = cache.Access(2, std::vector<CacheRequest>{{Id(1), 30}});
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->misses.size(), 1u);
  EXPECT_EQ(p->misses[0].slot.size(), 30);
}

TEST(ClusterCacheTest, EvictsLeastRecentlyUsedWhenFull) {
  ClusterCache cache(30, /*residency_steps=*/10);
  ASSERT_TRUE(cache.Access(0, std::vector<CacheRequest>{{Id(1), 10}}).ok());
  ASSERT_TRUE(cache.Access(1, std::vector<CacheRequest>{{Id(2), 10}}).ok());
  ASSERT_TRUE(cache.Access(2, std::vector<CacheRequest>{{Id(3), 10}}).ok());
  auto p = cache.Access(3, std::vector<CacheRequest>{{Id(4), 10}, {Id(3), 10}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->hits.size(), 1u);
  EXPECT_EQ(cache.stats().evictions, 1);
  // Cluster 1 (oldest) went; 2 is still resident.
  p = cache.Access(4, std::vector<CacheRequest>{{Id(2), 10}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->hits.size(), 1u);
  EXPECT_EQ(cache.resident_tokens(), 30);
}

TEST(ClusterCacheTest, SlotsNeverOverlapUnderChurn) {
  ClusterCache cache(1000, 1);
  for (int step = 0; step < 200; ++step) {
    std::vector<CacheRequest> wanted;
    for (int j = 0; j < 12; ++j) {
      const int c = (step * 7 + j * 13) % 60;
      if (std::any_of(wanted.begin(), wanted.end(), [&](const CacheRequest& r) { return r.id == Id(c); })) {
        continue;
      }
      wanted.push_back({Id(c), 1 + (c * 37) % 60});
    }
    auto p = cache.Access(step, wanted);
    ASSERT_TRUE(p.ok()) << p.status() << " at step " << step;
    std::vector<TokenRange> slots;
    for (const auto& e : p->hits) slots.push_back(e.slot);
    for (const auto& e : p->misses) slots.push_back(e.slot);
    ASSERT_EQ(slots.size(), wanted.size());
    for (size_t a = 0; a < slots.size(); ++a) {
      EXPECT_GE(slots[a].begin, 0);
      EXPECT_LE(slots[a].end, 1000);
      for (size_t b = a + 1; b < slots.size(); ++b) ASSERT_FALSE(Overlap(slots[a], slots[b]));
    }
  }
}

TEST(ClusterCacheTest, RejectsBadRequests) {
  ClusterCache cache(20, 1);
  EXPECT_EQ(cache.Access(0, std::vector<CacheRequest>{{Id(1), 21}}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache.resident_clusters(), 0);
  EXPECT_EQ(cache.Access(0, std::vector<CacheRequest>{{Id(1), 2}, {Id(1), 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Access(0, std::vector<CacheRequest>{{Id(1), 0}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(cache.Access(5, std::vector<CacheRequest>{{Id(1), 2}}).ok());
  EXPECT_EQ(cache.Access(4, std::vector<CacheRequest>{{Id(1), 2}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClusterCacheTest, ReservePlacesWithoutCountingAndTheStepThenHits) {
  ClusterCache cache(100, /*residency_steps=*/1);
  auto reserved = cache.Reserve(0, std::vector<CacheRequest>{{Id(1), 20}, {Id(2), 10}});
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  EXPECT_EQ(reserved->misses.size(), 2u);
  EXPECT_EQ(cache.stats().miss_clusters, 0);
  EXPECT_EQ(cache.stats().hit_clusters, 0);
  EXPECT_EQ(cache.resident_tokens(), 30);

  // The step's real selection, in the same step: the reserved cluster it shares is a hit in
  // the slot the reservation gave it; cluster 2, reserved but not wanted, may be evicted.
  auto step = cache.Access(0, std::vector<CacheRequest>{{Id(1), 20}, {Id(3), 75}});
  ASSERT_TRUE(step.ok()) << step.status();
  ASSERT_EQ(step->hits.size(), 1u);
  auto reserved_1 = std::find_if(reserved->misses.begin(), reserved->misses.end(),
                                 [](const CacheEntry& e) { return e.id == Id(1); });
  ASSERT_NE(reserved_1, reserved->misses.end());
  EXPECT_EQ(step->hits[0].slot, reserved_1->slot);
  EXPECT_FALSE(cache.Contains(Id(2)));
  EXPECT_EQ(cache.stats().hit_tokens, 20);
  EXPECT_EQ(cache.stats().miss_tokens, 75);
  EXPECT_EQ(cache.stats().evictions, 1);
}

}  // namespace
}  // namespace clusterkv::gpu
