// The GGML block decoders (tools/clusterkv_llama/ggml_quant.h) and quantized tensors read
// through the GGUF reader:
//  * blocks built here from chosen values (scales, mins, high-bit planes packed by a
//    test-side encoder) decode to the formula's values, element by element;
//  * random blocks decode exactly as a reference decoder below that computes each element
//    literally from the format description;
//  * the blocks and values in tests/data/llama/quant_golden.bin, written by the gguf Python
//    package's numpy decoders (tools/clusterkv_llama/reference/make_quant_golden.py), match bit
//    for bit, and so do the first rows of real tensors of the two models in the model cache;
//  * ReadAsFloat decodes quantized GGUF tensors and refuses the types it cannot decode by name.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/half.h"
#include "gtest/gtest.h"
#include "tests/testing/model_files.h"
#include "tests/testing/temp_dir.h"
#include "tools/clusterkv_llama/ggml_quant.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/tensor_file.h"

namespace clusterkv::llama {
namespace {

using clusterkv::testing::TempDir;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kDecodedTypes[] = {kGgmlTypeQ4_0, kGgmlTypeQ4_1, kGgmlTypeQ5_0, kGgmlTypeQ5_1,
                                      kGgmlTypeQ8_0, kGgmlTypeQ2_K, kGgmlTypeQ3_K, kGgmlTypeQ4_K,
                                      kGgmlTypeQ5_K, kGgmlTypeQ6_K, kGgmlTypeQ8_K};

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}
void PutHalf(uint8_t* p, float v) {
  const uint16_t h = FloatToHalf(v);
  std::memcpy(p, &h, 2);
}

int64_t BlockElements(uint32_t type) { return FindGgmlType(type)->block_elements; }
int64_t BlockBytes(uint32_t type) { return FindGgmlType(type)->block_bytes; }

// Same value: equal bits, or both NaN.
bool Same(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || FloatBits(a) == FloatBits(b);
}

std::vector<float> Decode(uint32_t type, const Bytes& bytes) {
  const int64_t n = static_cast<int64_t>(bytes.size()) / BlockBytes(type) * BlockElements(type);
  std::vector<float> out(static_cast<size_t>(n));
  const absl::Status s = DequantizeRow(type, bytes, n, out.data());
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

void ExpectValues(const std::vector<float>& got, const std::vector<float>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(Same(got[i], want[i]))
        << what << " element " << i << ": got " << got[i] << ", want " << want[i];
  }
}

// ---------------------------------------------------------------------------------------------
// The reference decoder: element `e` of one block, computed on its own from the layout. Plain
// fp32 arithmetic: every product is exact (ggml_quant.h), so the order of the multiplications
// and whether the compiler fuses the final add or subtract do not change the result.

float RefElement(uint32_t type, const uint8_t* b, int e) {
  switch (type) {
    case kGgmlTypeQ4_0: {  // d, qs[16]: element e < 16 low nibble of qs[e], else high of e-16
      const int q = e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4;
      return Half(b) * static_cast<float>(q - 8);
    }
    case kGgmlTypeQ4_1: {  // d, m, qs[16]
      const int q = e < 16 ? b[4 + e] & 15 : b[4 + e - 16] >> 4;
      return Half(b) * static_cast<float>(q) + Half(b + 2);
    }
    case kGgmlTypeQ5_0:
    case kGgmlTypeQ5_1: {  // d, [m,] qh (u32 LE), qs[16]
      const bool with_min = type == kGgmlTypeQ5_1;
      const uint8_t* qh = b + (with_min ? 4 : 2);
      const uint8_t* qs = qh + 4;
      const int low = e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
      const int high = (qh[e / 8] >> (e % 8)) & 1;
      const int q = low + 16 * high;
      if (with_min) return Half(b) * static_cast<float>(q) + Half(b + 2);
      return Half(b) * static_cast<float>(q - 16);
    }
    case kGgmlTypeQ8_0:
      return Half(b) * static_cast<float>(static_cast<int8_t>(b[2 + e]));
    case kGgmlTypeQ2_K: {  // scales[16], qs[64], d, dmin
      const int sub = e / 16;
      const int q = (b[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      const float scale = Half(b + 80) * static_cast<float>(b[sub] & 15);
      const float min = Half(b + 82) * static_cast<float>(b[sub] >> 4);
      return scale * static_cast<float>(q) - min;
    }
    case kGgmlTypeQ3_K: {  // hmask[32], qs[64], scales[12], d
      const int sub = e / 16;
      const uint8_t* sc = b + 96;
      const int low4 = sub < 8 ? sc[sub] & 15 : sc[sub - 8] >> 4;
      const int high2 = (sc[8 + sub % 4] >> (2 * (sub / 4))) & 3;
      const int scale6 = low4 + 16 * high2 - 32;
      const int low2 = (b[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      const int hbit = (b[e % 32] >> (e / 32)) & 1;
      const int q = low2 - (hbit == 1 ? 0 : 4);
      return Half(b + 108) * static_cast<float>(scale6) * static_cast<float>(q);
    }
    case kGgmlTypeQ4_K:
    case kGgmlTypeQ5_K: {  // d, dmin, scales[12], [qh[32],] qs[128]
      const bool five = type == kGgmlTypeQ5_K;
      const int j = e / 32;
      const uint8_t* sc = b + 4;
      int scale, min;
      if (j < 4) {
        scale = sc[j] & 63;
        min = sc[j + 4] & 63;
      } else {
        scale = (sc[j + 4] & 15) + 16 * (sc[j - 4] >> 6);
        min = (sc[j + 4] >> 4) + 16 * (sc[j] >> 6);
      }
      const uint8_t* qs = b + (five ? 48 : 16);
      int q = (qs[32 * (j / 2) + e % 32] >> (j % 2 == 0 ? 0 : 4)) & 15;
      if (five) q += 16 * ((b[16 + e % 32] >> j) & 1);
      return Half(b) * static_cast<float>(scale) * static_cast<float>(q) -
             Half(b + 2) * static_cast<float>(min);
    }
    case kGgmlTypeQ6_K: {  // ql[128], qh[64], scales[16] (int8), d
      const int half = e / 128, t = (e % 128) / 32, l = e % 32;
      const int low4 = (b[64 * half + 32 * (t % 2) + l] >> (t < 2 ? 0 : 4)) & 15;
      const int high2 = (b[128 + 32 * half + l] >> (2 * t)) & 3;
      const int q = low4 + 16 * high2 - 32;
      const float scale = static_cast<float>(static_cast<int8_t>(b[192 + e / 16]));
      return Half(b + 208) * scale * static_cast<float>(q);
    }
    case kGgmlTypeQ8_K: {  // fp32 d, qs[256], bsums
      float d;
      std::memcpy(&d, b, 4);
      return d * static_cast<float>(static_cast<int8_t>(b[4 + e]));
    }
  }
  ADD_FAILURE() << "no reference for type " << type;
  return 0;
}

std::vector<float> RefDecode(uint32_t type, const Bytes& bytes) {
  std::vector<float> out;
  for (size_t off = 0; off < bytes.size(); off += static_cast<size_t>(BlockBytes(type))) {
    for (int e = 0; e < BlockElements(type); ++e) out.push_back(RefElement(type, &bytes[off], e));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Blocks built from chosen values. Scales are powers of two and values small integers, so every
// expected value is exact.

std::vector<int> RandomInts(std::mt19937& rng, int n, int lo, int hi) {
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int> v(static_cast<size_t>(n));
  for (int& x : v) x = dist(rng);
  return v;
}

TEST(GgmlQuantTest, Q4_0NibblesAreCentredAndScaled) {
  Bytes b(18, 0);
  PutHalf(&b[0], 0.5f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Decode(kGgmlTypeQ4_0, b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f) << j;
  }
}

TEST(GgmlQuantTest, Q4_1AddsTheMinimum) {
  Bytes b(20, 0);
  PutHalf(&b[0], 0.25f);
  PutHalf(&b[2], -1.5f);
  for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Decode(kGgmlTypeQ4_1, b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.25f - 1.5f) << j;
    EXPECT_EQ(y[j + 16], (15 - j) * 0.25f - 1.5f) << j;
  }
}

// Q5_0 / Q5_1 from 5-bit values q[32].
Bytes EncodeQ5(bool with_min, float d, float m, const std::vector<int>& q) {
  Bytes b(with_min ? 24 : 22, 0);
  PutHalf(&b[0], d);
  if (with_min) PutHalf(&b[2], m);
  uint8_t* qh = &b[with_min ? 4 : 2];
  for (int e = 0; e < 32; ++e) {
    qh[e / 8] |= static_cast<uint8_t>((q[e] >> 4) << (e % 8));
    qh[4 + e % 16] |= static_cast<uint8_t>((q[e] & 15) << (e < 16 ? 0 : 4));
  }
  return b;
}

TEST(GgmlQuantTest, Q5TakesBitFourFromTheHighPlane) {
  std::mt19937 rng(5);
  const std::vector<int> q = RandomInts(rng, 32, 0, 31);
  const std::vector<float> y0 = Decode(kGgmlTypeQ5_0, EncodeQ5(false, 2.0f, 0, q));
  const std::vector<float> y1 = Decode(kGgmlTypeQ5_1, EncodeQ5(true, 0.5f, 3.0f, q));
  for (int e = 0; e < 32; ++e) {
    EXPECT_EQ(y0[e], 2.0f * (q[e] - 16)) << e;
    EXPECT_EQ(y1[e], 0.5f * q[e] + 3.0f) << e;
  }
}

TEST(GgmlQuantTest, Q8_0AndQ8_KAreSignedBytesTimesD) {
  Bytes b(34, 0);
  PutHalf(&b[0], 0.125f);
  for (int e = 0; e < 32; ++e) b[2 + e] = static_cast<uint8_t>(static_cast<int8_t>(8 * e - 128));
  const std::vector<float> y = Decode(kGgmlTypeQ8_0, b);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], 0.125f * (8 * e - 128)) << e;

  Bytes k(292, 0);
  const float d = 0.0625f;  // fp32, not fp16
  std::memcpy(&k[0], &d, 4);
  for (int e = 0; e < 256; ++e) k[4 + e] = static_cast<uint8_t>(e);  // -128..127 as int8
  const std::vector<float> yk = Decode(kGgmlTypeQ8_K, k);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(yk[e], 0.0625f * static_cast<int8_t>(e)) << e;
}

// Q2_K from 2-bit q[256], 4-bit scale[16] and min[16].
Bytes EncodeQ2_K(float d, float dmin, const std::vector<int>& scale, const std::vector<int>& min,
                 const std::vector<int>& q) {
  Bytes b(84, 0);
  for (int s = 0; s < 16; ++s) b[s] = static_cast<uint8_t>(scale[s] | (min[s] << 4));
  for (int e = 0; e < 256; ++e) {
    const int half = e / 128, group = (e % 128) / 32, l = e % 32;
    b[16 + 32 * half + l] |= static_cast<uint8_t>(q[e] << (2 * group));
  }
  PutHalf(&b[80], d);
  PutHalf(&b[82], dmin);
  return b;
}

TEST(GgmlQuantTest, Q2_KSubBlockScalesAndMins) {
  std::mt19937 rng(2);
  const std::vector<int> q = RandomInts(rng, 256, 0, 3);
  std::vector<int> scale(16), min(16);
  for (int s = 0; s < 16; ++s) {
    scale[s] = s;
    min[s] = 15 - s;
  }
  const std::vector<float> y = Decode(kGgmlTypeQ2_K, EncodeQ2_K(0.5f, 0.25f, scale, min, q));
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.5f * scale[e / 16] * q[e] - 0.25f * min[e / 16]) << e;
  }
}

// Q3_K from 3-bit signed q[256] (-4..3) and 6-bit signed scale[16] (-32..31).
Bytes EncodeQ3_K(float d, const std::vector<int>& scale, const std::vector<int>& q) {
  Bytes b(110, 0);
  for (int e = 0; e < 256; ++e) {
    const int u = q[e] + 4;  // bit 2 set: no offset; clear: -4
    const int half = e / 128, group = (e % 128) / 32, l = e % 32;
    b[32 + 32 * half + l] |= static_cast<uint8_t>((u & 3) << (2 * group));
    b[l] |= static_cast<uint8_t>((u >> 2) << (e / 32));
  }
  uint8_t* packed = &b[96];
  for (int s = 0; s < 16; ++s) {
    const int u = scale[s] + 32;
    packed[s % 8] |= static_cast<uint8_t>((u & 15) << (s < 8 ? 0 : 4));
    packed[8 + s % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (s / 4)));
  }
  PutHalf(&b[108], d);
  return b;
}

TEST(GgmlQuantTest, Q3_KSignedScalesAndHighBitPlane) {
  std::mt19937 rng(3);
  const std::vector<int> q = RandomInts(rng, 256, -4, 3);
  const std::vector<int> scale = {-32, 31, 0, 1, -1, 17, -17, 5, 30, -30, 12, -12, 7, -8, 25, 16};
  const std::vector<float> y = Decode(kGgmlTypeQ3_K, EncodeQ3_K(0.25f, scale, q));
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.25f * scale[e / 16] * q[e]) << e;
}

