// The cluster block: one cluster's tokens stored contiguously (DESIGN.md section 3) as
//   [positions: int32 x n][keys: n x head_dim][values: n x head_dim]
// in the sequence's dtype, so a recall is a single contiguous transfer. The block carries no
// header: its token count, head_dim and dtype come from the sequence's layout and index.
#ifndef CLUSTERKV_STORAGE_CLUSTER_BLOCK_H_
#define CLUSTERKV_STORAGE_CLUSTER_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"

namespace clusterkv::storage {

// Bytes of a block of `tokens` tokens.
size_t ClusterBlockBytes(int64_t tokens, int32_t head_dim, DType dtype);

// Read-only view of a block's three sections. Does not own the bytes.
struct ClusterBlockView {
  const int32_t* positions = nullptr;
  ConstMatrixView keys;
  ConstMatrixView values;
  int64_t tokens() const { return keys.rows; }
};

// Interprets `bytes` as a block of `tokens` tokens. InvalidArgument when the size does not match
// or the buffer is misaligned for int32 positions.
absl::StatusOr<ClusterBlockView> ViewClusterBlock(absl::Span<const uint8_t> bytes, int64_t tokens,
                                                  int32_t head_dim, DType dtype);

// Builds a block from positions and key/value rows (converted to `dtype`).
// InvalidArgument when the row counts or widths disagree.
absl::StatusOr<std::vector<uint8_t>> EncodeClusterBlock(absl::Span<const int32_t> positions,
                                                        const ConstMatrixView& keys,
                                                        const ConstMatrixView& values,
                                                        DType dtype);

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_CLUSTER_BLOCK_H_
