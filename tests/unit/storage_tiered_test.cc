// TieredStore on a real arena and a real RocksDB: write-back and write-through puts, eviction
// in LRU order, promotion, spilling when the host tier is full, pins, drop, quotas, restart and
// concurrent use; a prefaulted host tier.
#include "storage/tiered_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/blocks.h"
#include "tests/testing/temp_dir.h"

namespace clusterkv::storage {
namespace {

using ::clusterkv::testing::BlockBytes;
using ::clusterkv::testing::Key;
using ::clusterkv::testing::TempDir;

constexpr uint64_t kMiB = uint64_t{1} << 20;

TieredStoreOptions SmallStore(const std::string& path, uint64_t capacity = 8 * kMiB) {
  TieredStoreOptions o;
  o.path = path;
  o.host_capacity_bytes = capacity;
  o.high_watermark = 0.9;
  o.low_watermark = 0.5;
  o.huge_pages = false;
  o.background_eviction = false;  // tests drive eviction explicitly
  return o;
}

void ExpectBlock(TieredStore& store, const BlockKey& key, size_t size) {
  absl::StatusOr<std::vector<uint8_t>> got = store.GetBlock(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, BlockBytes(key, size)) << ToString(key.cluster);
}

TEST(TieredStoreTest, WriteBackPutLivesInHostUntilEvicted) {
  TempDir dir("tiered_wb");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok()) << store.status();
  const BlockKey key = Key("t", "s", 2, 1, 7);
  ASSERT_TRUE((*store)->PutBlock(key, BlockBytes(key, 300000)).ok());
  StoreStats stats = (*store)->Stats();
  EXPECT_EQ(stats.host.blocks, 1u);
  EXPECT_EQ(stats.host.bytes, 300000u);
  EXPECT_EQ(stats.ssd.blocks, 0u);
  ExpectBlock(**store, key, 300000);
  EXPECT_EQ((*store)->Stats().host.hits, 1u);
  EXPECT_EQ((*store)->PutBlock(key, BlockBytes(key, 10)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*store)->GetBlock(Key("t", "s", 2, 1, 8)).status().code(),
            absl::StatusCode::kNotFound);
}

// prefault: every page of the host arena is resident right after Open (mincore), before any
// put touched it; puts and reads work as usual.
TEST(TieredStoreTest, PrefaultedHostTierIsResidentFromOpen) {
  TempDir dir("tiered_prefault");
  TieredStoreOptions options = SmallStore(dir.path());
  options.prefault = true;
  auto store = TieredStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  const HostArena& arena = (*store)->arena();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t pages = (arena.capacity() + page - 1) / page;
  std::vector<unsigned char> resident(pages);
  ASSERT_EQ(mincore(arena.base(), pages * page, resident.data()), 0);
  for (size_t i = 0; i < pages; ++i) ASSERT_TRUE(resident[i] & 1) << "page " << i;
  const BlockKey key = Key("t", "s", 0, 0, 1);
  ASSERT_TRUE((*store)->PutBlock(key, BlockBytes(key, 5000)).ok());
  ExpectBlock(**store, key, 5000);
}

TEST(TieredStoreTest, WriteThroughPutIsOnBothTiers) {
  TempDir dir("tiered_wt");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  const BlockKey key = Key("t", "s", 0, 0, 0);
  ASSERT_TRUE((*store)->PutBlock(key, BlockBytes(key, 65536), /*write_through=*/true).ok());
  StoreStats stats = (*store)->Stats();
  EXPECT_EQ(stats.host.blocks, 1u);
  EXPECT_EQ(stats.ssd.blocks, 1u);
  EXPECT_EQ(stats.write_through_puts, 1u);
  EXPECT_EQ(stats.ssd_io.blocks_written, 1u);
}

TEST(TieredStoreTest, EvictsLeastRecentlyRecalledAndPromotesOnRead) {
  TempDir dir("tiered_evict");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  std::vector<BlockKey> keys;
  for (int c = 0; c < 12; ++c) {
    keys.push_back(Key("t", "s", 0, 0, c));
    ASSERT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), 512 * 1024)).ok());
  }
  // Recall block 0 so it is the most recent; blocks 1.. are the coldest.
  ExpectBlock(**store, keys[0], 512 * 1024);
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  StoreStats stats = (*store)->Stats();
  EXPECT_LE(stats.host.bytes, 4 * kMiB);  // low watermark 0.5 of 8 MiB
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_EQ(stats.ssd.blocks, stats.evictions);
  // Block 0 is still in host memory: reading it is a host hit.
  const uint64_t hits = stats.host.hits;
  ExpectBlock(**store, keys[0], 512 * 1024);
  EXPECT_EQ((*store)->Stats().host.hits, hits + 1);
  // Block 1 was evicted first: reading it comes from the SSD and promotes it.
  ExpectBlock(**store, keys[1], 512 * 1024);
  stats = (*store)->Stats();
  EXPECT_EQ(stats.ssd.hits, 1u);
  EXPECT_EQ(stats.promotions, 1u);
  ExpectBlock(**store, keys[1], 512 * 1024);
  EXPECT_EQ((*store)->Stats().ssd.hits, 1u);  // now served from host
  for (int c = 0; c < 12; ++c) ExpectBlock(**store, keys[c], 512 * 1024);
}

