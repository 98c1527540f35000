// clusterkv_llama's dense ops and attention against naive references written from the
// definitions (Hugging Face's rotate_half RoPE, llama.cpp's pairwise RoPE, softmax attention).
#include <cmath>
#include <vector>

#include "gpu/backend.h"
#include "gtest/gtest.h"
#include "tests/unit/llama_test_util.h"
#include "tools/clusterkv_llama/attention.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/ops.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {
namespace {

using testing::RandomVector;
using testing::TinyConfig;

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << "at " << i;
  }
}

TEST(LlamaOpsTest, MatMulMatchesNaiveForAllTileRemainders) {
  for (int64_t rows : {1, 2, 3, 4, 7}) {
    for (int64_t out : {1, 3, 5, 13, 70}) {
      for (int64_t in : {1, 7, 8, 9, 33}) {
        const std::vector<float> x = RandomVector(rows * in, 1 + rows);
        const std::vector<float> w = RandomVector(out * in, 2 + out);
        std::vector<float> want(rows * out);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = 0; o < out; ++o) {
            double s = 0;
            for (int64_t i = 0; i < in; ++i) s += double(x[r * in + i]) * w[o * in + i];
            want[r * out + o] = static_cast<float>(s);
          }
        }
        for (int threads : {1, 2}) {
          std::vector<float> got(rows * out, -1.0f);
          MatMul(x.data(), rows, w.data(), out, in, got.data(), threads);
          ExpectNear(got, want, 1e-5);
        }
      }
    }
  }
}

TEST(LlamaOpsTest, RmsNormMatchesDefinition) {
  const std::vector<float> x = RandomVector(37, 3, 2.0f), w = RandomVector(37, 4);
  std::vector<float> got(37);
  RmsNorm(x.data(), w.data(), 37, 1e-5f, got.data());
  double ms = 0;
  for (float v : x) ms += double(v) * v;
  ms /= 37;
  std::vector<float> want(37);
  for (int i = 0; i < 37; ++i) want[i] = static_cast<float>(x[i] / std::sqrt(ms + 1e-5) * w[i]);
  ExpectNear(got, want, 1e-6);
  // In place.
  std::vector<float> y = x;
  RmsNorm(y.data(), w.data(), 37, 1e-5f, y.data());
  ExpectNear(y, want, 1e-6);
}

TEST(LlamaOpsTest, SwiGluMatchesDefinition) {
  const std::vector<float> g = RandomVector(50, 5, 3.0f), u = RandomVector(50, 6);
  std::vector<float> got(50);
  SwiGlu(g.data(), u.data(), 50, got.data());
  std::vector<float> want(50);
  for (int i = 0; i < 50; ++i)
    want[i] = static_cast<float>(g[i] / (1.0 + std::exp(-double(g[i]))) * u[i]);
  ExpectNear(got, want, 1e-6);
}

// transformers: q_embed = q * cos + rotate_half(q) * sin, cos/sin = cat(freqs, freqs).
std::vector<float> HfRope(const std::vector<float>& x, int d, int64_t pos, double theta,
                          const std::vector<float>& factors = {}) {
  std::vector<float> out(d);
  for (int j = 0; j < d; ++j) {
    const int i = j % (d / 2);
    double inv = std::pow(theta, -2.0 * i / d);
    if (!factors.empty()) inv /= factors[i];
    const double a = pos * inv;
    const double rot = j < d / 2 ? -x[j + d / 2] : x[j - d / 2];
    out[j] = static_cast<float>(x[j] * std::cos(a) + rot * std::sin(a));
  }
  return out;
}

// llama.cpp rope (NORM): pairs (i0, i0 + 1) rotated by pos * base^(-i0 / d).
std::vector<float> GgmlRope(const std::vector<float>& x, int d, int64_t pos, double theta) {
  std::vector<float> out(d);
  for (int i0 = 0; i0 < d; i0 += 2) {
    const double a = pos * std::pow(theta, -double(i0) / d);
    out[i0] = static_cast<float>(x[i0] * std::cos(a) - x[i0 + 1] * std::sin(a));
    out[i0 + 1] = static_cast<float>(x[i0] * std::sin(a) + x[i0 + 1] * std::cos(a));
  }
  return out;
}

