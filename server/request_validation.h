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

// layer in [0, num_layers), kv_head in [0, num_kv_heads), cluster >= 0.
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

// layer in range, queries.size() == num_q_heads * head_dim and finite, budget >= 1.
absl::Status ValidateSelect(const KvLayout& layout, const v1::SelectRequest& request);

// The per-sequence fields of a client report: step in [0, 2^40], selected_heads <= 2^40,
// selected_tokens <= 2^31 * selected_heads (a per-head selection is at most 2^31 tokens), and
// without a sequence_id no step or budget at all (they only mean something per sequence).
// The sequence_id itself is checked where the caller's tenant is known.
absl::Status ValidateSequenceReport(const v1::ReportClientStatsRequest& request);

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_REQUEST_VALIDATION_H_