// Promote (promotion hints): an SSD-only block moves into the host tier without counting as a
// read; a later read is a host hit and counts the promotion as recalled in time; a promoted block
// evicted or dropped unread counts as wasted; a host block is left alone.
TEST(TieredStoreTest, PromoteMovesSsdBlocksUpAndCountsWhatBecameOfThem) {
  TempDir dir("tiered_promote");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  constexpr size_t kBlock = 512 * 1024;
  std::vector<BlockKey> keys;
  for (int c = 0; c < 12; ++c) {
    keys.push_back(Key("t", "s", 0, 0, c));
    ASSERT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), kBlock)).ok());
  }
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());  // 4 MiB of 6 stay: blocks 0-3 go
  StoreStats before = (*store)->Stats();
  ASSERT_EQ(before.evictions, 4u);

  auto promote = [&](int c) {
    absl::StatusOr<PromoteResult> r = (*store)->Promote(keys[c]);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PromoteResult::kNoRoom;
  };
  EXPECT_EQ(promote(0), PromoteResult::kPromoted);
  EXPECT_EQ(promote(0), PromoteResult::kAlreadyResident);
  EXPECT_EQ(promote(11), PromoteResult::kAlreadyResident);
  StoreStats after = (*store)->Stats();
  EXPECT_EQ(after.hint_promotions, 1u);
  EXPECT_EQ(after.hint_already_resident, 2u);
  EXPECT_EQ(after.host.bytes, before.host.bytes + kBlock);
  // Not reads: the tiers' hit and miss counts are those of recalls only.
  EXPECT_EQ(after.host.hits, before.host.hits);
  EXPECT_EQ(after.host.misses, before.host.misses);
  EXPECT_EQ(after.ssd.hits, before.ssd.hits);

  // The recall of a promoted block is a host hit, counted once as in time.
  ExpectBlock(**store, keys[0], kBlock);
  ExpectBlock(**store, keys[0], kBlock);
  after = (*store)->Stats();
  EXPECT_EQ(after.ssd.hits, before.ssd.hits);
  EXPECT_EQ(after.host.hits, before.host.hits + 2);
  EXPECT_EQ(after.hint_promotions_recalled, 1u);

  // Blocks 1 and 2 promoted, then everything else recalled: they are the least recent, and
  // eviction takes them back unread.
  EXPECT_EQ(promote(1), PromoteResult::kPromoted);
  EXPECT_EQ(promote(2), PromoteResult::kPromoted);
  ExpectBlock(**store, keys[0], kBlock);
  for (int c = 4; c < 12; ++c) ExpectBlock(**store, keys[c], kBlock);
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  after = (*store)->Stats();
  EXPECT_EQ(after.hint_promotions, 3u);
  EXPECT_EQ(after.hint_promotions_wasted, 2u);
  EXPECT_EQ(after.hint_promotions_recalled, 1u);

  // A promoted block dropped with its sequence is wasted too; an absent one is NotFound.
  EXPECT_EQ(promote(3), PromoteResult::kPromoted);
  ASSERT_TRUE((*store)->DropSequence(keys[0].sequence).ok());
  EXPECT_EQ((*store)->Stats().hint_promotions_wasted, 3u);
  EXPECT_EQ((*store)->Promote(keys[0]).status().code(), absl::StatusCode::kNotFound);

  // A promotion uses free room only: 14 blocks of another sequence, 6 of them moved to the
  // SSD (4 MiB stay), then 6 more put: 7 MiB of 8 are used and the high watermark is 7.2 MiB.
  // Promoting one more block would cross it, so it stays on the SSD and nothing is evicted.
  std::vector<BlockKey> more;
  for (int c = 0; c < 20; ++c) {
    more.push_back(Key("t", "s2", 0, 0, c));
    if (c == 14) {
      ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
    }
    ASSERT_TRUE((*store)->PutBlock(more.back(), BlockBytes(more.back(), kBlock)).ok());
  }
  before = (*store)->Stats();
  ASSERT_EQ(before.host.bytes, 14 * kBlock);
  absl::StatusOr<PromoteResult> full = (*store)->Promote(more[0]);  // on the SSD since the evict
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(*full, PromoteResult::kNoRoom);
  after = (*store)->Stats();
  EXPECT_EQ(after.hint_no_room, before.hint_no_room + 1);
  EXPECT_EQ(after.evictions, before.evictions);
  EXPECT_EQ(after.host.bytes, before.host.bytes);
  // Once the evictor has made room, the same hint promotes it.
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  full = (*store)->Promote(more[0]);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(*full, PromoteResult::kPromoted);
  ExpectBlock(**store, more[0], kBlock);
}

