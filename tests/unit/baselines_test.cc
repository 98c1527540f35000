// Oracle, Quest and StreamingLLM selections against brute-force references.
#include "gpu/baselines.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "gpu/attention.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace clusterkv::gpu {
namespace {

using ::clusterkv::testing::Gaussian;

std::vector<int64_t> Tokens(const std::vector<TokenRange>& ranges) {
  std::vector<int64_t> out;
  for (const TokenRange& r : ranges) {
    for (int64_t t = r.begin; t < r.end; ++t) out.push_back(t);
  }
  return out;
}

TEST(StreamingLlmTest, SinksPlusRecentWindow) {
  auto sel = StreamingLlmSelect(100, 4, 10);
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(*sel, (std::vector<TokenRange>{{0, 4}, {90, 100}}));
  sel = StreamingLlmSelect(14, 4, 10);  // the window reaches the sinks: one range
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(*sel, (std::vector<TokenRange>{{0, 14}}));
  EXPECT_EQ(StreamingLlmSelect(14, 4, 11).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StreamingLlmSelect(14, 4, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OracleTest, PicksTheHighestSummedWeights) {
  const int g = 2, d = 16;
  const int64_t n = 500;
  std::vector<float> q = Gaussian(g, d, 1), k = Gaussian(n, d, 2);
  const float scale = 0.25f;
  auto sel = OracleTopKSelect(ConstMatrixView(q.data(), g, d), ConstMatrixView(k.data(), n, d),
                              scale, 8, 40);
  ASSERT_TRUE(sel.ok()) << sel.status();
  std::vector<float> probs(g * n);
  ASSERT_TRUE(AttentionWeights(ConstMatrixView(q.data(), g, d), ConstMatrixView(k.data(), n, d),
                               scale, MatrixView(probs.data(), g, n), 1)
                  .ok());
  std::vector<double> w(n);
  for (int64_t t = 0; t < n; ++t) w[t] = probs[t] + probs[n + t];
  std::vector<int64_t> ids(n - 8);
  std::iota(ids.begin(), ids.end(), 8);
  std::sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return w[a] > w[b]; });
  std::vector<int64_t> expected(ids.begin(), ids.begin() + 40);
  for (int64_t t = 0; t < 8; ++t) expected.push_back(t);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(Tokens(*sel), expected);
}

TEST(QuestTest, PagesKeepChannelBoundsAndScoresAreUpperBounds) {
  const int d = 8;
  const int64_t n = 16 * 5 + 3 + 4;  // 4 sinks, 5 full pages and a partial one
  std::vector<float> k = Gaussian(n, d, 3);
  auto index = BuildQuestIndex(ConstMatrixView(k.data(), n, d), 4, 16);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->num_pages(), 6);
  for (int64_t t = 4; t < n; ++t) {
    const int64_t p = (t - 4) / 16;
    for (int i = 0; i < d; ++i) {
      EXPECT_LE(index->min[p * d + i], k[t * d + i]);
      EXPECT_GE(index->max[p * d + i], k[t * d + i]);
    }
  }
}

TEST(QuestTest, SelectsPagesByBoundAndTruncatesTheLast) {
  const int d = 4;
  const int64_t n = 2 + 4 * 3;  // 2 sinks, 3 pages of 4
  std::vector<float> k(n * d, 0.0f);
  // Page 1 (tokens 6..9) holds the key aligned with the query; page 2 some of it.
  for (int64_t t = 6; t < 10; ++t) k[t * d] = 5.0f;
  for (int64_t t = 10; t < 14; ++t) k[t * d] = 1.0f;
  std::vector<float> q = {1, 0, 0, 0};
  auto index = BuildQuestIndex(ConstMatrixView(k.data(), n, d), 2, 4);
  ASSERT_TRUE(index.ok());
  auto sel = QuestSelect(*index, ConstMatrixView(q.data(), 1, d), 6);
  ASSERT_TRUE(sel.ok()) << sel.status();
  EXPECT_EQ(*sel, (std::vector<TokenRange>{{0, 2}, {6, 12}}));
  EXPECT_EQ(QuestSelect(*index, ConstMatrixView(q.data(), 1, d), 13).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildQuestIndex(ConstMatrixView(k.data(), n, d), 2, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(QuestTest, OracleCoversAtLeastAsMuchMassAsQuest) {
  const int g = 4, d = 32;
  const int64_t n = 2048;
  std::vector<float> q = Gaussian(g, d, 7), k = Gaussian(n, d, 8);
  const float scale = 1.0f / std::sqrt(float(d));
  std::vector<float> probs(g * n);
  ASSERT_TRUE(AttentionWeights(ConstMatrixView(q.data(), g, d), ConstMatrixView(k.data(), n, d),
                               scale, MatrixView(probs.data(), g, n), 1)
                  .ok());
  auto mass = [&](const std::vector<TokenRange>& ranges) {
    double m = 0;
    for (int64_t t : Tokens(ranges)) {
      for (int h = 0; h < g; ++h) m += probs[h * n + t];
    }
    return m;
  };
  auto index = BuildQuestIndex(ConstMatrixView(k.data(), n, d), 16, 16);
  ASSERT_TRUE(index.ok());
  auto quest = QuestSelect(*index, ConstMatrixView(q.data(), g, d), 256);
  auto oracle = OracleTopKSelect(ConstMatrixView(q.data(), g, d), ConstMatrixView(k.data(), n, d),
                                 scale, 16, 256);
  ASSERT_TRUE(quest.ok() && oracle.ok());
  EXPECT_EQ(TotalTokens(*quest), 16 + 256);
  EXPECT_EQ(TotalTokens(*oracle), 16 + 256);
  EXPECT_GE(mass(*oracle), mass(*quest));
}

}  // namespace
}  // namespace clusterkv::gpu
