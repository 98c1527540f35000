// Cluster block framing and the durable metadata / index record encodings.
#include <cstring>
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

  HeadIndexRecord index{2, {1, 0, 0.6f, 0.8f, 0, 1}, {4, 0, 7}};
  auto bytes = EncodeHeadIndex(index);
  ASSERT_TRUE(bytes.ok());
  auto back = DecodeHeadIndex(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->centroids, index.centroids);
  EXPECT_EQ(back->sizes, index.sizes);
  EXPECT_EQ(DecodeHeadIndex(bytes->substr(0, bytes->size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  index.sizes.pop_back();
  EXPECT_EQ(EncodeHeadIndex(index).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clusterkv::storage