TEST(LlamaOpsTest, RopeRotateHalfMatchesTransformers) {
  ModelConfig c = TinyConfig();
  c.head_dim = 16;
  RopeTable rope(c);
  for (int64_t pos : {0, 1, 17, 3000}) {
    std::vector<float> x = RandomVector(2 * 16, 7 + pos);  // two heads
    std::vector<float> got = x;
    rope.Apply(got.data(), 2, pos, RopeStyle::kRotateHalf);
    for (int h = 0; h < 2; ++h) {
      const std::vector<float> head(x.begin() + h * 16, x.begin() + (h + 1) * 16);
      ExpectNear(std::vector<float>(got.begin() + h * 16, got.begin() + (h + 1) * 16),
                 HfRope(head, 16, pos, c.rope_theta), 1e-5);
    }
  }
}

TEST(LlamaOpsTest, RopeInterleavedMatchesGgml) {
  ModelConfig c = TinyConfig();
  c.head_dim = 16;
  RopeTable rope(c);
  for (int64_t pos : {0, 5, 4095}) {
    const std::vector<float> x = RandomVector(16, 11 + pos);
    std::vector<float> got = x;
    rope.Apply(got.data(), 1, pos, RopeStyle::kInterleaved);
    ExpectNear(got, GgmlRope(x, 16, pos, c.rope_theta), 1e-5);
  }
}

// The GGUF converter's Q/K row permutation turns one convention into the other: rotating the
// permuted vector pairwise equals permuting the rotate-half result, so q.k is unchanged.
TEST(LlamaOpsTest, QkPermutationMapsRotateHalfToInterleaved) {
  ModelConfig c = TinyConfig();
  c.head_dim = 16;
  RopeTable rope(c);
  const std::vector<float> q = RandomVector(16, 21), k = RandomVector(16, 22);
  // A [16, 1] "weight" is a vector: permuting its rows permutes the vector.
  const std::vector<float> qp = PermuteQkToInterleaved(q, 1, 16, 1);
  const std::vector<float> kp = PermuteQkToInterleaved(k, 1, 16, 1);
  EXPECT_EQ(PermuteQkToRotateHalf(qp, 1, 16, 1), q);
  EXPECT_EQ(qp[0], q[0]);
  EXPECT_EQ(qp[1], q[8]);
  EXPECT_EQ(qp[2], q[1]);
  std::vector<float> qh = q, kh = k, qi = qp, ki = kp;
  rope.Apply(qh.data(), 1, 123, RopeStyle::kRotateHalf);
  rope.Apply(kh.data(), 1, 45, RopeStyle::kRotateHalf);
  rope.Apply(qi.data(), 1, 123, RopeStyle::kInterleaved);
  rope.Apply(ki.data(), 1, 45, RopeStyle::kInterleaved);
  ExpectNear(qi, PermuteQkToInterleaved(qh, 1, 16, 1), 1e-6);
  EXPECT_NEAR(Dot(qh.data(), kh.data(), 16), Dot(qi.data(), ki.data(), 16), 1e-4);
  // The wrong convention changes the scores: the pairing matters.
  std::vector<float> qw = qp, kw = kp;
  rope.Apply(qw.data(), 1, 123, RopeStyle::kRotateHalf);
  rope.Apply(kw.data(), 1, 45, RopeStyle::kRotateHalf);
  EXPECT_GT(std::abs(Dot(qh.data(), kh.data(), 16) - Dot(qw.data(), kw.data(), 16)), 1e-3);
}

