// The recall estimator (gpu/recall_estimate.h) against exact attention mass where its model is
// exact (every key of a cluster equal to r * centroid), its fallbacks, and its input checks;
// and the per-cluster key statistics K-means attaches to a clustering.
#include "gpu/recall_estimate.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/tensor_view.h"
#include "gpu/kmeans.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace clusterkv::gpu {
namespace {

using ::clusterkv::testing::Gaussian;

constexpr int kDim = 16;

// C clusters of identical keys r_c * mu_c (unit mu_c), plus exact keys; the estimator's model
// holds exactly, so its answer must equal the true share of softmax mass.
struct Exact {
  std::vector<float> centroids;  // [C, d] unit
  std::vector<int32_t> sizes;
  std::vector<float> norms, spreads;
  std::vector<float> sinks;  // [S, d]

  Exact(int clusters, int sinks_rows) {
    centroids = Gaussian(clusters, kDim, 7);
    for (int c = 0; c < clusters; ++c) {
      double n = 0;
      for (int i = 0; i < kDim; ++i) n += centroids[c * kDim + i] * centroids[c * kDim + i];
      for (int i = 0; i < kDim; ++i) centroids[c * kDim + i] /= static_cast<float>(std::sqrt(n));
      sizes.push_back(3 + 5 * c);
      norms.push_back(0.5f + 0.4f * c);
      spreads.push_back(0.0f);
    }
    sinks = Gaussian(sinks_rows, kDim, 8);
  }

  RecallEstimateInput Input(const std::vector<float>& q, int g, const ClusterSelection* sel) {
    RecallEstimateInput in;
    in.queries = ConstMatrixView(q.data(), g, kDim);
    in.scale = 0.7f;
    in.centroids = ConstMatrixView(centroids.data(), static_cast<int64_t>(sizes.size()), kDim);
    in.sizes = sizes;
    in.key_norms = norms;
    in.key_spreads = spreads;
    in.selection = sel;
    if (!sinks.empty()) {
      in.exact_keys.push_back(
          ConstMatrixView(sinks.data(), static_cast<int64_t>(sinks.size()) / kDim, kDim));
    }
    return in;
  }