// Q4_K / Q5_K from q[256] (4 or 5 bits) and 6-bit scale[8], min[8].
Bytes EncodeQ45_K(bool five, float d, float dmin, const std::vector<int>& scale,
                  const std::vector<int>& min, const std::vector<int>& q) {
  Bytes b(five ? 176 : 144, 0);
  PutHalf(&b[0], d);
  PutHalf(&b[2], dmin);
  uint8_t* packed = &b[4];
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      packed[j] |= static_cast<uint8_t>(scale[j]);
      packed[j + 4] |= static_cast<uint8_t>(min[j]);
    } else {
      packed[j + 4] |= static_cast<uint8_t>((scale[j] & 15) | ((min[j] & 15) << 4));
      packed[j - 4] |= static_cast<uint8_t>((scale[j] >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((min[j] >> 4) << 6);
    }
  }
  uint8_t* qs = &b[five ? 48 : 16];
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32, l = e % 32;
    qs[32 * (j / 2) + l] |= static_cast<uint8_t>((q[e] & 15) << (4 * (j % 2)));
    if (five) b[16 + l] |= static_cast<uint8_t>((q[e] >> 4) << j);
  }
  return b;
}

TEST(GgmlQuantTest, Q4_KAndQ5_KSixBitScalesAndMins) {
  std::mt19937 rng(4);
  // Values above 15 and 31 exercise the two top bits that sit apart from the low four.
  const std::vector<int> scale = {1, 17, 33, 63, 5, 40, 62, 48};
  const std::vector<int> min = {0, 63, 32, 16, 7, 50, 1, 33};
  for (bool five : {false, true}) {
    const std::vector<int> q = RandomInts(rng, 256, 0, five ? 31 : 15);
    const uint32_t type = five ? kGgmlTypeQ5_K : kGgmlTypeQ4_K;
    const std::vector<float> y = Decode(type, EncodeQ45_K(five, 0.5f, 0.125f, scale, min, q));
    for (int e = 0; e < 256; ++e) {
      EXPECT_EQ(y[e], 0.5f * scale[e / 32] * q[e] - 0.125f * min[e / 32])
          << GgmlTypeName(type) << " " << e;
    }
  }
}

