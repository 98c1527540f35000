#include "tools/clusterkv_llama/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "tools/clusterkv_llama/ops.h"

namespace clusterkv::llama {
namespace {

// Query tokens per task: with G heads per kv head, G * kQueryBlock query rows share one pass
// over the keys and values.
constexpr int64_t kQueryBlock = 64;
// Keys per inner block: the scores of one block (rows x kKeyBlock floats) and the value block
// stay in L2.
constexpr int64_t kKeyBlock = 256;

// Per-task scratch, reused across the tasks a thread runs.
struct Scratch {
  std::vector<float> q;       // [rows, hd]
  std::vector<float> scores;  // [rows, kKeyBlock]
  std::vector<float> vt;      // [hd, kKeyBlock]: the value block transposed (own kernel)
  std::vector<float> pv;      // [rows, hd] (own kernel)
  std::vector<float> acc;     // [rows, hd]
  std::vector<float> max;     // [rows] running max of scaled scores
  std::vector<float> sum;     // [rows] running softmax denominators
};

}  // namespace

void CausalAttention(const ModelConfig& c, const float* q, int64_t first, int64_t chunk,
                     const float* keys, const float* values, float* out, int threads,
                     const CausalAttentionParams& params) {
  const int32_t hd = c.head_dim;
  const int32_t group = c.GroupSize();
  const int64_t q_dim = c.QDim(), kv_dim = c.KvDim();
  const float scale = params.scale > 0.0f ? params.scale : 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t window = params.window;
  const int64_t blocks = (chunk + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = int64_t{c.n_kv_heads} * blocks;
  const bool blas = params.matmul != MatMulImpl::kOwn;
  // The tasks call sgemm concurrently, each single-threaded; OpenBLAS's process-wide thread
  // count is restored afterwards.
  const int blas_threads = openblas_get_num_threads();
  if (blas) openblas_set_num_threads(1);
  ParallelFor(tasks, threads, [&](int64_t begin, int64_t end, int) {
    Scratch s;
    for (int64_t task = begin; task < end; ++task) {
      const int32_t g = static_cast<int32_t>(task / blocks);
      const int64_t b0 = (task % blocks) * kQueryBlock;
      const int64_t b1 = std::min(chunk, b0 + kQueryBlock);
      const int64_t rows = (b1 - b0) * group;  // row m = (token i - b0) * group + head-in-group
      s.q.resize(static_cast<size_t>(rows * hd));
      for (int64_t i = b0; i < b1; ++i) {
        for (int32_t j = 0; j < group; ++j) {
          std::memcpy(&s.q[static_cast<size_t>(((i - b0) * group + j) * hd)],
                      q + i * q_dim + static_cast<int64_t>(g * group + j) * hd,
                      sizeof(float) * static_cast<size_t>(hd));
        }
      }
      s.scores.resize(static_cast<size_t>(rows * kKeyBlock));
      if (!blas) {
        s.vt.resize(static_cast<size_t>(hd * kKeyBlock));
        s.pv.resize(static_cast<size_t>(rows * hd));
      }
      s.acc.assign(static_cast<size_t>(rows * hd), 0.0f);
      s.max.assign(static_cast<size_t>(rows), -INFINITY);
      s.sum.assign(static_cast<size_t>(rows), 0.0f);
      // Keys any query of the block may see: [lo, hi).
      const int64_t hi = first + b1;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, first + b0 - window + 1) : 0;
      for (int64_t k0 = lo; k0 < hi; k0 += kKeyBlock) {
        const int64_t kb = std::min(kKeyBlock, hi - k0);
        const float* kblock = keys + k0 * kv_dim + static_cast<int64_t>(g) * hd;
        const float* vblock = values + k0 * kv_dim + static_cast<int64_t>(g) * hd;
        if (blas) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows),
                      static_cast<blasint>(kb), hd, 1.0f, s.q.data(), hd, kblock,
                      static_cast<blasint>(kv_dim), 0.0f, s.scores.data(),
                      static_cast<blasint>(kb));
        } else {
          MatMulStrided(s.q.data(), hd, rows, kblock, kv_dim, kb, hd, s.scores.data(), kb);
        }
        bool any = false;
        for (int64_t m = 0; m < rows; ++m) {
          const int64_t pos = first + b0 + m / group;
          // Visible keys of this row inside the block: [t_lo, t_hi).
          const int64_t t_lo = window > 0 ? std::max<int64_t>(0, pos - window + 1 - k0) : 0;
          const int64_t t_hi = std::min<int64_t>(kb, pos + 1 - k0);
          float* row = &s.scores[static_cast<size_t>(m * kb)];
          if (t_lo >= t_hi) {
            std::fill(row, row + kb, 0.0f);
            continue;
          }
          any = true;
          float best = s.max[static_cast<size_t>(m)];
          for (int64_t t = t_lo; t < t_hi; ++t) best = std::max(best, row[t] * scale);
          const float alpha = std::exp(s.max[static_cast<size_t>(m)] - best);  // 0 on the first
          float block_sum = 0.0f;
          for (int64_t t = 0; t < kb; ++t) {
            const float p = t >= t_lo && t < t_hi ? std::exp(row[t] * scale - best) : 0.0f;
            row[t] = p;
            block_sum += p;
          }
          s.sum[static_cast<size_t>(m)] = s.sum[static_cast<size_t>(m)] * alpha + block_sum;
          s.max[static_cast<size_t>(m)] = best;
          float* a = &s.acc[static_cast<size_t>(m * hd)];
          if (alpha != 1.0f) {
            for (int32_t d = 0; d < hd; ++d) a[d] *= alpha;
          }
        }
        if (!any) continue;
        if (blas) {
          // acc += P V, V read in place (rows of stride kv_dim).
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(rows), hd,
                      static_cast<blasint>(kb), 1.0f, s.scores.data(), static_cast<blasint>(kb),
                      vblock, static_cast<blasint>(kv_dim), 1.0f, s.acc.data(), hd);
        } else {
          for (int64_t t = 0; t < kb; ++t) {
            for (int32_t d = 0; d < hd; ++d) {
              s.vt[static_cast<size_t>(d * kb + t)] = vblock[t * kv_dim + d];
            }
          }
          MatMulStrided(s.scores.data(), kb, rows, s.vt.data(), kb, hd, kb, s.pv.data(), hd);
          for (size_t i = 0; i < s.acc.size(); ++i) s.acc[i] += s.pv[i];
        }
      }
      for (int64_t m = 0; m < rows; ++m) {
        const int64_t i = b0 + m / group;
        const int32_t h = g * group + static_cast<int32_t>(m % group);
        const float inv = 1.0f / s.sum[static_cast<size_t>(m)];
        const float* a = &s.acc[static_cast<size_t>(m * hd)];
        float* o = out + i * q_dim + static_cast<int64_t>(h) * hd;
        for (int32_t d = 0; d < hd; ++d) o[d] = a[d] * inv;
      }
    }
  });
  if (blas) openblas_set_num_threads(blas_threads);
}

}  // namespace clusterkv::llama
