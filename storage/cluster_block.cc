#include "storage/cluster_block.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace clusterkv::storage {

size_t ClusterBlockBytes(int64_t tokens, int32_t head_dim, DType dtype) {
  const size_t n = static_cast<size_t>(tokens);
  return n * sizeof(int32_t) + 2 * n * static_cast<size_t>(head_dim) * DTypeSize(dtype);
}

absl::StatusOr<ClusterBlockView> ViewClusterBlock(absl::Span<const uint8_t> bytes, int64_t tokens,
                                                  int32_t head_dim, DType dtype) {
  if (tokens < 0 || head_dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad block shape: ", tokens, " tokens of width ", head_dim));
  }
  const size_t expected = ClusterBlockBytes(tokens, head_dim, dtype);
  if (bytes.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("block of ", tokens, " tokens must be ",
                                                   expected, " bytes, got ", bytes.size()));
  }
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(int32_t) != 0) {
    return absl::InvalidArgumentError("block buffer is not 4-byte aligned");
  }
  ClusterBlockView view;
  view.positions = reinterpret_cast<const int32_t*>(bytes.data());
  const uint8_t* keys = bytes.data() + static_cast<size_t>(tokens) * sizeof(int32_t);
  const size_t section = static_cast<size_t>(tokens) * head_dim * DTypeSize(dtype);
  view.keys = ConstMatrixView(keys, dtype, tokens, head_dim);
  view.values = ConstMatrixView(keys + section, dtype, tokens, head_dim);
  return view;
}

absl::StatusOr<std::vector<uint8_t>> EncodeClusterBlock(absl::Span<const int32_t> positions,
                                                        const ConstMatrixView& keys,
                                                        const ConstMatrixView& values,
                                                        DType dtype) {
  RETURN_IF_ERROR(keys.Validate("keys"));
  RETURN_IF_ERROR(values.Validate("values"));
  const int64_t n = static_cast<int64_t>(positions.size());
  if (keys.rows != n || values.rows != n || keys.cols != values.cols || keys.cols < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        n, " positions, keys [", keys.rows, ", ", keys.cols, "], values [", values.rows, ", ",
        values.cols, "]: need equal rows and widths"));
  }
  const int32_t d = static_cast<int32_t>(keys.cols);
  std::vector<uint8_t> block(ClusterBlockBytes(n, d, dtype));
  std::memcpy(block.data(), positions.data(), positions.size() * sizeof(int32_t));
  uint8_t* out = block.data() + positions.size() * sizeof(int32_t);
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(dtype);
  std::vector<float> row(static_cast<size_t>(d));
  for (const ConstMatrixView* m : {&keys, &values}) {
    for (int64_t r = 0; r < n; ++r) {
      if (m->dtype == dtype) {
        std::memcpy(out, m->RowPtr(r), row_bytes);
      } else {
        m->LoadRow(r, row.data());
        ConvertFromFloat(row.data(), d, dtype, out);
      }
      out += row_bytes;
    }
  }
  return block;
}

}  // namespace clusterkv::storage