// Q6_K from 6-bit signed q[256] (-32..31) and int8 scale[16].
Bytes EncodeQ6_K(float d, const std::vector<int>& scale, const std::vector<int>& q) {
  Bytes b(210, 0);
  for (int e = 0; e < 256; ++e) {
    const int u = q[e] + 32;
    const int half = e / 128, t = (e % 128) / 32, l = e % 32;
    b[64 * half + 32 * (t % 2) + l] |= static_cast<uint8_t>((u & 15) << (4 * (t / 2)));
    b[128 + 32 * half + l] |= static_cast<uint8_t>((u >> 4) << (2 * t));
  }
  for (int s = 0; s < 16; ++s) b[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(scale[s]));
  PutHalf(&b[208], d);
  return b;
}

TEST(GgmlQuantTest, Q6_KSixBitValuesAndSignedScales) {
  std::mt19937 rng(6);
  const std::vector<int> q = RandomInts(rng, 256, -32, 31);
  const std::vector<int> scale = {-128, 127, 1, -1, 0, 64, -64, 3, 9, -9, 100, -100, 2, 50, -7, 8};
  const std::vector<float> y = Decode(kGgmlTypeQ6_K, EncodeQ6_K(0.015625f, scale, q));
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.015625f * scale[e / 16] * q[e]) << e;
}

