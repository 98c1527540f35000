// Validation of every client-supplied field, in one place so that the gRPC path, the UCX path
// and the fuzzers exercise the same checks. Each function returns InvalidArgument naming the
// offending field, or OK.
#ifndef CLUSTERKV_SERVER_REQUEST_VALIDATION_H_
#define CLUSTERKV_SERVER_REQUEST_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "core/kv_layout.h"

namespace clusterkv::server {

// Store ids from here up hold a sequence's session state chunks (PutState, chunk c at
// kStateChunkBase + c of kv head 0), never a cluster block.
inline constexpr int32_t kStateChunkBase = int32_t{1} << 30;
// StateChunk.layer of the engine's own state chunks (stored beside layer 0's: chunk numbers
// are unique per sequence).
inline constexpr int32_t kEngineStateLayer = -1;
// Most chunks one PutState may carry, and most one layer's state may name.
inline constexpr int32_t kMaxStateChunks = int32_t{1} << 16;
// Most segments of a document, and the accepted size of one hash of its chain.
inline constexpr int32_t kMaxDocumentSegments = 4096;
inline constexpr size_t kMinSegmentHashBytes = 16;
inline constexpr size_t kMaxSegmentHashBytes = 64;
// Most tenants one document is shared with (GrantDocument).
inline constexpr int kMaxDocumentGrants = 256;

// layer in [0, num_layers), kv_head in [0, num_kv_heads), cluster in [0, kStateChunkBase).
absl::Status ValidateClusterRef(const KvLayout& layout, const v1::ClusterRef& ref);

// At most `max_clusters` refs, every ref valid (ValidateClusterRef) and none named twice: a
// fetch can never send more bytes than the distinct clusters it names hold.
absl::Status ValidateFetchRefs(const KvLayout& layout,
                               const google::protobuf::RepeatedPtrField<v1::ClusterRef>& refs,
                               int32_t max_clusters);

// The page size a ListSequences request asks for, capped at `max_page` (0: `max_page`);
// InvalidArgument for a negative size or a start_after longer than any sequence id.
absl::StatusOr<int32_t> ListPageSize(const v1::ListSequencesRequest& request, int32_t max_page);

// At most one index per head of the layout in one message (`what`: "message", "append").
absl::Status ValidateIndexCount(const KvLayout& layout, int count, absl::string_view what);

// num_tokens >= 1, `bytes` exactly ClusterBlockBytes(num_tokens, head_dim, dtype) and at most
// max_block_bytes: a block's shape, however it arrived (a protobuf, a UCX slot).
absl::Status ValidateBlockShape(const KvLayout& layout, int32_t num_tokens, uint64_t bytes,
                                uint64_t max_block_bytes);

// The ref and the shape (ValidateBlockShape).
absl::Status ValidateBlock(const KvLayout& layout, const v1::ClusterBlock& block,
                           uint64_t max_block_bytes);

// layer/kv_head in range, sizes >= 0, centroids.size() == sizes.size() * head_dim, every
// centroid value finite, at most 2^20 clusters.
absl::Status ValidateHeadIndex(const KvLayout& layout, const v1::HeadIndex& index);

// A checkpoint (PutState): every chunk's layer in range (or kEngineStateLayer), chunk in [0, kStateChunkBase),
// data non-empty and at most max_chunk_bytes, at most kMaxStateChunks of them; the state's
// layers in range and distinct, counts non-negative, chunk numbers in range.
absl::Status ValidatePutState(const KvLayout& layout, const v1::PutStateRequest& request,
                              uint64_t max_chunk_bytes);

// A document's segments for `layout`: 1..kMaxDocumentSegments of them, one hash (16-64 bytes)
// and one end token per segment, ends strictly increasing, and num_layers cluster counts per
// segment, each non-negative and non-decreasing per layer.
absl::Status ValidateDocumentSegments(const KvLayout& layout, const v1::DocumentSegments& s);

// layer in range, queries.size() == num_q_heads * head_dim and finite, budget >= 1.
absl::Status ValidateSelect(const KvLayout& layout, const v1::SelectRequest& request);

// The per-sequence fields of a client report: step in [0, 2^40], selected_heads <= 2^40,
// selected_tokens <= 2^31 * selected_heads (a per-head selection is at most 2^31 tokens), and
// without a sequence_id no step or budget at all (they only mean something per sequence).
// The sequence_id itself is checked where the caller's tenant is known.
absl::Status ValidateSequenceReport(const v1::ReportClientStatsRequest& request);

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_REQUEST_VALIDATION_H_
