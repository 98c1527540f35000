// Fault tests of storage/ssd_tier: a real RocksDB over FaultyFileSystem, so the tier's status
// mapping and its recovery (reopen after a write error) run against the errors a failing disk produces.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/ssd_tier.h"
#include "storage/testing/faulty_file_system.h"

namespace clusterkv::storage {
namespace {

using ::clusterkv::storage::testing::FaultyFileSystem;

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

BlockKey Block(int32_t cluster) {
  BlockKey key;
  key.sequence = SequenceKey{"tenant", "seq"};
  key.cluster.head = HeadId{0, 0};
  key.cluster.cluster = cluster;
  return key;
}

// Each test gets a fresh directory (removed at the end) and a tier over a FaultyFileSystem.
class SsdFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("clusterkv_ssd_fault_", info->name(), "_", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    fs_ = std::make_shared<FaultyFileSystem>();
    Reopen();
  }

  // (Re)opens the tier over the same directory and filesystem.
  void Reopen() {
    tier_.reset();
    SsdTierOptions options;
    options.path = (dir_ / "db").string();
    options.file_system = fs_;
    // Small memtables: the tier resumes after a full disk once this much space is free.
    options.write_buffer_bytes = 4 << 20;
    auto tier = SsdTier::Open(options);
    ASSERT_TRUE(tier.ok()) << tier.status();
    tier_ = *std::move(tier);
  }

  void TearDown() override {
    // Close on a healthy disk so the destructor's flush succeeds.
    fs_->FailWrites(false);
    fs_->NoSpace(false);
    fs_->FailReads(false);
    fs_->CorruptBlobReads(false);
    tier_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Writes `n` synced 64 KiB blocks, clusters [first, first + n).
  void WriteBlocks(int first, int n) {
    for (int c = first; c < first + n; ++c) {
      blocks_.push_back(RandomBytes(64 << 10, static_cast<uint32_t>(c)));
      const absl::Status put = tier_->PutBlock(Block(c), blocks_.back(), /*sync=*/true);
      ASSERT_TRUE(put.ok()) << "block " << c << ": " << put;
    }
  }

  void ExpectBlocksIntact() {
    for (size_t c = 0; c < blocks_.size(); ++c) {
      auto got = tier_->GetBlock(Block(static_cast<int32_t>(c)));
      ASSERT_TRUE(got.ok()) << "block " << c << ": " << got.status();
      EXPECT_TRUE(*got == blocks_[c]) << "block " << c;
    }
  }

  std::filesystem::path dir_;
  std::shared_ptr<FaultyFileSystem> fs_;
  std::unique_ptr<SsdTier> tier_;
  std::vector<std::vector<uint8_t>> blocks_;  // blocks_[c] is cluster c
};

TEST_F(SsdFaultTest, FullDiskIsResourceExhaustedAndRecoversWhenFreed) {
  WriteBlocks(0, 2);
  ASSERT_TRUE(tier_->Flush().ok());
  WriteBlocks(2, 2);  // in the memtable and WAL only

  fs_->NoSpace(true);
  const std::vector<uint8_t> rejected = RandomBytes(64 << 10, 99);
  const absl::Status status = tier_->PutBlock(Block(100), rejected, /*sync=*/true);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_GT(fs_->write_faults(), 0u);
  EXPECT_EQ(tier_->Stats().write_errors, 1u);
  EXPECT_EQ(tier_->Stats().blocks_written, 4u);
  // Further attempts while still full fail the same way, and do not make the error permanent
  // (the tier does not try to resume while the filesystem reports no room).
  for (int attempt = 0; attempt < 3; ++attempt) {
    EXPECT_EQ(tier_->PutBlock(Block(100), rejected, true).code(),
              absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(tier_->PutMetadata(SequenceKey{"tenant", "seq"}, "m", true).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(tier_->Flush().code(), absl::StatusCode::kResourceExhausted);
  // Reads keep working on a full disk.
  ExpectBlocksIntact();

  fs_->NoSpace(false);
  WriteBlocks(4, 2);  // the tier reopens the DB, clearing RocksDB's background error
  ExpectBlocksIntact();
  EXPECT_TRUE(tier_->Flush().ok());
  ExpectBlocksIntact();
}

TEST_F(SsdFaultTest, FailedWritesAreUnavailableAndReopenRecovers) {
  WriteBlocks(0, 2);
  ASSERT_TRUE(tier_->Flush().ok());
  WriteBlocks(2, 2);  // in the WAL only

  fs_->FailWrites(true);
  const absl::Status status = tier_->PutBlock(Block(100), RandomBytes(64 << 10, 99), true);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(tier_->PutMetadata(SequenceKey{"tenant", "seq"}, "m", true).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_GE(tier_->Stats().write_errors, 2u);
  EXPECT_GT(fs_->write_faults(), 0u);
  ExpectBlocksIntact();

  // RocksDB 7.8 treats a failed WAL write as fatal (Resume() cannot clear it), so the tier
  // recovers by reopening the DB before the next write; once the disk accepts writes again,
  // that write succeeds without a restart. Closing must not crash, and a reopened tier has
  // every synced block and accepts writes.
  fs_->FailWrites(false);
  const absl::Status after = tier_->PutBlock(Block(101), RandomBytes(64 << 10, 98), true);
  EXPECT_TRUE(after.ok()) << after;
  Reopen();
  ExpectBlocksIntact();
  blocks_.resize(4);
  WriteBlocks(4, 2);
  ExpectBlocksIntact();
}

TEST_F(SsdFaultTest, FailedReadOfFlushedBlockIsUnavailable) {
  WriteBlocks(0, 3);
  ASSERT_TRUE(tier_->Flush().ok());

  fs_->FailReads(true);
  auto got = tier_->GetBlock(Block(1));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  std::vector<uint8_t> dst(64 << 10);
  EXPECT_EQ(tier_->GetBlockInto(Block(2), absl::MakeSpan(dst)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_GT(fs_->read_faults(), 0u);
  EXPECT_EQ(tier_->Stats().read_errors, 2u);
  EXPECT_EQ(tier_->Stats().checksum_failures, 0u);

  fs_->FailReads(false);
  ExpectBlocksIntact();
}

TEST_F(SsdFaultTest, CorruptedBlobReadIsDataLoss) {
  WriteBlocks(0, 3);
  ASSERT_TRUE(tier_->Flush().ok());
  ExpectBlocksIntact();  // opens the blob file: the fault hits the record read itself

  fs_->CorruptBlobReads(true);
  auto got = tier_->GetBlock(Block(1));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  std::vector<uint8_t> dst(64 << 10, 0);
  EXPECT_EQ(tier_->GetBlockInto(Block(2), absl::MakeSpan(dst)).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](uint8_t b) { return b == 0; }));
  EXPECT_GT(fs_->corruptions(), 0u);
  EXPECT_EQ(tier_->Stats().checksum_failures, 2u);

  // The file itself is intact: reads are good again once the fault stops.
  fs_->CorruptBlobReads(false);
  ExpectBlocksIntact();
}

}  // namespace
}  // namespace clusterkv::storage
