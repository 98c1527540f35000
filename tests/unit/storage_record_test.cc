// Cluster block framing and the durable metadata / index record encodings.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "storage/cluster_block.h"
#include "storage/index_record.h"
#include "tests/testing/random_data.h"

namespace clusterkv::storage {
namespace {

TEST(ClusterBlockTest, EncodesPositionsKeysValuesContiguously) {
  const int n = 5, d = 8;
  std::vector<int32_t> positions = {3, 9, 10, 40, 41};
  std::vector<float> k = testing::Gaussian(n, d, 1), v = testing::Gaussian(n, d, 2);
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    auto block = EncodeClusterBlock(positions, ConstMatrixView(k.data(), n, d),
                                    ConstMatrixView(v.data(), n, d), dtype);
    ASSERT_TRUE(block.ok()) << block.status();
    EXPECT_EQ(block->size(), ClusterBlockBytes(n, d, dtype));
    auto view = ViewClusterBlock(*block, n, d, dtype);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(std::vector<int32_t>(view->positions, view->positions + n), positions);
    std::vector<uint8_t> expected_keys = EncodeAs(k, dtype);
    EXPECT_EQ(std::memcmp(view->keys.data, expected_keys.data(), expected_keys.size()), 0);
    std::vector<uint8_t> expected_values = EncodeAs(v, dtype);
    EXPECT_EQ(std::memcmp(view->values.data, expected_values.data(), expected_values.size()), 0);
  }
}

TEST(ClusterBlockTest, RejectsMismatchedShapes) {
  std::vector<float> k(16), v(12);
  std::vector<int32_t> positions = {1, 2};
  EXPECT_EQ(EncodeClusterBlock(positions, ConstMatrixView(k.data(), 2, 8),
                               ConstMatrixView(v.data(), 2, 6), DType::kFloat16)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> bytes(ClusterBlockBytes(2, 8, DType::kFloat16) + 1);
  EXPECT_EQ(ViewClusterBlock(bytes, 2, 8, DType::kFloat16).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IndexRecordTest, RoundTripsAndRejectsGarbage) {
  SequenceMeta meta{KvLayout::Llama3_8B(), 32768};
  auto decoded = DecodeSequenceMeta(EncodeSequenceMeta(meta));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->layout, meta.layout);
  EXPECT_EQ(decoded->num_tokens, 32768);
  EXPECT_EQ(DecodeSequenceMeta("xx").status().code(), absl::StatusCode::kDataLoss);

  HeadIndexRecord index;
  index.head_dim = 2;
  index.centroids = {1, 0, 0.6f, 0.8f, 0, 1};
  index.sizes = {4, 0, 7};
  auto bytes = EncodeHeadIndex(index);
  ASSERT_TRUE(bytes.ok());
  auto back = DecodeHeadIndex(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->centroids, index.centroids);
  EXPECT_EQ(back->sizes, index.sizes);
  EXPECT_FALSE(back->has_key_stats());
  EXPECT_EQ(DecodeHeadIndex(bytes->substr(0, bytes->size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  index.sizes.pop_back();
  EXPECT_EQ(EncodeHeadIndex(index).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IndexRecordTest, KeyStatisticsRoundTripAndVersionOneRecordsStillDecode) {
  HeadIndexRecord index;
  index.head_dim = 2;
  index.centroids = {1, 0, 0.6f, 0.8f};
  index.sizes = {4, 7};
  index.key_norms = {2.5f, std::numeric_limits<float>::quiet_NaN()};
  index.key_spreads = {0.25f, std::numeric_limits<float>::quiet_NaN()};
  auto bytes = EncodeHeadIndex(index);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto back = DecodeHeadIndex(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->has_key_stats());
  EXPECT_EQ(back->key_norms[0], 2.5f);
  EXPECT_EQ(back->key_spreads[0], 0.25f);
  EXPECT_TRUE(std::isnan(back->key_norms[1]));
  EXPECT_TRUE(std::isnan(back->key_spreads[1]));
  for (size_t cut = 1; cut < 17; ++cut) {  // any truncation of the statistics is caught
    EXPECT_EQ(DecodeHeadIndex(bytes->substr(0, bytes->size() - cut)).status().code(),
              absl::StatusCode::kDataLoss) << cut;
  }

  // A record written before the statistics existed (version 1: no flag byte, no statistics).
  std::string v1;
  v1.push_back('\x01');
  const int32_t head_dim = 2, clusters = 2;
  v1.append(reinterpret_cast<const char*>(&head_dim), 4);
  v1.append(reinterpret_cast<const char*>(&clusters), 4);
  v1.append(reinterpret_cast<const char*>(index.sizes.data()), 8);
  v1.append(reinterpret_cast<const char*>(index.centroids.data()), 16);
  auto old = DecodeHeadIndex(v1);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->sizes, index.sizes);
  EXPECT_EQ(old->centroids, index.centroids);
  EXPECT_FALSE(old->has_key_stats());
  EXPECT_EQ(DecodeHeadIndex(v1 + '\x00').status().code(), absl::StatusCode::kDataLoss);

  // A head with no cluster yet, with or without statistics, round-trips.
  HeadIndexRecord empty;
  empty.head_dim = 2;
  auto empty_bytes = EncodeHeadIndex(empty);
  ASSERT_TRUE(empty_bytes.ok()) << empty_bytes.status();
  auto empty_back = DecodeHeadIndex(*empty_bytes);
  ASSERT_TRUE(empty_back.ok()) << empty_back.status();
  EXPECT_EQ(empty_back->num_clusters(), 0);

  index.key_spreads.pop_back();  // statistics must be one per cluster
  EXPECT_EQ(EncodeHeadIndex(index).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(IndexRecordTest, AppendingFillsUnknownStatisticsWithNaN) {
  HeadIndexRecord base;
  base.head_dim = 1;
  base.centroids = {1};
  base.sizes = {3};
  HeadIndexRecord added = base;
  added.key_norms = {2.0f};
  added.key_spreads = {0.5f};
  HeadIndexRecord both = base;
  AppendHeadIndex(base, &both);  // neither has statistics: none
  EXPECT_EQ(both.sizes, (std::vector<int32_t>{3, 3}));
  EXPECT_FALSE(both.has_key_stats());
  AppendHeadIndex(added, &both);  // the earlier clusters' are unknown
  ASSERT_EQ(both.key_norms.size(), 3u);
  EXPECT_TRUE(std::isnan(both.key_norms[0]) && std::isnan(both.key_spreads[1]));
  EXPECT_EQ(both.key_norms[2], 2.0f);
  EXPECT_EQ(both.key_spreads[2], 0.5f);
  AppendHeadIndex(base, &both);  // and an append without them adds unknowns
  ASSERT_EQ(both.key_spreads.size(), 4u);
  EXPECT_TRUE(std::isnan(both.key_spreads[3]));
  EXPECT_EQ(both.centroids.size(), 4u);
}

}  // namespace
}  // namespace clusterkv::storage
