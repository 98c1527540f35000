// Tests of core/: layout and config validation, ids, fp16/bf16 conversion, tensor views,
// token ranges, ParallelFor, the status macros and StreamCopy.
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/half.h"
#include "core/ids.h"
#include "core/kv_layout.h"
#include "core/parallel.h"
#include "core/splitmix64.h"
#include "core/status_macros.h"
#include "core/stream_copy.h"
#include "core/tensor_view.h"
#include "core/token_range.h"
#include "gtest/gtest.h"

namespace clusterkv {
namespace {

TEST(KvLayoutTest, Llama3ShapeIsValid) {
  const KvLayout layout = KvLayout::Llama3_8B();
  EXPECT_TRUE(layout.Validate().ok());
  EXPECT_EQ(layout.GroupSize(), 4);
  EXPECT_EQ(layout.HeadVectorBytes(), 256u);
  // 32k tokens of Llama-3-8B K/V are 4 GiB (DESIGN.md section 1).
  EXPECT_EQ(layout.TokenBytes() * 32768, size_t{4} << 30);
}

TEST(KvLayoutTest, RejectsBadShapes) {
  KvLayout layout = KvLayout::Llama3_8B();
  layout.num_q_heads = 30;  // not a multiple of 8
  EXPECT_EQ(layout.Validate().code(), absl::StatusCode::kInvalidArgument);
  layout = KvLayout::Llama3_8B();
  layout.head_dim = 127;  // odd: no RoPE pairs
  EXPECT_EQ(layout.Validate().code(), absl::StatusCode::kInvalidArgument);
  layout = KvLayout::Llama3_8B();
  layout.num_layers = 0;
  EXPECT_EQ(layout.Validate().code(), absl::StatusCode::kInvalidArgument);
  layout = KvLayout::Llama3_8B();
  layout.num_kv_heads = -1;
  EXPECT_EQ(layout.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DTypeTest, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(*ParseDType("fp16"), DType::kFloat16);
  EXPECT_EQ(*ParseDType("BFloat16"), DType::kBFloat16);
  EXPECT_EQ(*ParseDType("float32"), DType::kFloat32);
  EXPECT_EQ(ParseDType("int8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeName(DType::kFloat32), "fp32");
}

TEST(SequenceKeyTest, Validates) {
  EXPECT_TRUE((SequenceKey{"tenant-a", "req-1"}).Validate().ok());
  EXPECT_FALSE((SequenceKey{"", "req-1"}).Validate().ok());
  EXPECT_FALSE((SequenceKey{"t", std::string(129, 'x')}).Validate().ok());
  EXPECT_FALSE((SequenceKey{"t", std::string("a\nb")}).Validate().ok());
}

TEST(ConfigTest, DefaultsMatchTheReferenceCode) {
  const ClusterKvConfig config;
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_EQ(config.num_sink_tokens, 16);
  EXPECT_EQ(config.dense_layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(config.num_prefill_clusters, 400);
  EXPECT_EQ(config.kmeans_iterations, 20);
  EXPECT_EQ(config.recluster_interval, 320);
  EXPECT_EQ(config.clusters_per_recluster, 8);
  EXPECT_EQ(config.token_budget, 1024);
  EXPECT_EQ(config.cache_residency_steps, 1);
  EXPECT_TRUE(config.IsDenseLayer(1));
  EXPECT_FALSE(config.IsDenseLayer(2));
}

TEST(ConfigTest, RejectsOutOfRangeFields) {
  ClusterKvConfig config;
  config.token_budget = 0;
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
  config = ClusterKvConfig();
  config.clusters_per_recluster = config.recluster_interval + 1;
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
  config = ClusterKvConfig();
  config.dense_layers = {-1};
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTest, CentroidScoringNames) {
  EXPECT_EQ(ClusterKvConfig().centroid_scoring, CentroidScoring::kUnit);  // the paper's
  EXPECT_EQ(*ParseCentroidScoring("unit"), CentroidScoring::kUnit);
  EXPECT_EQ(*ParseCentroidScoring("key_norm"), CentroidScoring::kKeyNorm);
  EXPECT_EQ(*ParseCentroidScoring("head_norm"), CentroidScoring::kHeadNorm);
  EXPECT_STREQ(CentroidScoringName(CentroidScoring::kHeadNorm), "head_norm");
  EXPECT_EQ(ParseCentroidScoring("mean").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_STREQ(CentroidScoringName(CentroidScoring::kKeyNorm), "key_norm");
  ClusterKvConfig config;
  config.centroid_scoring = CentroidScoring::kKeyNorm;
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_NE(config.DebugString().find("scoring=key_norm"), std::string::npos);
  config.centroid_scoring = static_cast<CentroidScoring>(7);  // e.g. through the C ABI
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTest, AdaptiveBudgetLimits) {
  ClusterKvConfig config;
  EXPECT_FALSE(config.adaptive_budget());  // the paper's fixed budget by default
  config.recall_target = 0.9;
  EXPECT_TRUE(config.adaptive_budget());
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_EQ(config.MinTokenBudget(), 256);  // B / 4 and 4 B
  EXPECT_EQ(config.MaxTokenBudget(), 4096);
  config.min_token_budget = 100;
  config.max_token_budget = 2000;
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_EQ(config.MinTokenBudget(), 100);
  EXPECT_EQ(config.MaxTokenBudget(), 2000);
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    config.recall_target = bad;
    EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  config.recall_target = 0.9;
  config.min_token_budget = 1025;  // above B: the cap could not hold every head's minimum
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
  config.min_token_budget = 0;
  config.max_token_budget = 1000;  // below B
  EXPECT_EQ(config.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.DebugString().find("adaptive"), std::string::npos);
}

TEST(HalfTest, EveryFp16ValueRoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const float f = HalfToFloat(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f))));
      continue;
    }
    ASSERT_EQ(FloatToHalf(f), h) << "bits " << bits;
  }
}

TEST(HalfTest, KnownValuesAndRounding) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);                    // overflow saturates to +inf
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -26)), 0x0000);   // underflow to zero
  // 1 + 2^-11 is halfway between 1 and the next half: ties to even (1.0).
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3 * 2^-11 is halfway between two halves with odd/even mantissas: rounds up to even.
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
}

