// The dense building blocks of the forward pass on the CPU, fp32 throughout: matrix products
// against nn.Linear-shaped weights, RMSNorm, RoPE in both channel pairings, the gated MLP
// activations (SwiGLU, GeGLU) and logit soft-capping. Pure functions over caller-owned
// buffers; thread-safe.
//
// Matrix products have two implementations, measured side by side by `clusterkv_llama
// --bench`: the project's own AVX2/FMA kernel (MatMulOwn: register tiles, output features
// split over `threads` with core/parallel.h) and OpenBLAS's sgemm (MatMulBlas, Debian's
// libopenblas, its own threads). MatMul picks OpenBLAS for products of kBlasMinRows rows and
// more (prefill chunks), where it is faster, and the own kernel for fewer rows (decode), where
// sgemm's per-call overhead and packing lose to a streaming dot-product kernel.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_OPS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_OPS_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
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

// Which implementation MatMul uses: kAuto picks by rows (see above); the others force one, for
// measuring them against each other.
enum class MatMulImpl : uint8_t { kAuto = 0, kOwn = 1, kBlas = 2 };
absl::string_view MatMulImplName(MatMulImpl impl);  // "auto", "own", "openblas"

// y[r, o] = sum_i x[r, i] * w[o, i] for r < rows, o < out_features: x is [rows, in] row-major,
// w is [out, in] (PyTorch's Linear weight), y is [rows, out]. rows == 1 is the decode matvec.
void MatMul(const float* x, int64_t rows, const float* w, int64_t out_features, int64_t in_features,
            float* y, int threads, MatMulImpl impl = MatMulImpl::kAuto);
// The two implementations behind MatMul (same contract).
void MatMulOwn(const float* x, int64_t rows, const float* w, int64_t out_features,
               int64_t in_features, float* y, int threads);
void MatMulBlas(const float* x, int64_t rows, const float* w, int64_t out_features,
                int64_t in_features, float* y, int threads);
inline constexpr int64_t kBlasMinRows = 16;

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]; out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = silu(gate[i]) * up[i] with silu(z) = z / (1 + e^-z); out may alias either input.
void SwiGlu(const float* gate, const float* up, int64_t n, float* out);
// out[i] = gelu_tanh(gate[i]) * up[i] (model_config.h, Activation); out may alias either input.
void GeGlu(const float* gate, const float* up, int64_t n, float* out);
// SwiGlu or GeGlu by `activation`.
void GatedActivation(Activation activation, const float* gate, const float* up, int64_t n,
                     float* out);

// x[i] = cap * tanh(x[i] / cap), for cap > 0.
void SoftCap(float* x, int64_t n, float cap);

// RoPE frequencies: inv_freq[i] = theta^(-2i/head_dim) / factor[i] / linear_scale.
class RopeTable {
 public:
  // The global layers' table of `config` (rope_theta, rope_freq_factors, rope_linear_scale).
  explicit RopeTable(const ModelConfig& config);
  // Any base: the local layers use RopeTable(head_dim, config.rope_theta_local, {}, 1).
  RopeTable(int32_t head_dim, float theta, const std::vector<float>& freq_factors,
            float linear_scale);
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