// Hint admission: when promoted blocks keep leaving the host tier unread, only one hint in 8
// is promoted and the others are counted as throttled.
TEST(TieredStoreTest, MostlyWastedHintsAreThrottled) {
  TempDir dir("tiered_hint_admission");
  auto store = TieredStore::Open(SmallStore(dir.path()));  // 8 MiB; low watermark 4 MiB
  ASSERT_TRUE(store.ok());
  constexpr size_t kBlock = 256 * 1024;
  std::vector<BlockKey> victims, fillers;
  for (int c = 0; c < 96; ++c) {
    victims.push_back(Key("t", "victims", 0, 0, c));
    ASSERT_TRUE((*store)->PutBlock(victims.back(), BlockBytes(victims.back(), kBlock)).ok());
  }
  for (int c = 0; c < 16; ++c) {  // 4 MiB: what the low watermark keeps
    fillers.push_back(Key("t", "fillers", 0, 0, c));
    ASSERT_TRUE((*store)->PutBlock(fillers.back(), BlockBytes(fillers.back(), kBlock)).ok());
  }
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  // 64 promotions, each evicted unread: the fillers are read after it, so it is the coldest.
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<PromoteResult> r = (*store)->Promote(victims[i]);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(*r, PromoteResult::kPromoted) << "victim " << i;
    for (const BlockKey& f : fillers) ASSERT_TRUE((*store)->GetBlock(f).ok());
    ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  }
  StoreStats before = (*store)->Stats();
  EXPECT_EQ(before.hint_promotions_wasted, 64u);
  EXPECT_EQ(before.hint_promotions_recalled, 0u);
  EXPECT_EQ(before.hint_throttled, 0u);
  int promoted = 0, throttled = 0;
  for (int i = 64; i < 80; ++i) {
    absl::StatusOr<PromoteResult> r = (*store)->Promote(victims[i]);
    ASSERT_TRUE(r.ok()) << r.status();
    promoted += *r == PromoteResult::kPromoted;
    throttled += *r == PromoteResult::kThrottled;
  }
  EXPECT_EQ(promoted, 2);  // the probes
  EXPECT_EQ(throttled, 14);
  EXPECT_EQ((*store)->Stats().hint_throttled, 14u);
  // A throttled block is untouched: it still reads back whole from the SSD.
  ExpectBlock(**store, victims[65], kBlock);
}

// Hinted blocks dropped with their sequence count as wasted but do not throttle later hints:
// the drop says nothing about whether the host tier keeps hinted blocks long enough.
TEST(TieredStoreTest, HintsDroppedWithTheirSequenceDoNotThrottle) {
  TempDir dir("tiered_hint_drop");
  TieredStoreOptions o = SmallStore(dir.path(), 16 * kMiB);
  o.low_watermark = 0.001;  // an eviction pass empties the host tier
  auto store = TieredStore::Open(o);
  ASSERT_TRUE(store.ok());
  constexpr size_t kBlock = 64 * 1024;
  for (int round = 0; round < 2; ++round) {
    const std::string seq = absl::StrCat("s", round);
    std::vector<BlockKey> keys;
    for (int c = 0; c < 80; ++c) {
      keys.push_back(Key("t", seq, 0, 0, c));
      ASSERT_TRUE(
          (*store)->PutBlock(keys.back(), BlockBytes(keys.back(), kBlock), /*write_through=*/true)
              .ok());
    }
    ASSERT_TRUE((*store)->EvictToLowWatermark().ok());  // every block on the SSD only
    for (const BlockKey& k : keys) {
      absl::StatusOr<PromoteResult> r = (*store)->Promote(k);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(*r, PromoteResult::kPromoted) << "round " << round;
    }
    ASSERT_TRUE((*store)->DropSequence(keys[0].sequence).ok());
  }
  const StoreStats s = (*store)->Stats();
  EXPECT_EQ(s.hint_promotions_wasted, 160u);
  EXPECT_EQ(s.hint_throttled, 0u);
}

