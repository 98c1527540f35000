// CUDA kernels of centroid scoring (gpu/selection.h): a wide kernel computes every logit
// scale * q_g . mu_c, then one block turns each query's logits into a softmax over clusters
// and sums the G distributions. One thread owns the same clusters for every query, so the sum
// over g runs in ascending g without atomics and is deterministic.
#include <cstdint>

#include "gpu/cuda/kernels.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kLogitThreads = 128;
constexpr int kSoftmaxThreads = 1024;
// The logit kernel stages the fp32 queries in shared memory up to this size, else reads global.
constexpr size_t kMaxSharedQueryBytes = 32 * 1024;

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

template <typename Op>
__device__ __forceinline__ float WarpReduce(float v, Op op) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = op(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

// Reduces v over the block; every thread gets the result. scratch: kWarpSize + 1 floats of
// shared memory, free again when this returns. blockDim.x must be a multiple of kWarpSize.
template <typename Op>
__device__ float BlockReduce(float v, Op op, float identity, float* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  v = WarpReduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = WarpReduce(lane < num_warps ? scratch[lane] : identity, op);
    if (lane == 0) scratch[kWarpSize] = v;
  }
  __syncthreads();
  const float result = scratch[kWarpSize];
  __syncthreads();  // nobody reads scratch any more: the next call may overwrite it
  return result;
}

// Converts the queries to contiguous fp32 [G, d] once, so the logit blocks read fp32.
__global__ void ConvertQueriesKernel(const void* __restrict__ queries, int dtype,
                                     int32_t num_queries, int32_t d, int64_t query_stride,
                                     float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(num_queries) * d) return;
  const int64_t g = i / d;
  out[i] = internal::LoadAsFloat(queries, dtype, g * query_stride + (i - g * d));
}

// logits[g * C + c] = scale * q_g . mu_c, one thread per centroid. The fp32 queries are staged
// in shared memory when they fit (every thread then reads the same element: a broadcast) and
// read from global memory otherwise. Each dot product is internal::Dot, so it sums in the CPU
// twin's order.
__global__ void __launch_bounds__(kLogitThreads)
    CentroidLogitsKernel(const float* __restrict__ queries, int32_t num_queries, int32_t d,
                         const float* __restrict__ centroids, int32_t num_centroids, float scale,
                         bool stage_queries, float* __restrict__ logits) {
  extern __shared__ float shared_queries[];
  const float* q = queries;
  if (stage_queries) {
    for (int32_t i = threadIdx.x; i < num_queries * d; i += blockDim.x) {
      shared_queries[i] = queries[i];
    }
    __syncthreads();
    q = shared_queries;
  }
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= num_centroids) return;
  const float* mu = centroids + c * d;
  for (int32_t g = 0; g < num_queries; ++g) {
    logits[g * static_cast<int64_t>(num_centroids) + c] =
        scale * internal::Dot(q + static_cast<int64_t>(g) * d, mu, d);
  }
}

// One block: for each query in order, a block-wide max and sum give softmax_c, which each thread
// adds into the scores of the clusters it owns (c = threadIdx.x + k * blockDim.x).
__global__ void __launch_bounds__(kSoftmaxThreads)
    SoftmaxSumKernel(const float* __restrict__ logits, int32_t num_queries, int32_t num_centroids,
                     float* __restrict__ scores) {
  __shared__ float scratch[kWarpSize + 1];
  for (int32_t g = 0; g < num_queries; ++g) {
    const float* row = logits + static_cast<int64_t>(g) * num_centroids;
    float local_max = -3.402823466e38f;
    for (int32_t c = threadIdx.x; c < num_centroids; c += blockDim.x) {
      local_max = fmaxf(local_max, row[c]);
    }
    const float row_max = BlockReduce(local_max, MaxOp(), -3.402823466e38f, scratch);
    float local_sum = 0.0f;
    for (int32_t c = threadIdx.x; c < num_centroids; c += blockDim.x) {
      local_sum += expf(row[c] - row_max);
    }
    // Multiplying by the reciprocal, as the CPU twin does, keeps the two within an ulp.
    const float inv_sum = 1.0f / BlockReduce(local_sum, SumOp(), 0.0f, scratch);
    for (int32_t c = threadIdx.x; c < num_centroids; c += blockDim.x) {
      const float p = expf(row[c] - row_max) * inv_sum;
      scores[c] = g == 0 ? p : scores[c] + p;
    }
  }
}

}  // namespace

int64_t ScoreCentroidsWorkspaceFloats(int32_t num_queries, int32_t d, int32_t num_centroids) {
  return static_cast<int64_t>(num_queries) * (static_cast<int64_t>(d) + num_centroids);
}

cudaError_t LaunchScoreCentroids(const void* queries, int dtype, int32_t num_queries, int32_t d,
                                 int64_t query_stride, const float* centroids,
                                 int32_t num_centroids, float scale, float* workspace,
                                 float* scores, cudaStream_t stream) {
  if (num_queries < 1 || d < 1 || num_centroids < 1 || query_stride < d) {
    return cudaErrorInvalidValue;
  }
  float* queries_f32 = workspace;
  float* logits = workspace + static_cast<int64_t>(num_queries) * d;

  constexpr int kConvertThreads = 256;
  const int64_t elements = static_cast<int64_t>(num_queries) * d;
  ConvertQueriesKernel<<<static_cast<unsigned>((elements + kConvertThreads - 1) / kConvertThreads),
                         kConvertThreads, 0, stream>>>(queries, dtype, num_queries, d, query_stride,
                                                       queries_f32);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  const size_t query_bytes = sizeof(float) * static_cast<size_t>(elements);
  const bool stage_queries = query_bytes <= kMaxSharedQueryBytes;
  const unsigned blocks =
      static_cast<unsigned>((num_centroids + kLogitThreads - 1) / kLogitThreads);
  CentroidLogitsKernel<<<blocks, kLogitThreads, stage_queries ? query_bytes : 0, stream>>>(
      queries_f32, num_queries, d, centroids, num_centroids, scale, stage_queries, logits);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  SoftmaxSumKernel<<<1, kSoftmaxThreads, 0, stream>>>(logits, num_queries, num_centroids, scores);
  return cudaGetLastError();
}

}  // namespace clusterkv::gpu::cuda
