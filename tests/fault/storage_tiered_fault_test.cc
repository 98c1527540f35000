// TieredStore under faults: a full disk, read errors and corrupted blocks on a real RocksDB
// over FaultyFileSystem, and a process killed with SIGKILL in the middle of a write-through
// put storm, after which every acknowledged block must read back bit-exact.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "storage/testing/faulty_file_system.h"
#include "storage/tiered_store.h"
#include "tests/testing/blocks.h"
#include "tests/testing/temp_dir.h"

namespace clusterkv::storage {
namespace {

using ::clusterkv::storage::testing::FaultyFileSystem;
using ::clusterkv::testing::BlockBytes;
using ::clusterkv::testing::Key;
using ::clusterkv::testing::TempDir;

constexpr uint64_t kMiB = uint64_t{1} << 20;

TieredStoreOptions Options(const std::string& path, std::shared_ptr<FaultyFileSystem> fs) {
  TieredStoreOptions o;
  o.path = path;
  o.host_capacity_bytes = 8 * kMiB;
  o.low_watermark = 0.25;
  o.huge_pages = false;
  o.background_eviction = false;
  o.file_system = std::move(fs);
  return o;
}

TEST(TieredStoreFaultTest, FullDiskKeepsServingFromHostAndRecovers) {
  TempDir dir("tiered_full");
  auto fs = std::make_shared<FaultyFileSystem>();
  auto store = TieredStore::Open(Options(dir.path(), fs));
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<BlockKey> keys;
  for (int c = 0; c < 6; ++c) {
    keys.push_back(Key("t", "s", 0, 0, c));
    ASSERT_TRUE((*store)->PutBlock(keys.back(), BlockBytes(keys.back(), kMiB)).ok());
  }
  fs->NoSpace(true);
  const BlockKey durable = Key("t", "s", 0, 0, 99);
  EXPECT_EQ((*store)->PutBlock(durable, BlockBytes(durable, 4096), /*write_through=*/true).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*store)->GetBlock(durable).status().code(), absl::StatusCode::kNotFound);
  // Eviction cannot write: it fails, counts, and loses nothing.
  EXPECT_EQ((*store)->EvictToLowWatermark().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT((*store)->Stats().eviction_failures, 0u);
  for (const BlockKey& k : keys) {
    auto got = (*store)->GetBlock(k);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, BlockBytes(k, kMiB));
  }
  // Space comes back: eviction and durable puts work again without a restart.
  fs->NoSpace(false);
  ASSERT_TRUE((*store)->EvictToLowWatermark().ok());
  EXPECT_GT((*store)->Stats().evictions, 0u);
  ASSERT_TRUE((*store)->PutBlock(durable, BlockBytes(durable, 4096), true).ok());
  for (const BlockKey& k : keys) {
    auto got = (*store)->GetBlock(k);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, BlockBytes(k, kMiB));
  }
}

TEST(TieredStoreFaultTest, FailingDiskRecoversWithoutRestart) {
  TempDir dir("tiered_ioerr");
  auto fs = std::make_shared<FaultyFileSystem>();
  auto store = TieredStore::Open(Options(dir.path(), fs));
  ASSERT_TRUE(store.ok()) << store.status();
  const BlockKey before = Key("t", "s", 0, 0, 0), during = Key("t", "s", 0, 0, 1);
  ASSERT_TRUE((*store)->PutBlock(before, BlockBytes(before, 65536), true).ok());
  fs->FailWrites(true);
  EXPECT_EQ((*store)->PutBlock(during, BlockBytes(during, 65536), true).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ((*store)->PutBlock(during, BlockBytes(during, 65536), true).code(),
            absl::StatusCode::kUnavailable);  // the retry's reopen fails too
  auto got = (*store)->GetBlock(before);  // host copy: served regardless of the disk
  ASSERT_TRUE(got.ok()) << got.status();
  fs->FailWrites(false);
  ASSERT_TRUE((*store)->PutBlock(during, BlockBytes(during, 65536), true).ok());
  ASSERT_TRUE((*store)->Close().ok());
  store->reset();  // releases the RocksDB lock
  auto reopened = TieredStore::Open(Options(dir.path(), fs));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  for (const BlockKey& k : {before, during}) {
    auto back = (*reopened)->GetBlock(k);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, BlockBytes(k, 65536));
  }
}

