// Adaptive per-head budgets (gpu/adaptive_budget.h): the recall curve along the score order, the
// tokens a target needs, and the water-filling that keeps a layer's heads within their cap.
#include "gpu/adaptive_budget.h"

#include <cstdint>
#include <numeric>
#include <vector>

#include "gpu/recall_estimate.h"
#include "gpu/selection.h"
#include "gtest/gtest.h"

namespace clusterkv::gpu {
namespace {

// One query head; exact mass `exact` and cluster masses `cluster` (already relative).
ClusterMasses Masses(double exact, std::vector<double> cluster) {
  ClusterMasses m;
  m.num_query_heads = 1;
  m.num_clusters = static_cast<int32_t>(cluster.size());
  m.exact = {exact};
  m.total = {exact + std::accumulate(cluster.begin(), cluster.end(), 0.0)};
  m.cluster = std::move(cluster);
  m.no_clustered_tokens = false;
  return m;
}

// A curve whose clusters of `sizes` tokens add `gains` of recall each, from `start`.
RecallCurve Curve(double start, const std::vector<int64_t>& sizes,
                  const std::vector<double>& gains) {
  RecallCurve c;
  c.tokens = {0};
  c.recall = {start};
  for (size_t i = 0; i < sizes.size(); ++i) {
    c.tokens.push_back(c.tokens.back() + sizes[i]);
    c.recall.push_back(c.recall.back() + gains[i]);
  }
  return c;
}

TEST(RecallCurveTest, FollowsTheScoreOrderAndAgreesWithRecallOf) {
  const std::vector<int32_t> sizes = {10, 20, 30, 40};
  const ClusterMasses m = Masses(1.0, {4.0, 1.0, 2.0, 2.0});
  const std::vector<float> scores = {0.9f, 0.1f, 0.5f, 0.3f};  // order 0, 2, 3, 1
  absl::StatusOr<ClusterSelection> order = SelectClusters(scores, sizes, 100);
  ASSERT_TRUE(order.ok()) << order.status();
  const RecallCurve curve = MakeRecallCurve(m, *order, sizes);
  ASSERT_EQ(curve.tokens, (std::vector<int64_t>{0, 10, 40, 80, 100}));
  EXPECT_DOUBLE_EQ(curve.recall[0], 0.1);
  EXPECT_DOUBLE_EQ(curve.recall[1], 0.5);
  EXPECT_DOUBLE_EQ(curve.recall[2], 0.7);
  EXPECT_DOUBLE_EQ(curve.recall[3], 0.9);
  EXPECT_DOUBLE_EQ(curve.recall[4], 1.0);
  // Every prefix of the order, truncated or not, has the recall RecallOf gives it.
  for (int64_t budget : {1, 10, 25, 40, 79, 100}) {
    const ClusterSelection sel = TruncateSelection(*order, budget);
    EXPECT_EQ(sel.total_tokens, budget);
    const double at = m.RecallOf(&sel, sizes);
    // Linear between the points of the curve.
    size_t i = 1;
    while (curve.tokens[i] < budget) ++i;
    const double share = static_cast<double>(budget - curve.tokens[i - 1]) /
                         static_cast<double>(curve.tokens[i] - curve.tokens[i - 1]);
    EXPECT_NEAR(at, curve.recall[i - 1] + share * (curve.recall[i] - curve.recall[i - 1]), 1e-6)
        << budget;
  }
}

TEST(RecallCurveTest, TokensForATarget) {
  const RecallCurve c = Curve(0.125, {10, 30, 40, 20}, {0.375, 0.25, 0.125, 0.125});
  EXPECT_EQ(c.TokensFor(0.0625), 0);  // the windows alone reach it
  EXPECT_EQ(c.TokensFor(0.5), 10);
  EXPECT_EQ(c.TokensFor(0.625), 10 + 15);  // half of the second cluster's gain
  EXPECT_EQ(c.TokensFor(0.875), 80);
  EXPECT_EQ(c.TokensFor(1.0), 100);
  EXPECT_EQ(c.total_tokens(), 100);
  const RecallCurve short_of_it = Curve(0.0, {10, 10}, {0.5, 0.25});
  EXPECT_EQ(short_of_it.TokensFor(0.9), 20);  // never reached: every token
}

TEST(PlanBudgetsTest, EachHeadTakesWhatItsTargetNeedsWithinItsLimits) {
  // Head 0 is concentrated (reaches 0.9 after 10 tokens); head 1 is spread out.
  const std::vector<RecallCurve> curves = {
      Curve(0.2, {10, 50, 50, 50}, {0.75, 0.02, 0.02, 0.01}),
      Curve(0.0, {50, 50, 50, 50}, {0.25, 0.25, 0.25, 0.25})};
  BudgetLimits limits;
  limits.target = 0.9;
  limits.min_tokens = 20;
  limits.max_tokens = 1000;
  limits.total_tokens = 1000;
  EXPECT_EQ(PlanBudgets(curves, limits), (std::vector<int64_t>{20, 180}));  // B_min lifts head 0
  limits.max_tokens = 150;
  EXPECT_EQ(PlanBudgets(curves, limits), (std::vector<int64_t>{20, 150}));  // B_max caps head 1
}

TEST(PlanBudgetsTest, ACapTooSmallGoesToTheMostRecallPerToken) {
  const std::vector<RecallCurve> curves = {Curve(0.0, {100, 100}, {0.5, 0.5}),
                                           Curve(0.0, {100, 100}, {0.75, 0.25}),
                                           Curve(0.0, {200}, {1.0})};
  BudgetLimits limits;
  limits.target = 0.95;
  limits.min_tokens = 1;
  limits.max_tokens = 200;
  limits.total_tokens = 300;
  // Head 1's first cluster gains the most per token and is taken whole; then heads 0 and 2 gain
  // the same per token and the lower one goes first, up to what its target needs (190 tokens);
  // head 2 gets the rest of the cap.
  EXPECT_EQ(PlanBudgets(curves, limits), (std::vector<int64_t>{190, 100, 10}));
  limits.total_tokens = 1000;  // room for every need
  EXPECT_EQ(PlanBudgets(curves, limits), (std::vector<int64_t>{190, 180, 190}));
}

TEST(PlanBudgetsTest, MinimumsBeyondTheCapAreKeptAndSmallHeadsAreBoundedByTheirTokens) {
  const std::vector<RecallCurve> curves = {Curve(0.0, {100}, {1.0}), Curve(0.0, {5}, {1.0})};
  BudgetLimits limits;
  limits.target = 0.5;
  limits.min_tokens = 80;
  limits.max_tokens = 400;
  limits.total_tokens = 50;
  EXPECT_EQ(PlanBudgets(curves, limits), (std::vector<int64_t>{80, 5}));
}

}  // namespace
}  // namespace clusterkv::gpu
