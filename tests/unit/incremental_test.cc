// Decode-time incremental clustering and the append-only cluster index.
#include "gpu/incremental.h"

#include <cmath>
#include <set>
#include <vector>

#include "gpu/cluster_index.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace clusterkv::gpu {
namespace {

using ::clusterkv::testing::ClusteredKeys;
using ::clusterkv::testing::Gaussian;

TEST(IncrementalClustererTest, ClustersEveryIntervalAndAppends) {
  const int d = 32, m = 40, cplus = 4;
  IncrementalClusterer window(d, IncrementalOptions{m, cplus, 10, 3});
  ClusterIndex index(d);
  std::vector<float> keys = ClusteredKeys(3 * m + 5, d, 6, 0.1f, 1);
  std::vector<float> values = Gaussian(3 * m + 5, d, 2);
  int windows = 0;
  for (int t = 0; t < 3 * m + 5; ++t) {
    auto done = window.Append(1000 + t, &keys[t * d], &values[t * d]);
    ASSERT_TRUE(done.ok()) << done.status();
    if (!done->has_value()) continue;
    ++windows;
    const WindowClusters& w = **done;
    EXPECT_EQ(w.clustering.num_clusters, cplus);
    ASSERT_EQ(w.positions.size(), static_cast<size_t>(m));
    // Rows come back cluster-contiguous, each with its own key and value.
    std::set<int32_t> positions(w.positions.begin(), w.positions.end());
    EXPECT_EQ(positions.size(), static_cast<size_t>(m));
    for (int i = 0; i < m; ++i) {
      const int src = w.positions[i] - 1000;
      for (int j = 0; j < d; ++j) {
        ASSERT_EQ(w.keys[i * d + j], keys[src * d + j]);
        ASSERT_EQ(w.values[i * d + j], values[src * d + j]);
      }
    }
    ASSERT_TRUE(index.Append(w.clustering).ok());
  }
  EXPECT_EQ(windows, 3);
  EXPECT_EQ(window.window_size(), 5);  // the recent window keeps the rest
  EXPECT_EQ(window.window_positions().front(), 1000 + 3 * m);
  EXPECT_EQ(index.num_clusters(), 3 * cplus);
  EXPECT_EQ(index.num_tokens(), 3 * m);
  EXPECT_EQ(index.offsets().size(), static_cast<size_t>(3 * cplus + 1));
  EXPECT_EQ(index.centroids().rows, 3 * cplus);
}

TEST(IncrementalClustererTest, RejectsNonFiniteTokensWithoutChangingTheWindow) {
  const int d = 4;
  IncrementalClusterer window(d, IncrementalOptions{8, 2, 5, 1});
  std::vector<float> ok = {1, 2, 3, 4}, bad = {1, NAN, 3, 4};
  ASSERT_TRUE(window.Append(0, ok.data(), ok.data()).ok());
  EXPECT_EQ(window.Append(1, bad.data(), ok.data()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(window.window_size(), 1);
  IncrementalClusterer wrong(d, IncrementalOptions{2, 3, 5, 1});  // C+ > m
  EXPECT_EQ(wrong.Append(0, ok.data(), ok.data()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClusterIndexTest, AppendContinuesIdsAndOffsets) {
  ClusterIndex index(2);
  Clustering a;
  a.num_clusters = 2;
  a.head_dim = 2;
  a.centroids = {1, 0, 0, 1};
  a.sizes = {3, 5};
  ASSERT_TRUE(index.Append(a).ok());
  ASSERT_TRUE(index.Append(a).ok());
  EXPECT_EQ(index.offsets(), (std::vector<int32_t>{0, 3, 8, 11, 16}));
  EXPECT_EQ(index.centroids().At(3, 1), 1.0f);
  Clustering wrong = a;
  wrong.head_dim = 3;
  EXPECT_EQ(index.Append(wrong).code(), absl::StatusCode::kInvalidArgument);
}

// Key-norm scoring scores r_c * mu_c; a cluster without a known norm (an index restored from an
// older record) takes the mean of the known norms of its clustering, else of the index, else 1.
TEST(ClusterIndexTest, NormScaledCentroidsAndTheirFallbacks) {
  ClusterIndex index(2);
  Clustering a;
  a.num_clusters = 3;
  a.head_dim = 2;
  a.centroids = {1, 0, 0, 1, 0.6f, 0.8f};
  a.sizes = {3, 5, 2};
  a.key_norms = {2.0f, 4.0f, std::nanf("")};
  a.key_spreads = {0.1f, 0.1f, 0.1f};
  ASSERT_TRUE(index.Append(a).ok());
  ConstMatrixView s = index.norm_scaled_centroids();
  ASSERT_EQ(s.rows, 3);
  EXPECT_FLOAT_EQ(s.At(0, 0), 2.0f);
  EXPECT_FLOAT_EQ(s.At(1, 1), 4.0f);
  EXPECT_FLOAT_EQ(s.At(2, 0), 0.6f * 3.0f);  // the mean of 2 and 4
  EXPECT_FLOAT_EQ(s.At(2, 1), 0.8f * 3.0f);
  EXPECT_EQ(index.centroids().At(2, 0), 0.6f);  // the unit centroids are unchanged
  EXPECT_FLOAT_EQ(index.mean_key_norm(), 3.0f);  // over the known norms only

  Clustering restored = a;  // no statistics: the index's known mean
  restored.key_norms.clear();
  restored.key_spreads.clear();
  ASSERT_TRUE(index.Append(restored).ok());
  EXPECT_FLOAT_EQ(index.norm_scaled_centroids().At(3, 0), 3.0f);

  ClusterIndex bare(2);  // nothing known anywhere: unit norm
  ASSERT_TRUE(bare.Append(restored).ok());
  EXPECT_FLOAT_EQ(bare.norm_scaled_centroids().At(1, 1), 1.0f);
  EXPECT_FLOAT_EQ(bare.mean_key_norm(), 1.0f);
}

}  // namespace
}  // namespace clusterkv::gpu
