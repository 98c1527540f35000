// Tests of storage/ssd_tier (on a real RocksDB in a temporary directory), storage/key_codec and
// storage/checksum.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/checksum.h"
#include "storage/key_codec.h"
#include "storage/ssd_tier.h"

namespace clusterkv::storage {
namespace {

// A fresh directory named after the running test and process (build trees may run the same
// test at once), removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ =
        std::filesystem::path(::testing::TempDir()) /
        absl::StrCat("clusterkv_ssd_", info->test_suite_name(), "_", info->name(), "_", getpid());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string Sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

BlockKey Block(const std::string& tenant, const std::string& sequence, int32_t layer,
               int32_t kv_head, int32_t cluster) {
  BlockKey key;
  key.sequence = SequenceKey{tenant, sequence};
  key.cluster.head = HeadId{layer, kv_head};
  key.cluster.cluster = cluster;
  return key;
}

std::unique_ptr<SsdTier> OpenTier(const std::string& path) {
  SsdTierOptions options;
  options.path = path;
  auto tier = SsdTier::Open(options);
  EXPECT_TRUE(tier.ok()) << tier.status();
  return tier.ok() ? *std::move(tier) : nullptr;
}

class SsdTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tier_ = OpenTier(dir_.Sub("db"));
    ASSERT_NE(tier_, nullptr);
  }

  TempDir dir_;
  std::unique_ptr<SsdTier> tier_;
};

// ---- Blocks -------------------------------------------------------------------------------------

TEST_F(SsdTierTest, BlocksRoundTripBitExactFromMemtableAndFiles) {
  const std::vector<size_t> sizes = {16 << 10,  (16 << 10) + 3, 64 << 10,
                                     256 << 10, (1 << 20) - 1,  1 << 20};
  std::vector<std::vector<uint8_t>> blocks;
  uint64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    blocks.push_back(RandomBytes(sizes[i], 100 + static_cast<uint32_t>(i)));
    total += sizes[i];
    ASSERT_TRUE(tier_
                    ->PutBlock(Block("t", "s", 0, 0, static_cast<int32_t>(i)), blocks[i],
                               /*sync=*/i % 2 == 0)
                    .ok());
  }
  // Once from the memtable, once from blob files after a flush.
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      ASSERT_TRUE(tier_->Flush().ok());
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      const BlockKey key = Block("t", "s", 0, 0, static_cast<int32_t>(i));
      auto got = tier_->GetBlock(key);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(*got == blocks[i]) << "block " << i << " pass " << pass;

      std::vector<uint8_t> dst(sizes[i], 0);
      ASSERT_TRUE(tier_->GetBlockInto(key, absl::MakeSpan(dst)).ok());
      EXPECT_TRUE(dst == blocks[i]) << "block " << i << " pass " << pass;
    }
  }
  const SsdStats stats = tier_->Stats();
  EXPECT_EQ(stats.blocks_written, sizes.size());
  EXPECT_EQ(stats.bytes_written, total);
  EXPECT_EQ(stats.blocks_read, 4 * sizes.size());
  EXPECT_EQ(stats.bytes_read, 4 * total);
  EXPECT_EQ(stats.write_errors, 0u);
  EXPECT_EQ(stats.read_errors, 0u);
  EXPECT_EQ(stats.checksum_failures, 0u);
}

TEST_F(SsdTierTest, OverwriteReplacesBlock) {
  const BlockKey key = Block("t", "s", 1, 2, 3);
  ASSERT_TRUE(tier_->PutBlock(key, RandomBytes(20000, 1), false).ok());
  const std::vector<uint8_t> second = RandomBytes(30000, 2);
  ASSERT_TRUE(tier_->PutBlock(key, second, false).ok());
  auto got = tier_->GetBlock(key);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == second);
}

TEST_F(SsdTierTest, MissingRecordsAreNotFound) {
  const BlockKey key = Block("t", "s", 0, 0, 7);
  EXPECT_EQ(tier_->GetBlock(key).status().code(), absl::StatusCode::kNotFound);
  std::vector<uint8_t> dst(16);
  EXPECT_EQ(tier_->GetBlockInto(key, absl::MakeSpan(dst)).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tier_->GetIndexRecord(key.sequence, HeadId{0, 0}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(tier_->GetMetadata(key.sequence).status().code(), absl::StatusCode::kNotFound);
  // A miss is not an I/O error.
  EXPECT_EQ(tier_->Stats().read_errors, 0u);
}

TEST_F(SsdTierTest, GetBlockIntoRejectsSizeMismatchAndLeavesDestinationUntouched) {
  const BlockKey key = Block("t", "s", 0, 1, 0);
  ASSERT_TRUE(tier_->PutBlock(key, RandomBytes(16 << 10, 3), false).ok());
  for (size_t size : {size_t{(16 << 10) - 1}, size_t{(16 << 10) + 1}, size_t{0}}) {
    std::vector<uint8_t> dst(size, 0xab);
    EXPECT_EQ(tier_->GetBlockInto(key, absl::MakeSpan(dst)).code(),
              absl::StatusCode::kInvalidArgument)
        << size;
    EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](uint8_t b) { return b == 0xab; }));
  }
}

