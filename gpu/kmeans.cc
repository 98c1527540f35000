#include "gpu/kmeans.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/internal/assign_kernel_cpu.h"
#include "gpu/internal/cuda_backend.h"
#include "gpu/internal/kernel_math.h"
#include "gpu/internal/kmeans_common.h"

namespace clusterkv::gpu {
namespace {

// Rows per update block. Partial sums are formed per fixed block and reduced in block order, so
// the centroids do not depend on the thread count.
constexpr int64_t kUpdateBlockRows = 4096;

absl::Status ValidateKMeans(const ConstMatrixView& keys, const KMeansOptions& options) {
  RETURN_IF_ERROR(keys.Validate("keys"));
  if (keys.rows < 1 || keys.cols < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("keys must be non-empty, got [", keys.rows, ", ", keys.cols, "]"));
  }
  if (keys.rows > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError("keys: more than 2^31 - 1 rows");
  }
  if (options.num_clusters < 1 || options.num_clusters > keys.rows) {
    return absl::InvalidArgumentError(absl::StrCat("num_clusters must be in [1, ", keys.rows,
                                                   "] (the number of keys), got ",
                                                   options.num_clusters));
  }
  if (options.iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("iterations must be >= 1, got ", options.iterations));
  }
  return keys.CheckFinite("keys");
}

// Unit-norm fp32 copy of every row (zero rows stay zero).
std::vector<float> NormalizeRows(const ConstMatrixView& keys, int threads) {
  const int64_t d = keys.cols;
  std::vector<float> x(static_cast<size_t>(keys.rows * d));
  ParallelFor(keys.rows, threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = &x[r * d];
      keys.LoadRow(r, row);
      const float inv = internal::InverseNorm(internal::Dot(row, row, static_cast<int>(d)));
      for (int64_t i = 0; i < d; ++i) row[i] *= inv;
    }
  });
  return x;
}

void AssignAll(const std::vector<float>& x, int64_t rows, const std::vector<float>& centroids,
               int32_t num_clusters, int32_t d, int threads, std::vector<int32_t>& labels,
               std::vector<float>& best) {
  const internal::CentroidPanel panel(centroids.data(), num_clusters, d);
  ParallelFor(rows, threads, [&](int64_t begin, int64_t end, int) {
    internal::AssignNearest(&x[begin * d], end - begin, panel, &labels[begin], &best[begin]);
  });
}

// Per-cluster sums of the normalised rows and member counts, deterministic for any threads.
void AccumulateClusters(const std::vector<float>& x, const std::vector<int32_t>& labels,
                        int32_t num_clusters, int32_t d, int threads, std::vector<float>& sums,
                        std::vector<int32_t>& counts) {
  const int64_t rows = static_cast<int64_t>(labels.size());
  const int64_t blocks = (rows + kUpdateBlockRows - 1) / kUpdateBlockRows;
  const size_t cd = static_cast<size_t>(num_clusters) * d;
  std::vector<float> partial(static_cast<size_t>(blocks) * cd, 0.0f);
  ParallelFor(blocks, threads, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      float* sum = &partial[b * cd];
      const int64_t end = std::min(rows, (b + 1) * kUpdateBlockRows);
      for (int64_t r = b * kUpdateBlockRows; r < end; ++r) {
        float* dst = sum + static_cast<size_t>(labels[r]) * d;
        const float* src = &x[r * d];
        for (int32_t i = 0; i < d; ++i) dst[i] += src[i];
      }
    }
  });
  sums.assign(cd, 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* src = &partial[b * cd];
    for (size_t i = 0; i < cd; ++i) sums[i] += src[i];
  }
  counts.assign(static_cast<size_t>(num_clusters), 0);
  for (int32_t label : labels) ++counts[label];
}

absl::Status CpuKMeans(const ConstMatrixView& keys, const KMeansOptions& options, int threads,
                       std::vector<float>& centroids, std::vector<int32_t>& labels,
                       std::vector<float>& best) {
  const int32_t d = static_cast<int32_t>(keys.cols);
  const int32_t k = options.num_clusters;
  const std::vector<float> x = NormalizeRows(keys, threads);
  const internal::NormalizedRowFn row_fn = [&](int64_t row, float* out) {
    std::memcpy(out, &x[row * d], sizeof(float) * d);
  };
  std::vector<float> sums;
  std::vector<int32_t> counts;
  for (int32_t it = 0; it < options.iterations; ++it) {
    AssignAll(x, keys.rows, centroids, k, d, threads, labels, best);
    AccumulateClusters(x, labels, k, d, threads, sums, counts);
    internal::UpdateCentroids(sums, counts, labels, best,
                              /*reseed=*/it + 1 < options.iterations, row_fn, d, centroids);
  }
  AssignAll(x, keys.rows, centroids, k, d, threads, labels, best);
  return absl::OkStatus();
}

}  // namespace

void ComputeKeyStatistics(const ConstMatrixView& keys, Clustering& c) {
  // One pass: with unit mu and r the mean norm, sum |k - r mu|^2 over a cluster's n keys is
  // sum |k|^2 - 2 r sum (k . mu) + n r^2.
  const int32_t d = c.head_dim;
  std::vector<double> norm_sum(static_cast<size_t>(c.num_clusters), 0.0);
  std::vector<double> sq_sum(norm_sum.size(), 0.0), dot_sum(norm_sum.size(), 0.0);
  std::vector<float> k(static_cast<size_t>(d));
  for (int64_t row = 0; row < keys.rows; ++row) {
    keys.LoadRow(row, k.data());
    const int32_t j = c.labels[row];
    const double sq = internal::Dot(k.data(), k.data(), d);
    norm_sum[j] += std::sqrt(sq);
    sq_sum[j] += sq;
    dot_sum[j] += internal::Dot(k.data(), &c.centroids[static_cast<size_t>(j) * d], d);
  }
  c.key_norms.assign(norm_sum.size(), 0.0f);
  c.key_spreads.assign(norm_sum.size(), 0.0f);
  for (int32_t j = 0; j < c.num_clusters; ++j) {
    if (c.sizes[j] == 0) continue;
    const double n = c.sizes[j], r = norm_sum[j] / n;
    c.key_norms[j] = static_cast<float>(r);
    c.key_spreads[j] =
        static_cast<float>(std::max(0.0, sq_sum[j] - 2 * r * dot_sum[j] + n * r * r) / n / d);
  }
}