TEST(TieredStoreTest, FullHostTierSpillsToSsdWithoutLosingData) {
  TempDir dir("tiered_spill");
  TieredStoreOptions o = SmallStore(dir.path(), 4 * kMiB);
  auto store = TieredStore::Open(o);
  ASSERT_TRUE(store.ok());
  std::vector<BlockKey> keys;
  for (int c = 0; c < 20; ++c) {
    keys.push_back(Key("t", "big", 1, 3, c));
    ASSERT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), kMiB + 4096)).ok()) << c;
  }
  StoreStats stats = (*store)->Stats();
  EXPECT_LE(stats.host.bytes, 4 * kMiB);
  // At most two 1 MiB+ blocks fit in 4 MiB: the rest spilled or were evicted to the SSD.
  EXPECT_LE(stats.host.blocks, 2u);
  EXPECT_GE(stats.spilled_puts + stats.evictions, 18u);
  for (const BlockKey& k : keys) ExpectBlock(**store, k, kMiB + 4096);
}

TEST(TieredStoreTest, PinnedBlocksStayResident) {
  TempDir dir("tiered_pin");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  const BlockKey a = Key("t", "s", 0, 0, 1), b = Key("t", "s", 0, 0, 2);
  ASSERT_TRUE((*store)->PutBlock(a, BlockBytes(a, 3 * kMiB)).ok());
  ASSERT_TRUE((*store)->PutBlock(b, BlockBytes(b, 3 * kMiB)).ok());
  {
    absl::StatusOr<PinnedBlock> pin = (*store)->Pin(a);
    ASSERT_TRUE(pin.ok()) << pin.status();
    EXPECT_EQ(std::vector<uint8_t>(pin->data(), pin->data() + pin->size()), BlockBytes(a, 3 * kMiB));
    EXPECT_EQ(pin->data(), (*store)->arena().base() + pin->arena_offset());
    ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
    // b went to the SSD; a is pinned and stays.
    EXPECT_EQ((*store)->Stats().host.bytes, 3 * kMiB);
    EXPECT_EQ((*store)->Stats().evictions, 1u);
  }
  // Released: now a can go too.
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  EXPECT_EQ((*store)->Stats().evictions, 1u);  // 3 MiB <= 4 MiB target: nothing else needed
  // Pinning an SSD-only block promotes it.
  absl::StatusOr<PinnedBlock> pin_b = (*store)->Pin(b);
  ASSERT_TRUE(pin_b.ok()) << pin_b.status();
  EXPECT_EQ(std::vector<uint8_t>(pin_b->data(), pin_b->data() + pin_b->size()),
            BlockBytes(b, 3 * kMiB));
  EXPECT_EQ((*store)->Stats().promotions, 1u);
}