TEST(HalfTest, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f)), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(-3.5f)), -3.5f);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even.
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
}

TEST(TensorViewTest, StridedRowsAndConversion) {
  // A [2, 3] fp16 matrix inside rows of 5 elements.
  std::vector<float> values = {1, 2, 3, 0, 0, -4, 5.5f, 6, 0, 0};
  std::vector<uint8_t> half = EncodeAs(values, DType::kFloat16);
  ConstMatrixView view(half.data(), DType::kFloat16, 2, 3, 5);
  EXPECT_TRUE(view.Validate("m").ok());
  EXPECT_EQ(view.At(1, 1), 5.5f);
  std::vector<float> row(3);
  view.LoadRow(1, row.data());
  EXPECT_EQ(row, (std::vector<float>{-4, 5.5f, 6}));
  ConstMatrixView tail = view.Rows(1, 2);
  EXPECT_EQ(tail.rows, 1);
  EXPECT_EQ(tail.At(0, 0), -4.0f);
}

TEST(TensorViewTest, ConvertsLongRowsOfEveryDtype) {
  std::vector<float> values(37);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * static_cast<float>(i) - 3.0f;
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    std::vector<uint8_t> bytes = EncodeAs(values, dtype);
    std::vector<float> back(values.size());
    ConvertToFloat(bytes.data(), dtype, static_cast<int64_t>(values.size()), back.data());
    EXPECT_EQ(back, values) << DTypeName(dtype);  // all exactly representable
  }
}

