// Per-element math shared by the CPU twins and the CUDA kernels (STYLE.md "Kernels"): the CUDA
// files add only launches and memory hierarchy, so the CPU unit tests cover this arithmetic.
#ifndef CLUSTERKV_GPU_INTERNAL_KERNEL_MATH_H_
#define CLUSTERKV_GPU_INTERNAL_KERNEL_MATH_H_

#include <math.h>

#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "core/host_device.h"

namespace clusterkv::gpu::internal {

// Matches core::DType's numbering; kernels take the dtype as a plain int.
enum : int { kDTypeF16 = 0, kDTypeBF16 = 1, kDTypeF32 = 2 };

CLUSTERKV_HD float LoadAsFloat(const void* base, int dtype, int64_t index) {
  if (dtype == kDTypeF32) return static_cast<const float*>(base)[index];
  const uint16_t bits = static_cast<const uint16_t*>(base)[index];
  return dtype == kDTypeF16 ? HalfToFloat(bits) : BFloat16ToFloat(bits);
}

CLUSTERKV_HD float Dot(const float* a, const float* b, int n) {
  float acc = 0.0f;
#if !defined(__CUDACC__)
#pragma omp simd reduction(+ : acc)
#endif
  for (int i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// 1/||v||, or 0 for the zero vector (a zero key has cosine 0 with everything).
CLUSTERKV_HD float InverseNorm(float squared_norm) {
  return squared_norm > 0.0f ? 1.0f / sqrtf(squared_norm) : 0.0f;
}

// Argmax with a deterministic tie-break (lower index wins), identical on both backends.
CLUSTERKV_HD bool IsBetter(float score, int32_t index, float best_score, int32_t best_index) {
  return score > best_score || (score == best_score && index < best_index);
}

// Quest's per-page upper bound of q . k over keys whose channels lie in [mn, mx].
CLUSTERKV_HD float QuestBound(const float* q, const float* mn, const float* mx, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = q[i] * mn[i];
    const float b = q[i] * mx[i];
    acc += a > b ? a : b;
  }
  return acc;
}

// Running state of a streaming softmax-weighted sum: m is the max score seen, l the sum of
// exp(score - m). Adding a score returns the factor that rescales the old accumulator and the
// weight of the new element.
struct SoftmaxState {
  float m;
  float l;
};

CLUSTERKV_HD SoftmaxState SoftmaxInit() { return SoftmaxState{-3.402823466e38f, 0.0f}; }

CLUSTERKV_HD void SoftmaxAdd(SoftmaxState* s, float score, float* rescale, float* weight) {
  if (score > s->m) {
    *rescale = expf(s->m - score);
    *weight = 1.0f;
    s->l = s->l * *rescale + 1.0f;
    s->m = score;
  } else {
    *rescale = 1.0f;
    *weight = expf(score - s->m);
    s->l += *weight;
  }
}

// Merges state b into a; returns the factors for a's and b's accumulators.
CLUSTERKV_HD SoftmaxState SoftmaxMerge(SoftmaxState a, SoftmaxState b, float* scale_a,
                                       float* scale_b) {
  const float m = a.m > b.m ? a.m : b.m;
  *scale_a = a.l > 0.0f ? expf(a.m - m) : 0.0f;
  *scale_b = b.l > 0.0f ? expf(b.m - m) : 0.0f;
  return SoftmaxState{m, a.l * *scale_a + b.l * *scale_b};
}

}  // namespace clusterkv::gpu::internal

#endif  // CLUSTERKV_GPU_INTERNAL_KERNEL_MATH_H_