TEST_F(SsdTierTest, DeleteBlockRemovesOnlyThatBlock) {
  const BlockKey a = Block("t", "s", 0, 0, 0);
  const BlockKey b = Block("t", "s", 0, 0, 1);
  ASSERT_TRUE(tier_->PutBlock(a, RandomBytes(5000, 4), false).ok());
  ASSERT_TRUE(tier_->PutBlock(b, RandomBytes(5000, 5), false).ok());
  ASSERT_TRUE(tier_->DeleteBlock(a).ok());
  EXPECT_EQ(tier_->GetBlock(a).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(tier_->GetBlock(b).ok());
}

// ---- Index and metadata records -----------------------------------------------------------------

TEST_F(SsdTierTest, IndexAndMetadataRecordsRoundTrip) {
  const SequenceKey seq{"tenant", "seq"};
  const std::string index(std::string("centroids\0\xff bytes", 17) + std::string(100000, 'x'));
  ASSERT_TRUE(tier_->PutIndexRecord(seq, HeadId{3, 5}, index, /*sync=*/true).ok());
  ASSERT_TRUE(tier_->PutIndexRecord(seq, HeadId{3, 6}, "", /*sync=*/false).ok());
  ASSERT_TRUE(tier_->PutMetadata(seq, "meta v1", /*sync=*/true).ok());
  ASSERT_TRUE(tier_->PutMetadata(seq, "meta v2", /*sync=*/false).ok());
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      ASSERT_TRUE(tier_->Flush().ok());
    }
    auto got = tier_->GetIndexRecord(seq, HeadId{3, 5});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, index);
    auto empty = tier_->GetIndexRecord(seq, HeadId{3, 6});
    ASSERT_TRUE(empty.ok()) << empty.status();
    EXPECT_EQ(*empty, "");
    auto meta = tier_->GetMetadata(seq);
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ(*meta, "meta v2");
  }
}

TEST_F(SsdTierTest, ForEachIndexRecordVisitsOneSequenceInHeadOrder) {
  const SequenceKey seq{"t", "s1"};
  // Inserted out of order; layer 256 must sort after layer 1 (big-endian keys).
  const std::vector<HeadId> heads = {{256, 0}, {1, 7}, {0, 1}, {1, 0}, {0, 0}, {2, 300}};
  for (const HeadId& h : heads) {
    ASSERT_TRUE(
        tier_->PutIndexRecord(seq, h, absl::StrCat("rec", h.layer, "/", h.kv_head), false).ok());
  }
  // Neighbours that must not be visited: a sequence id with seq as a prefix, another tenant.
  ASSERT_TRUE(tier_->PutIndexRecord(SequenceKey{"t", "s10"}, HeadId{0, 0}, "x", false).ok());
  ASSERT_TRUE(tier_->PutIndexRecord(SequenceKey{"u", "s1"}, HeadId{0, 0}, "y", false).ok());
  ASSERT_TRUE(tier_->PutMetadata(seq, "m", false).ok());
  ASSERT_TRUE(tier_->PutBlock(Block("t", "s1", 0, 0, 0), RandomBytes(100, 1), false).ok());

  std::vector<HeadId> expected = heads;
  std::sort(expected.begin(), expected.end());
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      ASSERT_TRUE(tier_->Flush().ok());
    }
    std::vector<HeadId> seen;
    absl::Status status =
        tier_->ForEachIndexRecord(seq, [&](const HeadId& h, absl::string_view record) {
          EXPECT_EQ(record, absl::StrCat("rec", h.layer, "/", h.kv_head));
          seen.push_back(h);
          return absl::OkStatus();
        });
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(seen == expected) << "pass " << pass;
  }

  // The callback's error stops the scan and is returned as is.
  int calls = 0;
  absl::Status status = tier_->ForEachIndexRecord(seq, [&](const HeadId&, absl::string_view) {
    ++calls;
    return absl::CancelledError("stop");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);

  int none = 0;
  EXPECT_TRUE(tier_
                  ->ForEachIndexRecord(SequenceKey{"t", "absent"},
                                       [&](const HeadId&, absl::string_view) {
                                         ++none;
                                         return absl::OkStatus();
                                       })
                  .ok());
  EXPECT_EQ(none, 0);
}

