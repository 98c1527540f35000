// Wire format of the UCX data-plane messages (DESIGN.md section 5). The control plane
// (ConnectDataPlane in kvcache.proto) sets up a session; these active messages then carry
// fetch requests client -> daemon and their completions daemon -> client, while the block bytes
// themselves travel by ucp_put straight into the client's slots.
//
// Every message is a fixed 40-byte little-endian header, a text, then `count` fixed-size
// entries:
//
//   header   u32 magic "CKVU" | u16 version | u16 kind | u64 request_id | u64 session_id |
//            u32 count | i32 status | u32 text_bytes | u32 block_slot_bytes
//   request  (kind 1) text = sequence id; entry (24 B) = i32 layer | i32 kv_head | i32 cluster |
//            i32 expected_tokens | u64 slot_offset (bytes from the client region's base);
//            block_slot_bytes 0: each block's keys+values go to its slot (an engine's
//            recall); > 0: each whole stored block (int32 positions, keys, values) goes to
//            its slot of that many bytes (a daemon pulling a peer's blocks, cluster mode)
//   reply    (kind 2) status/text = the whole request's absl code and message (0 = per-block
//            results are valid); entry (16 B) = i32 code | i32 num_tokens | u64 bytes_written
//            (for a whole block too large for its slot: OUT_OF_RANGE and the block's size);
//            block_slot_bytes 0
//
// A batch carries several sequences of the session's tenant in one request and one reply (an
// engine recalling one layer for a batch of sequences). A "string" below is u16 length | bytes.
//
//   batch request  (kind 3) status 0, block_slot_bytes 0; text = u32 num_sequences | that many
//            strings (the sequence ids); entry (32 B) = the request entry's 24 B | u32 sequence
//            (index into the ids; entries grouped by sequence: indexes never decrease) |
//            u32 reserved 0
//   batch reply    (kind 4) status = the whole request's code (0 = per-sequence results are
//            valid); text = string (the whole request's message) | u32 num_sequences | per
//            sequence i32 code | string (its message); count = the request's entries, each a
//            reply entry (16 B) in request order, valid where its sequence's code is 0 (a
//            failed sequence's entries repeat its code). A whole-request error has no
//            sequences and no entries.
//
// Bounds: a text of kind 1 or 2 (and every string) is at most kMaxTextBytes; a batch's text,
// its number of sequences and every message's number of entries are bounded by the decoding
// caller (BatchLimits, max_entries). The session id is the capability that binds a request to
// its session (and so its tenant). Decoding checks everything (magic, version, kind, lengths,
// counts, string lengths, sequence indexes, reserved fields) and answers InvalidArgument; it
// never reads out of bounds. Value types; thread-compatible.
#ifndef CLUSTERKV_PROTO_UCX_WIRE_H_
#define CLUSTERKV_PROTO_UCX_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::wire {

// Active-message ids registered by the daemon (requests) and the client (completions).
inline constexpr unsigned kAmFetchRequest = 17;
inline constexpr unsigned kAmFetchCompletion = 18;

inline constexpr uint32_t kMagic = 0x55564B43;  // "CKVU" in memory order
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 40;
inline constexpr size_t kRequestEntryBytes = 24;
inline constexpr size_t kCompletionEntryBytes = 16;
// Longest text of a message (a sequence id or an error message).
inline constexpr size_t kMaxTextBytes = 4096;

inline constexpr size_t kBatchEntryBytes = 32;
// Protocol ceilings of a batch: the most sequences, the longest text, and the longest message
// a reply carries per sequence (longer ones are cut when encoded).
inline constexpr size_t kMaxBatchSequences = 1024;
inline constexpr size_t kMaxBatchTextBytes = size_t{256} << 10;
inline constexpr size_t kMaxSequenceMessageBytes = 128;

enum class Kind : uint16_t {
  kFetchRequest = 1,
  kFetchCompletion = 2,
  kBatchFetchRequest = 3,
  kBatchFetchCompletion = 4,
};