TEST(LlamaOpsTest, RopeFrequencyFactorsDivideFrequencies) {
  ModelConfig c = TinyConfig();
  c.head_dim = 16;
  c.rope_theta = 500000.0f;
  c.rope_freq_factors = Llama3RopeFactors(16, c.rope_theta, 8.0f, 1.0f, 4.0f, 64);
  // High frequencies (short wavelengths) untouched, the lowest divided by the factor, smooth
  // in between.
  EXPECT_FLOAT_EQ(c.rope_freq_factors.front(), 1.0f);
  EXPECT_FLOAT_EQ(c.rope_freq_factors.back(), 8.0f);
  for (size_t i = 1; i < c.rope_freq_factors.size(); ++i) {
    EXPECT_GE(c.rope_freq_factors[i], c.rope_freq_factors[i - 1]);
  }
  LLAMA_ASSERT_OK(c.Validate());
  RopeTable rope(c);
  const std::vector<float> x = RandomVector(16, 31);
  std::vector<float> got = x;
  rope.Apply(got.data(), 1, 77, RopeStyle::kRotateHalf);
  ExpectNear(got, HfRope(x, 16, 77, c.rope_theta, c.rope_freq_factors), 1e-5);
}

// Naive causal GQA attention over [T, heads * hd] rows.
// Causal attention from the definition; window > 0 keeps the keys at distance < window.
std::vector<float> NaiveCausal(const ModelConfig& c, const std::vector<float>& q,
                               const std::vector<float>& k, const std::vector<float>& v,
                               int64_t tokens, int64_t window = 0) {
  const int hd = c.head_dim, group = c.GroupSize();
  const int64_t qd = c.QDim(), kvd = c.KvDim();
  std::vector<float> out(tokens * qd);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < c.n_heads; ++h) {
      const int g = h / group;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
      std::vector<double> s(t + 1, 0.0);
      double best = -1e300;
      for (int64_t j = lo; j <= t; ++j) {
        double d = 0;
        for (int i = 0; i < hd; ++i) d += double(q[t * qd + h * hd + i]) * k[j * kvd + g * hd + i];
        s[j] = d / std::sqrt(double(hd));
        best = std::max(best, s[j]);
      }
      double sum = 0;
      for (int64_t j = lo; j <= t; ++j) sum += (s[j] = std::exp(s[j] - best));
      for (int i = 0; i < hd; ++i) {
        double acc = 0;
        for (int64_t j = lo; j <= t; ++j) acc += s[j] * v[j * kvd + g * hd + i];
        out[t * qd + h * hd + i] = static_cast<float>(acc / sum);
      }
    }
  }
  return out;
}

TEST(LlamaAttentionTest, CausalGqaMatchesNaiveWholeAndChunked) {
  const ModelConfig c = TinyConfig();  // 4 query heads over 2 kv heads
  const int64_t tokens = 41;
  const std::vector<float> q = RandomVector(tokens * c.QDim(), 41, 1.5f);
  const std::vector<float> k = RandomVector(tokens * c.KvDim(), 42, 1.5f);
  const std::vector<float> v = RandomVector(tokens * c.KvDim(), 43);
  const std::vector<float> want = NaiveCausal(c, q, k, v, tokens);
  for (int threads : {1, 2}) {
    std::vector<float> whole(tokens * c.QDim());
    CausalAttention(c, q.data(), 0, tokens, k.data(), v.data(), whole.data(), threads);
    ExpectNear(whole, want, 1e-5);
    // Two chunks, the second attending over the first's keys too.
    std::vector<float> chunked(tokens * c.QDim());
    CausalAttention(c, q.data(), 0, 23, k.data(), v.data(), chunked.data(), threads);
    CausalAttention(c, q.data() + 23 * c.QDim(), 23, tokens - 23, k.data(), v.data(),
                    chunked.data() + 23 * c.QDim(), threads);
    ExpectNear(chunked, want, 1e-5);
  }
}

