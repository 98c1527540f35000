// The buckets in which libclusterkv reports its estimated recall to the daemon
// (ReportClientStatsRequest.estimated_recall_counts) and the daemon exports it
// (clusterkv_client_estimated_recall): upper bounds, an estimate counted in the first bucket
// whose bound it does not exceed.
#ifndef CLUSTERKV_CORE_RECALL_BUCKETS_H_
#define CLUSTERKV_CORE_RECALL_BUCKETS_H_

#include <array>
#include <cstddef>

namespace clusterkv {

inline constexpr std::array<double, 8> kEstimatedRecallBounds = {0.5, 0.6,  0.7,  0.8,
                                                                 0.9, 0.95, 0.99, 1.0};

// The bucket of `recall`; values above the last bound go in the last bucket.
inline size_t EstimatedRecallBucket(double recall) {
  size_t bucket = 0;
  while (bucket + 1 < kEstimatedRecallBounds.size() && recall > kEstimatedRecallBounds[bucket]) {
    ++bucket;
  }
  return bucket;
}

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_RECALL_BUCKETS_H_