  // The true recall: softmax over every key, summed over the attended ones, mean over heads.
  double Truth(const std::vector<float>& q, int g, const ClusterSelection& sel, float scale) {
    double total = 0;
    for (int h = 0; h < g; ++h) {
      const float* qh = &q[h * kDim];
      auto logit = [&](const float* k, float r) {
        double dot = 0;
        for (int i = 0; i < kDim; ++i) dot += qh[i] * k[i] * r;
        return scale * dot;
      };
      double attended = 0, all = 0;
      for (size_t s = 0; s < sinks.size() / kDim; ++s) {
        const double e = std::exp(logit(&sinks[s * kDim], 1.0f));
        attended += e;
        all += e;
      }
      for (size_t c = 0; c < sizes.size(); ++c) {
        const double e = std::exp(logit(&centroids[c * kDim], norms[c]));
        all += sizes[c] * e;
        for (size_t i = 0; i < sel.clusters.size(); ++i) {
          if (sel.clusters[i] == static_cast<int32_t>(c)) attended += sel.tokens[i] * e;
        }
      }
      total += attended / all;
    }
    return total / g;
  }
};

TEST(RecallEstimateTest, EqualsTheTrueMassWhenEveryClusterKeyIsItsCentroidTimesItsNorm) {
  Exact e(6, 4);
  const std::vector<float> q = Gaussian(2, kDim, 9);
  ClusterSelection sel;
  sel.clusters = {4, 1, 5};
  sel.tokens = {e.sizes[4], e.sizes[1], e.sizes[5] / 2};  // the last truncated
  absl::StatusOr<float> got = EstimateRecall(e.Input(q, 2, &sel));
  ASSERT_TRUE(got.ok()) << got.status();
  const double truth = e.Truth(q, 2, sel, 0.7f);
  EXPECT_NEAR(*got, truth, 1e-5);
  EXPECT_GT(truth, 0.05);
  EXPECT_LT(truth, 0.95);
}

TEST(RecallEstimateTest, EverythingAttendedIsOneAndOnlySinksAreTheirShare) {
  Exact e(5, 3);
  const std::vector<float> q = Gaussian(4, kDim, 10);
  ClusterSelection all;
  for (int c = 0; c < 5; ++c) {
    all.clusters.push_back(c);
    all.tokens.push_back(e.sizes[c]);
  }
  EXPECT_NEAR(*EstimateRecall(e.Input(q, 4, &all)), 1.0, 1e-6);
  ClusterSelection none;
  const float sinks_only = *EstimateRecall(e.Input(q, 4, &none));
  EXPECT_NEAR(sinks_only, e.Truth(q, 4, none, 0.7f), 1e-5);
  Exact bare(5, 0);
  EXPECT_EQ(*EstimateRecall(bare.Input(q, 4, nullptr)), 0.0f);
}

TEST(RecallEstimateTest, SpreadRaisesAClustersMassByTheLogNormalFactor) {
  Exact e(2, 0);
  e.spreads = {0.0f, 0.3f};
  const std::vector<float> q = Gaussian(1, kDim, 11);
  ClusterSelection first;
  first.clusters = {0};
  first.tokens = {e.sizes[0]};
  double q_sq = 0, dot0 = 0, dot1 = 0;
  for (int i = 0; i < kDim; ++i) {
    q_sq += q[i] * q[i];
    dot0 += q[i] * e.centroids[i];
    dot1 += q[i] * e.centroids[kDim + i];
  }
  const double s = 0.7;
  const double m0 = e.sizes[0] * std::exp(s * e.norms[0] * dot0);
  const double m1 = e.sizes[1] * std::exp(s * e.norms[1] * dot1 + 0.5 * s * s * 0.3 * q_sq);
  EXPECT_NEAR(*EstimateRecall(e.Input(q, 1, &first)), m0 / (m0 + m1), 1e-5);
}

TEST(RecallEstimateTest, ClustersWithoutStatisticsTakeTheHeadsMeanOrUnitNorm) {
  Exact e(3, 0);
  const std::vector<float> q = Gaussian(1, kDim, 12);
  ClusterSelection sel;
  sel.clusters = {2};
  sel.tokens = {e.sizes[2]};
  // Cluster 1 unknown: it takes the mean of clusters 0 and 2.
  Exact filled = e;
  filled.norms[1] = 0.5f * (e.norms[0] + e.norms[2]);
  e.norms[1] = std::numeric_limits<float>::quiet_NaN();
  e.spreads[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NEAR(*EstimateRecall(e.Input(q, 1, &sel)), *EstimateRecall(filled.Input(q, 1, &sel)),
              1e-6);
  // None known: norm 1, spread 0.
  Exact unit = e;
  for (float& n : unit.norms) n = 1.0f;
  for (float& s : unit.spreads) s = 0.0f;
  for (float& n : e.norms) n = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NEAR(*EstimateRecall(e.Input(q, 1, &sel)), *EstimateRecall(unit.Input(q, 1, &sel)), 1e-6);
}

TEST(RecallEstimateTest, RefusesMismatchedInputs) {
  Exact e(3, 2);
  const std::vector<float> q = Gaussian(1, kDim, 13);
  ClusterSelection bad;
  bad.clusters = {3};
  bad.tokens = {1};
  EXPECT_EQ(EstimateRecall(e.Input(q, 1, &bad)).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad.clusters = {0};
  bad.tokens = {e.sizes[0] + 1};
  EXPECT_EQ(EstimateRecall(e.Input(q, 1, &bad)).status().code(),
            absl::StatusCode::kInvalidArgument);
  RecallEstimateInput short_norms = e.Input(q, 1, nullptr);
  short_norms.key_norms = short_norms.key_norms.subspan(1);
  EXPECT_EQ(EstimateRecall(short_norms).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> wide(3 * (kDim + 1));
  RecallEstimateInput wrong_dim = e.Input(q, 1, nullptr);
  wrong_dim.exact_keys = {ConstMatrixView(wide.data(), 3, kDim + 1)};
  EXPECT_EQ(EstimateRecall(wrong_dim).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KMeansKeyStatisticsTest, NormsAndSpreadsDescribeEachClustersKeys) {
  // Two directions; cluster A's keys are exactly 2 * a (spread 0), cluster B's are 3 * b plus
  // +-0.5 on one coordinate (spread 0.25 / d).
  std::vector<float> keys;
  std::vector<float> a(kDim, 0.0f), b(kDim, 0.0f);
  a[0] = 1.0f;
  b[1] = 1.0f;
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < kDim; ++j) keys.push_back(2.0f * a[j]);
  }
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < kDim; ++j) keys.push_back(3.0f * b[j] + (j == 5 ? (i % 2 ? 0.5f : -0.5f) : 0));
  }
  KMeansOptions options;
  options.num_clusters = 2;
  options.iterations = 5;
  absl::StatusOr<Clustering> c = SphericalKMeans(ConstMatrixView(keys.data(), 11, kDim), options,
                                                 ExecContext());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->key_norms.size(), 2u);
  ASSERT_EQ(c->key_spreads.size(), 2u);
  const int ca = c->labels[0], cb = c->labels[5];
  ASSERT_NE(ca, cb);
  EXPECT_NEAR(c->key_norms[ca], 2.0, 1e-5);
  EXPECT_NEAR(c->key_spreads[ca], 0.0, 1e-6);
  EXPECT_NEAR(c->key_norms[cb], std::sqrt(9.25), 1e-4);
  // Each B key minus r * unit(mean of B's unit keys): compute the reference directly.
  double spread = 0;
  const float* mu = &c->centroids[static_cast<size_t>(cb) * kDim];
  for (int i = 0; i < 6; ++i) {
    const float* k = &keys[static_cast<size_t>(5 + i) * kDim];
    for (int j = 0; j < kDim; ++j) {
      const double diff = k[j] - c->key_norms[cb] * mu[j];
      spread += diff * diff;
    }
  }
  EXPECT_NEAR(c->key_spreads[cb], spread / 6 / kDim, 1e-5);
}

}  // namespace
}  // namespace clusterkv::gpu