// ---------------------------------------------------------------------------------------------
// Random blocks against the reference decoder.

Bytes RandomBytes(std::mt19937& rng, size_t n) {
  Bytes b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

TEST(GgmlQuantTest, RandomBlocksMatchTheLiteralReference) {
  std::mt19937 rng(20240611);
  for (uint32_t type : kDecodedTypes) {
    // Every bit pattern: NaN and infinite scales included (they must decode identically).
    const Bytes bytes = RandomBytes(rng, static_cast<size_t>(96 * BlockBytes(type)));
    ExpectValues(Decode(type, bytes), RefDecode(type, bytes), std::string(GgmlTypeName(type)));
  }
}

TEST(GgmlQuantTest, TensorDecodeIsTheSameOnAnyThreadCount) {
  std::mt19937 rng(7);
  for (uint32_t type : kDecodedTypes) {
    const int64_t blocks = 4099;  // enough to split, not a multiple of the thread counts
    const Bytes bytes = RandomBytes(rng, static_cast<size_t>(blocks * BlockBytes(type)));
    const int64_t n = blocks * BlockElements(type);
    const std::vector<float> one = Decode(type, bytes);
    for (int threads : {1, 2, 3, 8}) {
      std::vector<float> got(static_cast<size_t>(n));
      ASSERT_TRUE(DequantizeTensor(type, bytes, n, got.data(), threads).ok());
      ASSERT_EQ(std::memcmp(got.data(), one.data(), got.size() * sizeof(float)), 0)
          << GgmlTypeName(type) << " on " << threads << " threads";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// API contract.

TEST(GgmlQuantTest, TypeTableAndErrors) {
  for (uint32_t type : kDecodedTypes) EXPECT_TRUE(IsDequantizable(type)) << type;
  for (uint32_t type : {kGgmlTypeF32, kGgmlTypeF16, kGgmlTypeBF16, kGgmlTypeIQ2_XXS, 9u, 99u}) {
    EXPECT_FALSE(IsDequantizable(type)) << type;
  }
  EXPECT_EQ(GgmlTypeName(kGgmlTypeQ4_K), "Q4_K");
  EXPECT_EQ(GgmlTypeName(99), "");
  EXPECT_EQ(DequantizableTypeNames(),
            "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K");
  EXPECT_EQ(*GgmlBytes(kGgmlTypeQ6_K, 512), 420);
  EXPECT_EQ(*GgmlBytes(kGgmlTypeF16, 3), 6);
  EXPECT_TRUE(absl::IsInvalidArgument(GgmlBytes(kGgmlTypeQ4_0, 33).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(GgmlBytes(99, 32).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(GgmlBytes(kGgmlTypeQ8_K, INT64_MAX / 256 * 256).status()));

  float out[256];
  const Bytes block(66, 0);
  absl::Status s = DequantizeRow(kGgmlTypeIQ2_XXS, block, 256, out);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_TRUE(absl::StrContains(s.message(), "IQ2_XXS")) << s;
  s = DequantizeRow(99, block, 256, out);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_TRUE(absl::StrContains(s.message(), "99")) << s;
  const Bytes q4(18, 0);
  s = DequantizeRow(kGgmlTypeQ4_0, q4, 16, out);  // half a block
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_TRUE(absl::StrContains(s.message(), "Q4_0")) << s;
  EXPECT_TRUE(absl::IsInvalidArgument(DequantizeRow(kGgmlTypeQ4_0, q4, 64, out)));  // too few
  EXPECT_TRUE(absl::IsInvalidArgument(DequantizeRow(kGgmlTypeQ4_0, q4, -32, out)));
  EXPECT_TRUE(absl::IsInvalidArgument(DequantizeTensor(kGgmlTypeQ4_0, q4, 0, out)));  // too many
  EXPECT_TRUE(DequantizeRow(kGgmlTypeQ4_0, {}, 0, out).ok());
}

// ---------------------------------------------------------------------------------------------
// The golden written by the gguf Python package.

struct Golden {
  struct Synthetic {
    uint32_t type;
    Bytes raw;
    std::vector<float> values;
  };
  struct Real {
    std::string model, tensor;
    uint32_t type;
    std::vector<float> values;
  };
  std::vector<Synthetic> synthetic;
  std::vector<Real> real;
};

class Cursor {
 public:
  explicit Cursor(std::string bytes) : bytes_(std::move(bytes)) {}
  template <typename T>
  T Get() {
    T v{};
    Take(&v, sizeof(T));
    return v;
  }
  void Take(void* out, size_t n) {
    if (n > bytes_.size() - pos_) {
      ADD_FAILURE() << "golden file truncated at " << pos_;
      pos_ = bytes_.size();
      return;
    }
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
  }
  std::string Name() {
    std::string s(Get<uint16_t>(), '\0');
    Take(s.data(), s.size());
    return s;
  }
  std::vector<float> Floats(size_t n) {
    std::vector<float> v(n);
    Take(v.data(), n * sizeof(float));
    return v;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  std::string bytes_;
  size_t pos_ = 0;
};

const Golden& LoadGolden() {
  static const Golden* golden = [] {
    auto* g = new Golden;
    const std::string path = std::string(CLUSTERKV_TEST_DATA_DIR) + "/llama/quant_golden.bin";
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << "cannot open " << path;
    Cursor c(std::string(std::istreambuf_iterator<char>(in), {}));
    char magic[4] = {};
    c.Take(magic, 4);
    EXPECT_EQ(std::string(magic, 4), "CKQG");
    EXPECT_EQ(c.Get<uint32_t>(), 1u);
    for (uint32_t i = 0, n = c.Get<uint32_t>(); i < n; ++i) {
      Golden::Synthetic s;
      s.type = c.Get<uint32_t>();
      const uint32_t blocks = c.Get<uint32_t>();
      if (FindGgmlType(s.type) == nullptr) {
        ADD_FAILURE() << "golden: unknown type " << s.type;
        break;
      }
      s.raw.resize(static_cast<size_t>(blocks * BlockBytes(s.type)));
      c.Take(s.raw.data(), s.raw.size());
      s.values = c.Floats(static_cast<size_t>(blocks * BlockElements(s.type)));
      g->synthetic.push_back(std::move(s));
    }
    for (uint32_t i = 0, n = c.Get<uint32_t>(); i < n; ++i) {
      Golden::Real r;
      r.model = c.Name();
      r.tensor = c.Name();
      r.type = c.Get<uint32_t>();
      r.values = c.Floats(c.Get<uint32_t>());
      g->real.push_back(std::move(r));
    }
    EXPECT_TRUE(c.done()) << "trailing bytes in " << path;
    return g;
  }();
  return *golden;
}

TEST(GgmlQuantGoldenTest, EveryTypeMatchesTheGgufPackageBitForBit) {
  const Golden& golden = LoadGolden();
  std::map<uint32_t, int> seen;
  for (const Golden::Synthetic& s : golden.synthetic) {
    ++seen[s.type];
    ExpectValues(Decode(s.type, s.raw), s.values, std::string(GgmlTypeName(s.type)));
    ExpectValues(RefDecode(s.type, s.raw), s.values,
                 absl::StrCat("reference decoder, ", GgmlTypeName(s.type)));
  }
  for (uint32_t type : kDecodedTypes) EXPECT_EQ(seen[type], 1) << GgmlTypeName(type);
}

// The first rows of real tensors, decoded whole by ReadAsFloat, against the gguf package.
TEST(GgmlQuantGoldenTest, RealModelTensorsMatchTheGgufPackage) {
  const Golden& golden = LoadGolden();
  ASSERT_FALSE(golden.real.empty());
  std::map<std::string, std::unique_ptr<GgufFile>> files;
  std::map<std::string, int> types_seen;
  for (const Golden::Real& r : golden.real) {
    const std::string path = clusterkv::testing::ModelPath(r.model);
    if (files.count(r.model) == 0) {
      ASSERT_EQ(clusterkv::testing::MissingModelMessage(r.model), "");
      absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
      ASSERT_TRUE(file.ok()) << file.status();
      files[r.model] = *std::move(file);
    }
    const StoredTensor* t = files[r.model]->index().FindTensor(r.tensor);
    ASSERT_NE(t, nullptr) << r.model << " has no tensor " << r.tensor;
    ASSERT_EQ(t->ggml_type, r.type) << r.tensor;
    ++types_seen[t->type_name];
    absl::StatusOr<std::vector<float>> values = ReadAsFloat(*t, t->shape);
    ASSERT_TRUE(values.ok()) << values.status();
    ASSERT_GE(values->size(), r.values.size());
    values->resize(r.values.size());
    ExpectValues(*values, r.values, absl::StrCat(r.model, " ", r.tensor, " (", t->type_name, ")"));
  }
  for (const char* type : {"Q4_1", "Q5_0", "Q4_K", "Q6_K", "Q8_0", "F32"}) {
    EXPECT_GT(types_seen[type], 0) << "no real " << type << " tensor in the golden";
  }
}

// ---------------------------------------------------------------------------------------------
// Quantized tensors through the GGUF writer, reader and ReadAsFloat.

GgufTensorToWrite Tensor(const std::string& name, uint32_t type, std::vector<int64_t> shape,
                         const Bytes& bytes) {
  GgufTensorToWrite t;
  t.name = name;
  t.ggml_type = type;
  t.shape = std::move(shape);
  t.bytes.assign(bytes.begin(), bytes.end());
  return t;
}

TEST(GgmlQuantGgufTest, ReadAsFloatDecodesQuantizedTensors) {
  TempDir dir("llama_quant_gguf");
  std::mt19937 rng(11);
  const GgufMetadata md = {{"general.architecture", GgufValue::String("llama")}};
  std::vector<GgufTensorToWrite> tensors;
  std::map<std::string, Bytes> raw;
  for (uint32_t type : kDecodedTypes) {
    // Three rows of two blocks each.
    const Bytes bytes = RandomBytes(rng, static_cast<size_t>(6 * BlockBytes(type)));
    const std::string name = absl::StrCat("t.", GgmlTypeName(type));
    tensors.push_back(Tensor(name, type, {3, 2 * BlockElements(type)}, bytes));
    raw[name] = bytes;
  }
  // A block built from known values: Q4_0 with d = 0.5 and nibbles 0..15.
  Bytes q4(18, 0);
  PutHalf(&q4[0], 0.5f);
  for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<uint8_t>(j | (j << 4));
  tensors.push_back(Tensor("known", kGgmlTypeQ4_0, {32}, q4));
  tensors.push_back(Tensor("iq", kGgmlTypeIQ2_XXS, {2, 256}, Bytes(2 * 66, 0)));
  ASSERT_TRUE(WriteGguf(dir.Sub("q.gguf"), md, tensors).ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(dir.Sub("q.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufIndex& index = (*file)->index();

  for (const auto& [name, bytes] : raw) {
    const StoredTensor* t = index.FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, StoredDType::kQuantized) << name;
    EXPECT_EQ(t->type_name, name.substr(2));
    EXPECT_EQ(t->bytes.size(), bytes.size()) << name;
    absl::StatusOr<std::vector<float>> values = ReadAsFloat(*t, t->shape);
    ASSERT_TRUE(values.ok()) << values.status();
    ExpectValues(*values, RefDecode(t->ggml_type, bytes), name);
    // The shape check comes first, as for the float types.
    EXPECT_TRUE(absl::IsInvalidArgument(ReadAsFloat(*t, {t->shape[1], t->shape[0]}).status()));
  }

  absl::StatusOr<std::vector<float>> known = ReadAsFloat(*index.FindTensor("known"), {32});
  ASSERT_TRUE(known.ok()) << known.status();
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ((*known)[j], (j - 8) * 0.5f);
    EXPECT_EQ((*known)[j + 16], (j - 8) * 0.5f);
  }

  const StoredTensor* iq = index.FindTensor("iq");
  ASSERT_NE(iq, nullptr);
  EXPECT_EQ(iq->dtype, StoredDType::kUnsupported);
  EXPECT_EQ(iq->type_name, "IQ2_XXS");
  const absl::Status refused = ReadAsFloat(*iq, {2, 256}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "IQ2_XXS")) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "iq")) << refused;
}

TEST(GgmlQuantGgufTest, RowsThatAreNotWholeBlocksAreDataLoss) {
  TempDir dir("llama_quant_rows");
  const GgufMetadata md = {{"general.architecture", GgufValue::String("llama")}};
  // 48 elements per row: one and a half Q4_0 blocks.
  ASSERT_TRUE(
      WriteGguf(dir.Sub("bad.gguf"), md, {Tensor("w", kGgmlTypeQ4_0, {2, 48}, Bytes(3 * 18, 0))})
          .ok());
  const absl::Status open = GgufFile::Open(dir.Sub("bad.gguf")).status();
  EXPECT_TRUE(absl::IsDataLoss(open)) << open;
  EXPECT_TRUE(absl::StrContains(open.message(), "w")) << open;

  // A StoredTensor assembled by hand gets the same answer from ReadAsFloat, and so does one
  // whose bytes do not match its blocks.
  const Bytes bytes(4 * 18, 0);
  StoredTensor t;
  t.name = "hand";
  t.dtype = StoredDType::kQuantized;
  t.type_name = "Q4_0";
  t.ggml_type = kGgmlTypeQ4_0;
  t.shape = {3, 48};
  t.bytes = absl::MakeConstSpan(bytes).subspan(0, 3 * 18);
  EXPECT_TRUE(absl::IsDataLoss(ReadAsFloat(t, {3, 48}).status()));
  t.shape = {2, 64};
  t.bytes = absl::MakeConstSpan(bytes).subspan(0, 3 * 18);
  EXPECT_TRUE(absl::IsDataLoss(ReadAsFloat(t, {2, 64}).status()));
  t.bytes = absl::MakeConstSpan(bytes);
  absl::StatusOr<std::vector<float>> ok = ReadAsFloat(t, {2, 64});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 128u);
  t.ggml_type = kGgmlTypeIQ2_XXS;  // kQuantized with a type no decoder knows
  EXPECT_TRUE(absl::IsInvalidArgument(ReadAsFloat(t, {2, 64}).status()));
}

}  // namespace
}  // namespace clusterkv::llama
