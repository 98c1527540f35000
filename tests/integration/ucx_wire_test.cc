// proto/ucx_wire.h round trips and rejections (single-sequence and batch messages), and the
// client's UCX region allocator.
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

// ---- batches ---------------------------------------------------------------------------------

wire::BatchFetchRequest SampleBatch() {
  wire::BatchFetchRequest r;
  r.request_id = 0x1112131415161718ULL;
  r.session_id = 0xa1a2a3a4a5a6a7a8ULL;
  r.sequence_ids = {"seq-a", "", "seq-ccc"};  // the second has no blocks
  r.entries.push_back(wire::BatchFetchEntry{wire::FetchEntry{3, 1, 77, 64, 1ULL << 40}, 0});
  r.entries.push_back(wire::BatchFetchEntry{wire::FetchEntry{0, 0, 5, 0, 4096}, 0});
  r.entries.push_back(wire::BatchFetchEntry{wire::FetchEntry{-1, 2, 9, 16, 8192}, 2});
  return r;
}

wire::BatchLimits Limits(size_t entries = 16) {
  wire::BatchLimits limits;
  limits.max_entries = entries;
  return limits;
}

// Byte offsets in an encoded SampleBatch(): its text (u32 count, then u16 length + id each) and
// its entries.
constexpr size_t kBatchText = wire::kHeaderBytes;
constexpr size_t kBatchTextBytes = 4 + (2 + 5) + 2 + (2 + 7);
constexpr size_t kBatchEntries = kBatchText + kBatchTextBytes;

TEST(UcxWireBatchTest, RequestRoundTripsWithItsLayout) {
  const std::string bytes = wire::Encode(SampleBatch());
  ASSERT_EQ(bytes.size(), kBatchEntries + 3 * wire::kBatchEntryBytes);
  EXPECT_EQ(static_cast<uint8_t>(bytes[6]), 3);   // kind
  EXPECT_EQ(static_cast<uint8_t>(bytes[24]), 3);  // count: the entries
  EXPECT_EQ(static_cast<uint8_t>(bytes[32]), kBatchTextBytes);
  EXPECT_EQ(static_cast<uint8_t>(bytes[kBatchText]), 3);      // three sequences
  EXPECT_EQ(static_cast<uint8_t>(bytes[kBatchText + 4]), 5);  // "seq-a"
  EXPECT_EQ(bytes.substr(kBatchText + 6, 5), "seq-a");
  EXPECT_EQ(static_cast<uint8_t>(bytes[kBatchEntries + 2 * 32 + 24]), 2);  // third: sequence 2
  auto decoded = wire::DecodeBatchFetchRequest(bytes, Limits());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const wire::BatchFetchRequest want = SampleBatch();
  EXPECT_EQ(decoded->request_id, want.request_id);
  EXPECT_EQ(decoded->session_id, want.session_id);
  EXPECT_EQ(decoded->sequence_ids, want.sequence_ids);
  ASSERT_EQ(decoded->entries.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const wire::BatchFetchEntry& got = decoded->entries[i];
    const wire::BatchFetchEntry& e = want.entries[i];
    EXPECT_EQ(got.sequence, e.sequence) << i;
    EXPECT_EQ(got.block.layer, e.block.layer) << i;
    EXPECT_EQ(got.block.kv_head, e.block.kv_head) << i;
    EXPECT_EQ(got.block.cluster, e.block.cluster) << i;
    EXPECT_EQ(got.block.expected_tokens, e.block.expected_tokens) << i;
    EXPECT_EQ(got.block.slot_offset, e.block.slot_offset) << i;
  }
  EXPECT_EQ(wire::Encode(*decoded), bytes);
}

TEST(UcxWireBatchTest, EmptyBatchRoundTrips) {
  auto decoded = wire::DecodeBatchFetchRequest(wire::Encode(wire::BatchFetchRequest()), Limits(0));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->sequence_ids.empty());
  EXPECT_TRUE(decoded->entries.empty());
}

wire::BatchFetchCompletion SampleBatchCompletion() {
  wire::BatchFetchCompletion c;
  c.request_id = 9;
  c.session_id = 10;
  c.sequences = {{0, ""}, {5, "no sequence 'seq-b'"}, {0, ""}};
  c.blocks = {{0, 64, 32768}, {5, 0, 0}, {0, 16, 8192}};
  return c;
}

