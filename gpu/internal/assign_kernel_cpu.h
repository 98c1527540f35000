// The hot loop of spherical K-means on the CPU: for each row, the centroid of highest dot
// product. It is a GEMM fused with a row-wise argmax, so the [rows, C] similarity matrix is
// never written out. Centroids are packed transposed into a panel that register-blocked
// micro-kernels (AVX-512 or AVX2+FMA, chosen at run time; portable C++ otherwise) stream from
// L2 cache.
#ifndef CLUSTERKV_GPU_INTERNAL_ASSIGN_KERNEL_CPU_H_
#define CLUSTERKV_GPU_INTERNAL_ASSIGN_KERNEL_CPU_H_

#include <cstdint>
#include <vector>

namespace clusterkv::gpu::internal {

// Centroids transposed to [head_dim, padded] with zero padding up to a multiple of 32.
class CentroidPanel {
 public:
  CentroidPanel(const float* centroids, int32_t num_clusters, int32_t head_dim);

  int32_t num_clusters() const { return num_clusters_; }
  int32_t padded() const { return padded_; }
  int32_t head_dim() const { return head_dim_; }
  const float* data() const { return panel_.data(); }

 private:
  int32_t num_clusters_;
  int32_t padded_;
  int32_t head_dim_;
  std::vector<float> panel_;
};

// For each of the n rows of x ([n, head_dim] fp32, contiguous): labels[i] = argmax_c x_i . mu_c
// (ties: lower c) and best[i] = that dot product. Single-threaded; callers split rows.
void AssignNearest(const float* x, int64_t n, const CentroidPanel& panel, int32_t* labels,
                   float* best);

// The instruction set AssignNearest uses on this CPU: "avx512", "avx2" or "generic".
const char* AssignKernelIsa();

}  // namespace clusterkv::gpu::internal

#endif  // CLUSTERKV_GPU_INTERNAL_ASSIGN_KERNEL_CPU_H_
