// CUDA kernels of decode attention (gpu/attention.h), split-K (flash-decoding): the tokens of
// all spans are cut into chunks; block (chunk, g) runs an online softmax over its chunk for
// query g and writes a partial (max, sum, weighted value sum); a second kernel merges the
// partials of each query in chunk order. Keys and values are converted to fp32 on load and no
// [G, tokens] matrix is formed. The softmax bookkeeping is internal::SoftmaxAdd / SoftmaxMerge,
// shared with the CPU twin.
#include <cstdint>

#include "gpu/cuda/kernels.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// Warps per partial block; warp w of a block takes tokens w, w + kAttnWarps, ... of its chunk.
constexpr int kAttnWarps = 8;
constexpr int kAttnThreads = kAttnWarps * kWarpSize;
constexpr int kCombineThreads = 128;
// Chunks hold at least kMinChunkTokens tokens (enough work to hide a block's start-up) and
// there are at most kMaxChunks of them per query (bounds the merge and the workspace).
constexpr int64_t kMinChunkTokens = 256;
constexpr int64_t kMaxChunks = 512;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  // All lanes must take identical SoftmaxAdd decisions: give them lane 0's bits.
  return __shfl_sync(kFullMask, v, 0);
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t ChunkTokens(int64_t total_tokens) {
  const int64_t spread = CeilDiv(total_tokens, kMaxChunks);
  return spread > kMinChunkTokens ? spread : kMinChunkTokens;
}

// The span holding global token t: the last span whose first_token <= t (empty spans share
// their successor's first_token and are skipped by taking the last).
__device__ int32_t FindSpan(const DeviceKvSpan* spans, int32_t num_spans, int64_t t) {
  int32_t lo = 0;
  int32_t hi = num_spans - 1;
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (spans[mid].first_token <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Grid (num_chunks, G). Each lane holds kDimsPerLane dimensions (j = lane + 32 i) of the query
// and of its warp's accumulator in registers. Shared memory: kAttnWarps * d floats, the warps'
// accumulators for the in-block merge.
template <int kDimsPerLane>
__global__ void __launch_bounds__(kAttnThreads)
    AttentionPartialKernel(const float* __restrict__ queries, int32_t d,
                           const DeviceKvSpan* __restrict__ spans, int32_t num_spans,
                           int64_t total_tokens, int64_t chunk_tokens, int dtype, float scale,
                           float* __restrict__ partial_acc, float* __restrict__ partial_m,
                           float* __restrict__ partial_l) {
  __shared__ internal::SoftmaxState warp_state[kAttnWarps];
  extern __shared__ float warp_acc[];

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int32_t g = blockIdx.y;
  const int32_t num_queries = gridDim.y;
  const int64_t chunk = blockIdx.x;
  const int64_t begin = chunk * chunk_tokens;
  const int64_t end = begin + chunk_tokens < total_tokens ? begin + chunk_tokens : total_tokens;

  float q[kDimsPerLane];
  float acc[kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int32_t j = lane + kWarpSize * i;
    q[i] = j < d ? queries[static_cast<int64_t>(g) * d + j] : 0.0f;
    acc[i] = 0.0f;
  }

  internal::SoftmaxState state = internal::SoftmaxInit();
  int64_t t = begin + warp;
  if (t < end) {
    int32_t s = FindSpan(spans, num_spans, t);
    DeviceKvSpan span = spans[s];
    for (; t < end; t += kAttnWarps) {
      while (t >= span.first_token + span.rows && s + 1 < num_spans) span = spans[++s];
      const int64_t row = t - span.first_token;
      const int64_t key_base = row * span.key_stride;
      float partial = 0.0f;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int32_t j = lane + kWarpSize * i;
        if (j < d) partial += q[i] * internal::LoadAsFloat(span.keys, dtype, key_base + j);
      }
      const float score = scale * WarpSum(partial);
      float rescale;
      float weight;
      internal::SoftmaxAdd(&state, score, &rescale, &weight);
      const int64_t value_base = row * span.value_stride;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int32_t j = lane + kWarpSize * i;
        if (j < d) {
          acc[i] =
              acc[i] * rescale + weight * internal::LoadAsFloat(span.values, dtype, value_base + j);
        }
      }
    }
  }

  // In-block merge of the warps' states, in warp order; a warp that saw no token has l == 0
  // and SoftmaxMerge gives it weight 0.
  if (lane == 0) warp_state[warp] = state;
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int32_t j = lane + kWarpSize * i;
    if (j < d) warp_acc[warp * d + j] = acc[i];
  }
  __syncthreads();
  const int64_t slot = chunk * num_queries + g;
  for (int32_t j = threadIdx.x; j < d; j += blockDim.x) {
    internal::SoftmaxState merged = internal::SoftmaxInit();
    float value = 0.0f;
    for (int w = 0; w < kAttnWarps; ++w) {
      float scale_a;
      float scale_b;
      merged = internal::SoftmaxMerge(merged, warp_state[w], &scale_a, &scale_b);
      value = value * scale_a + warp_acc[w * d + j] * scale_b;
    }
    partial_acc[slot * d + j] = value;
    if (j == 0) {
      partial_m[slot] = merged.m;
      partial_l[slot] = merged.l;
    }
  }
}

