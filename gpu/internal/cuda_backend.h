// The CUDA side of each op's dispatch. Implemented in cuda_backend.cc over the kernels of
// gpu/cuda/ when CLUSTERKV_CUDA builds them, and by cuda_backend_stub.cc (every call
// FailedPrecondition) otherwise. Inputs and outputs are host memory; the implementation stages
// through device buffers, so results are directly comparable with the CPU twin.
#ifndef CLUSTERKV_GPU_INTERNAL_CUDA_BACKEND_H_
#define CLUSTERKV_GPU_INTERNAL_CUDA_BACKEND_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/tensor_view.h"
#include "gpu/attention.h"
#include "gpu/kmeans.h"

namespace clusterkv::gpu::internal {

bool CudaBuilt();
absl::Status CudaDeviceStatusImpl();

// Runs options.iterations assign+update rounds from `centroids` (in: initial [C, d], out:
// final) and a final assignment into labels/best_sim ([rows] each). Updates go through
// UpdateCentroids (kmeans_common.h), so the arithmetic matches the CPU twin.
absl::Status CudaKMeans(const ConstMatrixView& keys, const KMeansOptions& options, int device,
                        std::vector<float>& centroids, std::vector<int32_t>& labels,
                        std::vector<float>& best_sim);

// Same contract as gpu::ScoreCentroids (inputs already validated).
absl::Status CudaScoreCentroids(const ConstMatrixView& queries, const ConstMatrixView& centroids,
                                float scale, absl::Span<float> scores, int device);

// Same contract as gpu::Attention (inputs already validated).
absl::Status CudaAttention(const AttentionTask& task, int device);

}  // namespace clusterkv::gpu::internal

#endif  // CLUSTERKV_GPU_INTERNAL_CUDA_BACKEND_H_
