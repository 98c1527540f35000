// Tests of storage/slab_allocator: size classes and alignment, non-overlap under randomised
// churn, coalescing of free slabs, large runs, exhaustion, statistics, CHECKs on bad frees
// and concurrent use.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "storage/slab_allocator.h"

namespace clusterkv::storage {
namespace {

constexpr uint64_t kSlab = SlabAllocator::kSlabBytes;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// Live allocations as a set of [offset, offset + capacity) intervals that must not overlap.
class IntervalSet {
 public:
  // Adds the interval; fails the test if it overlaps one already present.
  void Add(const SlabAllocation& a) {
    const uint64_t begin = a.offset;
    const uint64_t end = a.offset + a.capacity;
    auto next = intervals_.lower_bound(begin);
    if (next != intervals_.end()) {
      ASSERT_LE(end, next->first) << "[" << begin << ", " << end << ") overlaps the next block";
    }
    if (next != intervals_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->second, begin)
          << "[" << begin << ", " << end << ") overlaps the previous block";
    }
    intervals_.emplace(begin, end);
  }
  void Remove(const SlabAllocation& a) { intervals_.erase(a.offset); }

 private:
  std::map<uint64_t, uint64_t> intervals_;
};

// Sizes spread log-uniformly over [1, max_bytes], so every size class is visited.
uint64_t RandomSize(std::mt19937_64& rng, uint64_t max_bytes) {
  std::uniform_real_distribution<double> log_size(0.0, std::log2(static_cast<double>(max_bytes)));
  const uint64_t bytes = static_cast<uint64_t>(std::exp2(log_size(rng)));
  return std::clamp<uint64_t>(bytes, 1, max_bytes);
}

TEST(SlabAllocatorTest, ZeroBytesIsInvalidArgument) {
  SlabAllocator slabs(16 * kSlab);
  EXPECT_EQ(slabs.Allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SlabAllocatorTest, CapacityRoundsDownToWholeSlabs) {
  EXPECT_EQ(SlabAllocator(3 * kSlab + kSlab - 1).Stats().capacity_bytes, 3 * kSlab);
  SlabAllocator tiny(kSlab - 1);
  EXPECT_EQ(tiny.Stats().capacity_bytes, 0u);
  EXPECT_EQ(tiny.Allocate(64).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(tiny.Allocate(3 * kMiB).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(SlabAllocatorTest, BlocksAreAlignedAndWithinOneEighthOfTheRequest) {
  SlabAllocator slabs(512 * kSlab);
  std::vector<uint64_t> sizes;
  for (uint64_t b = 1; b <= 4096; ++b) sizes.push_back(b);
  for (uint64_t p = 4096; p <= SlabAllocator::kMaxClassBytes; p *= 2) {
    for (uint64_t b : {p - 1, p, p + 1, p + p / 3}) sizes.push_back(b);
  }
  uint64_t previous_capacity = 0;
  for (uint64_t bytes : sizes) {
    if (bytes > SlabAllocator::kMaxClassBytes) continue;
    auto a = slabs.Allocate(bytes);
    ASSERT_TRUE(a.ok()) << bytes << ": " << a.status();
    EXPECT_EQ(a->offset % SlabAllocator::kAlignment, 0u) << bytes;
    EXPECT_EQ(a->capacity % SlabAllocator::kAlignment, 0u) << bytes;
    EXPECT_EQ(a->requested, bytes);
    EXPECT_GE(a->capacity, bytes);
    // Classes are 64 bytes apart up to 512, then 8 per power of two: the rounding loss is
    // under 64 bytes or an eighth of the request.
    EXPECT_LE(a->capacity - bytes, std::max<uint64_t>(63, bytes / 8)) << bytes;
    if (bytes <= 4096) {
      EXPECT_GE(a->capacity, previous_capacity) << "classes must grow with the request";
    }
    previous_capacity = a->capacity;
    slabs.Free(*a);
  }
  auto top = slabs.Allocate(SlabAllocator::kMaxClassBytes);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->capacity, SlabAllocator::kMaxClassBytes);
}

TEST(SlabAllocatorTest, LargeBlocksTakeWholeContiguousSlabs) {
  SlabAllocator slabs(16 * kSlab);
  struct Case {
    uint64_t bytes;
    uint64_t slabs;
  };
  for (const Case& c : {Case{kMiB + 1, 1}, Case{kSlab, 1}, Case{kSlab + 1, 2},
                        Case{5 * kSlab - 7, 5}, Case{16 * kSlab, 16}}) {
    auto a = slabs.Allocate(c.bytes);
    ASSERT_TRUE(a.ok()) << c.bytes << ": " << a.status();
    EXPECT_EQ(a->offset % kSlab, 0u);
    EXPECT_EQ(a->capacity, c.slabs * kSlab) << c.bytes;
    EXPECT_EQ(a->requested, c.bytes);
    EXPECT_EQ(slabs.Stats().reserved_bytes, c.slabs * kSlab);
    slabs.Free(*a);
    EXPECT_EQ(slabs.Stats().reserved_bytes, 0u);
  }
}

TEST(SlabAllocatorTest, ExhaustionIsResourceExhaustedAndRecoverable) {
  SlabAllocator slabs(4 * kSlab);
  EXPECT_EQ(slabs.Allocate(4 * kSlab + 1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(slabs.Allocate(std::numeric_limits<uint64_t>::max()).status().code(),
            absl::StatusCode::kResourceExhausted);

  std::vector<SlabAllocation> held;
  for (int i = 0; i < 4; ++i) {
    auto a = slabs.Allocate(kSlab);
    ASSERT_TRUE(a.ok());
    held.push_back(*a);
  }
  EXPECT_EQ(slabs.Allocate(64).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(slabs.Allocate(kSlab).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(slabs.Stats().live_blocks, 4u);

  // A failed allocation changed nothing; freeing one slab makes room for small blocks.
  slabs.Free(held[2]);
  auto small = slabs.Allocate(100);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->offset / kSlab, held[2].offset / kSlab);
  // The slab now serves the 128-byte class: 16384 blocks fit, the next one does not.
  std::vector<SlabAllocation> smalls = {*small};
  for (uint64_t i = 1; i < kSlab / 128; ++i) {
    auto a = slabs.Allocate(128);
    ASSERT_TRUE(a.ok()) << i;
    smalls.push_back(*a);
  }
  EXPECT_EQ(slabs.Allocate(128).status().code(), absl::StatusCode::kResourceExhausted);
  slabs.Free(smalls.back());
  smalls.pop_back();
  EXPECT_TRUE(slabs.Allocate(128).ok());
}

TEST(SlabAllocatorTest, FreedSlabsCoalesceIntoOneRun) {
  constexpr uint64_t kSlabs = 8;
  SlabAllocator slabs(kSlabs * kSlab);
  // Alternate single-slab runs and slabs of small blocks across the whole range.
  std::vector<SlabAllocation> runs;
  std::vector<std::vector<SlabAllocation>> small_slabs;
  for (uint64_t i = 0; i < kSlabs; ++i) {
    if (i % 2 == 0) {
      auto a = slabs.Allocate(kSlab);
      ASSERT_TRUE(a.ok());
      runs.push_back(*a);
    } else {
      std::vector<SlabAllocation> blocks;
      for (uint64_t j = 0; j < kSlab / (256 * 1024); ++j) {  // fills one slab exactly
        auto a = slabs.Allocate(256 * 1024);
        ASSERT_TRUE(a.ok());
        blocks.push_back(*a);
      }
      small_slabs.push_back(blocks);
    }
  }
  EXPECT_EQ(slabs.Stats().reserved_bytes, kSlabs * kSlab);
  EXPECT_EQ(slabs.Allocate(kSlab).status().code(), absl::StatusCode::kResourceExhausted);

  // Free in an order that creates isolated holes first, then fills the gaps between them.
  for (size_t i = 0; i < runs.size(); i += 2) slabs.Free(runs[i]);
  EXPECT_EQ(slabs.Allocate(2 * kSlab).status().code(), absl::StatusCode::kResourceExhausted);
  for (auto& blocks : small_slabs) {
    for (const SlabAllocation& a : blocks) slabs.Free(a);
  }
  for (size_t i = 1; i < runs.size(); i += 2) slabs.Free(runs[i]);

  const SlabStats stats = slabs.Stats();
  EXPECT_EQ(stats.requested_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 0u);
  EXPECT_EQ(stats.live_blocks, 0u);
  auto all = slabs.Allocate(kSlabs * kSlab);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->offset, 0u);
}

TEST(SlabAllocatorTest, RandomChurnNeverOverlapsAndDrainsToZero) {
  constexpr uint64_t kSlabs = 64;
  SlabAllocator slabs(kSlabs * kSlab);
  std::mt19937_64 rng(20240611);
  IntervalSet live_set;
  std::vector<SlabAllocation> live;
  uint64_t requested = 0;
  int exhausted = 0;
  for (int step = 0; step < 40000; ++step) {
    const bool allocate = live.empty() || rng() % 100 < 55;
    if (allocate) {
      // One in 20 requests is a multi-slab block.
      const uint64_t bytes = rng() % 20 == 0 ? kMiB + rng() % (5 * kSlab)
                                             : RandomSize(rng, SlabAllocator::kMaxClassBytes);
      auto a = slabs.Allocate(bytes);
      if (!a.ok()) {
        ASSERT_EQ(a.status().code(), absl::StatusCode::kResourceExhausted);
        ++exhausted;
        continue;
      }
      ASSERT_EQ(a->offset % SlabAllocator::kAlignment, 0u);
      ASSERT_GE(a->capacity, bytes);
      ASSERT_LE(a->offset + a->capacity, kSlabs * kSlab);
      ASSERT_NO_FATAL_FAILURE(live_set.Add(*a));
      live.push_back(*a);
      requested += bytes;
    } else {
      const size_t i = rng() % live.size();
      slabs.Free(live[i]);
      live_set.Remove(live[i]);
      requested -= live[i].requested;
      live[i] = live.back();
      live.pop_back();
    }
    if (step % 1000 == 0) {
      const SlabStats stats = slabs.Stats();
      ASSERT_EQ(stats.live_blocks, live.size());
      ASSERT_EQ(stats.requested_bytes, requested);
      ASSERT_LE(stats.reserved_bytes, stats.capacity_bytes);
      ASSERT_GE(stats.reserved_bytes, stats.requested_bytes);
    }
  }
  EXPECT_GT(exhausted, 0) << "the churn should have filled the allocator at least once";

  std::shuffle(live.begin(), live.end(), rng);
  for (const SlabAllocation& a : live) slabs.Free(a);
  const SlabStats stats = slabs.Stats();
  EXPECT_EQ(stats.live_blocks, 0u);
  EXPECT_EQ(stats.requested_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 0u);
  EXPECT_EQ(stats.Fragmentation(), 0.0);
  EXPECT_EQ(stats.Occupancy(), 0.0);
  auto all = slabs.Allocate(kSlabs * kSlab);
  ASSERT_TRUE(all.ok()) << "free slabs did not coalesce: " << all.status();
  EXPECT_EQ(all->offset, 0u);
}

TEST(SlabAllocatorTest, StatsForAKnownPattern) {
  SlabAllocator slabs(16 * kSlab);  // 32 MiB
  // 100 blocks of 1000 bytes share one slab of the 1024-byte class.
  std::vector<SlabAllocation> kib;
  for (int i = 0; i < 100; ++i) {
    auto a = slabs.Allocate(1000);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->capacity, 1024u);
    kib.push_back(*a);
  }
  SlabStats stats = slabs.Stats();
  EXPECT_EQ(stats.capacity_bytes, 32 * kMiB);
  EXPECT_EQ(stats.requested_bytes, 100000u);
  EXPECT_EQ(stats.reserved_bytes, kSlab);
  EXPECT_EQ(stats.live_blocks, 100u);
  EXPECT_DOUBLE_EQ(stats.Fragmentation(), 1.0 - 100000.0 / (2.0 * kMiB));
  EXPECT_DOUBLE_EQ(stats.Occupancy(), 100000.0 / (32.0 * kMiB));

  // Three 1 MiB blocks: two per slab, so two slabs.
  std::vector<SlabAllocation> mib;
  for (int i = 0; i < 3; ++i) {
    auto a = slabs.Allocate(kMiB);
    ASSERT_TRUE(a.ok());
    mib.push_back(*a);
  }
  // A 3 MiB block: a run of two slabs.
  auto run = slabs.Allocate(3 * kMiB);
  ASSERT_TRUE(run.ok());
  stats = slabs.Stats();
  EXPECT_EQ(stats.requested_bytes, 100000u + 6 * kMiB);
  EXPECT_EQ(stats.reserved_bytes, 5 * kSlab);
  EXPECT_EQ(stats.live_blocks, 104u);
  EXPECT_DOUBLE_EQ(stats.Fragmentation(), 1.0 - (100000.0 + 6.0 * kMiB) / (10.0 * kMiB));
  EXPECT_DOUBLE_EQ(stats.Occupancy(), (100000.0 + 6.0 * kMiB) / (32.0 * kMiB));

  // Freeing the lone block of the half-used 1 MiB slab returns that slab; freeing 99 of the
  // 1000-byte blocks keeps theirs.
  slabs.Free(mib[2]);
  for (int i = 0; i < 99; ++i) slabs.Free(kib[i]);
  stats = slabs.Stats();
  EXPECT_EQ(stats.requested_bytes, 1000u + 5 * kMiB);
  EXPECT_EQ(stats.reserved_bytes, 4 * kSlab);
  EXPECT_EQ(stats.live_blocks, 4u);
  slabs.Free(kib[99]);
  slabs.Free(mib[0]);
  slabs.Free(mib[1]);
  slabs.Free(*run);
  stats = slabs.Stats();
  EXPECT_EQ(stats.requested_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 0u);
  EXPECT_EQ(stats.live_blocks, 0u);
}

TEST(SlabAllocatorTest, AlternatingAllocFreeReusesTheSlab) {
  SlabAllocator slabs(2 * kSlab);
  for (int i = 0; i < 100000; ++i) {
    auto a = slabs.Allocate(64);
    ASSERT_TRUE(a.ok());
    ASSERT_EQ(a->offset, 0u);
    slabs.Free(*a);
  }
  EXPECT_EQ(slabs.Stats().reserved_bytes, 0u);
}

TEST(SlabAllocatorDeathTest, DoubleAndForeignFreesCheckFail) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SlabAllocator slabs(8 * kSlab);
  auto small = slabs.Allocate(100);
  auto large = slabs.Allocate(3 * kMiB);
  ASSERT_TRUE(small.ok() && large.ok());

  EXPECT_DEATH(
      {
        slabs.Free(*small);
        slabs.Free(*small);
      },
      "double free");
  EXPECT_DEATH(
      {
        slabs.Free(*large);
        slabs.Free(*large);
      },
      "double free");
  // Never allocated, though inside a class slab.
  SlabAllocation unallocated = *small;
  unallocated.offset += small->capacity;
  EXPECT_DEATH(slabs.Free(unallocated), "double free");
  // Misaligned inside a class slab.
  SlabAllocation misaligned = *small;
  misaligned.offset += 64;
  EXPECT_DEATH(slabs.Free(misaligned), "not a block");
  // The middle of a run, and a free slab.
  SlabAllocation inside_run = *large;
  inside_run.offset += kSlab;
  EXPECT_DEATH(slabs.Free(inside_run), "not the start of a run");
  SlabAllocation free_slab{7 * kSlab, kSlab, kSlab};
  EXPECT_DEATH(slabs.Free(free_slab), "not the start of a run");
  // Outside the range, and a capacity that does not match the block.
  EXPECT_DEATH(slabs.Free(SlabAllocation{8 * kSlab, 128, 100}), "outside");
  SlabAllocation wrong_size = *small;
  wrong_size.capacity = 256;
  EXPECT_DEATH(slabs.Free(wrong_size), "do not match");
}

TEST(SlabAllocatorTest, ConcurrentThreadsNeverShareBytes) {
  constexpr uint64_t kSlabs = 32;
  constexpr int kThreads = 4;
  constexpr int kSteps = 3000;
  SlabAllocator slabs(kSlabs * kSlab);
  // Stands in for the arena: each live block is filled with its owner's tag and checked
  // before it is freed, so a block handed to two owners shows up as a foreign tag.
  std::vector<uint8_t> memory(kSlabs * kSlab);
  std::vector<int> failures(kThreads, 0);

  auto worker = [&](int t) {
    std::mt19937_64 rng(1000 + t);
    struct Live {
      SlabAllocation a;
      uint8_t tag;
    };
    std::vector<Live> live;
    uint8_t counter = 0;
    auto free_one = [&](size_t i) {
      const Live& l = live[i];
      const uint8_t* p = memory.data() + l.a.offset;
      // All bytes equal the tag iff the first does and each equals its successor.
      if (p[0] != l.tag || std::memcmp(p, p + 1, l.a.requested - 1) != 0) {
        ++failures[t];
      }
      slabs.Free(l.a);
      live[i] = live.back();
      live.pop_back();
    };
    for (int step = 0; step < kSteps; ++step) {
      if (live.size() < 32 && (live.empty() || rng() % 100 < 60)) {
        const uint64_t bytes =
            rng() % 50 == 0 ? kMiB + rng() % (2 * kSlab) : RandomSize(rng, 256 * 1024);
        auto a = slabs.Allocate(bytes);
        if (!a.ok()) {
          if (a.status().code() != absl::StatusCode::kResourceExhausted) ++failures[t];
          if (!live.empty()) free_one(rng() % live.size());
          continue;
        }
        // Top two bits: the thread; low six: a per-thread counter, so a block overlapping
        // another of the same thread is caught too.
        const uint8_t tag = static_cast<uint8_t>(t << 6 | (counter++ & 0x3f));
        std::memset(memory.data() + a->offset, tag, a->requested);
        live.push_back({*a, tag});
      } else {
        free_one(rng() % live.size());
      }
    }
    while (!live.empty()) free_one(live.size() - 1);
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
  const SlabStats stats = slabs.Stats();
  EXPECT_EQ(stats.live_blocks, 0u);
  EXPECT_EQ(stats.requested_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 0u);
  EXPECT_TRUE(slabs.Allocate(kSlabs * kSlab).ok());
}

}  // namespace
}  // namespace clusterkv::storage