TEST(UcxWireBatchTest, CompletionRoundTrips) {
  const std::string bytes = wire::Encode(SampleBatchCompletion());
  EXPECT_EQ(static_cast<uint8_t>(bytes[6]), 4);  // kind
  auto decoded = wire::DecodeBatchFetchCompletion(bytes, Limits());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->request_id, 9u);
  EXPECT_EQ(decoded->session_id, 10u);
  EXPECT_EQ(decoded->code, 0);
  ASSERT_EQ(decoded->sequences.size(), 3u);
  EXPECT_EQ(decoded->sequences[1].code, 5);
  EXPECT_EQ(decoded->sequences[1].message, "no sequence 'seq-b'");
  ASSERT_EQ(decoded->blocks.size(), 3u);
  EXPECT_EQ(decoded->blocks[0].bytes, 32768u);
  EXPECT_EQ(decoded->blocks[1].code, 5);
  EXPECT_EQ(decoded->blocks[2].num_tokens, 16);
  EXPECT_EQ(wire::Encode(*decoded), bytes);
}

TEST(UcxWireBatchTest, WholeRequestErrorCarriesNoResultsAndLongMessagesAreCut) {
  wire::BatchFetchCompletion c = SampleBatchCompletion();
  c.code = 3;
  c.message = std::string(wire::kMaxTextBytes + 10, 'm');
  auto decoded = wire::DecodeBatchFetchCompletion(wire::Encode(c), Limits());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->code, 3);
  EXPECT_EQ(decoded->message.size(), wire::kMaxTextBytes);
  EXPECT_TRUE(decoded->sequences.empty());
  EXPECT_TRUE(decoded->blocks.empty());

  c = SampleBatchCompletion();
  c.sequences[1].message = std::string(1000, 'x');
  decoded = wire::DecodeBatchFetchCompletion(wire::Encode(c), Limits());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->sequences[1].message, std::string(wire::kMaxSequenceMessageBytes, 'x'));
}

