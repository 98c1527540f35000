#include "tools/clusterkv_llama/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "tools/clusterkv_llama/ops.h"

namespace clusterkv::llama {
namespace {

// Query tokens per task: with G heads per kv head, G * kBlock query rows share one pass over
// the keys and values.
constexpr int64_t kBlock = 16;

}  // namespace

void CausalAttention(const LlamaConfig& c, const float* q, int64_t first, int64_t chunk,
                     const float* keys, const float* values, float* out, int threads) {
  const int32_t hd = c.head_dim;
  const int32_t group = c.GroupSize();
  const int64_t q_dim = c.QDim(), kv_dim = c.KvDim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t blocks = (chunk + kBlock - 1) / kBlock;
  const int64_t tasks = int64_t{c.n_kv_heads} * blocks;
  ParallelFor(tasks, threads, [&](int64_t begin, int64_t end, int) {
    std::vector<float> qbuf, scores, acc;
    for (int64_t task = begin; task < end; ++task) {
      const int32_t g = static_cast<int32_t>(task / blocks);
      const int64_t b0 = (task % blocks) * kBlock;
      const int64_t b1 = std::min(chunk, b0 + kBlock);
      const int64_t rows = (b1 - b0) * group;  // row m = (token i - b0) * group + head-in-group
      const int64_t span = first + b1;         // keys visible to the last query of the block
      qbuf.resize(static_cast<size_t>(rows * hd));
      for (int64_t i = b0; i < b1; ++i) {
        for (int32_t j = 0; j < group; ++j) {
          const int64_t m = (i - b0) * group + j;
          std::memcpy(&qbuf[static_cast<size_t>(m * hd)],
                      q + i * q_dim + static_cast<int64_t>(g * group + j) * hd,
                      sizeof(float) * static_cast<size_t>(hd));
        }
      }
      scores.resize(static_cast<size_t>(rows * span));
      MatMulStrided(qbuf.data(), hd, rows, keys + static_cast<int64_t>(g) * hd, kv_dim, span, hd,
                    scores.data(), span);
      acc.assign(static_cast<size_t>(rows * hd), 0.0f);
      for (int64_t m = 0; m < rows; ++m) {
        const int64_t visible = first + b0 + m / group + 1;  // causal: keys [0, own position]
        float* s = &scores[static_cast<size_t>(m * span)];
        float best = -INFINITY;
        for (int64_t t = 0; t < visible; ++t) best = std::max(best, s[t] * scale);
        double sum = 0.0;
        for (int64_t t = 0; t < visible; ++t) {
          s[t] = std::exp(s[t] * scale - best);
          sum += s[t];
        }
        float* a = &acc[static_cast<size_t>(m * hd)];
        for (int64_t t = 0; t < visible; ++t) {
          Axpy(s[t], values + t * kv_dim + static_cast<int64_t>(g) * hd, a, hd);
        }
        const float inv = static_cast<float>(1.0 / sum);
        const int64_t i = b0 + m / group;
        const int32_t h = g * group + static_cast<int32_t>(m % group);
        float* o = out + i * q_dim + static_cast<int64_t>(h) * hd;
        for (int32_t d = 0; d < hd; ++d) o[d] = a[d] * inv;
      }
    }
  });
}

}  // namespace clusterkv::llama
