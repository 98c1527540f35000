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
//   request  text = sequence id; entry (24 B) = i32 layer | i32 kv_head | i32 cluster |
//            i32 expected_tokens | u64 slot_offset (bytes from the client region's base);
//            block_slot_bytes 0: each block's keys+values go to its slot (an engine's
//            recall); > 0: each whole stored block (int32 positions, keys, values) goes to
//            its slot of that many bytes (a daemon pulling a peer's blocks, cluster mode)
//   reply    status/text = the whole request's absl code and message (0 = per-block results
//            are valid); entry (16 B) = i32 code | i32 num_tokens | u64 bytes_written (for
//            a whole block too large for its slot: OUT_OF_RANGE and the block's size);
//            block_slot_bytes 0
//
// The session id is the capability that binds a request to its session (and so its tenant).
// Decoding checks everything (magic, version, kind, lengths, counts against a caller's limit)
// and answers InvalidArgument; it never reads out of bounds. Value types; thread-compatible.
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

enum class Kind : uint16_t { kFetchRequest = 1, kFetchCompletion = 2 };

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

std::string Encode(const FetchRequest& request);
std::string Encode(const FetchCompletion& completion);

// InvalidArgument for a malformed message, another kind, a text over kMaxTextBytes, or more
// than `max_entries` entries. Nothing else is returned.
absl::StatusOr<FetchRequest> DecodeFetchRequest(absl::string_view bytes, size_t max_entries);
absl::StatusOr<FetchCompletion> DecodeFetchCompletion(absl::string_view bytes,
                                                      size_t max_entries);

}  // namespace clusterkv::wire

#endif  // CLUSTERKV_PROTO_UCX_WIRE_H_
