// proto/fetch_wire.h: FetchResponseBuilder writes exactly protobuf's bytes for the same
// FetchClustersResponse (block sizes from empty to 1 MiB, negative and zero fields, referenced
// and copied blocks), a referenced block's holder lives exactly as long as gRPC's slice, and
// ForEachFetchedBlock reads what protobuf (or the builder) wrote across any slice boundaries,
// skips unknown fields, and answers DataLoss, never a crash, for every truncation and for
// malformed lengths, varints and wire types.
#include "proto/fetch_wire.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/splitmix64.h"
#include "gtest/gtest.h"

namespace clusterkv::wire {
namespace {

// The block sizes of the daemon's recalls (16 KiB .. 1 MiB of 516-byte fp16 tokens) and edge
// cases: empty, one byte, one below and above a varint length boundary.
constexpr size_t kSizes[] = {0, 1, 127, 128, 16383, 16384, 15996, 65532, 262128, 1048512};

std::vector<uint8_t> Bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  uint64_t state = seed;
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t z = SplitMix64(state);
    for (size_t k = 0; k < 8 && i + k < n; ++k) out[i + k] = static_cast<uint8_t>(z >> (8 * k));
  }
  return out;
}

v1::ClusterRef Ref(int32_t layer, int32_t head, int32_t cluster) {
  v1::ClusterRef ref;
  ref.set_layer(layer);
  ref.set_kv_head(head);
  ref.set_cluster(cluster);
  return ref;
}

struct Block {
  v1::ClusterRef id;
  int32_t tokens = 0;
  std::vector<uint8_t> data;
};

v1::FetchClustersResponse AsProto(const std::vector<Block>& blocks) {
  v1::FetchClustersResponse message;
  for (const Block& b : blocks) {
    v1::ClusterBlock* block = message.add_blocks();
    *block->mutable_id() = b.id;
    block->set_num_tokens(b.tokens);
    block->set_data(b.data.data(), b.data.size());
  }
  return message;
}

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// `bytes` as a ByteBuffer cut into slices of `piece` bytes (the last one shorter).
grpc::ByteBuffer Sliced(const std::string& bytes, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    slices.emplace_back(bytes.data() + at, std::min(piece, bytes.size() - at));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// Every block ForEachFetchedBlock delivers, copied.
absl::Status ReadAll(const grpc::ByteBuffer& message, std::vector<v1::ClusterBlock>* out) {
  v1::ClusterBlock scratch;
  return ForEachFetchedBlock(message, scratch, [&](const v1::ClusterBlock& b) {
    out->push_back(b);
    return absl::OkStatus();
  });
}

void ExpectSameBlocks(const std::vector<v1::ClusterBlock>& got, const std::vector<Block>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(got[i].has_id()) << "block " << i;
    EXPECT_EQ(got[i].id().layer(), want[i].id.layer()) << "block " << i;
    EXPECT_EQ(got[i].id().kv_head(), want[i].id.kv_head()) << "block " << i;
    EXPECT_EQ(got[i].id().cluster(), want[i].id.cluster()) << "block " << i;
    EXPECT_EQ(got[i].num_tokens(), want[i].tokens) << "block " << i;
    ASSERT_EQ(got[i].data().size(), want[i].data.size()) << "block " << i;
    // An empty block's vector may have no storage at all: memcmp must not see its null.
    if (want[i].data.empty()) continue;
    EXPECT_EQ(0, std::memcmp(got[i].data().data(), want[i].data.data(), want[i].data.size()))
        << "block " << i << " differs";
  }
}

