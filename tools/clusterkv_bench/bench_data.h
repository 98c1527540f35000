// Seeded synthetic inputs for clusterkv_bench: clustered keys for K-means, random fp16 K/V and
// queries, cluster sizes and recalled-range layouts. Every generator is deterministic in its
// seed (and independent of the thread count).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_DATA_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_DATA_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/token_range.h"

namespace clusterkv::bench {

// [rows, dim] fp32 keys drawn from a mixture of `directions` random unit directions with
// log-normal mixture weights: row = magnitude * (direction + noise * N(0, 1/dim)), magnitude
// uniform in [0.5, 2]. noise is relative to the unit direction (0.6 gives a mean cosine to the
// own direction of about 0.86).
std::vector<float> ClusteredKeys(int64_t rows, int32_t dim, int32_t directions, double noise,
                                 uint64_t seed);

// Fills n fp16 values uniform in [-amplitude, amplitude) using `threads` threads.
void FillRandomHalf(uint16_t* data, int64_t n, float amplitude, uint64_t seed, int threads);

// `clusters` sizes >= 0 summing to `tokens`, spread log-normally around tokens / clusters as
// K-means on real keys gives.
std::vector<int32_t> RandomClusterSizes(int64_t tokens, int32_t clusters, uint64_t seed);

// The token ranges of a ClusterKV sparse step over a context of `context` tokens: the sinks
// [0, sinks), `budget` tokens as ranges of about `range_tokens` each (40%..160% of it) spread
// evenly over [sinks, context - recent), and the recent window [context - recent, context).
// Ranges are disjoint and sorted. InvalidArgument unless context > sinks + recent + budget,
// range_tokens > 0 and every size is non-negative.
absl::StatusOr<std::vector<TokenRange>> SparseStepRanges(int64_t context, int64_t sinks,
                                                         int64_t budget, int64_t recent,
                                                         int64_t range_tokens, uint64_t seed);

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_DATA_H_
