// SlotLayout: where a cached cluster's keys and values sit in a device cache region.
//
// gpu::ClusterCache hands out slots as token-row ranges [b, b + n). The region stores each
// slot as n key rows followed by n value rows, starting at byte b * 2 * row_bytes:
//
//   region: | slot A: K K K V V V | slot B: K K V V | free ... |
//
// which is exactly a cluster block (storage/cluster_block.h) with its positions section cut
// off. A recalled block therefore lands with ONE contiguous copy (block bytes from
// PayloadOffset() to the end), the "one contiguous transfer per recall" of DESIGN.md section 3,
// and a future UCX put can target the slot directly. A slot always holds its whole cluster
// (the client asks the cache for full cluster sizes), so the value rows start at a known
// offset; attention over a truncated cluster reads the first t rows of each half.
// Keys and values stay in the sequence dtype. Value type; thread-compatible.
#ifndef CLUSTERKV_CLIENT_SLOT_LAYOUT_H_
#define CLUSTERKV_CLIENT_SLOT_LAYOUT_H_

#include <cstddef>
#include <cstdint>

#include "core/kv_layout.h"
#include "core/tensor_view.h"
#include "core/token_range.h"

namespace clusterkv::client {

class SlotLayout {
 public:
  SlotLayout(int32_t head_dim, DType dtype)
      : head_dim_(head_dim), dtype_(dtype), row_bytes_(head_dim * DTypeSize(dtype)) {}

  int32_t head_dim() const { return head_dim_; }
  DType dtype() const { return dtype_; }
  // Bytes of one key (or one value) row.
  size_t row_bytes() const { return row_bytes_; }
  // Region bytes for `capacity_tokens` token rows.
  size_t RegionBytes(int64_t capacity_tokens) const {
    return static_cast<size_t>(capacity_tokens) * 2 * row_bytes_;
  }
  // Where slot `slot` starts (its key rows), and how many bytes it spans.
  size_t SlotOffset(const TokenRange& slot) const {
    return static_cast<size_t>(slot.begin) * 2 * row_bytes_;
  }
  size_t SlotBytes(const TokenRange& slot) const {
    return static_cast<size_t>(slot.size()) * 2 * row_bytes_;
  }
  size_t KeysOffset(const TokenRange& slot) const { return SlotOffset(slot); }
  size_t ValuesOffset(const TokenRange& slot) const {
    return SlotOffset(slot) + static_cast<size_t>(slot.size()) * row_bytes_;
  }
  // Offset inside a block of `tokens` tokens where its keys-then-values payload starts (the
  // payload is SlotBytes() long and is copied to SlotOffset()).
  static size_t PayloadOffset(int64_t tokens) {
    return static_cast<size_t>(tokens) * sizeof(int32_t);
  }

  // The first `rows` key / value rows of `slot`, given the region's host view `base`.
  ConstMatrixView Keys(const void* base, const TokenRange& slot, int64_t rows) const {
    return ConstMatrixView(static_cast<const uint8_t*>(base) + KeysOffset(slot), dtype_, rows,
                           head_dim_);
  }
  ConstMatrixView Values(const void* base, const TokenRange& slot, int64_t rows) const {
    return ConstMatrixView(static_cast<const uint8_t*>(base) + ValuesOffset(slot), dtype_, rows,
                           head_dim_);
  }

 private:
  int32_t head_dim_;
  DType dtype_;
  size_t row_bytes_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_SLOT_LAYOUT_H_