TEST(UcxWireBatchTest, MalformedBatchRequestsAreInvalidArgument) {
  const std::string good = wire::Encode(SampleBatch());
  auto code = [](const std::string& bytes, const wire::BatchLimits& limits = Limits()) {
    return wire::DecodeBatchFetchRequest(bytes, limits).status().code();
  };
  auto patched = [&](size_t at, std::initializer_list<uint8_t> bytes) {
    std::string out = good;
    for (uint8_t b : bytes) out[at++] = static_cast<char>(b);
    return out;
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  for (size_t n = 0; n < good.size(); ++n) EXPECT_EQ(code(good.substr(0, n)), kInvalid) << n;
  EXPECT_EQ(code(good + "x"), kInvalid);  // trailing byte
  // The caller's limits: entries, sequences, text bytes.
  EXPECT_EQ(code(good, Limits(2)), kInvalid);
  wire::BatchLimits two_sequences = Limits();
  two_sequences.max_sequences = 2;
  EXPECT_EQ(code(good, two_sequences), kInvalid);
  wire::BatchLimits short_text = Limits();
  short_text.max_text_bytes = kBatchTextBytes - 1;
  EXPECT_EQ(code(good, short_text), kInvalid);
  EXPECT_EQ(code(patched(28, {1})), kInvalid);          // status set
  EXPECT_EQ(code(patched(36, {1})), kInvalid);          // block_slot_bytes set
  EXPECT_EQ(code(patched(kBatchText, {4})), kInvalid);  // a fourth id the text lacks
  EXPECT_EQ(code(patched(kBatchText, {2})), kInvalid);  // bytes left after two ids
  EXPECT_EQ(code(patched(kBatchText, {0xff, 0xff, 0xff, 0xff})), kInvalid);  // 4 G sequences
  EXPECT_EQ(code(patched(kBatchText + 4, {0xff, 0x00})), kInvalid);          // id leaves the text
  EXPECT_EQ(code(patched(kBatchText + 4, {0x01, 0x10})), kInvalid);  // id over kMaxTextBytes
  EXPECT_EQ(code(patched(kBatchEntries + 24, {3})), kInvalid);       // no sequence 3
  EXPECT_EQ(code(patched(kBatchEntries + 24, {0xff, 0xff, 0xff, 0xff})), kInvalid);
  EXPECT_EQ(code(patched(kBatchEntries + 24, {2})), kInvalid);  // sequences 2, 0, 2 decrease
  EXPECT_EQ(code(patched(kBatchEntries + 32 + 24, {2})), absl::StatusCode::kOk);  // 0, 2, 2
  EXPECT_EQ(code(patched(kBatchEntries + 28, {1})), kInvalid);                    // reserved set
  EXPECT_EQ(code(patched(kBatchEntries + 64 + 24, {1})), absl::StatusCode::kOk);  // 0, 0, 1
  // The other kinds are not batch requests, nor is a batch request one of them.
  EXPECT_EQ(code(wire::Encode(SampleRequest())), kInvalid);
  EXPECT_EQ(code(wire::Encode(SampleBatchCompletion())), kInvalid);
  EXPECT_EQ(wire::DecodeFetchRequest(good, 16).status().code(), kInvalid);
  EXPECT_EQ(wire::DecodeFetchCompletion(good, 16).status().code(), kInvalid);
}

TEST(UcxWireBatchTest, MalformedBatchCompletionsAreInvalidArgument) {
  const std::string good = wire::Encode(SampleBatchCompletion());
  auto code = [](const std::string& bytes, const wire::BatchLimits& limits = Limits()) {
    return wire::DecodeBatchFetchCompletion(bytes, limits).status().code();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  for (size_t n = 0; n < good.size(); ++n) EXPECT_EQ(code(good.substr(0, n)), kInvalid) << n;
  EXPECT_EQ(code(good + "x"), kInvalid);
  EXPECT_EQ(code(good, Limits(2)), kInvalid);
  wire::BatchLimits two_sequences = Limits();
  two_sequences.max_sequences = 2;
  EXPECT_EQ(code(good, two_sequences), kInvalid);
  std::string error = good;
  error[28] = 5;  // a whole-request error that still carries results
  EXPECT_EQ(code(error), kInvalid);
  std::string reserved = good;
  reserved[36] = 1;
  EXPECT_EQ(code(reserved), kInvalid);
  // The second sequence's message length claims more than kMaxSequenceMessageBytes. Text:
  // message length (2) | count (4) | code (4) | length 0 (2) | code (4) | length ...
  const size_t second_message = wire::kHeaderBytes + 2 + 4 + 4 + 2 + 4;
  ASSERT_EQ(static_cast<uint8_t>(good[second_message]), 19);  // "no sequence 'seq-b'"
  std::string long_message = good;
  long_message[second_message] = static_cast<char>(wire::kMaxSequenceMessageBytes + 1);
  EXPECT_EQ(code(long_message), kInvalid);
  EXPECT_EQ(code(wire::Encode(wire::FetchCompletion())), kInvalid);
  EXPECT_EQ(wire::DecodeFetchCompletion(good, 16).status().code(), kInvalid);
}

TEST(UcxWireBatchTest, PeekHeaderRoutesByKindAndRefusesUnknownOnes) {
  auto kind = [](const std::string& bytes) { return wire::PeekHeader(bytes)->kind; };
  EXPECT_EQ(kind(wire::Encode(SampleRequest())), wire::Kind::kFetchRequest);
  EXPECT_EQ(kind(wire::Encode(wire::FetchCompletion())), wire::Kind::kFetchCompletion);
  EXPECT_EQ(kind(wire::Encode(SampleBatch())), wire::Kind::kBatchFetchRequest);
  EXPECT_EQ(kind(wire::Encode(SampleBatchCompletion())), wire::Kind::kBatchFetchCompletion);
  const std::string batch = wire::Encode(SampleBatch());
  // Only the header must be sound: a truncated body still names its request.
  auto header = wire::PeekHeader(batch.substr(0, wire::kHeaderBytes));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->request_id, SampleBatch().request_id);
  EXPECT_EQ(header->session_id, SampleBatch().session_id);
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(wire::PeekHeader(batch.substr(0, wire::kHeaderBytes - 1)).status().code(), kInvalid);
  for (int k : {0, 5, 0xff}) {
    std::string unknown = batch;
    unknown[6] = static_cast<char>(k);
    EXPECT_EQ(wire::PeekHeader(unknown).status().code(), kInvalid) << k;
  }
  std::string version = batch;
  version[4] = 2;
  EXPECT_EQ(wire::PeekHeader(version).status().code(), kInvalid);
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
