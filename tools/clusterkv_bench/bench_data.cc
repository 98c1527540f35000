#include "tools/clusterkv_bench/bench_data.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/splitmix64.h"

namespace clusterkv::bench {
std::vector<float> ClusteredKeys(int64_t rows, int32_t dim, int32_t directions, double noise,
                                 uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> centers(static_cast<size_t>(directions) * dim);
  for (int32_t c = 0; c < directions; ++c) {
    float* mu = &centers[static_cast<size_t>(c) * dim];
    double norm2 = 0.0;
    for (int32_t i = 0; i < dim; ++i) {
      mu[i] = normal(rng);
      norm2 += static_cast<double>(mu[i]) * mu[i];
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(std::max(norm2, 1e-30)));
    for (int32_t i = 0; i < dim; ++i) mu[i] *= inv;
  }
  std::vector<double> weights(directions);
  std::lognormal_distribution<double> lognormal(0.0, 1.0);
  for (double& w : weights) w = lognormal(rng);
  std::discrete_distribution<int32_t> pick(weights.begin(), weights.end());
  std::uniform_real_distribution<float> magnitude(0.5f, 2.0f);
  const float sigma = static_cast<float>(noise / std::sqrt(static_cast<double>(dim)));

  std::vector<float> keys(static_cast<size_t>(rows) * dim);
  for (int64_t r = 0; r < rows; ++r) {
    const float* mu = &centers[static_cast<size_t>(pick(rng)) * dim];
    const float scale = magnitude(rng);
    float* row = &keys[static_cast<size_t>(r) * dim];
    for (int32_t i = 0; i < dim; ++i) row[i] = scale * (mu[i] + sigma * normal(rng));
  }
  return keys;
}

void FillRandomHalf(uint16_t* data, int64_t n, float amplitude, uint64_t seed, int threads) {
  constexpr int64_t kBlock = int64_t{1} << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  ParallelFor(blocks, threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) {
      uint64_t state = seed * 0x2545f4914f6cdd1dULL + static_cast<uint64_t>(b);
      const int64_t stop = std::min(n, (b + 1) * kBlock);
      for (int64_t i = b * kBlock; i < stop; ++i) {
        // 24 random bits -> uniform in [-1, 1).
        const float u = static_cast<float>(SplitMix64(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
        data[i] = FloatToHalf(u * amplitude);
      }
    }
  });
}

std::vector<int32_t> RandomClusterSizes(int64_t tokens, int32_t clusters, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> lognormal(0.0, 0.6);
  std::vector<double> w(clusters);
  for (double& x : w) x = lognormal(rng);
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  std::vector<int32_t> sizes(clusters);
  int64_t assigned = 0;
  for (int32_t c = 0; c < clusters; ++c) {
    sizes[c] = static_cast<int32_t>(std::floor(w[c] / total * static_cast<double>(tokens)));
    assigned += sizes[c];
  }
  // Hand out the rounding remainder one token at a time.
  for (int64_t i = 0; assigned < tokens; ++i, ++assigned) ++sizes[i % clusters];
  return sizes;
}

absl::StatusOr<std::vector<TokenRange>> SparseStepRanges(int64_t context, int64_t sinks,
                                                         int64_t budget, int64_t recent,
                                                         int64_t range_tokens, uint64_t seed) {
  if (sinks < 0 || recent < 0 || budget < 1 || range_tokens < 1) {
    return absl::InvalidArgumentError("sinks, recent >= 0 and budget, range_tokens >= 1 needed");
  }
  if (context <= sinks + recent + budget) {
    return absl::InvalidArgumentError(absl::StrCat("context ", context, " must exceed sinks + ",
                                                   "recent + budget = ", sinks + recent + budget));
  }
  std::mt19937_64 rng(seed);
  const int64_t n = std::max<int64_t>(1, (budget + range_tokens / 2) / range_tokens);
  const int64_t lo = sinks;
  const int64_t span = context - recent - sinks;
  const int64_t segment = span / n;

  // Sizes around range_tokens, rescaled to sum to the budget.
  std::uniform_real_distribution<double> jitter(0.4, 1.6);
  std::vector<double> raw(n);
  for (double& x : raw) x = jitter(rng);
  const double raw_total = std::accumulate(raw.begin(), raw.end(), 0.0);
  std::vector<int64_t> sizes(n);
  int64_t assigned = 0;
  for (int64_t i = 0; i < n; ++i) {
    sizes[i] = std::max<int64_t>(1, static_cast<int64_t>(raw[i] / raw_total * budget));
    assigned += sizes[i];
  }
  for (int64_t i = 0; assigned < budget; i = (i + 1) % n, ++assigned) ++sizes[i];
  for (int64_t i = 0; assigned > budget; i = (i + 1) % n) {
    if (sizes[i] > 1) --sizes[i], --assigned;
  }
  if (*std::max_element(sizes.begin(), sizes.end()) > segment) {
    // Too little room for the jittered sizes: equal sizes always fit (budget < span).
    for (int64_t i = 0; i < n; ++i) sizes[i] = budget / n + (i < budget % n ? 1 : 0);
    if (sizes[0] > segment) {
      return absl::InvalidArgumentError("budget too close to the context to spread ranges");
    }
  }

  std::vector<TokenRange> ranges;
  ranges.push_back({0, sinks});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t seg_begin = lo + i * segment;
    std::uniform_int_distribution<int64_t> offset(0, segment - sizes[i]);
    const int64_t begin = seg_begin + offset(rng);
    ranges.push_back({begin, begin + sizes[i]});
  }
  ranges.push_back({context - recent, context});
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(),
                              [](const TokenRange& r) { return r.size() <= 0; }),
               ranges.end());
  return ranges;
}

}  // namespace clusterkv::bench
