// Decode attention over spans against a double-precision reference; split spans, threads and
// dtypes must not change the result beyond rounding.
#include "gpu/attention.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace clusterkv::gpu {
namespace {

using ::clusterkv::testing::Gaussian;

std::vector<double> ReferenceAttention(const std::vector<float>& q, int g, const std::vector<float>& k,
                                       const std::vector<float>& v, int64_t n, int d, float scale,
                                       const std::vector<TokenRange>& ranges) {
  std::vector<double> out(g * d, 0.0);
  for (int h = 0; h < g; ++h) {
    double mx = -1e300;
    std::vector<std::pair<int64_t, double>> logits;
    for (const TokenRange& r : ranges) {
      for (int64_t t = r.begin; t < r.end; ++t) {
        double s = 0;
        for (int i = 0; i < d; ++i) s += double(q[h * d + i]) * k[t * d + i];
        logits.push_back({t, s * scale});
        mx = std::max(mx, s * scale);
      }
    }
    double total = 0;
    for (auto& [t, s] : logits) total += std::exp(s - mx);
    for (auto& [t, s] : logits) {
      const double w = std::exp(s - mx) / total;
      for (int i = 0; i < d; ++i) out[h * d + i] += w * v[t * d + i];
    }
  }
  return out;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

class AttentionTest : public ::testing::Test {
 protected:
  static constexpr int kG = 4, kD = 64;
  static constexpr int64_t kN = 9000;
  std::vector<float> q_ = Gaussian(kG, kD, 1);
  std::vector<float> k_ = Gaussian(kN, kD, 2);
  std::vector<float> v_ = Gaussian(kN, kD, 3);
  float scale_ = 1.0f / 8.0f;
  KvSpan All() const {
    return KvSpan{ConstMatrixView(k_.data(), kN, kD), ConstMatrixView(v_.data(), kN, kD)};
  }
};

TEST_F(AttentionTest, FullAttentionMatchesReferenceForAnyThreadCount) {
  const std::vector<double> ref = ReferenceAttention(q_, kG, k_, v_, kN, kD, scale_, {{0, kN}});
  for (int threads : {1, 2, 3}) {
    std::vector<float> out(kG * kD);
    AttentionTask task{ConstMatrixView(q_.data(), kG, kD), {All()}, scale_,
                       MatrixView(out.data(), kG, kD)};
    ExecContext ctx;
    ctx.threads = threads;
    ASSERT_TRUE(Attention(task, ctx).ok());
    EXPECT_LT(MaxAbsDiff(out, ref), 1e-5) << threads << " threads";
  }
}

TEST_F(AttentionTest, SparseSpansMatchReferenceOverTheSameTokens) {
  const std::vector<TokenRange> ranges = {{0, 16}, {100, 180}, {181, 182}, {5000, 5900}, {8680, kN}};
  auto spans = SpansOfRanges(All(), ranges);
  ASSERT_TRUE(spans.ok());
  std::vector<float> out(kG * kD);
  AttentionTask task{ConstMatrixView(q_.data(), kG, kD), *spans, scale_,
                     MatrixView(out.data(), kG, kD)};
  ASSERT_TRUE(Attention(task, ExecContext()).ok());
  EXPECT_LT(MaxAbsDiff(out, ReferenceAttention(q_, kG, k_, v_, kN, kD, scale_, ranges)), 1e-5);
}

TEST_F(AttentionTest, SingleTokenReturnsItsValue) {
  std::vector<float> out(kG * kD);
  AttentionTask task{ConstMatrixView(q_.data(), kG, kD),
                     {KvSpan{ConstMatrixView(k_.data(), 1, kD), ConstMatrixView(v_.data(), 1, kD)}},
                     scale_, MatrixView(out.data(), kG, kD)};
  ASSERT_TRUE(Attention(task, ExecContext()).ok());
  for (int h = 0; h < kG; ++h) {
    for (int i = 0; i < kD; ++i) EXPECT_FLOAT_EQ(out[h * kD + i], v_[i]);
  }
}

TEST_F(AttentionTest, HalfAndBFloat16KvMatchTheirFp32Rounding) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    std::vector<uint8_t> k16 = EncodeAs(k_, dtype), v16 = EncodeAs(v_, dtype);
    // Reference on the rounded values.
    std::vector<float> kr(k_.size()), vr(v_.size());
    ConvertToFloat(k16.data(), dtype, kr.size(), kr.data());
    ConvertToFloat(v16.data(), dtype, vr.size(), vr.data());
    std::vector<float> out(kG * kD);
    AttentionTask task{ConstMatrixView(q_.data(), kG, kD),
                       {KvSpan{ConstMatrixView(k16.data(), dtype, kN, kD),
                               ConstMatrixView(v16.data(), dtype, kN, kD)}},
                       scale_, MatrixView(out.data(), kG, kD)};
    ASSERT_TRUE(Attention(task, ExecContext()).ok());
    EXPECT_LT(MaxAbsDiff(out, ReferenceAttention(q_, kG, kr, vr, kN, kD, scale_, {{0, kN}})), 1e-5)
        << DTypeName(dtype);
  }
}

