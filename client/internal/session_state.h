// The client's half of resumable sessions and shared documents: how a checkpoint's rows are
// packed into the daemon's opaque state chunks, and the hash chain that names a prompt's
// segment-aligned prefixes. Internal to client/.
#ifndef CLUSTERKV_CLIENT_INTERNAL_SESSION_STATE_H_
#define CLUSTERKV_CLIENT_INTERNAL_SESSION_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/config.h"
#include "core/kv_layout.h"

namespace clusterkv::client::internal {

// The rows of one layer that one checkpoint saves: local rows (sinks, or every row of a dense
// layer; local row r is position r) in the sequence dtype, and recent-window rows in fp32 (as
// the window holds them, so a resumed window is bit-identical).
struct ChunkRows {
  int32_t layer = 0;
  int64_t first_local = 0;  // the local row (= position) of the first local row here
  int64_t num_local = 0;
  std::vector<int32_t> window_positions;
  // Per kv head: num_local rows of local keys / values (dtype), window rows (fp32).
  std::vector<std::vector<uint8_t>> local_keys, local_values;
  std::vector<std::vector<float>> window_keys, window_values;
};

std::string EncodeChunk(const ChunkRows& rows, const KvLayout& layout);
// DataLoss when `bytes` is not a chunk of `layer` in `layout`.
absl::StatusOr<ChunkRows> DecodeChunk(absl::string_view bytes, int32_t layer,
                                      const KvLayout& layout);

// Where a prompt of `tokens` tokens is cut into segments of `segment_tokens` (0: one
// segment): every multiple of it below `tokens`, then `tokens`.
std::vector<int64_t> SegmentEnds(int64_t tokens, int32_t segment_tokens);

// The hash chain of `tokens` at each of `ends` (SHA-256, 32 bytes each): hash j covers the
// model, the layout, the clustering configuration and every token before ends[j], so equal
// hashes mean equal prefixes clustered the same way.
std::vector<std::string> PrefixHashes(absl::Span<const int32_t> tokens,
                                      absl::Span<const int64_t> ends, absl::string_view model,
                                      const KvLayout& layout, const ClusterKvConfig& config);

}  // namespace clusterkv::client::internal

#endif  // CLUSTERKV_CLIENT_INTERNAL_SESSION_STATE_H_
