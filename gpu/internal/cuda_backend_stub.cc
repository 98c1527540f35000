// Built when CLUSTERKV_CUDA is OFF or nvcc was not found: every CUDA entry point says so.
#include "gpu/internal/cuda_backend.h"

namespace clusterkv::gpu::internal {
namespace {

absl::Status NotBuilt() {
  return absl::FailedPreconditionError(
      "this build has no CUDA kernels (configure with -DCLUSTERKV_CUDA=ON and nvcc available)");
}

}  // namespace

bool CudaBuilt() { return false; }
absl::Status CudaDeviceStatusImpl() { return NotBuilt(); }

absl::Status CudaKMeans(const ConstMatrixView&, const KMeansOptions&, int, std::vector<float>&,
                        std::vector<int32_t>&, std::vector<float>&) {
  return NotBuilt();
}

absl::Status CudaScoreCentroids(const ConstMatrixView&, const ConstMatrixView&, float,
                                absl::Span<float>, int) {
  return NotBuilt();
}

absl::Status CudaAttention(const AttentionTask&, int) { return NotBuilt(); }

}  // namespace clusterkv::gpu::internal
