// CUDA kernels of spherical K-means (gpu/kmeans.h): row normalisation, assignment to the
// centroid of highest dot product, and per-cluster accumulation. The centroid update itself
// (normalised mean, empty-cluster re-seeding) runs on the host in internal::UpdateCentroids so
// that both backends share it; these kernels supply its inputs.
#include <cstdint>

#include "gpu/cuda/kernels.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Normalisation and accumulation: one warp per row, lanes stride over dimensions.
constexpr int kRowWarpsPerBlock = 8;
// Assignment: one thread per row, kAssignRows rows per block; each block walks the centroids in
// tiles of kTileCentroids staged in shared memory, and the rows in chunks of kDimChunk
// dimensions staged (transposed) in shared memory so every global read is coalesced.
constexpr int kAssignRows = 128;
constexpr int kTileCentroids = 32;
constexpr int kDimChunk = 32;
// Padding of the transposed row chunk: makes both its writes and its reads bank-conflict free.
constexpr int kChunkStride = kAssignRows + 1;
// Shared memory a block may use without opting in.
constexpr size_t kDefaultSharedBytes = 48 * 1024;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  // Every lane holds the same bits already (fp addition commutes); broadcasting lane 0 makes
  // that explicit for the callers that branch on the result.
  return __shfl_sync(kFullMask, v, 0);
}

__global__ void NormalizeRowsKernel(const void* __restrict__ keys, int dtype, int64_t rows,
                                    int32_t d, int64_t row_stride, float* __restrict__ out) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kRowWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;  // whole warps exit together
  const int64_t base = row * row_stride;
  float squared = 0.0f;
  for (int32_t j = lane; j < d; j += kWarpSize) {
    const float x = internal::LoadAsFloat(keys, dtype, base + j);
    squared += x * x;
  }
  const float inv = internal::InverseNorm(WarpSum(squared));
  float* dst = out + row * d;
  for (int32_t j = lane; j < d; j += kWarpSize) {
    dst[j] = internal::LoadAsFloat(keys, dtype, base + j) * inv;
  }
}

// Shared memory: the centroid tile [kTileCentroids][d_pad] followed by the transposed row chunk
// [kDimChunk][kChunkStride]. d_pad is d rounded up to kDimChunk; the padding holds zeros, which
// leave every dot product unchanged.
__global__ void __launch_bounds__(kAssignRows)
    AssignKernel(const float* __restrict__ rows, int64_t n, int32_t d, int32_t d_pad,
                 const float* __restrict__ centroids, int32_t num_centroids,
                 int32_t* __restrict__ labels, float* __restrict__ best_sim) {
  extern __shared__ float4 shared_raw[];  // float4 for 16-byte alignment
  float* cent = reinterpret_cast<float*>(shared_raw);
  float* chunk = cent + kTileCentroids * d_pad;

  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kAssignRows;
  const int64_t row = row0 + threadIdx.x;
  float best = __int_as_float(0xff800000);  // -inf: any finite similarity beats it
  int32_t best_index = 0;

  for (int32_t c0 = 0; c0 < num_centroids; c0 += kTileCentroids) {
    const int32_t tile = min(kTileCentroids, num_centroids - c0);
    __syncthreads();  // the previous tile is no longer read
    for (int32_t i = threadIdx.x; i < kTileCentroids * d_pad; i += blockDim.x) {
      const int32_t c = i / d_pad;
      const int32_t k = i - c * d_pad;
      cent[i] = (c < tile && k < d) ? centroids[static_cast<int64_t>(c0 + c) * d + k] : 0.0f;
    }

    float acc[kTileCentroids];
#pragma unroll
    for (int c = 0; c < kTileCentroids; ++c) acc[c] = 0.0f;

    for (int32_t k0 = 0; k0 < d; k0 += kDimChunk) {
      __syncthreads();  // centroid tile written; previous chunk no longer read
      for (int32_t i = threadIdx.x; i < kAssignRows * kDimChunk; i += blockDim.x) {
        const int32_t r = i / kDimChunk;
        const int32_t k = i - r * kDimChunk;
        const int64_t global_row = row0 + r;
        const int32_t global_k = k0 + k;
        chunk[k * kChunkStride + r] =
            (global_row < n && global_k < d) ? rows[global_row * d + global_k] : 0.0f;
      }
      __syncthreads();

      float x[kDimChunk];
#pragma unroll
      for (int k = 0; k < kDimChunk; ++k) x[k] = chunk[k * kChunkStride + threadIdx.x];

        // Each similarity accumulates over dimensions in ascending order, as internal::Dot does.
#pragma unroll
      for (int c = 0; c < kTileCentroids; ++c) {
        const float4* mu = reinterpret_cast<const float4*>(cent + c * d_pad + k0);
#pragma unroll
        for (int q = 0; q < kDimChunk / 4; ++q) {
          const float4 m = mu[q];  // all threads read one address: a broadcast
          acc[c] = fmaf(x[4 * q + 0], m.x, acc[c]);
          acc[c] = fmaf(x[4 * q + 1], m.y, acc[c]);
          acc[c] = fmaf(x[4 * q + 2], m.z, acc[c]);
          acc[c] = fmaf(x[4 * q + 3], m.w, acc[c]);
        }
      }
    }

#pragma unroll
    for (int c = 0; c < kTileCentroids; ++c) {
      if (c < tile && internal::IsBetter(acc[c], c0 + c, best, best_index)) {
        best = acc[c];
        best_index = c0 + c;
      }
    }
  }
  if (row < n) {
    labels[row] = best_index;
    best_sim[row] = best;
  }
}