// Puts one write-through block and reopens the store so that it lives only on the SSD.
std::unique_ptr<TieredStore> StoreWithSsdOnlyBlock(const TempDir& dir,
                                                   std::shared_ptr<FaultyFileSystem> fs,
                                                   const BlockKey& key) {
  {
    auto store = TieredStore::Open(Options(dir.path(), fs));
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    EXPECT_TRUE((*store)->PutBlock(key, BlockBytes(key, 256 * 1024), true).ok());
    EXPECT_TRUE((*store)->Close().ok());
  }
  auto store = TieredStore::Open(Options(dir.path(), fs));
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

TEST(TieredStoreFaultTest, CorruptedBlockIsDataLossNeverSilentData) {
  TempDir dir("tiered_corrupt");
  auto fs = std::make_shared<FaultyFileSystem>();
  const BlockKey key = Key("t", "s", 3, 2, 1);
  std::unique_ptr<TieredStore> store = StoreWithSsdOnlyBlock(dir, fs, key);
  ASSERT_NE(store, nullptr);
  fs->CorruptBlobReads(true);
  EXPECT_EQ(store->GetBlock(key).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_GT(store->Stats().ssd_io.checksum_failures, 0u);
  EXPECT_EQ(store->Stats().promotions, 0u);  // nothing corrupt reaches the host tier
  fs->CorruptBlobReads(false);
  auto got = store->GetBlock(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, BlockBytes(key, 256 * 1024));
}

TEST(TieredStoreFaultTest, ReadErrorsAreReportedAndHostBlocksStillServe) {
  TempDir dir("tiered_readerr");
  auto fs = std::make_shared<FaultyFileSystem>();
  const BlockKey on_ssd = Key("t", "s", 0, 1, 0);
  std::unique_ptr<TieredStore> store = StoreWithSsdOnlyBlock(dir, fs, on_ssd);
  ASSERT_NE(store, nullptr);
  const BlockKey in_host = Key("t", "s", 0, 1, 1);
  ASSERT_TRUE(store->PutBlock(in_host, BlockBytes(in_host, 4096)).ok());
  fs->FailReads(true);
  EXPECT_EQ(store->GetBlock(on_ssd).status().code(), absl::StatusCode::kUnavailable);
  auto got = store->GetBlock(in_host);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, BlockBytes(in_host, 4096));
  fs->FailReads(false);
  EXPECT_TRUE(store->GetBlock(on_ssd).ok());
}

// The child process runs a write-through put storm and reports each acknowledged block id on
// a pipe; the parent kills it with SIGKILL mid-storm, reopens the store and checks every
// acknowledged block.
TEST(TieredStoreFaultTest, SigkillDuringWriteThroughPutStormLosesNoAcknowledgedBlock) {
  TempDir dir("tiered_sigkill");
  constexpr int kAcksBeforeKill = 150;
  constexpr int kMaxBlocks = 100000;  // bound on the child's loop
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    TieredStoreOptions o;
    o.path = dir.path();
    o.host_capacity_bytes = 8 * kMiB;  // small: the evictor runs during the storm too
    o.huge_pages = false;
    o.write_through = true;
    auto store = TieredStore::Open(o);
    if (!store.ok()) _exit(2);
    for (int32_t i = 0; i < kMaxBlocks; ++i) {
      const BlockKey k = Key("t", "storm", i % 4, i % 8, i);
      if (!(*store)->PutBlock(k, BlockBytes(k, 64 * 1024 + (i % 7) * 1000)).ok()) _exit(3);
      if (write(fds[1], &i, sizeof(i)) != sizeof(i)) _exit(4);
    }
    _exit(0);
  }
  close(fds[1]);
  std::vector<int32_t> acked;
  int32_t id;
  while (acked.size() < kAcksBeforeKill && read(fds[0], &id, sizeof(id)) == sizeof(id)) {
    acked.push_back(id);
  }
  kill(child, SIGKILL);
  // Acks written before the kill are still in the pipe: drain them.
  while (read(fds[0], &id, sizeof(id)) == sizeof(id)) acked.push_back(id);
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_GE(acked.size(), static_cast<size_t>(kAcksBeforeKill))
      << "the child stopped early; exit status " << wstatus;
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);

  TieredStoreOptions o;
  o.path = dir.path();
  o.host_capacity_bytes = 8 * kMiB;
  o.huge_pages = false;
  auto store = TieredStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_GE((*store)->Usage("t").blocks, acked.size());
  for (int32_t i : acked) {
    const BlockKey k = Key("t", "storm", i % 4, i % 8, i);
    auto got = (*store)->GetBlock(k);
    ASSERT_TRUE(got.ok()) << "acknowledged block " << i << ": " << got.status();
    ASSERT_EQ(*got, BlockBytes(k, 64 * 1024 + (i % 7) * 1000)) << "block " << i;
  }
}

}  // namespace
}  // namespace clusterkv::storage