TEST(FetchWireTest, EveryBlockSizeSerializesExactlyAsProtobufAndReadsBack) {
  for (bool referenced : {true, false}) {
    for (size_t n : kSizes) {
      SCOPED_TRACE(testing::Message() << (referenced ? "referenced " : "copied ") << n << " B");
      const std::vector<Block> blocks = {
          {Ref(3, 1, 42), static_cast<int32_t>(n / 516), Bytes(n, n + 1)}};
      FetchResponseBuilder builder;
      if (referenced) {
        auto owner = std::make_shared<std::vector<uint8_t>>(blocks[0].data);
        builder.AddReferenced(blocks[0].id, blocks[0].tokens, *owner, owner);
      } else {
        builder.AddCopied(blocks[0].id, blocks[0].tokens, blocks[0].data);
      }
      const std::string want = AsProto(blocks).SerializeAsString();
      EXPECT_EQ(builder.data_bytes(), n);
      EXPECT_EQ(builder.message_bytes(), want.size());
      const grpc::ByteBuffer message = builder.Take();
      EXPECT_EQ(builder.blocks(), 0) << "Take() empties the builder";
      ASSERT_EQ(Flatten(message), want);
      v1::FetchClustersResponse parsed;  // an ordinary protobuf client
      ASSERT_TRUE(parsed.ParseFromString(Flatten(message)));
      ASSERT_EQ(parsed.blocks_size(), 1);
      EXPECT_EQ(parsed.blocks(0).data().size(), n);
      std::vector<v1::ClusterBlock> got;
      ASSERT_TRUE(ReadAll(message, &got).ok());
      ExpectSameBlocks(got, blocks);
    }
  }
}

TEST(FetchWireTest, DefaultAndNegativeFieldsMatchProtobuf) {
  // Zero fields are omitted (proto3), the id is present even when all zero, negative int32s
  // are ten-byte varints, an empty block has no data field.
  const std::vector<Block> blocks = {{Ref(0, 0, 0), 0, {}},
                                     {Ref(-1, 0, 2147483647), -5, Bytes(3, 9)},
                                     {Ref(0, -2147483647 - 1, 0), 2147483647, {}},
                                     {v1::ClusterRef(), 1, Bytes(200, 10)}};
  FetchResponseBuilder builder;
  for (const Block& b : blocks) builder.AddCopied(b.id, b.tokens, b.data);
  const grpc::ByteBuffer message = builder.Take();
  ASSERT_EQ(Flatten(message), AsProto(blocks).SerializeAsString());
  std::vector<v1::ClusterBlock> got;
  ASSERT_TRUE(ReadAll(message, &got).ok());
  ExpectSameBlocks(got, blocks);
}

TEST(FetchWireTest, EmptyMessageHasNoBlocks) {
  FetchResponseBuilder builder;
  const grpc::ByteBuffer message = builder.Take();
  EXPECT_EQ(Flatten(message), "");
  std::vector<v1::ClusterBlock> got;
  EXPECT_TRUE(ReadAll(message, &got).ok());
  EXPECT_TRUE(got.empty());
}

TEST(FetchWireTest, ARequestSplitIntoMessagesRoundTripsByteExact) {
  // 32 blocks of mixed sizes, grouped as the daemon groups a response (blocks are added while
  // a message holds fewer than 1 MiB of data), mixing referenced and copied blocks.
  std::vector<Block> blocks;
  for (int i = 0; i < 32; ++i) {
    const size_t n = kSizes[static_cast<size_t>(i) % std::size(kSizes)];
    blocks.push_back(
        {Ref(i % 4, i % 3, 1000 + i), static_cast<int32_t>(n / 516), Bytes(n, 77 + i)});
  }
  std::vector<grpc::ByteBuffer> messages;
  std::vector<std::vector<Block>> grouped;
  FetchResponseBuilder builder;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (builder.blocks() > 0 && builder.data_bytes() >= (uint64_t{1} << 20)) {
      messages.push_back(builder.Take());
    }
    if (messages.size() == grouped.size()) grouped.emplace_back();
    grouped.back().push_back(blocks[i]);
    if (i % 2 == 0) {
      auto owner = std::make_shared<std::vector<uint8_t>>(blocks[i].data);
      builder.AddReferenced(blocks[i].id, blocks[i].tokens, *owner, owner);
    } else {
      builder.AddCopied(blocks[i].id, blocks[i].tokens, blocks[i].data);
    }
  }
  messages.push_back(builder.Take());
  ASSERT_GE(messages.size(), 3u) << "the request must span several messages";
  ASSERT_EQ(messages.size(), grouped.size());
  std::vector<v1::ClusterBlock> all;
  for (size_t m = 0; m < messages.size(); ++m) {
    EXPECT_EQ(Flatten(messages[m]), AsProto(grouped[m]).SerializeAsString()) << "message " << m;
    ASSERT_TRUE(ReadAll(messages[m], &all).ok()) << "message " << m;
  }
  ExpectSameBlocks(all, blocks);
}

