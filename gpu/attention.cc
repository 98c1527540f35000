#include "gpu/attention.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/internal/cuda_backend.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu {
namespace {

using internal::SoftmaxState;

constexpr int64_t kBlockRows = 64;
// Below this many tokens a single task is not worth splitting across threads.
constexpr int64_t kMinRowsPerThread = 4096;

absl::Status ValidateTask(const AttentionTask& task) {
  RETURN_IF_ERROR(task.queries.Validate("queries"));
  const int64_t g = task.queries.rows;
  const int64_t d = task.queries.cols;
  if (g < 1 || d < 1) return absl::InvalidArgumentError("need at least one query of width >= 1");
  if (task.out.data == nullptr || task.out.rows != g || task.out.cols != d ||
      task.out.row_stride < d) {
    return absl::InvalidArgumentError(absl::StrCat("out must be [", g, ", ", d, "], got [",
                                                   task.out.rows, ", ", task.out.cols, "]"));
  }
  if (!std::isfinite(task.scale)) return absl::InvalidArgumentError("scale is not finite");
  int64_t tokens = 0;
  for (size_t i = 0; i < task.spans.size(); ++i) {
    const KvSpan& s = task.spans[i];
    RETURN_IF_ERROR(s.keys.Validate(absl::StrCat("span ", i, " keys")));
    RETURN_IF_ERROR(s.values.Validate(absl::StrCat("span ", i, " values")));
    if (s.keys.rows != s.values.rows || s.keys.cols != d || s.values.cols != d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "span ", i, ": keys [", s.keys.rows, ", ", s.keys.cols, "] and values [",
          s.values.rows, ", ", s.values.cols, "] must both be [rows, ", d, "]"));
    }
    tokens += s.keys.rows;
  }
  if (tokens == 0) return absl::InvalidArgumentError("attention over zero tokens");
  return task.queries.CheckFinite("queries");
}

// A contiguous run of rows of one span.
struct Segment {
  const KvSpan* span;
  int64_t begin;
  int64_t end;
};

// Softmax states and unnormalised accumulators of G queries over some rows.
struct Partial {
  std::vector<SoftmaxState> state;
  std::vector<float> acc;  // [G, d]
};

Partial AttendSegments(const std::vector<float>& q, int64_t groups, int64_t d, float scale,
                       const std::vector<Segment>& segments) {
  Partial part;
  part.state.assign(static_cast<size_t>(groups), internal::SoftmaxInit());
  part.acc.assign(static_cast<size_t>(groups * d), 0.0f);
  std::vector<float> kbuf(static_cast<size_t>(kBlockRows * d));
  std::vector<float> vbuf(static_cast<size_t>(kBlockRows * d));
  std::vector<float> p(static_cast<size_t>(kBlockRows));
  std::vector<float> block_acc(static_cast<size_t>(d));
  for (const Segment& seg : segments) {
    for (int64_t t0 = seg.begin; t0 < seg.end; t0 += kBlockRows) {
      const int64_t nb = std::min(kBlockRows, seg.end - t0);
      for (int64_t t = 0; t < nb; ++t) seg.span->keys.LoadRow(t0 + t, &kbuf[t * d]);
      for (int64_t t = 0; t < nb; ++t) seg.span->values.LoadRow(t0 + t, &vbuf[t * d]);
      for (int64_t g = 0; g < groups; ++g) {
        const float* qg = &q[g * d];
        float block_max = -3.402823466e38f;
        for (int64_t t = 0; t < nb; ++t) {
          p[t] = scale * internal::Dot(qg, &kbuf[t * d], static_cast<int>(d));
          block_max = std::max(block_max, p[t]);
        }
        float block_sum = 0.0f;
        std::fill(block_acc.begin(), block_acc.end(), 0.0f);
        for (int64_t t = 0; t < nb; ++t) {
          const float w = std::exp(p[t] - block_max);
          block_sum += w;
          const float* v = &vbuf[t * d];
          for (int64_t i = 0; i < d; ++i) block_acc[i] += w * v[i];
        }
        float scale_old, scale_new;
        part.state[g] = internal::SoftmaxMerge(part.state[g], SoftmaxState{block_max, block_sum},
                                               &scale_old, &scale_new);
        float* acc = &part.acc[g * d];
        for (int64_t i = 0; i < d; ++i) acc[i] = acc[i] * scale_old + block_acc[i] * scale_new;
      }
    }
  }
  return part;
}

// Splits all span rows into `pieces` runs of near-equal length.
std::vector<std::vector<Segment>> SplitRows(const std::vector<KvSpan>& spans, int64_t total,
                                            int64_t pieces) {
  std::vector<std::vector<Segment>> out(static_cast<size_t>(pieces));
  const int64_t per = (total + pieces - 1) / pieces;
  int64_t piece = 0, filled = 0;
  for (const KvSpan& span : spans) {
    int64_t row = 0;
    while (row < span.keys.rows) {
      const int64_t take = std::min(span.keys.rows - row, per - filled);
      out[piece].push_back(Segment{&span, row, row + take});
      row += take;
      filled += take;
      if (filled == per && piece + 1 < pieces) {
        ++piece;
        filled = 0;
      }
    }
  }
  return out;
}