TEST_F(SsdTierTest, ListSequencesInKeyOrder) {
  auto empty = tier_->ListSequences();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());

  const std::vector<SequenceKey> sequences = {{"ab", "1"}, {"a", "2"}, {"a", "10"}, {"b", "0"}};
  for (const SequenceKey& s : sequences) ASSERT_TRUE(tier_->PutMetadata(s, "m", false).ok());
  // Index records and blocks without metadata do not make a sequence.
  ASSERT_TRUE(tier_->PutIndexRecord(SequenceKey{"c", "x"}, HeadId{0, 0}, "i", false).ok());
  ASSERT_TRUE(tier_->PutBlock(Block("d", "y", 0, 0, 0), RandomBytes(10, 1), false).ok());

  auto listed = tier_->ListSequences();
  ASSERT_TRUE(listed.ok()) << listed.status();
  // Tenant "a" sorts before "ab"; sequence ids compare byte-wise ("10" < "2").
  const std::vector<SequenceKey> expected = {{"a", "10"}, {"a", "2"}, {"ab", "1"}, {"b", "0"}};
  EXPECT_TRUE(*listed == expected);
}

TEST_F(SsdTierTest, DropSequenceRemovesOnlyThatSequence) {
  const SequenceKey victim{"alice", "chat"};
  const SequenceKey same_id_other_tenant{"bob", "chat"};
  const SequenceKey longer_tenant{"alice2", "chat"};
  const SequenceKey sibling{"alice", "chat2"};
  const std::vector<SequenceKey> all = {victim, same_id_other_tenant, longer_tenant, sibling};
  for (size_t i = 0; i < all.size(); ++i) {
    for (int c = 0; c < 3; ++c) {
      ASSERT_TRUE(tier_
                      ->PutBlock(Block(all[i].tenant, all[i].sequence, 0, 0, c),
                                 RandomBytes(8192, static_cast<uint32_t>(i * 10 + c)), false)
                      .ok());
    }
    ASSERT_TRUE(tier_->PutIndexRecord(all[i], HeadId{0, 0}, "idx", false).ok());
    ASSERT_TRUE(tier_->PutMetadata(all[i], "meta", false).ok());
  }
  ASSERT_TRUE(tier_->Flush().ok());  // the range delete must cover flushed data too
  ASSERT_TRUE(tier_->DropSequence(victim, /*sync=*/true).ok());

  for (const SequenceKey& s : all) {
    const bool dropped = s == victim;
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(tier_->GetBlock(Block(s.tenant, s.sequence, 0, 0, c)).ok(), !dropped)
          << s.tenant << "/" << s.sequence;
    }
    EXPECT_EQ(tier_->GetIndexRecord(s, HeadId{0, 0}).ok(), !dropped);
    EXPECT_EQ(tier_->GetMetadata(s).ok(), !dropped);
  }
  auto listed = tier_->ListSequences();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 3u);
  EXPECT_TRUE(std::find(listed->begin(), listed->end(), victim) == listed->end());
}

// ---- Restart ----------------------------------------------------------------------------------

TEST(SsdTierRestartTest, ReopenReturnsEverySyncedBlockAndRecord) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const SequenceKey seq{"t", "s"};
  std::vector<std::vector<uint8_t>> blocks;
  {
    auto tier = OpenTier(path);
    ASSERT_NE(tier, nullptr);
    for (int c = 0; c < 8; ++c) {
      blocks.push_back(RandomBytes(static_cast<size_t>(16 << 10) << (c % 4), 50 + c));
      ASSERT_TRUE(tier->PutBlock(Block("t", "s", c / 4, 0, c), blocks.back(), /*sync=*/true).ok());
      if (c == 3) {
        ASSERT_TRUE(tier->Flush().ok());  // half in files, half only in the WAL
      }
    }
    ASSERT_TRUE(tier->PutIndexRecord(seq, HeadId{0, 0}, "index 0", true).ok());
    ASSERT_TRUE(tier->PutIndexRecord(seq, HeadId{1, 0}, "index 1", true).ok());
    ASSERT_TRUE(tier->PutMetadata(seq, "meta", true).ok());
  }  // destroyed: flushed and closed
  for (int reopen = 0; reopen < 2; ++reopen) {
    auto tier = OpenTier(path);
    ASSERT_NE(tier, nullptr);
    for (int c = 0; c < 8; ++c) {
      auto got = tier->GetBlock(Block("t", "s", c / 4, 0, c));
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(*got == blocks[c]) << c;
    }
    auto listed = tier->ListSequences();
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0], seq);
    std::vector<std::string> records;
    ASSERT_TRUE(tier->ForEachIndexRecord(seq,
                                         [&](const HeadId&, absl::string_view r) {
                                           records.emplace_back(r);
                                           return absl::OkStatus();
                                         })
                    .ok());
    EXPECT_EQ(records, (std::vector<std::string>{"index 0", "index 1"}));
    EXPECT_EQ(*tier->GetMetadata(seq), "meta");
  }
}