TEST(FetchWireTest, ReadsAcrossAnySliceBoundary) {
  const std::vector<Block> blocks = {{Ref(1, 2, 3), 4, Bytes(2064, 1)},
                                     {Ref(-1, 0, 7), 0, {}},
                                     {Ref(0, 3, 300), 1, Bytes(516, 2)}};
  const std::string bytes = AsProto(blocks).SerializeAsString();
  for (size_t piece :
       {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{64}, size_t{1000}, bytes.size()}) {
    SCOPED_TRACE(testing::Message() << "slices of " << piece << " B");
    std::vector<v1::ClusterBlock> got;
    ASSERT_TRUE(ReadAll(Sliced(bytes, piece), &got).ok());
    ExpectSameBlocks(got, blocks);
  }
}

TEST(FetchWireTest, UnknownFieldsAreSkippedAndAbsentFieldsReadAsDefaults) {
  // A newer daemon's message: unknown fields of every wire type at both levels.
  v1::FetchClustersResponse message;
  v1::ClusterBlock* full = message.add_blocks();
  *full->mutable_id() = Ref(1, 1, 1);
  full->set_num_tokens(2);
  full->set_data("abcdef");
  full->GetReflection()->MutableUnknownFields(full)->AddVarint(9, 123);
  full->GetReflection()->MutableUnknownFields(full)->AddLengthDelimited(10, "extra");
  full->GetReflection()->MutableUnknownFields(full)->AddFixed32(11, 7);
  full->GetReflection()->MutableUnknownFields(full)->AddFixed64(12, 8);
  message.add_blocks();  // nothing set: no id, no tokens, no data
  message.GetReflection()->MutableUnknownFields(&message)->AddVarint(5, 1);
  message.GetReflection()->MutableUnknownFields(&message)->AddLengthDelimited(6, "zz");
  message.GetReflection()->MutableUnknownFields(&message)->AddFixed64(7, 3);
  message.GetReflection()->MutableUnknownFields(&message)->AddFixed32(8, 4);
  std::vector<v1::ClusterBlock> got;
  ASSERT_TRUE(ReadAll(Sliced(message.SerializeAsString(), 5), &got).ok());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id().cluster(), 1);
  EXPECT_EQ(got[0].num_tokens(), 2);
  EXPECT_EQ(got[0].data(), "abcdef");
  EXPECT_FALSE(got[1].has_id());
  EXPECT_EQ(got[1].num_tokens(), 0);
  EXPECT_EQ(got[1].data(), "") << "the reused block's data from block 0 must not leak";
}

TEST(FetchWireTest, EveryTruncationIsDataLossOrAShorterValidMessage) {
  const std::vector<Block> blocks = {{Ref(1, 2, 3), 4, Bytes(300, 5)},
                                     {Ref(-7, 1, 9), 1, Bytes(20, 6)}};
  const std::string bytes = AsProto(blocks).SerializeAsString();
  // Where a prefix is itself a whole message: before any block, after the first, after both.
  const size_t first_end = AsProto({blocks[0]}).SerializeAsString().size();
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    SCOPED_TRACE(testing::Message() << "cut at " << cut << " of " << bytes.size());
    std::vector<v1::ClusterBlock> got;
    const absl::Status s = ReadAll(Sliced(bytes.substr(0, cut), 16), &got);
    if (cut == 0 || cut == first_end || cut == bytes.size()) {
      EXPECT_TRUE(s.ok()) << s;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
      EXPECT_LE(got.size(), 1u) << "blocks before the cut may arrive, none after";
    }
  }
}

