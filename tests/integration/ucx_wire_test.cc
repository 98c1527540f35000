// proto/ucx_wire.h round trips and rejections, and the client's UCX region allocator.
#include "proto/ucx_wire.h"

#include <string>

#include "client/ucx_host_memory.h"
#include "gtest/gtest.h"

namespace clusterkv {
namespace {

wire::FetchRequest SampleRequest() {
  wire::FetchRequest r;
  r.request_id = 0x0102030405060708ULL;
  r.session_id = 0xfedcba9876543210ULL;
  r.sequence_id = "req-42";
  r.entries.push_back(wire::FetchEntry{3, 1, 77, 64, 1ULL << 40});
  r.entries.push_back(wire::FetchEntry{-1, 0, 2, 0, 0});
  return r;
}

TEST(UcxWireTest, RequestRoundTripsLittleEndian) {
  const std::string bytes = wire::Encode(SampleRequest());
  ASSERT_EQ(bytes.size(), wire::kHeaderBytes + 6 + 2 * wire::kRequestEntryBytes);
  EXPECT_EQ(bytes.substr(0, 4), "CKVU");
  EXPECT_EQ(static_cast<uint8_t>(bytes[8]), 0x08);  // request id, low byte first
  auto decoded = wire::DecodeFetchRequest(bytes, 16);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->request_id, SampleRequest().request_id);
  EXPECT_EQ(decoded->session_id, SampleRequest().session_id);
  EXPECT_EQ(decoded->sequence_id, "req-42");
  ASSERT_EQ(decoded->entries.size(), 2u);
  EXPECT_EQ(decoded->entries[0].cluster, 77);
  EXPECT_EQ(decoded->entries[0].slot_offset, 1ULL << 40);
  EXPECT_EQ(decoded->entries[1].layer, -1);
}

TEST(UcxWireTest, WholeBlockSlotSizeRoundTripsAndRepliesMustNotCarryOne) {
  wire::FetchRequest request = SampleRequest();
  EXPECT_EQ(wire::DecodeFetchRequest(wire::Encode(request), 16)->block_slot_bytes, 0u);
  request.block_slot_bytes = 3u << 20;
  auto decoded = wire::DecodeFetchRequest(wire::Encode(request), 16);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->block_slot_bytes, 3u << 20);
  // The same header field in a reply is refused.
  wire::FetchCompletion c;
  c.blocks.push_back(wire::BlockResult{0, 1, 516});
  std::string reply = wire::Encode(c);
  reply[36] = 1;  // block_slot_bytes, the header's last field
  EXPECT_TRUE(absl::IsInvalidArgument(wire::DecodeFetchCompletion(reply, 16).status()));
}

TEST(UcxWireTest, CompletionRoundTrips) {
  wire::FetchCompletion c;
  c.request_id = 9;
  c.session_id = 10;
  c.code = 5;
  c.message = "no sequence";
  c.blocks.push_back(wire::BlockResult{0, 64, 32768});
  c.blocks.push_back(wire::BlockResult{3, 0, 0});
  auto decoded = wire::DecodeFetchCompletion(wire::Encode(c), 16);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->code, 5);
  EXPECT_EQ(decoded->message, "no sequence");
  ASSERT_EQ(decoded->blocks.size(), 2u);
  EXPECT_EQ(decoded->blocks[0].bytes, 32768u);
  EXPECT_EQ(decoded->blocks[1].code, 3);
}

TEST(UcxWireTest, MalformedMessagesAreInvalidArgument) {
  const std::string good = wire::Encode(SampleRequest());
  auto bad = [](const std::string& bytes, size_t limit = 16) {
    return wire::DecodeFetchRequest(bytes, limit).status().code();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  for (size_t n = 0; n < good.size(); ++n) EXPECT_EQ(bad(good.substr(0, n)), kInvalid) << n;
  EXPECT_EQ(bad(good + "x"), kInvalid);        // trailing byte
  EXPECT_EQ(bad(good, 1), kInvalid);           // more entries than the limit
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_EQ(bad(magic), kInvalid);
  std::string version = good;
  version[4] = 9;
  EXPECT_EQ(bad(version), kInvalid);
  std::string count = good;
  count[24] = static_cast<char>(0xff);  // count low byte: lengths no longer add up
  EXPECT_EQ(bad(count), kInvalid);
  std::string huge_text = good;
  huge_text[32] = 0;
  huge_text[33] = 0x10;
  huge_text[34] = 0x10;  // text length far beyond kMaxTextBytes
  EXPECT_EQ(bad(huge_text), kInvalid);
  // A completion is not a request.
  EXPECT_EQ(wire::DecodeFetchCompletion(good, 16).status().code(), kInvalid);
}

TEST(UcxRegionTest, CarvesAlignedRangesAndCoalescesReleases) {
  auto context = ucx::Context::Create({});
  ASSERT_TRUE(context.ok()) << context.status();
  auto region = client::UcxRegion::Create(std::shared_ptr<ucx::Context>(*std::move(context)),
                                          size_t{1} << 20);
  ASSERT_TRUE(region.ok()) << region.status();
  const size_t total = (*region)->free_bytes();
  EXPECT_GE(total, (size_t{1} << 20) - client::UcxRegion::kAlignment);
  {
    client::UcxHostMemory a(*region), b(*region);
    ASSERT_TRUE(a.Allocate(1000).ok());
    ASSERT_TRUE(b.Allocate(300 << 10).ok());
    EXPECT_EQ(a.region_offset() % client::UcxRegion::kAlignment, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.HostView(0)) % client::UcxRegion::kAlignment, 0u);
    EXPECT_GE(b.region_offset(), a.region_offset() + 1000);
    EXPECT_EQ(a.CopyIn(999, "xy", 2).code(), absl::StatusCode::kOutOfRange);
    client::UcxHostMemory too_big(*region);
    EXPECT_EQ(too_big.Allocate(size_t{2} << 20).code(), absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ((*region)->free_bytes(), total);
  client::UcxHostMemory whole(*region);
  EXPECT_TRUE(whole.Allocate(total).ok());  // coalesced back into one range
}

}  // namespace
}  // namespace clusterkv