TEST_F(AttentionTest, BatchEqualsIndividualTasks) {
  std::vector<float> a(kG * kD), b(kG * kD), c(kG * kD);
  auto spans = SpansOfRanges(All(), std::vector<TokenRange>{{10, 2000}});
  ASSERT_TRUE(spans.ok());
  std::vector<AttentionTask> tasks = {
      {ConstMatrixView(q_.data(), kG, kD), {All()}, scale_, MatrixView(a.data(), kG, kD)},
      {ConstMatrixView(q_.data(), kG, kD), *spans, scale_, MatrixView(b.data(), kG, kD)}};
  ExecContext ctx;
  ctx.threads = 2;
  ASSERT_TRUE(AttentionBatch(tasks, ctx).ok());
  tasks[1].out = MatrixView(c.data(), kG, kD);
  ASSERT_TRUE(Attention(tasks[1], ExecContext()).ok());
  EXPECT_EQ(b, c);
}

TEST_F(AttentionTest, RejectsBadInput) {
  std::vector<float> out(kG * kD);
  AttentionTask task{ConstMatrixView(q_.data(), kG, kD), {}, scale_, MatrixView(out.data(), kG, kD)};
  EXPECT_EQ(Attention(task, ExecContext()).code(), absl::StatusCode::kInvalidArgument);  // no tokens
  task.spans = {KvSpan{ConstMatrixView(k_.data(), 10, kD), ConstMatrixView(v_.data(), 9, kD)}};
  EXPECT_EQ(Attention(task, ExecContext()).code(), absl::StatusCode::kInvalidArgument);
  task.spans = {All()};
  task.out = MatrixView(out.data(), kG, kD - 1);
  EXPECT_EQ(Attention(task, ExecContext()).code(), absl::StatusCode::kInvalidArgument);
  task.out = MatrixView(out.data(), kG, kD);
  std::vector<float> bad_q = q_;
  bad_q[5] = INFINITY;
  task.queries = ConstMatrixView(bad_q.data(), kG, kD);
  EXPECT_EQ(Attention(task, ExecContext()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SpansOfRanges(All(), std::vector<TokenRange>{{0, kN + 1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AttentionTest, WeightsAreASoftmax) {
  const int64_t n = 300;
  std::vector<float> probs(kG * n);
  ASSERT_TRUE(AttentionWeights(ConstMatrixView(q_.data(), kG, kD), ConstMatrixView(k_.data(), n, kD),
                               scale_, MatrixView(probs.data(), kG, n), 2)
                  .ok());
  for (int h = 0; h < kG; ++h) {
    double total = 0;
    for (int64_t t = 0; t < n; ++t) total += probs[h * n + t];
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
  // Weighted values equal attention output.
  std::vector<float> out(kG * kD);
  AttentionTask task{ConstMatrixView(q_.data(), kG, kD),
                     {KvSpan{ConstMatrixView(k_.data(), n, kD), ConstMatrixView(v_.data(), n, kD)}},
                     scale_, MatrixView(out.data(), kG, kD)};
  ASSERT_TRUE(Attention(task, ExecContext()).ok());
  for (int i = 0; i < kD; ++i) {
    double o = 0;
    for (int64_t t = 0; t < n; ++t) o += probs[t] * v_[t * kD + i];
    EXPECT_NEAR(out[i], o, 1e-5);
  }
}

}  // namespace
}  // namespace clusterkv::gpu