struct FetchEntry {
  int32_t layer = 0;
  int32_t kv_head = 0;
  int32_t cluster = 0;
  int32_t expected_tokens = 0;
  uint64_t slot_offset = 0;
};

struct FetchRequest {
  uint64_t request_id = 0;
  uint64_t session_id = 0;
  std::string sequence_id;
  std::vector<FetchEntry> entries;
  // 0: keys+values into each slot; > 0: whole stored blocks into slots of this size.
  uint32_t block_slot_bytes = 0;
};

struct BlockResult {
  int32_t code = 0;  // absl::StatusCode
  int32_t num_tokens = 0;
  uint64_t bytes = 0;  // bytes written into the slot (keys + values, or the whole block)
};

struct FetchCompletion {
  uint64_t request_id = 0;
  uint64_t session_id = 0;
  int32_t code = 0;  // absl::StatusCode of the whole request
  std::string message;
  std::vector<BlockResult> blocks;
};

// One block of a batch: where it goes and which of the request's sequences it belongs to.
struct BatchFetchEntry {
  FetchEntry block;
  uint32_t sequence = 0;  // index into BatchFetchRequest::sequence_ids
};

struct BatchFetchRequest {
  uint64_t request_id = 0;
  uint64_t session_id = 0;
  std::vector<std::string> sequence_ids;
  // Grouped by sequence: `sequence` never decreases. A sequence may have no entries.
  std::vector<BatchFetchEntry> entries;
};

// One sequence's verdict in a batch reply: its absl::StatusCode (0: its blocks' results are
// valid) and, when not 0, why.
struct SequenceResult {
  int32_t code = 0;
  std::string message;
};

struct BatchFetchCompletion {
  uint64_t request_id = 0;
  uint64_t session_id = 0;
  int32_t code = 0;  // absl::StatusCode of the whole request; not 0: no sequences, no blocks
  std::string message;
  std::vector<SequenceResult> sequences;  // the request's sequences, in order
  std::vector<BlockResult> blocks;        // the request's entries, in order
};

// What a decoder accepts of a batch: at most `max_sequences` sequences (<=
// kMaxBatchSequences), `max_entries` entries and a text of `max_text_bytes` (<=
// kMaxBatchTextBytes).
struct BatchLimits {
  size_t max_sequences = kMaxBatchSequences;
  size_t max_entries = 0;
  size_t max_text_bytes = kMaxBatchTextBytes;
};

// What every message starts with: enough to route it (by kind) and to know whom a refused
// request came from.
struct MessageHeader {
  Kind kind = Kind::kFetchRequest;
  uint64_t request_id = 0;
  uint64_t session_id = 0;
};

// Encoders expect what the decoders accept: texts, ids and counts within the bounds above
// (the caller checks them; a reply's messages are cut to fit).
std::string Encode(const FetchRequest& request);
std::string Encode(const FetchCompletion& completion);
std::string Encode(const BatchFetchRequest& request);
std::string Encode(const BatchFetchCompletion& completion);

// InvalidArgument for a malformed message, another kind, a text over kMaxTextBytes, or more
// than `max_entries` entries. Nothing else is returned.
absl::StatusOr<FetchRequest> DecodeFetchRequest(absl::string_view bytes, size_t max_entries);
absl::StatusOr<FetchCompletion> DecodeFetchCompletion(absl::string_view bytes,
                                                      size_t max_entries);

// InvalidArgument for a malformed message, another kind, or one beyond `limits`. Nothing else
// is returned.
absl::StatusOr<BatchFetchRequest> DecodeBatchFetchRequest(absl::string_view bytes,
                                                          const BatchLimits& limits);
absl::StatusOr<BatchFetchCompletion> DecodeBatchFetchCompletion(absl::string_view bytes,
                                                                const BatchLimits& limits);

// The header of any message of a known kind, checking magic, version and kind only (the rest
// may still be malformed). InvalidArgument otherwise.
absl::StatusOr<MessageHeader> PeekHeader(absl::string_view bytes);

}  // namespace clusterkv::wire

#endif  // CLUSTERKV_PROTO_UCX_WIRE_H_