// Past the blocking: more query tokens than one query block and more keys than one key block,
// chunk boundaries inside blocks, and sliding windows shorter and longer than a key block.
TEST(LlamaAttentionTest, BlockedAttentionMatchesNaiveAcrossBlocksAndWindows) {
  const ModelConfig c = TinyConfig();
  const int64_t tokens = 600;
  const std::vector<float> q = RandomVector(tokens * c.QDim(), 51, 1.5f);
  const std::vector<float> k = RandomVector(tokens * c.KvDim(), 52, 1.5f);
  const std::vector<float> v = RandomVector(tokens * c.KvDim(), 53);
  for (int64_t window : {0, 1, 37, 300}) {
    const std::vector<float> want = NaiveCausal(c, q, k, v, tokens, window);
    for (MatMulImpl impl : {MatMulImpl::kAuto, MatMulImpl::kOwn}) {
      CausalAttentionParams params;
      params.window = window;
      params.matmul = impl;
      std::vector<float> got(tokens * c.QDim());
      CausalAttention(c, q.data(), 0, 350, k.data(), v.data(), got.data(), 2, params);
      CausalAttention(c, q.data() + 350 * c.QDim(), 350, tokens - 350, k.data(), v.data(),
                      got.data() + 350 * c.QDim(), 1, params);
      ExpectNear(got, want, 2e-5);
    }
  }
  // An explicit scale equals pre-scaled queries.
  std::vector<float> q2 = q;
  for (float& x : q2) x *= 0.5f;
  CausalAttentionParams half;
  half.scale = 0.5f / std::sqrt(static_cast<float>(c.head_dim));
  std::vector<float> a(tokens * c.QDim()), b(tokens * c.QDim());
  CausalAttention(c, q.data(), 0, tokens, k.data(), v.data(), a.data(), 2, half);
  CausalAttention(c, q2.data(), 0, tokens, k.data(), v.data(), b.data(), 2);
  ExpectNear(a, b, 1e-5);
}

TEST(LlamaOpsTest, BlasAndOwnMatMulAgree) {
  for (int64_t rows : {16, 33, 256}) {
    const int64_t out = 70, in = 45;
    const std::vector<float> x = RandomVector(rows * in, 7 + rows);
    const std::vector<float> w = RandomVector(out * in, 8);
    std::vector<float> own(rows * out), blas(rows * out), dispatched(rows * out);
    MatMulOwn(x.data(), rows, w.data(), out, in, own.data(), 2);
    MatMulBlas(x.data(), rows, w.data(), out, in, blas.data(), 2);
    MatMul(x.data(), rows, w.data(), out, in, dispatched.data(), 2);
    ExpectNear(blas, own, 1e-5);
    ExpectNear(dispatched, own, 1e-5);
  }
}

TEST(LlamaOpsTest, GeGluAndSoftCapMatchDefinitions) {
  const std::vector<float> g = RandomVector(41, 9, 3.0f), u = RandomVector(41, 10);
  std::vector<float> got(41);
  GeGlu(g.data(), u.data(), 41, got.data());
  std::vector<float> want(41);
  for (int i = 0; i < 41; ++i) {
    const double z = g[i];
    want[i] = static_cast<float>(
        0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z))) * u[i]);
  }
  ExpectNear(got, want, 1e-6);
  std::vector<float> via(41);
  GatedActivation(Activation::kGeluTanh, g.data(), u.data(), 41, via.data());
  EXPECT_EQ(via, got);
  GatedActivation(Activation::kSilu, g.data(), u.data(), 41, via.data());
  SwiGlu(g.data(), u.data(), 41, got.data());
  EXPECT_EQ(via, got);
  std::vector<float> x = {-100.0f, -1.0f, 0.0f, 2.0f, 30.0f, 1000.0f};
  SoftCap(x.data(), static_cast<int64_t>(x.size()), 30.0f);
  const std::vector<float> capped = {
      -30.0f * std::tanh(100.0f / 30.0f), 30.0f * std::tanh(-1.0f / 30.0f), 0.0f,
      30.0f * std::tanh(2.0f / 30.0f),    30.0f * std::tanh(1.0f),          30.0f};
  ExpectNear(x, capped, 1e-6);
}

// Linear RoPE scaling divides positions: position p with scale s rotates like p / s.
TEST(LlamaOpsTest, RopeLinearScaleDividesPositions) {
  const RopeTable scaled(8, 10000.0f, {}, 4.0f), plain(8, 10000.0f, {}, 1.0f);
  std::vector<float> a = RandomVector(8, 11), b = a;
  scaled.Apply(a.data(), 1, 12, RopeStyle::kRotateHalf);
  plain.Apply(b.data(), 1, 3, RopeStyle::kRotateHalf);
  ExpectNear(a, b, 1e-6);
}