// Grid (G). Merges the partials of query g in chunk order and normalises: out[g] = acc / l.
__global__ void __launch_bounds__(kCombineThreads)
    AttentionCombineKernel(const float* __restrict__ partial_acc,
                           const float* __restrict__ partial_m, const float* __restrict__ partial_l,
                           int64_t num_chunks, int32_t d, float* __restrict__ out) {
  const int32_t g = blockIdx.x;
  const int32_t num_queries = gridDim.x;
  for (int32_t j = threadIdx.x; j < d; j += blockDim.x) {
    internal::SoftmaxState merged = internal::SoftmaxInit();
    float value = 0.0f;
    for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
      const int64_t slot = chunk * num_queries + g;
      float scale_a;
      float scale_b;
      merged = internal::SoftmaxMerge(
          merged, internal::SoftmaxState{partial_m[slot], partial_l[slot]}, &scale_a, &scale_b);
      value = value * scale_a + partial_acc[slot * d + j] * scale_b;
    }
    // l > 0: every chunk holds at least one token.
    out[static_cast<int64_t>(g) * d + j] = value / merged.l;
  }
}

template <int kDimsPerLane>
cudaError_t LaunchPartial(dim3 grid, const float* queries, int32_t d, const DeviceKvSpan* spans,
                          int32_t num_spans, int64_t total_tokens, int64_t chunk_tokens, int dtype,
                          float scale, float* partial_acc, float* partial_m, float* partial_l,
                          cudaStream_t stream) {
  const size_t shared_bytes = sizeof(float) * kAttnWarps * static_cast<size_t>(d);
  AttentionPartialKernel<kDimsPerLane><<<grid, kAttnThreads, shared_bytes, stream>>>(
      queries, d, spans, num_spans, total_tokens, chunk_tokens, dtype, scale, partial_acc,
      partial_m, partial_l);
  return cudaGetLastError();
}

}  // namespace

int64_t AttentionNumChunks(int64_t total_tokens) {
  return total_tokens < 1 ? 0 : CeilDiv(total_tokens, ChunkTokens(total_tokens));
}

int64_t AttentionWorkspaceFloats(int64_t total_tokens, int32_t num_queries, int32_t d) {
  return AttentionNumChunks(total_tokens) * num_queries * (static_cast<int64_t>(d) + 2);
}

cudaError_t LaunchAttention(const float* queries, int32_t num_queries, int32_t d,
                            const DeviceKvSpan* spans, int32_t num_spans, int64_t total_tokens,
                            int dtype, float scale, float* workspace, float* out,
                            cudaStream_t stream) {
  if (num_queries < 1 || num_queries > 65535 || d < 1 || d > kMaxAttentionHeadDim ||
      num_spans < 1 || total_tokens < 1) {
    return cudaErrorInvalidValue;
  }
  const int64_t chunk_tokens = ChunkTokens(total_tokens);
  const int64_t num_chunks = AttentionNumChunks(total_tokens);
  float* partial_acc = workspace;
  float* partial_m = partial_acc + num_chunks * num_queries * d;
  float* partial_l = partial_m + num_chunks * num_queries;

  const dim3 grid(static_cast<unsigned>(num_chunks), static_cast<unsigned>(num_queries));
  cudaError_t err;
  if (d <= 4 * kWarpSize) {
    err = LaunchPartial<4>(grid, queries, d, spans, num_spans, total_tokens, chunk_tokens, dtype,
                           scale, partial_acc, partial_m, partial_l, stream);
  } else if (d <= 8 * kWarpSize) {
    err = LaunchPartial<8>(grid, queries, d, spans, num_spans, total_tokens, chunk_tokens, dtype,
                           scale, partial_acc, partial_m, partial_l, stream);
  } else {
    static_assert(16 * kWarpSize == kMaxAttentionHeadDim, "dispatch covers every head dim");
    err = LaunchPartial<16>(grid, queries, d, spans, num_spans, total_tokens, chunk_tokens, dtype,
                            scale, partial_acc, partial_m, partial_l, stream);
  }
  if (err != cudaSuccess) return err;
  AttentionCombineKernel<<<static_cast<unsigned>(num_queries), kCombineThreads, 0, stream>>>(
      partial_acc, partial_m, partial_l, num_chunks, d, out);
  return cudaGetLastError();
}

}  // namespace clusterkv::gpu::cuda
