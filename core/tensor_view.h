// Non-owning strided views over K/V/Q data. KV data arrives as fp16, bf16 or fp32 and is
// converted on load; compute writes fp32. Views never own memory: the caller keeps the buffer
// alive while a view is in use.
//
// Example:
//   // keys: [num_kv_heads, tokens, head_dim] fp16, as a model dumps them.
//   Tensor3View keys(buf, DType::kFloat16, {8, 32768, 128});
//   ConstMatrixView head0 = keys.Slice(0);  // [tokens, head_dim]
//   float first = head0.At(0, 0);
#ifndef CLUSTERKV_CORE_TENSOR_VIEW_H_
#define CLUSTERKV_CORE_TENSOR_VIEW_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/kv_layout.h"

namespace clusterkv {

// Read-only row-major matrix of a runtime dtype; rows may be strided (row_stride >= cols,
// counted in elements).
struct ConstMatrixView {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;

  ConstMatrixView() = default;
  ConstMatrixView(const void* data, DType dtype, int64_t rows, int64_t cols,
                  int64_t row_stride = -1)
      : data(data),
        dtype(dtype),
        rows(rows),
        cols(cols),
        row_stride(row_stride < 0 ? cols : row_stride) {}
  // fp32 convenience constructor.
  ConstMatrixView(const float* data, int64_t rows, int64_t cols)
      : ConstMatrixView(data, DType::kFloat32, rows, cols) {}

  const uint8_t* RowPtr(int64_t r) const {
    return static_cast<const uint8_t*>(data) +
           static_cast<size_t>(r) * static_cast<size_t>(row_stride) * DTypeSize(dtype);
  }
  // Element (r, c) converted to fp32.
  float At(int64_t r, int64_t c) const;
  // Converts row r to fp32 into out[0, cols).
  void LoadRow(int64_t r, float* out) const;
  // Rows [begin, end) as a view of the same buffer.
  ConstMatrixView Rows(int64_t begin, int64_t end) const {
    return ConstMatrixView(RowPtr(begin), dtype, end - begin, cols, row_stride);
  }

  // InvalidArgument naming `what` unless data is non-null (or the view is empty), dims are
  // non-negative and row_stride >= cols.
  absl::Status Validate(absl::string_view what) const;
  // InvalidArgument naming `what` and the first offending element if any element is NaN/Inf.
  absl::Status CheckFinite(absl::string_view what) const;
};

// Mutable fp32 row-major matrix (compute outputs).
struct MatrixView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;

  MatrixView() = default;
  MatrixView(float* data, int64_t rows, int64_t cols, int64_t row_stride = -1)
      : data(data), rows(rows), cols(cols), row_stride(row_stride < 0 ? cols : row_stride) {}
  float* Row(int64_t r) const { return data + r * row_stride; }
  ConstMatrixView AsConst() const {
    return ConstMatrixView(data, DType::kFloat32, rows, cols, row_stride);
  }
};

// Read-only [d0, d1, d2] tensor with strided outer dims (e.g. [heads, tokens, head_dim]).
struct Tensor3View {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::array<int64_t, 3> dims = {0, 0, 0};
  std::array<int64_t, 2> strides = {0, 0};  // elements between consecutive d0 / d1 entries

  Tensor3View() = default;
  // Contiguous tensor.
  Tensor3View(const void* data, DType dtype, std::array<int64_t, 3> dims)
      : data(data), dtype(dtype), dims(dims), strides({dims[1] * dims[2], dims[2]}) {}

  // The [d1, d2] matrix at index i of d0.
  ConstMatrixView Slice(int64_t i) const {
    return ConstMatrixView(static_cast<const uint8_t*>(data) +
                               static_cast<size_t>(i * strides[0]) * DTypeSize(dtype),
                           dtype, dims[1], dims[2], strides[1]);
  }
};

// Converts n elements of `dtype` at src to fp32 (vectorised where the CPU allows).
void ConvertToFloat(const void* src, DType dtype, int64_t n, float* dst);
// Converts n fp32 values to `dtype` at dst, rounding to nearest even.
void ConvertFromFloat(const float* src, int64_t n, DType dtype, void* dst);
// Encodes fp32 values into a byte buffer of `dtype`.
std::vector<uint8_t> EncodeAs(const std::vector<float>& values, DType dtype);

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_TENSOR_VIEW_H_