__global__ void AccumulateKernel(const float* __restrict__ rows, const int32_t* __restrict__ labels,
                                 int64_t n, int32_t d, int32_t num_centroids,
                                 float* __restrict__ sums, int32_t* __restrict__ counts) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * kRowWarpsPerBlock + threadIdx.x / kWarpSize;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kRowWarpsPerBlock;
  for (int64_t r = first; r < n; r += step) {
    const int32_t c = labels[r];
    if (c < 0 || c >= num_centroids) continue;  // cannot happen after LaunchAssign
    if (lane == 0) atomicAdd(&counts[c], 1);
    float* dst = sums + static_cast<int64_t>(c) * d;
    const float* src = rows + r * d;
    for (int32_t j = lane; j < d; j += kWarpSize) atomicAdd(&dst[j], src[j]);
  }
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for one warp per row; the grid's x dimension holds any realistic row count.
bool RowGrid(int64_t rows, unsigned* blocks) {
  const int64_t needed = CeilDiv(rows, kRowWarpsPerBlock);
  if (needed > 0x7fffffff) return false;
  *blocks = static_cast<unsigned>(needed);
  return true;
}

}  // namespace

cudaError_t CheckKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, NormalizeRowsKernel);
}

cudaError_t LaunchNormalizeRows(const void* keys, int dtype, int64_t rows, int32_t d,
                                int64_t row_stride, float* out, cudaStream_t stream) {
  if (rows < 0 || d < 1 || row_stride < d) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  unsigned blocks = 0;
  if (!RowGrid(rows, &blocks)) return cudaErrorInvalidValue;
  NormalizeRowsKernel<<<blocks, kRowWarpsPerBlock * kWarpSize, 0, stream>>>(keys, dtype, rows, d,
                                                                            row_stride, out);
  return cudaGetLastError();
}

cudaError_t LaunchAssign(const float* rows, int64_t n, int32_t d, const float* centroids,
                         int32_t num_centroids, int32_t* labels, float* best_sim,
                         cudaStream_t stream) {
  if (n < 0 || d < 1 || num_centroids < 1) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int64_t blocks = CeilDiv(n, kAssignRows);
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  const int32_t d_pad = static_cast<int32_t>(CeilDiv(d, kDimChunk) * kDimChunk);
  const size_t shared_bytes = sizeof(float) * (static_cast<size_t>(kTileCentroids) * d_pad +
                                               static_cast<size_t>(kDimChunk) * kChunkStride);
  if (shared_bytes > kDefaultSharedBytes) {
    // Large head dims need the opt-in shared memory (up to 227 KiB per block on sm_90); the
    // call fails with cudaErrorInvalidValue when even that is too small.
    const cudaError_t err = cudaFuncSetAttribute(
        AssignKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes));
    if (err != cudaSuccess) return err;
  }
  AssignKernel<<<static_cast<unsigned>(blocks), kAssignRows, shared_bytes, stream>>>(
      rows, n, d, d_pad, centroids, num_centroids, labels, best_sim);
  return cudaGetLastError();
}

cudaError_t LaunchAccumulate(const float* rows, const int32_t* labels, int64_t n, int32_t d,
                             int32_t num_centroids, float* sums, int32_t* counts,
                             cudaStream_t stream) {
  if (n < 0 || d < 1 || num_centroids < 1) return cudaErrorInvalidValue;
  cudaError_t err = cudaMemsetAsync(
      sums, 0, sizeof(float) * static_cast<size_t>(num_centroids) * static_cast<size_t>(d), stream);
  if (err != cudaSuccess) return err;
  err = cudaMemsetAsync(counts, 0, sizeof(int32_t) * static_cast<size_t>(num_centroids), stream);
  if (err != cudaSuccess) return err;
  if (n == 0) return cudaSuccess;
  // A grid-stride loop: a few thousand blocks keep every SM busy; more only add scheduling.
  constexpr int64_t kMaxBlocks = 4096;
  const int64_t blocks =
      CeilDiv(n, kRowWarpsPerBlock) < kMaxBlocks ? CeilDiv(n, kRowWarpsPerBlock) : kMaxBlocks;
  AccumulateKernel<<<static_cast<unsigned>(blocks), kRowWarpsPerBlock * kWarpSize, 0, stream>>>(
      rows, labels, n, d, num_centroids, sums, counts);
  return cudaGetLastError();
}

}  // namespace clusterkv::gpu::cuda
