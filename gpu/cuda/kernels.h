// Launch interface of the CUDA kernels of gpu/: plain C++ (no absl, no STL containers) so that
// gpu/internal/cuda_backend.cc, compiled by the host compiler, can call into the nvcc-compiled
// files. Every pointer is device memory unless noted; every launch is asynchronous on `stream`
// and returns the launch error (cudaSuccess when the work was queued). Execution errors surface
// at the next synchronising call. The per-element arithmetic lives in
// gpu/internal/kernel_math.h, shared with the CPU twins.
//
// dtype arguments use gpu::internal's numbering (0 fp16, 1 bf16, 2 fp32); row strides are in
// elements of that dtype.
#ifndef CLUSTERKV_GPU_CUDA_KERNELS_H_
#define CLUSTERKV_GPU_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace clusterkv::gpu::cuda {

// cudaSuccess when the kernels of this build have an image the current device can run;
// cudaErrorNoKernelImageForDevice (or similar) when the build targets another architecture.
cudaError_t CheckKernelImage();

// ---- Spherical K-means -------------------------------------------------------------------

// out[r, :] = keys[r, :] / ||keys[r, :]|| in fp32 (a zero row stays zero; see InverseNorm).
// keys: [rows, d] of `dtype` with `row_stride`; out: [rows, d] contiguous fp32.
cudaError_t LaunchNormalizeRows(const void* keys, int dtype, int64_t rows, int32_t d,
                                int64_t row_stride, float* out, cudaStream_t stream);

// For each row r of the normalised rows [n, d]: labels[r] = argmax_c rows[r] . centroids[c]
// over the C centroids [C, d] (ties: lower c, internal::IsBetter) and best_sim[r] the maximum.
// Dot products accumulate over dimensions in order, as internal::Dot does.
cudaError_t LaunchAssign(const float* rows, int64_t n, int32_t d, const float* centroids,
                         int32_t num_centroids, int32_t* labels, float* best_sim,
                         cudaStream_t stream);

// Zeroes sums [C, d] and counts [C], then adds each row into sums[labels[r]] and counts it.
// The order of the float additions is unspecified (atomics), so sums vary in the last bits.
cudaError_t LaunchAccumulate(const float* rows, const int32_t* labels, int64_t n, int32_t d,
                             int32_t num_centroids, float* sums, int32_t* counts,
                             cudaStream_t stream);

// ---- Centroid scoring ----------------------------------------------------------------------

// Size in floats of the workspace LaunchScoreCentroids needs: the queries as fp32 and the
// G x C logits.
int64_t ScoreCentroidsWorkspaceFloats(int32_t num_queries, int32_t d, int32_t num_centroids);

// scores[c] = sum over g < G of softmax_c(scale * queries[g] . centroids[c]).
// queries: [G, d] of `dtype` with `query_stride`; centroids: [C, d] contiguous fp32;
// workspace: ScoreCentroidsWorkspaceFloats(G, d, C) floats; scores: [C].
cudaError_t LaunchScoreCentroids(const void* queries, int dtype, int32_t num_queries, int32_t d,
                                 int64_t query_stride, const float* centroids,
                                 int32_t num_centroids, float scale, float* workspace,
                                 float* scores, cudaStream_t stream);

// ---- Decode attention ----------------------------------------------------------------------

// One contiguous run of tokens: `rows` keys and values, each row `d` elements of the call's
// dtype. first_token is the number of tokens in all earlier spans of the list (a prefix sum),
// so span lists must be given in order with first_token ascending.
struct DeviceKvSpan {
  const void* keys;
  const void* values;
  int64_t rows;
  int64_t key_stride;
  int64_t value_stride;
  int64_t first_token;
};

// Largest head dimension LaunchAttention supports.
constexpr int32_t kMaxAttentionHeadDim = 512;

// Number of split-K chunks LaunchAttention uses for `total_tokens`, and the size in floats of
// the workspace it needs for G queries of dimension d.
int64_t AttentionNumChunks(int64_t total_tokens);
int64_t AttentionWorkspaceFloats(int64_t total_tokens, int32_t num_queries, int32_t d);

// out[g] = sum_t softmax_t(scale * queries[g] . k_t) v_t over the total_tokens rows of the
// num_spans spans (device array). queries: [G, d] contiguous fp32; out: [G, d] contiguous fp32;
// workspace: AttentionWorkspaceFloats(total_tokens, G, d) floats. cudaErrorInvalidValue when
// d > kMaxAttentionHeadDim or a size is not positive.
cudaError_t LaunchAttention(const float* queries, int32_t num_queries, int32_t d,
                            const DeviceKvSpan* spans, int32_t num_spans, int64_t total_tokens,
                            int dtype, float scale, float* workspace, float* out,
                            cudaStream_t stream);

}  // namespace clusterkv::gpu::cuda

#endif  // CLUSTERKV_GPU_CUDA_KERNELS_H_