absl::StatusOr<Clustering> SphericalKMeans(const ConstMatrixView& keys,
                                           const KMeansOptions& options,
                                           const ExecContext& ctx) {
  RETURN_IF_ERROR(ValidateKMeans(keys, options));
  const int32_t d = static_cast<int32_t>(keys.cols);
  Clustering c;
  c.num_clusters = options.num_clusters;
  c.head_dim = d;
  c.centroids.resize(static_cast<size_t>(c.num_clusters) * d);
  // Initial centroids: distinct rows chosen by the seed, normalised.
  const std::vector<int32_t> seeds =
      internal::SampleDistinctRows(keys.rows, options.num_clusters, options.seed);
  for (int32_t j = 0; j < c.num_clusters; ++j) {
    float* mu = &c.centroids[static_cast<size_t>(j) * d];
    keys.LoadRow(seeds[j], mu);
    const float inv = internal::InverseNorm(internal::Dot(mu, mu, d));
    for (int32_t i = 0; i < d; ++i) mu[i] *= inv;
  }
  c.labels.resize(static_cast<size_t>(keys.rows));
  std::vector<float> best(static_cast<size_t>(keys.rows));
  if (ctx.backend == Backend::kCuda) {
    RETURN_IF_ERROR(
        internal::CudaKMeans(keys, options, ctx.cuda_device, c.centroids, c.labels, best));
  } else {
    RETURN_IF_ERROR(CpuKMeans(keys, options, ctx.CpuThreads(), c.centroids, c.labels, best));
  }
  double total = 0.0;
  for (float b : best) total += b;
  c.objective = total / static_cast<double>(keys.rows);
  internal::BuildClusterOrder(c);
  ComputeKeyStatistics(keys, c);
  return c;
}

absl::StatusOr<std::vector<Clustering>> SphericalKMeansBatch(
    absl::Span<const ConstMatrixView> heads, const KMeansOptions& options,
    const ExecContext& ctx) {
  std::vector<absl::StatusOr<Clustering>> results(heads.size(),
                                                  absl::UnknownError("not run"));
  const int threads = ctx.CpuThreads();
  const int64_t n = static_cast<int64_t>(heads.size());
  // Spread threads over heads; each head gets the threads left over when heads are few.
  ExecContext per_head = ctx;
  per_head.threads = std::max<int64_t>(1, threads / std::max<int64_t>(1, n));
  const int outer = ctx.backend == Backend::kCuda ? 1 : threads;
  ParallelFor(n, outer, [&](int64_t begin, int64_t end, int) {
    for (int64_t h = begin; h < end; ++h) {
      KMeansOptions head_options = options;
      head_options.seed = options.seed + static_cast<uint64_t>(h);
      results[h] = SphericalKMeans(heads[h], head_options, per_head);
    }
  });
  std::vector<Clustering> out;
  out.reserve(heads.size());
  for (size_t h = 0; h < results.size(); ++h) {
    if (!results[h].ok()) {
      const absl::Status& s = results[h].status();
      return absl::Status(s.code(), absl::StrCat("head ", h, ": ", s.message()));
    }
    out.push_back(*std::move(results[h]));
  }
  return out;
}

absl::StatusOr<double> MeanCosineToNearest(const ConstMatrixView& keys,
                                           const ConstMatrixView& centroids, int threads) {
  RETURN_IF_ERROR(keys.Validate("keys"));
  RETURN_IF_ERROR(centroids.Validate("centroids"));
  if (keys.rows < 1 || centroids.rows < 1 || keys.cols != centroids.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("need non-empty keys and centroids of equal width, got [", keys.rows, ", ",
                     keys.cols, "] and [", centroids.rows, ", ", centroids.cols, "]"));
  }
  RETURN_IF_ERROR(keys.CheckFinite("keys"));
  RETURN_IF_ERROR(centroids.CheckFinite("centroids"));
  const int32_t d = static_cast<int32_t>(keys.cols);
  const std::vector<float> x = NormalizeRows(keys, threads);
  const std::vector<float> mu = NormalizeRows(centroids, threads);
  std::vector<int32_t> labels(static_cast<size_t>(keys.rows));
  std::vector<float> best(static_cast<size_t>(keys.rows));
  AssignAll(x, keys.rows, mu, static_cast<int32_t>(centroids.rows), d, threads, labels, best);
  double total = 0.0;
  for (float b : best) total += b;
  return total / static_cast<double>(keys.rows);
}

absl::Status GatherRows(const ConstMatrixView& src, absl::Span<const int32_t> order, void* dst) {
  RETURN_IF_ERROR(src.Validate("src"));
  const size_t row_bytes = static_cast<size_t>(src.cols) * DTypeSize(src.dtype);
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] < 0 || order[i] >= src.rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("order[", i, "] = ", order[i], " is outside [0, ", src.rows, ")"));
    }
    std::memcpy(out + i * row_bytes, src.RowPtr(order[i]), row_bytes);
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::gpu