TEST(SsdTierRestartTest, OpenFailsWhenPathIsAFile) {
  TempDir dir;
  const std::string path = dir.Sub("not_a_dir");
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  SsdTierOptions options;
  options.path = path;
  auto tier = SsdTier::Open(options);
  EXPECT_FALSE(tier.ok());
}

// ---- Key codec ------------------------------------------------------------------------------

TEST(KeyCodecTest, BlockKeyRoundTrips) {
  for (const BlockKey& key : {Block("t", "s", 0, 0, 0), Block("tenant-9", "seq/42", 31, 7, 4095),
                              Block("a", "b", 2147483647, 1, 65536)}) {
    auto decoded = DecodeBlockKey(EncodeBlockKey(key));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == key);
    for (const std::string& encoded :
         {EncodeBlockKey(key), EncodeIndexKey(key.sequence, key.cluster.head),
          EncodeMetadataKey(key.sequence)}) {
      auto seq = DecodeSequence(encoded);
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, key.sequence);
      EXPECT_EQ(encoded.rfind(SequencePrefix(key.sequence), 0), 0u);
    }
  }
}

TEST(KeyCodecTest, MalformedKeysAreDataLoss) {
  EXPECT_EQ(DecodeBlockKey("no terminators").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeSequence(std::string("t\0s", 3)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeBlockKey(EncodeMetadataKey({"t", "s"})).status().code(),
            absl::StatusCode::kDataLoss);
  std::string truncated = EncodeBlockKey(Block("t", "s", 1, 2, 3));
  truncated.pop_back();
  EXPECT_EQ(DecodeBlockKey(truncated).status().code(), absl::StatusCode::kDataLoss);
}

TEST(KeyCodecTest, ByteOrderIsTenantSequenceLayerHeadClusterOrder) {
  // Tenant "a" sorts before "ab" (the 0x00 terminator) and before "b".
  EXPECT_LT(EncodeBlockKey(Block("a", "zzz", 9, 9, 9)), EncodeBlockKey(Block("ab", "a", 0, 0, 0)));
  EXPECT_LT(EncodeBlockKey(Block("ab", "zzz", 9, 9, 9)), EncodeBlockKey(Block("b", "a", 0, 0, 0)));
  EXPECT_LT(EncodeBlockKey(Block("t", "s", 9, 9, 9)), EncodeBlockKey(Block("t", "s0", 0, 0, 0)));
  // Big-endian numbers: 1 < 255 < 256 < 65536 byte-wise too.
  const std::vector<int32_t> values = {0, 1, 255, 256, 65535, 65536, 1 << 24};
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const int32_t lo = values[i];
    const int32_t hi = values[i + 1];
    EXPECT_LT(EncodeBlockKey(Block("t", "s", lo, 9, 9)), EncodeBlockKey(Block("t", "s", hi, 0, 0)));
    EXPECT_LT(EncodeBlockKey(Block("t", "s", 1, lo, 9)), EncodeBlockKey(Block("t", "s", 1, hi, 0)));
    EXPECT_LT(EncodeBlockKey(Block("t", "s", 1, 1, lo)), EncodeBlockKey(Block("t", "s", 1, 1, hi)));
    EXPECT_LT(EncodeIndexKey({"t", "s"}, HeadId{lo, 9}), EncodeIndexKey({"t", "s"}, HeadId{hi, 0}));
  }
  // Every key of a sequence lies in [SequencePrefix, PrefixEnd(SequencePrefix)).
  const SequenceKey seq{"t", "s"};
  const std::string begin = SequencePrefix(seq);
  const std::string end = PrefixEnd(begin);
  for (const std::string& k : {EncodeBlockKey(Block("t", "s", 2147483647, 2147483647, 2147483647)),
                               EncodeIndexKey(seq, HeadId{0, 0}), EncodeMetadataKey(seq)}) {
    EXPECT_LE(begin, k);
    EXPECT_LT(k, end);
  }
  EXPECT_GE(EncodeMetadataKey({"t", "s0"}), end);
  EXPECT_EQ(PrefixEnd(std::string("a\xff\xff", 3)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff", 1)), "");
}

// ---- Checksum ---------------------------------------------------------------------------------

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  const std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  const std::vector<uint8_t> ones(32, 0xff);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
}

TEST(Crc32cTest, ContinuationEqualsOneShot) {
  const std::vector<uint8_t> data = RandomBytes(1000, 9);
  const uint32_t whole = Crc32c(data.data(), data.size());
  for (size_t split : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{500}, size_t{999}}) {
    const uint32_t part = Crc32c(data.data(), split);
    EXPECT_EQ(Crc32c(data.data() + split, data.size() - split, part), whole) << split;
  }
}

}  // namespace
}  // namespace clusterkv::storage
