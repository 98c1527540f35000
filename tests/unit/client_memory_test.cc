// Device memory (host path), the slot layout of the device cluster cache, and the wire
// messages a Sequence builds (block encoding, PutClusters batching, index decoding).
#include <cstring>
#include <numeric>
#include <vector>

#include "client/device_memory.h"
#include "client/internal/messages.h"
#include "client/slot_layout.h"
#include "gtest/gtest.h"
#include "storage/cluster_block.h"

namespace clusterkv::client {
namespace {

TEST(HostDeviceMemoryTest, CopyInAndView) {
  HostDeviceMemory mem;
  EXPECT_EQ(mem.name(), "host");
  EXPECT_EQ(mem.HostView(0), nullptr);
  EXPECT_EQ(mem.CopyIn(0, "x", 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(mem.Allocate(0).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(mem.Allocate(64).ok());
  EXPECT_EQ(mem.size(), 64u);
  EXPECT_EQ(mem.Allocate(64).code(), absl::StatusCode::kFailedPrecondition);
  const char text[] = "clusterkv";
  ASSERT_TRUE(mem.CopyIn(10, text, sizeof(text)).ok());
  ASSERT_TRUE(mem.Synchronize().ok());
  EXPECT_EQ(std::memcmp(mem.HostView(10), text, sizeof(text)), 0);
  EXPECT_EQ(*static_cast<const uint8_t*>(mem.HostView(0)), 0);  // zero-initialised
  EXPECT_EQ(mem.CopyIn(60, text, 8).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem.CopyIn(65, text, 0).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(mem.CopyIn(64, text, 0).ok());
  EXPECT_EQ(mem.HostView(64), nullptr);
}

TEST(HostDeviceMemoryTest, Factory) {
  auto host = MakeDeviceMemory("host");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ((*host)->name(), "host");
  auto any = MakeDeviceMemory("auto");
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(MakeDeviceMemory("tpu").status().code(), absl::StatusCode::kInvalidArgument);
  auto cuda = MakeDeviceMemory("cuda");
  if (!cuda.ok()) {
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition) << cuda.status();
    EXPECT_EQ((*any)->name(), "host");
  } else {
    EXPECT_EQ((*cuda)->name(), "cuda");
  }
}

// A block of `n` tokens of width d whose key rows hold 100 * r + c and value rows -(...).
std::vector<uint8_t> TestBlock(int n, int d, DType dtype, int first_position) {
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), first_position);
  std::vector<float> k(n * d), v(n * d);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < d; ++c) {
      k[r * d + c] = 100.0f * r + c;
      v[r * d + c] = -(100.0f * r + c);
    }
  }
  auto block = storage::EncodeClusterBlock(positions, ConstMatrixView(k.data(), n, d),
                                           ConstMatrixView(v.data(), n, d), dtype);
  EXPECT_TRUE(block.ok());
  return *block;
}

TEST(SlotLayoutTest, OffsetsInterleaveKeysThenValuesPerSlot) {
  SlotLayout slots(/*head_dim=*/8, DType::kFloat16);
  EXPECT_EQ(slots.row_bytes(), 16u);
  EXPECT_EQ(slots.RegionBytes(10), 320u);
  const TokenRange slot{3, 7};
  EXPECT_EQ(slots.SlotOffset(slot), 3u * 32);
  EXPECT_EQ(slots.SlotBytes(slot), 4u * 32);
  EXPECT_EQ(slots.KeysOffset(slot), 96u);
  EXPECT_EQ(slots.ValuesOffset(slot), 96u + 4 * 16);
  EXPECT_EQ(SlotLayout::PayloadOffset(4), 16u);
}

TEST(SlotLayoutTest, OneCopyOfTheBlockPayloadFillsTheSlot) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    const int d = 8, n = 5;
    SlotLayout slots(d, dtype);
    HostDeviceMemory mem;
    ASSERT_TRUE(mem.Allocate(slots.RegionBytes(20)).ok());
    const std::vector<uint8_t> block = TestBlock(n, d, dtype, 40);
    const TokenRange slot{11, 11 + n};
    ASSERT_TRUE(mem.CopyIn(slots.SlotOffset(slot), block.data() + SlotLayout::PayloadOffset(n),
                           slots.SlotBytes(slot))
                    .ok());
    // A truncated read (3 of 5 rows) sees the first rows of both halves.
    ConstMatrixView keys = slots.Keys(mem.HostView(0), slot, 3);
    ConstMatrixView values = slots.Values(mem.HostView(0), slot, 3);
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < d; ++c) {
        EXPECT_EQ(keys.At(r, c), 100.0f * r + c) << DTypeName(dtype);
        EXPECT_EQ(values.At(r, c), -(100.0f * r + c)) << DTypeName(dtype);
      }
    }
  }
}