TEST(TieredStoreTest, PinResidentPinsHostBlocksTogetherAndLeavesTheRest) {
  TempDir dir("tiered_pin_set");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  const BlockKey a = Key("t", "s", 0, 0, 1), b = Key("t", "s", 0, 0, 2), c = Key("t", "s", 0, 0, 3);
  ASSERT_TRUE((*store)->PutBlock(a, BlockBytes(a, 3 * kMiB)).ok());
  ASSERT_TRUE((*store)->PutBlock(b, BlockBytes(b, 3 * kMiB)).ok());
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());  // a (least recent) goes to the SSD
  ASSERT_EQ((*store)->Stats().evictions, 1u);
  ASSERT_TRUE((*store)->PutBlock(c, BlockBytes(c, 1 * kMiB)).ok());
  const SequenceKey seq = a.sequence;
  const std::vector<ClusterId> wanted = {c.cluster, a.cluster, Key("t", "s", 0, 0, 9).cluster,
                                         b.cluster};
  {
    PinnedBlockSet set = (*store)->PinResident(seq, wanted);
    ASSERT_EQ(set.size(), 4u);
    EXPECT_EQ(set.num_pinned(), 2u);
    ASSERT_NE(set.data(0), nullptr);
    EXPECT_EQ(std::vector<uint8_t>(set.data(0), set.data(0) + set.bytes(0)), BlockBytes(c, kMiB));
    EXPECT_EQ(set.data(1), nullptr);  // SSD only: left for Pin(), which promotes
    EXPECT_EQ(set.data(2), nullptr);  // absent
    ASSERT_NE(set.data(3), nullptr);
    EXPECT_EQ(std::vector<uint8_t>(set.data(3), set.data(3) + set.bytes(3)),
              BlockBytes(b, 3 * kMiB));
    // Another tenant's sequence of the same name pins nothing.
    PinnedBlockSet other = (*store)->PinResident(Key("u", "s", 0, 0, 0).sequence, wanted);
    EXPECT_EQ(other.num_pinned(), 0u);
    // Pinned: eviction cannot take b or c (4 MiB on the host, the target is 4 MiB).
    ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
    EXPECT_EQ((*store)->Stats().evictions, 1u);
    EXPECT_EQ((*store)->Stats().host.bytes, 4 * kMiB);
    // Moving the set keeps the pins; the moved-from set releases nothing.
    PinnedBlockSet moved = std::move(set);
    EXPECT_EQ(moved.num_pinned(), 2u);
  }
  // Released together: c then b (least recently recalled first) can now be evicted to make
  // room; with a leaked pin only the new block d could go.
  const BlockKey d = Key("t", "s", 0, 0, 4);
  ASSERT_TRUE((*store)->PutBlock(d, BlockBytes(d, 3 * kMiB)).ok());
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  EXPECT_EQ((*store)->Stats().evictions, 3u);
  EXPECT_EQ((*store)->Stats().host.bytes, 3 * kMiB);
  ExpectBlock(**store, b, 3 * kMiB);
  ExpectBlock(**store, c, kMiB);
}

TEST(TieredStoreTest, DropSequenceRemovesOnlyThatSequence) {
  TempDir dir("tiered_drop");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  SequenceMeta meta{KvLayout::Llama3_8B(), 100};
  const SequenceKey mine{"alice", "req"}, theirs{"bob", "req"};
  ASSERT_TRUE((*store)->PutSequence(mine, meta).ok());
  ASSERT_TRUE((*store)->PutSequence(theirs, meta).ok());
  for (int c = 0; c < 4; ++c) {
    for (const SequenceKey& s : {mine, theirs}) {
      BlockKey k{s, ClusterId{HeadId{0, 0}, c}};
      ASSERT_TRUE((*store)->PutBlock(k, BlockBytes(k, 8192), c % 2 == 0).ok());
    }
  }
  EXPECT_EQ((*store)->Usage("alice").blocks, 4u);
  EXPECT_EQ((*store)->Usage("alice").sequences, 1u);
  ASSERT_TRUE((*store)->DropSequence(mine).ok());
  EXPECT_EQ((*store)->Usage("alice").blocks, 0u);
  EXPECT_EQ((*store)->Usage("alice").host_bytes, 0u);
  EXPECT_EQ((*store)->Usage("alice").ssd_bytes, 0u);
  EXPECT_EQ((*store)->GetBlock(BlockKey{mine, ClusterId{HeadId{0, 0}, 0}}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->GetSequence(mine).status().code(), absl::StatusCode::kNotFound);
  for (int c = 0; c < 4; ++c) ExpectBlock(**store, BlockKey{theirs, ClusterId{HeadId{0, 0}, c}}, 8192);
  auto listed = (*store)->ListSequences("");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0], theirs);
}

TEST(TieredStoreTest, QuotaHookRejectsPuts) {
  TempDir dir("tiered_quota");
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  (*store)->SetQuotaHook([](const std::string& tenant, const TenantUsage& usage, uint64_t add) {
    if (usage.host_bytes + usage.ssd_bytes + add > 100000) {
      return absl::ResourceExhaustedError("quota of " + tenant);
    }
    return absl::OkStatus();
  });
  const BlockKey a = Key("t", "s", 0, 0, 0), b = Key("t", "s", 0, 0, 1);
  ASSERT_TRUE((*store)->PutBlock(a, BlockBytes(a, 60000)).ok());
  EXPECT_EQ((*store)->PutBlock(b, BlockBytes(b, 60000)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*store)->GetBlock(b).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->Usage("t").blocks, 1u);
}