TEST(LlamaAttentionTest, FullBackendMatchesNaiveDecodeAttention) {
  const ModelConfig c = TinyConfig();
  const int64_t prompt = 30;
  // The prompt's K/V as the forward pass hands them over: [tokens, kv_dim] rows.
  const std::vector<float> k = RandomVector(prompt * c.KvDim(), 51, 1.5f);
  const std::vector<float> v = RandomVector(prompt * c.KvDim(), 52);
  absl::StatusOr<gpu::ExecContext> exec = gpu::MakeExecContext("cpu", 2);
  ASSERT_TRUE(exec.ok());
  FullAttentionBackend full(c, DType::kFloat32, prompt + 1, *exec);
  for (int32_t l = 0; l < c.n_layers; ++l) {
    Tensor3View kv(k.data(), DType::kFloat32, {c.n_kv_heads, prompt, c.head_dim});
    kv.strides = {c.head_dim, c.KvDim()};
    Tensor3View vv(v.data(), DType::kFloat32, {c.n_kv_heads, prompt, c.head_dim});
    vv.strides = {c.head_dim, c.KvDim()};
    LLAMA_ASSERT_OK(full.LoadPrefill(l, kv, vv));
  }
  EXPECT_FALSE(
      full.LoadPrefill(0,
                       Tensor3View(k.data(), DType::kFloat32, {c.n_kv_heads, prompt, c.head_dim}),
                       Tensor3View(v.data(), DType::kFloat32, {c.n_kv_heads, prompt, c.head_dim}))
          .ok());  // a layer is loaded once
  // The decode token: the naive causal attention of the last of prompt + 1 tokens.
  const std::vector<float> q1 = RandomVector(c.QDim(), 53, 1.5f);
  const std::vector<float> k1 = RandomVector(c.KvDim(), 54, 1.5f);
  const std::vector<float> v1 = RandomVector(c.KvDim(), 55);
  std::vector<float> all_q((prompt + 1) * c.QDim(), 0.0f), all_k = k, all_v = v;
  std::copy(q1.begin(), q1.end(), all_q.begin() + prompt * c.QDim());
  all_k.insert(all_k.end(), k1.begin(), k1.end());
  all_v.insert(all_v.end(), v1.begin(), v1.end());
  const std::vector<float> naive = NaiveCausal(c, all_q, all_k, all_v, prompt + 1);
  const std::vector<float> want(naive.begin() + prompt * c.QDim(), naive.end());
  std::vector<float> got(c.QDim());
  AttentionStepStats stats;
  LLAMA_ASSERT_OK(full.AppendAndAttend(1, q1.data(), k1.data(), v1.data(), got.data(), &stats));
  ExpectNear(got, want, 1e-5);
  EXPECT_EQ(stats.attended_tokens, (prompt + 1) * c.n_kv_heads);
  EXPECT_EQ(full.num_tokens(1), prompt + 1);
  // Capacity reached: a further token is refused, not written past the cache.
  EXPECT_FALSE(full.AppendAndAttend(1, q1.data(), k1.data(), v1.data(), got.data(), nullptr).ok());

  // Oracle mass: everything within budget >= tokens; the largest weight alone at budget 1.
  std::vector<double> mass(2, 0.0);
  const std::vector<int64_t> budgets = {1, 1000};
  LLAMA_ASSERT_OK(full.TopMass(1, q1.data(), budgets, absl::MakeSpan(mass)));
  EXPECT_NEAR(mass[1], 1.0, 1e-5);
  EXPECT_GT(mass[0], 1.0 / (prompt + 1));
  EXPECT_LT(mass[0], 1.0);
}

TEST(LlamaOpsTest, ArgMaxTakesTheFirstMaximum) {
  const std::vector<float> x = {1, 5, 2, 5, -1};
  EXPECT_EQ(ArgMax(x.data(), 5), 1);
}

}  // namespace
}  // namespace clusterkv::llama
