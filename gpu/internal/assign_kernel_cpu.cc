#include "gpu/internal/assign_kernel_cpu.h"

#include <algorithm>
#include <cstring>

#include "gpu/internal/kernel_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CLUSTERKV_X86 1
#endif

namespace clusterkv::gpu::internal {
namespace {

constexpr int kPad = 32;  // panel width multiple; one AVX-512 tile is 32 centroids wide
constexpr int kRows = 6;  // rows per micro-tile

// Folds a [kRows, width] tile of dot products for centroids [c0, c0 + width) into the running
// argmax of each row.
inline void FoldTile(const float* tile, int rows, int width, int c0, int num_clusters,
                     int32_t* labels, float* best) {
  const int valid = std::min(width, num_clusters - c0);
  for (int r = 0; r < rows; ++r) {
    const float* t = tile + r * width;
    for (int j = 0; j < valid; ++j) {
      if (IsBetter(t[j], c0 + j, best[r], labels[r])) {
        best[r] = t[j];
        labels[r] = c0 + j;
      }
    }
  }
}

void AssignGeneric(const float* x, int64_t n, const CentroidPanel& p, int32_t* labels,
                   float* best) {
  const int d = p.head_dim();
  const int padded = p.padded();
  std::vector<float> row(static_cast<size_t>(padded));
  for (int64_t i = 0; i < n; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    const float* xi = x + i * d;
    for (int k = 0; k < d; ++k) {
      const float a = xi[k];
      const float* b = p.data() + static_cast<size_t>(k) * padded;
      for (int c = 0; c < padded; ++c) row[c] += a * b[c];
    }
    labels[i] = 0;
    best[i] = -3.402823466e38f;
    FoldTile(row.data(), 1, padded, 0, p.num_clusters(), labels + i, best + i);
  }
}

#if defined(CLUSTERKV_X86)

// Copies up to kRows rows into a zero-padded block so tail rows use the same micro-kernel.
inline const float* RowBlock(const float* x, int64_t r0, int64_t n, int d, float* scratch) {
  if (r0 + kRows <= n) return x + r0 * d;
  std::memset(scratch, 0, sizeof(float) * kRows * d);
  std::memcpy(scratch, x + r0 * d, sizeof(float) * (n - r0) * d);
  return scratch;
}

__attribute__((target("avx512f"))) void AssignAvx512(const float* x, int64_t n,
                                                      const CentroidPanel& p, int32_t* labels,
                                                      float* best) {
  const int d = p.head_dim();
  const int padded = p.padded();
  std::vector<float> scratch(static_cast<size_t>(kRows) * d);
  alignas(64) float tile[kRows * 32];
  for (int64_t r0 = 0; r0 < n; r0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, n - r0));
    const float* xb = RowBlock(x, r0, n, d, scratch.data());
    for (int r = 0; r < rows; ++r) {
      labels[r0 + r] = 0;
      best[r0 + r] = -3.402823466e38f;
    }
    for (int c0 = 0; c0 < padded; c0 += 32) {
      __m512 acc[kRows][2];
      for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
      const float* b = p.data() + c0;
      for (int k = 0; k < d; ++k) {
        const __m512 b0 = _mm512_loadu_ps(b + static_cast<size_t>(k) * padded);
        const __m512 b1 = _mm512_loadu_ps(b + static_cast<size_t>(k) * padded + 16);
        for (int r = 0; r < kRows; ++r) {
          const __m512 a = _mm512_set1_ps(xb[r * d + k]);
          acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
      }
      for (int r = 0; r < kRows; ++r) {
        _mm512_store_ps(tile + r * 32, acc[r][0]);
        _mm512_store_ps(tile + r * 32 + 16, acc[r][1]);
      }
      FoldTile(tile, rows, 32, c0, p.num_clusters(), labels + r0, best + r0);
    }
  }
}

__attribute__((target("avx2,fma"))) void AssignAvx2(const float* x, int64_t n,
                                                     const CentroidPanel& p, int32_t* labels,
                                                     float* best) {
  const int d = p.head_dim();
  const int padded = p.padded();
  std::vector<float> scratch(static_cast<size_t>(kRows) * d);
  alignas(32) float tile[kRows * 16];
  for (int64_t r0 = 0; r0 < n; r0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, n - r0));
    const float* xb = RowBlock(x, r0, n, d, scratch.data());
    for (int r = 0; r < rows; ++r) {
      labels[r0 + r] = 0;
      best[r0 + r] = -3.402823466e38f;
    }
    for (int c0 = 0; c0 < padded; c0 += 16) {
      __m256 acc[kRows][2];
      for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      const float* b = p.data() + c0;
      for (int k = 0; k < d; ++k) {
        const __m256 b0 = _mm256_loadu_ps(b + static_cast<size_t>(k) * padded);
        const __m256 b1 = _mm256_loadu_ps(b + static_cast<size_t>(k) * padded + 8);
        for (int r = 0; r < kRows; ++r) {
          const __m256 a = _mm256_broadcast_ss(xb + r * d + k);
          acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
      }
      for (int r = 0; r < kRows; ++r) {
        _mm256_store_ps(tile + r * 16, acc[r][0]);
        _mm256_store_ps(tile + r * 16 + 8, acc[r][1]);
      }
      FoldTile(tile, rows, 16, c0, p.num_clusters(), labels + r0, best + r0);
    }
  }
}

enum class Isa { kGeneric, kAvx2, kAvx512 };

Isa DetectIsa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kGeneric;
}

Isa CachedIsa() {
  static const Isa isa = DetectIsa();  // immutable CPU fact, computed once
  return isa;
}

#endif  // CLUSTERKV_X86

}  // namespace

CentroidPanel::CentroidPanel(const float* centroids, int32_t num_clusters, int32_t head_dim)
    : num_clusters_(num_clusters),
      padded_((num_clusters + kPad - 1) / kPad * kPad),
      head_dim_(head_dim),
      panel_(static_cast<size_t>(padded_) * head_dim, 0.0f) {
  for (int32_t c = 0; c < num_clusters; ++c) {
    for (int32_t k = 0; k < head_dim; ++k) {
      panel_[static_cast<size_t>(k) * padded_ + c] = centroids[static_cast<size_t>(c) * head_dim + k];
    }
  }
}

void AssignNearest(const float* x, int64_t n, const CentroidPanel& panel, int32_t* labels,
                   float* best) {
#if defined(CLUSTERKV_X86)
  switch (CachedIsa()) {
    case Isa::kAvx512:
      return AssignAvx512(x, n, panel, labels, best);
    case Isa::kAvx2:
      return AssignAvx2(x, n, panel, labels, best);
    case Isa::kGeneric:
      break;
  }
#endif
  AssignGeneric(x, n, panel, labels, best);
}

const char* AssignKernelIsa() {
#if defined(CLUSTERKV_X86)
  switch (CachedIsa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kGeneric:
      break;
  }
#endif
  return "generic";
}

}  // namespace clusterkv::gpu::internal