TEST(TieredStoreTest, CloseFlushesAndReopenRecoversEverything) {
  TempDir dir("tiered_restart");
  const SequenceKey seq{"t", "long-context"};
  std::vector<BlockKey> keys;
  {
    auto store = TieredStore::Open(SmallStore(dir.path()));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->PutSequence(seq, SequenceMeta{KvLayout::Llama3_8B(), 4096}).ok());
    HeadIndexRecord index;
    index.head_dim = 4;
    index.centroids = {1, 0, 0, 0, 0, 1, 0, 0};
    index.sizes = {3, 5};
    ASSERT_TRUE((*store)->PutIndex(seq, HeadId{2, 1}, index).ok());
    for (int c = 0; c < 10; ++c) {
      keys.push_back(BlockKey{seq, ClusterId{HeadId{2, 1}, c}});
      ASSERT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), 100000 + c)).ok());
    }
    ASSERT_TRUE((*store)->Close().ok());
    EXPECT_EQ((*store)->PutBlock(Key("t", "x", 0, 0, 0), BlockBytes(keys[0], 10)).code(),
              absl::StatusCode::kFailedPrecondition);
  }
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Usage("t").blocks, 10u);
  EXPECT_EQ((*store)->Usage("t").sequences, 1u);
  EXPECT_EQ((*store)->Stats().ssd.blocks, 10u);
  for (int c = 0; c < 10; ++c) ExpectBlock(**store, keys[c], 100000 + c);
  auto meta = (*store)->GetSequence(seq);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->layout, KvLayout::Llama3_8B());
  EXPECT_EQ(meta->num_tokens, 4096);
  auto index = (*store)->GetIndex(seq, HeadId{2, 1});
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->sizes, (std::vector<int32_t>{3, 5}));
}

TEST(TieredStoreTest, BackgroundEvictionKeepsHostBelowHighWatermark) {
  TempDir dir("tiered_bg");
  TieredStoreOptions o = SmallStore(dir.path(), 8 * kMiB);
  o.background_eviction = true;
  auto store = TieredStore::Open(o);
  ASSERT_TRUE(store.ok());
  std::vector<BlockKey> keys;
  for (int c = 0; c < 64; ++c) {
    keys.push_back(Key("t", "bg", 0, 0, c));
    ASSERT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), 256 * 1024)).ok());
  }
  // 16 MiB were written into 8 MiB: every block is still readable, whichever tier holds it.
  for (const BlockKey& k : keys) ExpectBlock(**store, k, 256 * 1024);
  EXPECT_GT((*store)->Stats().evictions, 0u);
  EXPECT_LE((*store)->Stats().host.bytes, 8 * kMiB);
}

TEST(TieredStoreTest, ConcurrentWritersAndReadersOnDifferentSequences) {
  TempDir dir("tiered_mt");
  TieredStoreOptions o = SmallStore(dir.path(), 16 * kMiB);
  o.background_eviction = true;
  auto store = TieredStore::Open(o);
  ASSERT_TRUE(store.ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string seq = "seq" + std::to_string(t);
      for (int c = 0; c < 40; ++c) {
        const BlockKey k = Key("tenant", seq, c % 4, t, c);
        const size_t size = 64 * 1024 + 1000 * c;
        if (!(*store)->PutBlock(k, BlockBytes(k, size), c % 5 == 0).ok()) ++failures;
        // Read back an earlier block of this thread.
        const BlockKey old = Key("tenant", seq, (c / 2) % 4, t, c / 2);
        auto got = (*store)->GetBlock(old);
        if (!got.ok() || *got != BlockBytes(old, 64 * 1024 + 1000 * (c / 2))) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ((*store)->Usage("tenant").blocks, 160u);
}

TEST(TieredStoreTest, RejectsBadOptionsAndInput) {
  TempDir dir("tiered_bad");
  TieredStoreOptions o = SmallStore(dir.path());
  o.low_watermark = 0.95;  // above high
  EXPECT_EQ(TieredStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = SmallStore("");
  EXPECT_EQ(TieredStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  auto store = TieredStore::Open(SmallStore(dir.path()));
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->PutBlock(Key("", "s", 0, 0, 0), BlockBytes(Key("t", "s", 0, 0, 0), 8)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->PutBlock(Key("t", "s", 0, 0, 0), {}).code(),
            absl::StatusCode::kInvalidArgument);
  const BlockKey k = Key("t", "s", 0, 0, 1);
  ASSERT_TRUE((*store)->PutBlock(k, BlockBytes(k, 100)).ok());
  std::vector<uint8_t> small(99);
  EXPECT_EQ((*store)->ReadBlock(k, absl::MakeSpan(small)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clusterkv::storage