TEST(MessagesTest, BatcherSplitsAtTargetAndPutsIndexesLast) {
  internal::PutBatcher batcher("seq", /*target_bytes=*/100, /*write_through=*/true);
  for (int i = 0; i < 5; ++i) {
    v1::ClusterBlock b;
    b.mutable_id()->set_cluster(i);
    b.set_data(std::string(40, 'x'));
    batcher.Add(b);
  }
  EXPECT_EQ(batcher.bytes(), 200u);
  EXPECT_EQ(batcher.blocks(), 5);
  std::vector<v1::HeadIndex> indexes(2);
  auto stream = batcher.Finish(indexes, 77);
  ASSERT_EQ(stream.size(), 3u);  // 2 + 2 + 1 blocks of 40 bytes under a 100-byte target
  int blocks = 0;
  for (size_t i = 0; i < stream.size(); ++i) {
    EXPECT_EQ(stream[i].sequence_id(), "seq");
    EXPECT_TRUE(stream[i].write_through());
    blocks += stream[i].blocks_size();
    EXPECT_EQ(stream[i].indexes_size(), i + 1 == stream.size() ? 2 : 0);
  }
  EXPECT_EQ(blocks, 5);
  EXPECT_EQ(stream.back().num_tokens(), 77);
  // An oversized block still travels, alone.
  internal::PutBatcher big("seq", 10, false);
  v1::ClusterBlock b;
  b.set_data(std::string(50, 'y'));
  big.Add(b);
  big.Add(b);
  EXPECT_EQ(big.Finish({}, 0).size(), 2u);
}

TEST(MessagesTest, BlocksOfClusteringFollowTheOrder) {
  // 6 rows of width 2, clusters {1, 4}, {}, {0, 2, 3, 5}.
  gpu::Clustering c;
  c.num_clusters = 3;
  c.head_dim = 2;
  c.sizes = {2, 0, 4};
  c.offsets = {0, 2, 2, 6};
  c.order = {1, 4, 0, 2, 3, 5};
  c.centroids.assign(6, 0.5f);
  std::vector<float> k(12), v(12);
  for (int i = 0; i < 12; ++i) {
    k[i] = static_cast<float>(i);
    v[i] = static_cast<float>(-i);
  }
  auto blocks = internal::BlocksOfClustering(c, ConstMatrixView(k.data(), 6, 2),
                                             ConstMatrixView(v.data(), 6, 2), 16, HeadId{3, 1}, 0,
                                             DType::kFloat32);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  ASSERT_EQ(blocks->size(), 2u);  // the empty cluster has no block
  const v1::ClusterBlock& b = (*blocks)[1];
  EXPECT_EQ(b.id().layer(), 3);
  EXPECT_EQ(b.id().kv_head(), 1);
  EXPECT_EQ(b.id().cluster(), 2);
  EXPECT_EQ(b.num_tokens(), 4);
  auto view = storage::ViewClusterBlock(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(b.data().data()), b.data().size()), 4, 2,
      DType::kFloat32);
  ASSERT_TRUE(view.ok()) << view.status();
  const int rows[] = {0, 2, 3, 5};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(view->positions[i], 16 + rows[i]);
    EXPECT_EQ(view->keys.At(i, 1), k[rows[i] * 2 + 1]);
    EXPECT_EQ(view->values.At(i, 0), v[rows[i] * 2]);
  }
}

TEST(MessagesTest, HeadIndexRoundTripAndValidation) {
  gpu::Clustering c;
  c.num_clusters = 2;
  c.head_dim = 2;
  c.centroids = {1, 0, 0, 1};
  c.sizes = {3, 5};
  const v1::HeadIndex index = internal::MakeHeadIndex(HeadId{1, 0}, c);
  auto back = internal::ClusteringOfHeadIndex(index, 2);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->centroids, c.centroids);
  EXPECT_EQ(back->sizes, c.sizes);
  EXPECT_EQ(back->offsets, (std::vector<int32_t>{0, 3, 8}));
  EXPECT_EQ(internal::ClusteringOfHeadIndex(index, 3).status().code(), absl::StatusCode::kDataLoss);
  v1::HeadIndex bad = index;
  bad.set_sizes(0, -1);
  EXPECT_EQ(internal::ClusteringOfHeadIndex(bad, 2).status().code(), absl::StatusCode::kDataLoss);
  bad = index;
  bad.set_centroids(0, std::nanf(""));
  EXPECT_EQ(internal::ClusteringOfHeadIndex(bad, 2).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace clusterkv::client