void CpuAttention(const AttentionTask& task, int threads) {
  const int64_t groups = task.queries.rows;
  const int64_t d = task.queries.cols;
  std::vector<float> q(static_cast<size_t>(groups * d));
  for (int64_t g = 0; g < groups; ++g) task.queries.LoadRow(g, &q[g * d]);
  int64_t total = 0;
  for (const KvSpan& s : task.spans) total += s.keys.rows;
  const int64_t pieces =
      std::max<int64_t>(1, std::min<int64_t>(threads, total / kMinRowsPerThread));
  const std::vector<std::vector<Segment>> split = SplitRows(task.spans, total, pieces);
  std::vector<Partial> parts(static_cast<size_t>(pieces));
  ParallelFor(pieces, static_cast<int>(pieces), [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) parts[i] = AttendSegments(q, groups, d, task.scale, split[i]);
  });
  for (int64_t g = 0; g < groups; ++g) {
    SoftmaxState state = internal::SoftmaxInit();
    std::vector<float> acc(static_cast<size_t>(d), 0.0f);
    for (const Partial& part : parts) {
      float scale_old, scale_new;
      state = internal::SoftmaxMerge(state, part.state[g], &scale_old, &scale_new);
      for (int64_t i = 0; i < d; ++i) {
        acc[i] = acc[i] * scale_old + part.acc[g * d + i] * scale_new;
      }
    }
    float* out = task.out.Row(g);
    const float inv = 1.0f / state.l;
    for (int64_t i = 0; i < d; ++i) out[i] = acc[i] * inv;
  }
}

}  // namespace

absl::Status Attention(const AttentionTask& task, const ExecContext& ctx) {
  RETURN_IF_ERROR(ValidateTask(task));
  if (ctx.backend == Backend::kCuda) return internal::CudaAttention(task, ctx.cuda_device);
  CpuAttention(task, ctx.CpuThreads());
  return absl::OkStatus();
}

absl::Status AttentionBatch(absl::Span<const AttentionTask> tasks, const ExecContext& ctx) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    absl::Status s = ValidateTask(tasks[i]);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("task ", i, ": ", s.message()));
  }
  if (ctx.backend == Backend::kCuda) {
    for (const AttentionTask& task : tasks) {
      RETURN_IF_ERROR(internal::CudaAttention(task, ctx.cuda_device));
    }
    return absl::OkStatus();
  }
  const int threads = ctx.CpuThreads();
  const int64_t n = static_cast<int64_t>(tasks.size());
  // Few tasks: give each the spare threads; many tasks: one thread each.
  const int inner = static_cast<int>(std::max<int64_t>(1, threads / std::max<int64_t>(1, n)));
  ParallelFor(n, threads, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) CpuAttention(tasks[i], inner);
  });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<KvSpan>> SpansOfRanges(const KvSpan& all,
                                                  absl::Span<const TokenRange> ranges) {
  if (all.keys.rows != all.values.rows) {
    return absl::InvalidArgumentError("keys and values have different row counts");
  }
  std::vector<KvSpan> spans;
  spans.reserve(ranges.size());
  for (const TokenRange& r : ranges) {
    if (r.begin < 0 || r.end > all.keys.rows || r.begin > r.end) {
      return absl::InvalidArgumentError(absl::StrCat("range [", r.begin, ", ", r.end,
                                                     ") is outside [0, ", all.keys.rows, ")"));
    }
    if (r.begin == r.end) continue;
    spans.push_back(KvSpan{all.keys.Rows(r.begin, r.end), all.values.Rows(r.begin, r.end)});
  }
  return spans;
}

absl::Status AttentionWeights(const ConstMatrixView& queries, const ConstMatrixView& keys,
                              float scale, MatrixView probs, int threads) {
  RETURN_IF_ERROR(queries.Validate("queries"));
  RETURN_IF_ERROR(keys.Validate("keys"));
  if (queries.rows < 1 || keys.rows < 1 || queries.cols != keys.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("need non-empty queries and keys of equal width, got [", queries.rows, ", ",
                     queries.cols, "] and [", keys.rows, ", ", keys.cols, "]"));
  }
  if (probs.data == nullptr || probs.rows != queries.rows || probs.cols != keys.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("probs must be [", queries.rows, ", ", keys.rows, "]"));
  }
  RETURN_IF_ERROR(queries.CheckFinite("queries"));
  const int64_t d = queries.cols;
  const int64_t groups = queries.rows;
  std::vector<float> q(static_cast<size_t>(groups * d));
  for (int64_t g = 0; g < groups; ++g) queries.LoadRow(g, &q[g * d]);
  ParallelFor(keys.rows, threads, [&](int64_t b, int64_t e, int) {
    std::vector<float> k(static_cast<size_t>(d));
    for (int64_t t = b; t < e; ++t) {
      keys.LoadRow(t, k.data());
      for (int64_t g = 0; g < groups; ++g) {
        probs.Row(g)[t] = scale * internal::Dot(&q[g * d], k.data(), static_cast<int>(d));
      }
    }
  });
  for (int64_t g = 0; g < groups; ++g) {
    float* row = probs.Row(g);
    const float max_logit = *std::max_element(row, row + keys.rows);
    double total = 0.0;
    for (int64_t t = 0; t < keys.rows; ++t) {
      row[t] = std::exp(row[t] - max_logit);
      total += row[t];
    }
    const float inv = static_cast<float>(1.0 / total);
    for (int64_t t = 0; t < keys.rows; ++t) row[t] *= inv;
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::gpu
