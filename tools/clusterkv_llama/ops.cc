#include "tools/clusterkv_llama/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CLUSTERKV_LLAMA_AVX2 1
#endif

namespace clusterkv::llama {
namespace {

#if CLUSTERKV_LLAMA_AVX2
float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}
#endif

// A tile of R rows of x against C rows of w: y[r, c] for r < R, c < C.
template <int R, int C>
void Tile(const float* x, int64_t x_stride, const float* w, int64_t w_stride, int64_t n, float* y,
          int64_t y_stride) {
  int64_t i = 0;
  float acc[R][C] = {};
#if CLUSTERKV_LLAMA_AVX2
  __m256 v[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) v[r][c] = _mm256_setzero_ps();
  }
  for (; i + 8 <= n; i += 8) {
    __m256 xs[R];
    for (int r = 0; r < R; ++r) xs[r] = _mm256_loadu_ps(x + r * x_stride + i);
    for (int c = 0; c < C; ++c) {
      const __m256 ws = _mm256_loadu_ps(w + c * w_stride + i);
      for (int r = 0; r < R; ++r) v[r][c] = _mm256_fmadd_ps(xs[r], ws, v[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = HorizontalSum(v[r][c]);
  }
#endif
  for (; i < n; ++i) {
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) acc[r][c] += x[r * x_stride + i] * w[c * w_stride + i];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[r * y_stride + c] = acc[r][c];
  }
}

}  // namespace

void MatMulStrided(const float* x, int64_t x_stride, int64_t rows, const float* w, int64_t w_stride,
                   int64_t out_features, int64_t n, float* y, int64_t y_stride) {
  constexpr int64_t kRowBlock = 64;  // weight rows per block: 64 x n floats stay in L2
  for (int64_t ob = 0; ob < out_features; ob += kRowBlock) {
    const int64_t oe = std::min(out_features, ob + kRowBlock);
    int64_t r = 0;
    // 3 x 4 tiles: 12 accumulators + 3 x rows + 1 weight row fill the 16 AVX2 registers.
    for (; r + 3 <= rows; r += 3) {
      const float* xr = x + r * x_stride;
      float* yr = y + r * y_stride;
      int64_t o = ob;
      for (; o + 4 <= oe; o += 4)
        Tile<3, 4>(xr, x_stride, w + o * w_stride, w_stride, n, yr + o, y_stride);
      for (; o < oe; ++o) Tile<3, 1>(xr, x_stride, w + o * w_stride, w_stride, n, yr + o, y_stride);
    }
    for (; r < rows; ++r) {
      const float* xr = x + r * x_stride;
      float* yr = y + r * y_stride;
      int64_t o = ob;
      for (; o + 4 <= oe; o += 4)
        Tile<1, 4>(xr, x_stride, w + o * w_stride, w_stride, n, yr + o, y_stride);
      for (; o < oe; ++o) Tile<1, 1>(xr, x_stride, w + o * w_stride, w_stride, n, yr + o, y_stride);
    }
  }
}

void Axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if CLUSTERKV_LLAMA_AVX2
  const __m256 av = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

float Dot(const float* a, const float* b, int64_t n) {
  float out;
  Tile<1, 1>(a, n, b, n, n, &out, 1);
  return out;
}

absl::string_view MatMulImplName(MatMulImpl impl) {
  switch (impl) {
    case MatMulImpl::kOwn:
      return "own";
    case MatMulImpl::kBlas:
      return "openblas";
    case MatMulImpl::kAuto:
      break;
  }
  return "auto";
}

void MatMul(const float* x, int64_t rows, const float* w, int64_t out_features, int64_t in_features,
            float* y, int threads, MatMulImpl impl) {
  const bool blas =
      impl == MatMulImpl::kBlas || (impl == MatMulImpl::kAuto && rows >= kBlasMinRows);
  if (blas) {
    MatMulBlas(x, rows, w, out_features, in_features, y, threads);
  } else {
    MatMulOwn(x, rows, w, out_features, in_features, y, threads);
  }
}

void MatMulBlas(const float* x, int64_t rows, const float* w, int64_t out_features,
                int64_t in_features, float* y, int threads) {
  // OpenBLAS keeps one process-wide thread count; set it only when it differs.
  if (openblas_get_num_threads() != threads) openblas_set_num_threads(std::max(1, threads));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows),
              static_cast<blasint>(out_features), static_cast<blasint>(in_features), 1.0f, x,
              static_cast<blasint>(in_features), w, static_cast<blasint>(in_features), 0.0f, y,
              static_cast<blasint>(out_features));
}

void MatMulOwn(const float* x, int64_t rows, const float* w, int64_t out_features,
               int64_t in_features, float* y, int threads) {
  // Split the output features; small products run inline (thread start-up would dominate).
  const int64_t work = rows * out_features * in_features;
  const int use = work < (int64_t{1} << 16) ? 1 : threads;
  constexpr int64_t kGrain = 12;  // a multiple of the tile widths
  const int64_t chunks = (out_features + kGrain - 1) / kGrain;
  ParallelFor(chunks, use, [&](int64_t begin, int64_t end, int) {
    const int64_t o_begin = begin * kGrain;
    const int64_t o_end = std::min(out_features, end * kGrain);
    MatMulStrided(x, in_features, rows, w + o_begin * in_features, in_features, o_end - o_begin,
                  in_features, y + o_begin, out_features);
  });
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * weight[i];
}

void SwiGlu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void GeGlu(const float* gate, const float* up, int64_t n, float* out) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float inner = kSqrt2OverPi * (g + 0.044715f * g * g * g);
    out[i] = 0.5f * g * (1.0f + std::tanh(inner)) * up[i];
  }
}

void GatedActivation(Activation activation, const float* gate, const float* up, int64_t n,
                     float* out) {
  if (activation == Activation::kGeluTanh) {
    GeGlu(gate, up, n, out);
  } else {
    SwiGlu(gate, up, n, out);
  }
}

void SoftCap(float* x, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

RopeTable::RopeTable(const ModelConfig& config)
    : RopeTable(config.head_dim, config.rope_theta, config.rope_freq_factors,
                config.rope_linear_scale) {}

RopeTable::RopeTable(int32_t head_dim, float theta, const std::vector<float>& freq_factors,
                     float linear_scale)
    : head_dim_(head_dim) {
  const int32_t half = head_dim_ / 2;
  inv_freq_.resize(static_cast<size_t>(half));
  for (int32_t i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(theta), -2.0 * i / head_dim_);
    if (!freq_factors.empty()) f /= freq_factors[static_cast<size_t>(i)];
    inv_freq_[static_cast<size_t>(i)] = f / linear_scale;
  }
}

void RopeTable::Apply(float* x, int32_t heads, int64_t pos, RopeStyle style) const {
  const int32_t half = head_dim_ / 2;
  for (int32_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * inv_freq_[static_cast<size_t>(i)];
    const float c = static_cast<float>(std::cos(angle));
    const float s = static_cast<float>(std::sin(angle));
    // The two channels of pair i (model_config.h, RopeStyle).
    const int32_t a = style == RopeStyle::kRotateHalf ? i : 2 * i;
    const int32_t b = style == RopeStyle::kRotateHalf ? i + half : 2 * i + 1;
    for (int32_t h = 0; h < heads; ++h) {
      float* v = x + static_cast<int64_t>(h) * head_dim_;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x1 * c + x0 * s;
    }
  }
}

int32_t ArgMax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

}  // namespace clusterkv::llama