TEST(FetchWireTest, MalformedFieldsAreDataLoss) {
  const std::string block = AsProto({{Ref(1, 1, 1), 1, Bytes(8, 1)}}).SerializeAsString();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"length past the end", std::string("\x0a\x7f", 2) + block.substr(2)},
      {"a data length past its block",
       std::string("\x0a\x06\x0a\x00\x10\x01\x1a\x09", 8) + std::string(9, 'x')},
      {"an id past its block", std::string("\x0a\x02\x0a\x05", 4) + std::string(5, 'x')},
      {"varint of eleven bytes", std::string(11, '\xff')},
      {"tenth varint byte too large", std::string(9, '\xff') + "\x02"},
      {"field number zero", std::string("\x00\x01", 2)},
      {"start group", std::string("\x0b", 1)},
      {"end group", std::string("\x0c", 1)},
      {"wire type 6", std::string("\x0e", 1)},
      {"wire type 7 in a block", std::string("\x0a\x01\x0f", 3)},
      {"num_tokens cut short", std::string("\x0a\x02\x10\xff", 4)},
      {"fixed64 past its block", std::string("\x0a\x03\x49\x00\x00", 5) + std::string(6, 'x')},
      {"unreadable id", std::string("\x0a\x03\x0a\x01\xff", 5)},
  };
  for (const auto& [what, bytes] : cases) {
    std::vector<v1::ClusterBlock> got;
    const absl::Status s = ReadAll(Sliced(bytes, 3), &got);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << what << ": " << s;
  }
  std::vector<v1::ClusterBlock> got;
  EXPECT_EQ(ReadAll(grpc::ByteBuffer(), &got).code(), absl::StatusCode::kDataLoss)
      << "an invalid (null) buffer";
}

TEST(FetchWireTest, CallbackErrorStopsTheWalk) {
  const std::vector<Block> blocks = {{Ref(0, 0, 1), 1, Bytes(10, 1)},
                                     {Ref(0, 0, 2), 1, Bytes(10, 2)},
                                     {Ref(0, 0, 3), 1, Bytes(10, 3)}};
  v1::ClusterBlock scratch;
  int calls = 0;
  const absl::Status s = ForEachFetchedBlock(
      Sliced(AsProto(blocks).SerializeAsString(), 8), scratch, [&](const v1::ClusterBlock&) {
        return ++calls == 2 ? absl::ResourceExhaustedError("full") : absl::OkStatus();
      });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(calls, 2);
}

TEST(FetchWireTest, AReferencedBlockIsHeldUntilGrpcReleasesItsSlice) {
  auto released = std::make_shared<int>(0);
  const std::vector<uint8_t> bytes = Bytes(65532, 3);
  {
    std::shared_ptr<const void> holder(bytes.data(), [released](const void*) { ++*released; });
    FetchResponseBuilder builder;
    builder.AddReferenced(Ref(0, 0, 1), 127, bytes, std::move(holder));
    grpc::ByteBuffer message = builder.Take();
    EXPECT_EQ(*released, 0) << "the message references the bytes";
    {
      grpc::ByteBuffer copy(message);  // another reference to the same slices
      message.Clear();
      EXPECT_EQ(*released, 0) << "a copy of the message still references the bytes";
      std::vector<grpc::Slice> slices;
      ASSERT_TRUE(copy.Dump(&slices).ok());
      ASSERT_EQ(slices.size(), 2u) << "framing, then the block's own bytes";
      EXPECT_EQ(slices[1].begin(), bytes.data()) << "the bytes are referenced, not copied";
    }
    EXPECT_EQ(*released, 1) << "released with the last reference to the slice";
  }
  EXPECT_EQ(*released, 1) << "released exactly once";
  // An empty block holds nothing: its holder goes at once.
  FetchResponseBuilder builder;
  auto kept = std::make_shared<int>(0);
  builder.AddReferenced(Ref(0, 0, 2), 0, {}, kept);
  EXPECT_EQ(kept.use_count(), 1);
}

}  // namespace
}  // namespace clusterkv::wire
