// Centroid scoring (GQA), budgeted whole-cluster selection and indexing into token ranges,
// each against a straightforward reference.
#include "gpu/selection.h"

#include <cmath>
#include <vector>

#include "core/tensor_view.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace clusterkv::gpu {
namespace {

using ::clusterkv::testing::Gaussian;

TEST(ScoreCentroidsTest, SumsPerHeadSoftmaxOverClusters) {
  const int g = 4, c = 37, d = 64;
  std::vector<float> q = Gaussian(g, d, 1);
  std::vector<float> mu = Gaussian(c, d, 2);
  const float scale = 1.0f / 8.0f;
  std::vector<float> scores(c);
  ASSERT_TRUE(ScoreCentroids(ConstMatrixView(q.data(), g, d), ConstMatrixView(mu.data(), c, d),
                             scale, absl::MakeSpan(scores), ExecContext())
                  .ok());
  std::vector<double> ref(c, 0.0);
  for (int h = 0; h < g; ++h) {
    std::vector<double> logit(c);
    double mx = -1e30, total = 0;
    for (int j = 0; j < c; ++j) {
      double s = 0;
      for (int i = 0; i < d; ++i) s += double(q[h * d + i]) * mu[j * d + i];
      logit[j] = s * scale;
      mx = std::max(mx, logit[j]);
    }
    for (int j = 0; j < c; ++j) total += std::exp(logit[j] - mx);
    for (int j = 0; j < c; ++j) ref[j] += std::exp(logit[j] - mx) / total;
  }
  double sum = 0;
  for (int j = 0; j < c; ++j) {
    EXPECT_NEAR(scores[j], ref[j], 1e-5);
    sum += scores[j];
  }
  EXPECT_NEAR(sum, g, 1e-4);  // each query head contributes one unit of probability
}

TEST(ScoreCentroidsTest, HalfQueriesAndBadInput) {
  const int g = 2, c = 5, d = 8;
  std::vector<float> q = Gaussian(g, d, 3);
  std::vector<float> mu = Gaussian(c, d, 4);
  std::vector<uint8_t> q16 = EncodeAs(q, DType::kFloat16);
  std::vector<float> a(c), b(c);
  ASSERT_TRUE(ScoreCentroids(ConstMatrixView(q.data(), g, d), ConstMatrixView(mu.data(), c, d),
                             0.5f, absl::MakeSpan(a), ExecContext())
                  .ok());
  ASSERT_TRUE(ScoreCentroids(ConstMatrixView(q16.data(), DType::kFloat16, g, d),
                             ConstMatrixView(mu.data(), c, d), 0.5f, absl::MakeSpan(b),
                             ExecContext())
                  .ok());
  for (int j = 0; j < c; ++j) EXPECT_NEAR(a[j], b[j], 2e-3);

  std::vector<float> wrong(4);
  EXPECT_EQ(ScoreCentroids(ConstMatrixView(q.data(), g, d), ConstMatrixView(mu.data(), c, d),
                           0.5f, absl::MakeSpan(wrong), ExecContext())
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ScoreCentroids(ConstMatrixView(q.data(), g, d - 1),
                           ConstMatrixView(mu.data(), c, d), 0.5f, absl::MakeSpan(a),
                           ExecContext())
                .code(),
            absl::StatusCode::kInvalidArgument);
  q[3] = std::nanf("");
  EXPECT_EQ(ScoreCentroids(ConstMatrixView(q.data(), g, d), ConstMatrixView(mu.data(), c, d),
                           0.5f, absl::MakeSpan(a), ExecContext())
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SelectClustersTest, TakesWholeClustersByScoreAndTruncatesTheLast) {
  const std::vector<float> scores = {0.1f, 0.9f, 0.5f, 0.7f};
  const std::vector<int32_t> sizes = {10, 4, 6, 5};
  auto sel = SelectClusters(scores, sizes, 12);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_EQ(sel->clusters, (std::vector<int32_t>{1, 3, 2}));
  EXPECT_EQ(sel->tokens, (std::vector<int32_t>{4, 5, 3}));
  EXPECT_EQ(sel->total_tokens, 12);
}

TEST(SelectClustersTest, BudgetExactlyAtAClusterBoundary) {
  const std::vector<float> scores = {0.1f, 0.9f, 0.5f, 0.7f};
  const std::vector<int32_t> sizes = {10, 4, 6, 5};
  auto sel = SelectClusters(scores, sizes, 9);
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(sel->clusters, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(sel->tokens, (std::vector<int32_t>{4, 5}));
  // The whole context.
  sel = SelectClusters(scores, sizes, 25);
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(sel->clusters.size(), 4u);
}

TEST(SelectClustersTest, TiesBreakByIdAndEmptyClustersAreSkipped) {
  const std::vector<float> scores = {0.5f, 0.9f, 0.5f, 0.5f};
  const std::vector<int32_t> sizes = {2, 0, 2, 2};
  auto sel = SelectClusters(scores, sizes, 3);
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(sel->clusters, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(sel->tokens, (std::vector<int32_t>{2, 1}));
}

TEST(SelectClustersTest, RejectsBadBudgetsAndInputs) {
  const std::vector<float> scores = {0.5f, 0.2f};
  const std::vector<int32_t> sizes = {3, 4};
  EXPECT_EQ(SelectClusters(scores, sizes, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectClusters(scores, sizes, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectClusters(scores, std::vector<int32_t>{3}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectClusters(scores, std::vector<int32_t>{3, -1}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectClusters(std::vector<float>{std::nanf(""), 1.0f}, sizes, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SelectionToRangesTest, MapsThroughPrefixSums) {
  // sizes 10, 4, 6, 5 -> offsets 0, 10, 14, 20, 25.
  const std::vector<int32_t> offsets = {0, 10, 14, 20, 25};
  ClusterSelection sel;
  sel.clusters = {1, 3, 2};
  sel.tokens = {4, 5, 3};
  auto ranges = SelectionToRanges(sel, offsets);
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  // Clusters 2 (truncated to 3 rows) and 3 are not adjacent: [14,17) and [20,25); cluster 1 is
  // [10,14) and touches cluster 2's start, so they merge.
  EXPECT_EQ(*ranges, (std::vector<TokenRange>{{10, 17}, {20, 25}}));
  EXPECT_EQ(TotalTokens(*ranges), 12);

  sel.clusters = {4};
  sel.tokens = {1};
  EXPECT_EQ(SelectionToRanges(sel, offsets).status().code(), absl::StatusCode::kInvalidArgument);
  sel.clusters = {0};
  sel.tokens = {11};
  EXPECT_EQ(SelectionToRanges(sel, offsets).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clusterkv::gpu
