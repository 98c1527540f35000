// The synthetic K/V/Q generator of tools/clusterkv_eval: deterministic for a seed (and
// independent of the thread count), documented shapes, finite values, the calibrated softmax
// peak, and the RNG's basic statistics.
#include "tools/clusterkv_eval/synthetic.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace clusterkv::eval {
namespace {

SyntheticOptions Small() {
  SyntheticOptions o;
  o.context = 2048;
  o.num_layers = 2;
  o.num_kv_heads = 2;
  o.num_q_heads = 6;
  o.head_dim = 64;
  o.num_queries = 3;
  o.num_topics = 40;
  o.seed = 11;
  o.threads = 1;
  return o;
}

TEST(SyntheticTest, ShapesFollowTheDumpLayout) {
  absl::StatusOr<LayerTensors> t = GenerateSyntheticLayer(Small(), 1);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(t->Validate().ok());
  EXPECT_EQ(t->k.shape, (std::vector<int64_t>{2, 2048, 64}));
  EXPECT_EQ(t->v.shape, (std::vector<int64_t>{2, 2048, 64}));
  EXPECT_EQ(t->q.shape, (std::vector<int64_t>{6, 3, 64}));
  EXPECT_EQ(t->group_size(), 3);
}

TEST(SyntheticTest, DeterministicForASeedAndThreadCount) {
  SyntheticOptions o = Small();
  absl::StatusOr<LayerTensors> a = GenerateSyntheticLayer(o, 0);
  o.threads = 2;
  absl::StatusOr<LayerTensors> b = GenerateSyntheticLayer(o, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->k.data, b->k.data);
  EXPECT_EQ(a->v.data, b->v.data);
  EXPECT_EQ(a->q.data, b->q.data);

  o.seed = 12;
  absl::StatusOr<LayerTensors> c = GenerateSyntheticLayer(o, 0);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->k.data, c->k.data);
  absl::StatusOr<LayerTensors> other_layer = GenerateSyntheticLayer(Small(), 1);
  ASSERT_TRUE(other_layer.ok());
  EXPECT_NE(a->k.data, other_layer->k.data);
}

TEST(SyntheticTest, ValuesAreFiniteAndNotDegenerate) {
  for (RopeStyle style : {RopeStyle::kRotateHalf, RopeStyle::kAdjacent}) {
    SyntheticOptions o = Small();
    o.rope_style = style;
    absl::StatusOr<LayerTensors> t = GenerateSyntheticLayer(o, 0);
    ASSERT_TRUE(t.ok()) << t.status();
    for (const NpyArray* a : {&t->k, &t->v, &t->q}) {
      EXPECT_TRUE(a->View3().Slice(0).CheckFinite("tensor").ok());
      const ConstMatrixView m(a->data.data(), a->dtype, a->NumElements() / a->shape[2],
                              a->shape[2]);
      EXPECT_TRUE(m.CheckFinite("tensor").ok());
      double sum2 = 0.0;
      for (int64_t r = 0; r < m.rows; ++r) {
        for (int64_t c = 0; c < m.cols; ++c) sum2 += m.At(r, c) * m.At(r, c);
      }
      EXPECT_GT(sum2 / static_cast<double>(m.rows), 0.1);
    }
  }
}

// The group's base query is calibrated so that the top 1/32 of the tokens hold peak_mass; the
// G perturbed heads should stay near it (peaked, but not one-hot).
TEST(SyntheticTest, AttentionIsPeakedAsCalibrated) {
  SyntheticOptions o = Small();
  o.context = 4096;
  absl::StatusOr<LayerTensors> t = GenerateSyntheticLayer(o, 0);
  ASSERT_TRUE(t.ok());
  const int64_t n = t->tokens(), d = t->head_dim(), top = n / 32;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  double mass_sum = 0.0;
  int samples = 0;
  for (int64_t h = 0; h < t->num_kv_heads(); ++h) {
    const ConstMatrixView keys = t->Keys(h);
    for (int64_t s = 0; s < t->num_queries(); ++s) {
      const ConstMatrixView q = t->GroupQueries(h, s);
      for (int64_t g = 0; g < q.rows; ++g) {
        std::vector<double> logits(n);
        for (int64_t i = 0; i < n; ++i) {
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) dot += q.At(g, c) * keys.At(i, c);
          logits[i] = dot * scale;
        }
        const double mx = *std::max_element(logits.begin(), logits.end());
        double all = 0.0;
        for (double& l : logits) all += (l = std::exp(l - mx));
        std::nth_element(logits.begin(), logits.begin() + top, logits.end(),
                         std::greater<double>());
        double head = 0.0;
        for (int64_t i = 0; i < top; ++i) head += logits[i];
        mass_sum += head / all;
        ++samples;
      }
    }
  }
  const double mean = mass_sum / samples;
  EXPECT_GT(mean, 0.6);
  EXPECT_LT(mean, 0.95);
}

TEST(SyntheticTest, RejectsInvalidOptions) {
  SyntheticOptions o = Small();
  o.num_q_heads = 5;
  EXPECT_EQ(GenerateSyntheticLayer(o, 0).status().code(), absl::StatusCode::kInvalidArgument);
  o = Small();
  o.head_dim = 63;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = Small();
  o.peak_mass = 1.5;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GenerateSyntheticLayer(Small(), 2).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SyntheticTest, SourceListsEveryLayer) {
  SyntheticSource source(Small());
  EXPECT_EQ(source.layers(), (std::vector<int32_t>{0, 1}));
  EXPECT_TRUE(source.Load(1).ok());
}

TEST(RngTest, DeterministicAndRoughlyStandardNormal) {
  Rng a(5), b(5), c(6);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Next(), b.Next());
  EXPECT_NE(Rng(5).Next(), c.Next());
  Rng r(42);
  const int n = 200000;
  double sum = 0.0, sum2 = 0.0;
  for (int i = 0; i < n; ++i) {
    const double x = r.Normal();
    sum += x;
    sum2 += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.02);
  for (int i = 0; i < 1000; ++i) {
    const double u = r.Uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    EXPECT_LT(r.Below(7), 7u);
  }
}

}  // namespace
}  // namespace clusterkv::eval
