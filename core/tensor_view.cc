#include "core/tensor_view.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace clusterkv {

float ConstMatrixView::At(int64_t r, int64_t c) const {
  const uint8_t* row = RowPtr(r);
  switch (dtype) {
    case DType::kFloat16: {
      uint16_t h;
      memcpy(&h, row + 2 * c, 2);
      return HalfToFloat(h);
    }
    case DType::kBFloat16: {
      uint16_t b;
      memcpy(&b, row + 2 * c, 2);
      return BFloat16ToFloat(b);
    }
    case DType::kFloat32: {
      float f;
      memcpy(&f, row + 4 * c, 4);
      return f;
    }
  }
  return 0.0f;
}

void ConstMatrixView::LoadRow(int64_t r, float* out) const {
  ConvertToFloat(RowPtr(r), dtype, cols, out);
}

absl::Status ConstMatrixView::Validate(absl::string_view what) const {
  if (rows < 0 || cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": negative shape [", rows, ", ", cols, "]"));
  }
  if (row_stride < cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": row stride ", row_stride, " is smaller than ", cols, " columns"));
  }
  if (data == nullptr && rows > 0 && cols > 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": null data"));
  }
  return absl::OkStatus();
}

absl::Status ConstMatrixView::CheckFinite(absl::string_view what) const {
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    LoadRow(r, row.data());
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c])) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": non-finite value ", row[c], " at [", r, ", ", c, "]"));
      }
    }
  }
  return absl::OkStatus();
}

void ConvertToFloat(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kFloat32:
      memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kFloat16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      int64_t i = 0;
#if defined(__F16C__)
      for (; i + 8 <= n; i += 8) {
        __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(packed));
      }
#endif
      for (; i < n; ++i) {
        uint16_t v;
        memcpy(&v, h + i, 2);
        dst[i] = HalfToFloat(v);
      }
      return;
    }
    case DType::kBFloat16: {
      const uint16_t* b = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        memcpy(&v, b + i, 2);
        dst[i] = BFloat16ToFloat(v);
      }
      return;
    }
  }
}

void ConvertFromFloat(const float* src, int64_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kFloat32:
      memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kFloat16: {
      uint16_t* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = FloatToHalf(src[i]);
      return;
    }
    case DType::kBFloat16: {
      uint16_t* b = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) b[i] = FloatToBFloat16(src[i]);
      return;
    }
  }
}

std::vector<uint8_t> EncodeAs(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> out(values.size() * DTypeSize(dtype));
  ConvertFromFloat(values.data(), static_cast<int64_t>(values.size()), dtype, out.data());
  return out;
}

}  // namespace clusterkv