TEST(TensorViewTest, ValidateAndCheckFinite) {
  std::vector<float> data = {1, 2, std::numeric_limits<float>::infinity(), 4};
  ConstMatrixView view(data.data(), 2, 2);
  EXPECT_EQ(view.CheckFinite("k").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(view.Rows(0, 1).CheckFinite("k").ok());
  ConstMatrixView bad(data.data(), DType::kFloat32, 2, 3, 2);  // stride < cols
  EXPECT_EQ(bad.Validate("k").code(), absl::StatusCode::kInvalidArgument);
  ConstMatrixView null_view(static_cast<const float*>(nullptr), 2, 2);
  EXPECT_EQ(null_view.Validate("k").code(), absl::StatusCode::kInvalidArgument);
}

TEST(Tensor3ViewTest, SlicesHeads) {
  std::vector<float> data(2 * 3 * 4);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  Tensor3View t(data.data(), DType::kFloat32, {2, 3, 4});
  ConstMatrixView head1 = t.Slice(1);
  EXPECT_EQ(head1.rows, 3);
  EXPECT_EQ(head1.At(2, 3), 23.0f);
}

TEST(TokenRangeTest, NormalizeMergesAndSorts) {
  std::vector<TokenRange> merged =
      NormalizeRanges({{10, 20}, {0, 5}, {5, 7}, {15, 25}, {30, 30}});
  EXPECT_EQ(merged, (std::vector<TokenRange>{{0, 7}, {10, 25}}));
  EXPECT_EQ(TotalTokens(merged), 22);
}

TEST(ParallelForTest, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 7}) {
    std::vector<std::atomic<int>> hits(1001);
    ParallelFor(1001, threads, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
  int calls = 0;
  ParallelFor(0, 4, [&](int64_t, int64_t, int) { ++calls; });
  EXPECT_EQ(calls, 0);
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::Status Quarter(int x, int* out) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(*out, Half(half));
  RETURN_IF_ERROR(absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out).code(), absl::StatusCode::kInvalidArgument);
}

// Every size around the streaming threshold and chunk boundaries, at every destination and
// source misalignment within a vector: the copy is bit-exact and writes nothing outside it.
TEST(StreamCopyTest, BitExactAtEveryAlignmentAndSize) {
  const std::vector<size_t> sizes = {0,    1,    31,   64,   127,  4095,  4096,  4097,
                                     4159, 8192, 8193, 65536, 65537, 65532, 262131};
  uint64_t state = 7;
  std::vector<uint8_t> src(262144 + 64);
  for (uint8_t& b : src) b = static_cast<uint8_t>(SplitMix64(state));
  std::vector<uint8_t> dst(262144 + 128);
  for (size_t n : sizes) {
    for (size_t dst_off : {size_t{0}, size_t{1}, size_t{17}, size_t{31}, size_t{32}}) {
      for (size_t src_off : {size_t{0}, size_t{3}, size_t{32}}) {
        std::memset(dst.data(), 0xA5, dst.size());
        StreamCopy(dst.data() + dst_off, src.data() + src_off, n);
        ASSERT_EQ(std::memcmp(dst.data() + dst_off, src.data() + src_off, n), 0)
            << "size " << n << " dst+" << dst_off << " src+" << src_off;
        for (size_t i = 0; i < dst_off; ++i) ASSERT_EQ(dst[i], 0xA5) << "wrote before dst";
        for (size_t i = dst_off + n; i < dst.size(); ++i) {
          ASSERT_EQ(dst[i], 0xA5) << "wrote past the end, size " << n;
        }
      }
    }
  }
}

TEST(StreamCopyTest, ReportsItsImplementation) {
  const std::string kind = StreamCopyKind();
  EXPECT_TRUE(kind == "avx2" || kind == "sse2" || kind == "memcpy") << kind;
}

}  // namespace
}  // namespace clusterkv
