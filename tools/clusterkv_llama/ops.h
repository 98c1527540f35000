// The dense building blocks of the Llama forward pass on the CPU, fp32 throughout:
// matrix products against nn.Linear-shaped weights, RMSNorm, RoPE in both channel pairings,
// and the SwiGLU gate. Pure functions over caller-owned buffers; thread-safe. MatMul splits
// its output over `threads` with core/parallel.h and uses AVX2/FMA when compiled for it.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_OPS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_OPS_H_

#include <cstdint>
#include <vector>

#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

// sum_i a[i] * b[i].
float Dot(const float* a, const float* b, int64_t n);

// Single-threaded strided form: y[r*y_stride + o] = sum_{i<n} x[r*x_stride + i] *
// w[o*w_stride + i] for r < rows, o < out_features.
void MatMulStrided(const float* x, int64_t x_stride, int64_t rows, const float* w, int64_t w_stride,
                   int64_t out_features, int64_t n, float* y, int64_t y_stride);

// y[i] += a * x[i].
void Axpy(float a, const float* x, float* y, int64_t n);

// y[r, o] = sum_i x[r, i] * w[o, i] for r < rows, o < out_features: x is [rows, in] row-major,
// w is [out, in] (PyTorch's Linear weight), y is [rows, out]. rows == 1 is the decode matvec.
void MatMul(const float* x, int64_t rows, const float* w, int64_t out_features, int64_t in_features,
            float* y, int threads);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]; out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = silu(gate[i]) * up[i] with silu(z) = z / (1 + e^-z); out may alias either input.
void SwiGlu(const float* gate, const float* up, int64_t n, float* out);

// The RoPE frequencies of a config: inv_freq[i] = theta^(-2i/head_dim) / factor[i].
class RopeTable {
 public:
  explicit RopeTable(const LlamaConfig& config);
  // Rotates each of `heads` vectors of head_dim at x (contiguous) to position `pos`.
  void Apply(float* x, int32_t heads, int64_t pos, RopeStyle style) const;
  int32_t head_dim() const { return head_dim_; }

 private:
  int32_t head_dim_;
  std::vector<double> inv_freq_;
};

// Index of the largest value (the first on ties).
int32_t ArgMax(const float* x, int64_t n);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_OPS_H_
