// Compares each op's CUDA kernel with its CPU twin on the same inputs (fp16, bf16, fp32). Every
// comparison skips with the device status when no CUDA device is usable; the backend-selection
// test runs everywhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"
#include "core/token_range.h"
#include "gpu/attention.h"
#include "gpu/backend.h"
#include "gpu/kmeans.h"
#include "gpu/selection.h"
#include "gtest/gtest.h"

namespace clusterkv::gpu {
namespace {

ExecContext CpuContext() {
  ExecContext ctx;
  ctx.backend = Backend::kCpu;
  ctx.threads = 1;
  return ctx;
}

ExecContext CudaContext() {
  ExecContext ctx;
  ctx.backend = Backend::kCuda;
  return ctx;
}

std::string DTypeParamName(DType dtype) { return std::string(DTypeName(dtype)); }

// A host matrix of `dtype` with padded rows (row_stride > cols), so uploads must honour strides.
struct HostMatrix {
  std::vector<uint8_t> bytes;
  ConstMatrixView view;
};

HostMatrix Encode(const std::vector<float>& values, int64_t rows, int64_t cols, DType dtype,
                  int64_t padding) {
  const int64_t stride = cols + padding;
  std::vector<float> padded(static_cast<size_t>(rows * stride), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(&values[r * cols], cols, &padded[r * stride]);
  }
  HostMatrix m;
  m.bytes = EncodeAs(padded, dtype);
  m.view = ConstMatrixView(m.bytes.data(), dtype, rows, cols, stride);
  return m;
}

std::vector<float> Gaussian(size_t n, float sigma, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Rows drawn around `centers` unit directions with noise, scaled by random magnitudes: well
// separated clusters, so the two backends' assignments differ only at fp32 near-ties.
std::vector<float> ClusteredKeys(int64_t rows, int32_t d, int32_t centers, std::mt19937& rng) {
  std::vector<float> mu = Gaussian(static_cast<size_t>(centers) * d, 1.0f, rng);
  for (int32_t c = 0; c < centers; ++c) {
    float norm = 0.0f;
    for (int32_t i = 0; i < d; ++i) norm += mu[c * d + i] * mu[c * d + i];
    for (int32_t i = 0; i < d; ++i) mu[c * d + i] /= std::sqrt(norm);
  }
  std::uniform_int_distribution<int32_t> pick(0, centers - 1);
  std::uniform_real_distribution<float> magnitude(0.5f, 4.0f);
  std::normal_distribution<float> noise(0.0f, 0.5f / std::sqrt(static_cast<float>(d)));
  std::vector<float> keys(static_cast<size_t>(rows) * d);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t c = pick(rng);
    const float m = magnitude(rng);
    for (int32_t i = 0; i < d; ++i) keys[r * d + i] = m * (mu[c * d + i] + noise(rng));
  }
  return keys;
}

#define SKIP_WITHOUT_CUDA()                              \
  do {                                                   \
    const absl::Status cuda_status = CudaDeviceStatus(); \
    if (!cuda_status.ok()) {                             \
      GTEST_SKIP() << "no CUDA device: " << cuda_status; \
    }                                                    \
  } while (0)

// ---- Backend selection (runs with or without a device) ---------------------------------------

TEST(CudaBackendTest, MakeExecContextFollowsDeviceStatus) {
  const absl::Status device = CudaDeviceStatus();
  const absl::StatusOr<ExecContext> cuda = MakeExecContext("cuda", 1);
  const absl::StatusOr<ExecContext> automatic = MakeExecContext("auto", 1);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  if (device.ok()) {
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    EXPECT_EQ(cuda->backend, Backend::kCuda);
    EXPECT_EQ(automatic->backend, Backend::kCuda);
    return;
  }
  std::cout << "CUDA device status: " << device << "\n";
  EXPECT_EQ(device.code(), absl::StatusCode::kFailedPrecondition) << device;
  EXPECT_FALSE(device.message().empty());
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition) << cuda.status();
  EXPECT_EQ(automatic->backend, Backend::kCpu);
}

TEST(CudaBackendTest, CudaOpsFailCleanlyWithoutDevice) {
  if (CudaDeviceStatus().ok()) GTEST_SKIP() << "a CUDA device is usable; nothing to check";
  std::mt19937 rng(3);
  const int32_t d = 32;
  const std::vector<float> keys = ClusteredKeys(64, d, 4, rng);
  const ConstMatrixView view(keys.data(), 64, d);
  KMeansOptions options;
  options.num_clusters = 4;
  options.iterations = 2;
  EXPECT_EQ(SphericalKMeans(view, options, CudaContext()).status().code(),
            absl::StatusCode::kFailedPrecondition);

  std::vector<float> scores(4);
  const ConstMatrixView queries(keys.data(), 2, d);
  const ConstMatrixView centroids(keys.data(), 4, d);
  EXPECT_EQ(ScoreCentroids(queries, centroids, 1.0f, absl::MakeSpan(scores), CudaContext()).code(),
            absl::StatusCode::kFailedPrecondition);

  std::vector<float> out(2 * d);
  AttentionTask task;
  task.queries = queries;
  task.spans.push_back(KvSpan{view, view});
  task.scale = 0.125f;
  task.out = MatrixView(out.data(), 2, d);
  EXPECT_EQ(Attention(task, CudaContext()).code(), absl::StatusCode::kFailedPrecondition);
}

// ---- K-means ---------------------------------------------------------------------------------

struct KMeansCase {
  DType dtype;
  int32_t d;
};

void PrintTo(const KMeansCase& c, std::ostream* os) { *os << DTypeName(c.dtype) << " d=" << c.d; }

class KMeansCudaTest : public ::testing::TestWithParam<KMeansCase> {};

TEST_P(KMeansCudaTest, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const KMeansCase param = GetParam();
  std::mt19937 rng(11);
  const int64_t rows = 6000;
  const std::vector<float> keys = ClusteredKeys(rows, param.d, 40, rng);
  const HostMatrix m = Encode(keys, rows, param.d, param.dtype, /*padding=*/8);
  KMeansOptions options;
  options.num_clusters = 48;
  options.iterations = 12;
  options.seed = 5;

  const absl::StatusOr<Clustering> cpu = SphericalKMeans(m.view, options, CpuContext());
  const absl::StatusOr<Clustering> cuda = SphericalKMeans(m.view, options, CudaContext());
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  ASSERT_EQ(cpu->labels.size(), cuda->labels.size());
  int64_t same = 0;
  for (size_t i = 0; i < cpu->labels.size(); ++i) same += cpu->labels[i] == cuda->labels[i];
  EXPECT_GE(static_cast<double>(same) / static_cast<double>(rows), 0.99);
  EXPECT_NEAR(cpu->objective, cuda->objective, 1e-3);
  // The order/offsets are derived from the labels; check they are consistent on CUDA too.
  ASSERT_EQ(cuda->offsets.size(), static_cast<size_t>(options.num_clusters) + 1);
  EXPECT_EQ(cuda->offsets.back(), rows);
}

INSTANTIATE_TEST_SUITE_P(
    DTypes, KMeansCudaTest,
    ::testing::Values(KMeansCase{DType::kFloat16, 128}, KMeansCase{DType::kBFloat16, 128},
                      KMeansCase{DType::kFloat32, 128}, KMeansCase{DType::kFloat16, 96},
                      KMeansCase{DType::kFloat32, 256}),
    [](const ::testing::TestParamInfo<KMeansCase>& info) {
      return absl::StrCat(DTypeParamName(info.param.dtype), "_d", info.param.d);
    });

// ---- Centroid scoring ------------------------------------------------------------------------

struct ScoreCase {
  DType dtype;
};

void PrintTo(const ScoreCase& c, std::ostream* os) { *os << DTypeName(c.dtype); }

class ScoreCentroidsCudaTest : public ::testing::TestWithParam<ScoreCase> {};

TEST_P(ScoreCentroidsCudaTest, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 rng(23);
  const int32_t g = 8;
  const int32_t d = 128;
  const int32_t c = 1500;
  const std::vector<float> queries = Gaussian(static_cast<size_t>(g) * d, 1.0f, rng);
  std::vector<float> centroids = Gaussian(static_cast<size_t>(c) * d, 1.0f, rng);
  for (int32_t j = 0; j < c; ++j) {
    float norm = 0.0f;
    for (int32_t i = 0; i < d; ++i) norm += centroids[j * d + i] * centroids[j * d + i];
    for (int32_t i = 0; i < d; ++i) centroids[j * d + i] /= std::sqrt(norm);
  }
  const HostMatrix q = Encode(queries, g, d, GetParam().dtype, /*padding=*/4);
  const ConstMatrixView mu(centroids.data(), c, d);
  // A peaky softmax (scale 1) and a flat one (1/sqrt(d)).
  for (const float scale : {1.0f, 1.0f / std::sqrt(static_cast<float>(d))}) {
    std::vector<float> cpu(c);
    std::vector<float> cuda(c);
    ASSERT_TRUE(ScoreCentroids(q.view, mu, scale, absl::MakeSpan(cpu), CpuContext()).ok());
    const absl::Status status =
        ScoreCentroids(q.view, mu, scale, absl::MakeSpan(cuda), CudaContext());
    ASSERT_TRUE(status.ok()) << status;
    float max_diff = 0.0f;
    for (int32_t j = 0; j < c; ++j) max_diff = std::max(max_diff, std::fabs(cpu[j] - cuda[j]));
    EXPECT_LE(max_diff, 1e-4f) << "scale " << scale;
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, ScoreCentroidsCudaTest,
                         ::testing::Values(ScoreCase{DType::kFloat16}, ScoreCase{DType::kBFloat16},
                                           ScoreCase{DType::kFloat32}),
                         [](const ::testing::TestParamInfo<ScoreCase>& info) {
                           return DTypeParamName(info.param.dtype);
                         });

// ---- Attention -------------------------------------------------------------------------------

struct AttentionCase {
  DType dtype;
  int32_t d;
};

void PrintTo(const AttentionCase& c, std::ostream* os) {
  *os << DTypeName(c.dtype) << " d=" << c.d;
}

class AttentionCudaTest : public ::testing::TestWithParam<AttentionCase> {};

// max |cuda - cpu| relative to max |cpu| over the [G, d] outputs.
double RelativeError(const std::vector<float>& cpu, const std::vector<float>& cuda) {
  double diff = 0.0;
  double scale = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(cpu[i] - cuda[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(cpu[i])));
  }
  return diff / std::max(scale, 1e-12);
}

TEST_P(AttentionCudaTest, MatchesCpuOverSpans) {
  SKIP_WITHOUT_CUDA();
  const AttentionCase param = GetParam();
  std::mt19937 rng(37);
  const int32_t g = 4;
  const int32_t d = param.d;
  const int64_t tokens = 6000;
  const std::vector<float> q = Gaussian(static_cast<size_t>(g) * d, 1.0f, rng);
  const std::vector<float> k = Gaussian(static_cast<size_t>(tokens) * d, 1.0f, rng);
  const std::vector<float> v = Gaussian(static_cast<size_t>(tokens) * d, 1.0f, rng);
  const HostMatrix queries = Encode(q, g, d, param.dtype, 0);
  const HostMatrix keys = Encode(k, tokens, d, param.dtype, /*padding=*/16);
  const HostMatrix values = Encode(v, tokens, d, param.dtype, /*padding=*/8);
  const KvSpan all{keys.view, values.view};

  // Full attention (one span) and a sparse selection: sinks, scattered clusters of uneven
  // sizes, an empty range, a single token and the recent window.
  const std::vector<std::vector<TokenRange>> selections = {
      {TokenRange{0, tokens}},
      {TokenRange{0, 16}, TokenRange{300, 300}, TokenRange{410, 1333}, TokenRange{2000, 2001},
       TokenRange{2500, 2570}, TokenRange{5680, 6000}},
  };
  for (const std::vector<TokenRange>& ranges : selections) {
    absl::StatusOr<std::vector<KvSpan>> spans = SpansOfRanges(all, ranges);
    ASSERT_TRUE(spans.ok()) << spans.status();
    std::vector<float> cpu(static_cast<size_t>(g) * d);
    std::vector<float> cuda(static_cast<size_t>(g) * d, -1.0f);
    AttentionTask task;
    task.queries = queries.view;
    task.spans = *spans;
    task.scale = 1.0f / std::sqrt(static_cast<float>(d));
    task.out = MatrixView(cpu.data(), g, d);
    ASSERT_TRUE(Attention(task, CpuContext()).ok());
    task.out = MatrixView(cuda.data(), g, d);
    const absl::Status status = Attention(task, CudaContext());
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_LE(RelativeError(cpu, cuda), 1e-4) << ranges.size() << " ranges";
  }
}

INSTANTIATE_TEST_SUITE_P(
    DTypes, AttentionCudaTest,
    ::testing::Values(AttentionCase{DType::kFloat16, 128}, AttentionCase{DType::kBFloat16, 128},
                      AttentionCase{DType::kFloat32, 128}, AttentionCase{DType::kFloat16, 64},
                      AttentionCase{DType::kBFloat16, 256}, AttentionCase{DType::kFloat32, 80}),
    [](const ::testing::TestParamInfo<AttentionCase>& info) {
      return absl::StrCat(DTypeParamName(info.param.dtype), "_d", info.param.d);
    });

// Spans of different dtypes go through the fp32 staging path.
TEST(AttentionCudaMixedTest, MixedDTypesMatchCpu) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 rng(41);
  const int32_t g = 2;
  const int32_t d = 128;
  const int64_t tokens = 700;
  const std::vector<float> q = Gaussian(static_cast<size_t>(g) * d, 1.0f, rng);
  const std::vector<float> k = Gaussian(static_cast<size_t>(tokens) * d, 1.0f, rng);
  const std::vector<float> v = Gaussian(static_cast<size_t>(tokens) * d, 1.0f, rng);
  const HostMatrix k16 = Encode(k, tokens, d, DType::kFloat16, 0);
  const HostMatrix v16 = Encode(v, tokens, d, DType::kFloat16, 0);
  AttentionTask task;
  task.queries = ConstMatrixView(q.data(), g, d);
  task.spans.push_back(KvSpan{k16.view.Rows(0, 500), v16.view.Rows(0, 500)});
  task.spans.push_back(KvSpan{ConstMatrixView(k.data(), tokens, d).Rows(500, tokens),
                              ConstMatrixView(v.data(), tokens, d).Rows(500, tokens)});
  task.scale = 0.1f;
  std::vector<float> cpu(static_cast<size_t>(g) * d);
  std::vector<float> cuda(static_cast<size_t>(g) * d);
  task.out = MatrixView(cpu.data(), g, d);
  ASSERT_TRUE(Attention(task, CpuContext()).ok());
  task.out = MatrixView(cuda.data(), g, d);
  const absl::Status status = Attention(task, CudaContext());
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_LE(RelativeError(cpu, cuda), 1e-4);
}

}  // namespace
}  // namespace clusterkv::gpu
