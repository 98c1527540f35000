#include "tools/clusterkv_llama/ggml_quant.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/status_macros.h"

namespace clusterkv::llama {
namespace {

// Elements per super-block of the K-quants.
constexpr int kSuper = 256;

// ggml.h's types with their block geometry, so every tensor's byte range can be checked even
// for the types the engine refuses to read.
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return HalfToFloat(h);
}

// The 32-element types. A block starts with its fp16 scale d (and, for the _1 types, the fp16
// minimum m). The 4-bit values sit in 16 bytes: byte j holds element j in its low nibble and
// element j + 16 in its high nibble. Q5 adds a 32-bit little-endian plane whose bit j is bit 4
// of element j. Signed types centre the unsigned value (Q4: -8, Q5: -16): y = d * (q - centre);
// the _1 types are unsigned with an offset: y = d * q + m.

void DecodeQ4_0(const uint8_t* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 18, y += 32) {
    const float d = LoadHalf(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
      y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

void DecodeQ4_1(const uint8_t* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 20, y += 32) {
    const float d = LoadHalf(b);
    const float m = LoadHalf(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
      y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

// Q5_0 and Q5_1 share the bit layout; kHasMin selects the unsigned-with-offset form.
template <bool kHasMin>
void DecodeQ5(const uint8_t* b, int64_t blocks, float* y) {
  constexpr int kBytes = kHasMin ? 24 : 22;
  for (int64_t i = 0; i < blocks; ++i, b += kBytes, y += 32) {
    const float d = LoadHalf(b);
    const float m = kHasMin ? LoadHalf(b + 2) : 0.0f;
    const uint8_t* p = b + (kHasMin ? 4 : 2);
    uint32_t high;
    std::memcpy(&high, p, sizeof(high));
    const uint8_t* qs = p + 4;
    int q[32];
    for (int j = 0; j < 16; ++j) {
      q[j] = (qs[j] & 0x0f) | static_cast<int>(((high >> j) & 1u) << 4);
      q[j + 16] = (qs[j] >> 4) | static_cast<int>(((high >> (j + 16)) & 1u) << 4);
    }
    for (int j = 0; j < 32; ++j) {
      if constexpr (kHasMin) {
        y[j] = d * static_cast<float>(q[j]) + m;
      } else {
        y[j] = d * static_cast<float>(q[j] - 16);
      }
    }
  }
}

void DecodeQ8_0(const uint8_t* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 34, y += 32) {
    const float d = LoadHalf(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(qs[j]));
  }
}

// The K-quants: 256-element super-blocks of 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32
// (Q4_K, Q5_K), each sub-block with its own small integer scale (and min) that multiplies the
// super-block's fp16 d (and dmin). Sub-block scales are turned into fp32 factors first
// (d * scale, dmin * min), then y = factor * q (- min factor).
//
// The 2-bit planes of Q2_K and Q3_K: each half of the super-block (128 elements) reads 32
// bytes; element 32 * s + l of the half (s = 0..3, l = 0..31) is bits 2s, 2s + 1 of byte l.

void DecodeQ2_K(const uint8_t* b, int64_t blocks, float* y) {
  // scales[16] (low nibble: scale, high nibble: min), qs[64], d, dmin.
  for (int64_t i = 0; i < blocks; ++i, b += 84, y += kSuper) {
    const uint8_t* scales = b;
    const uint8_t* qs = b + 16;
    const float d = LoadHalf(b + 80);
    const float dmin = LoadHalf(b + 82);
    for (int sub = 0; sub < 16; ++sub) {
      const float factor = d * static_cast<float>(scales[sub] & 0x0f);
      const float offset = dmin * static_cast<float>(scales[sub] >> 4);
      const int half = sub / 8, shift = 2 * ((sub % 8) / 2), first = 16 * (sub % 2);
      const uint8_t* src = qs + 32 * half + first;
      float* out = y + 16 * sub;
      for (int l = 0; l < 16; ++l) {
        out[l] = factor * static_cast<float>((src[l] >> shift) & 3) - offset;
      }
    }
  }
}

void DecodeQ3_K(const uint8_t* b, int64_t blocks, float* y) {
  // hmask[32], qs[64], scales[12], d. The 16 6-bit scales: low nibbles in bytes 0..7 (sub j < 8
  // in the low nibble of byte j, sub j >= 8 in the high nibble of byte j - 8), high two bits in
  // bytes 8..11 (sub j at bits 2 * (j / 4) of byte 8 + j % 4); the scale is that value - 32.
  // The high-bit plane: element e's bit 2 comes from bit e / 32 of hmask[e % 32]; a clear bit
  // subtracts 4 from the 2-bit value (a set bit keeps it as is).
  for (int64_t i = 0; i < blocks; ++i, b += 110, y += kSuper) {
    const uint8_t* hmask = b;
    const uint8_t* qs = b + 32;
    const uint8_t* packed = b + 96;
    const float d = LoadHalf(b + 108);
    for (int sub = 0; sub < 16; ++sub) {
      const int low = sub < 8 ? packed[sub] & 0x0f : packed[sub - 8] >> 4;
      const int high = (packed[8 + sub % 4] >> (2 * (sub / 4))) & 3;
      const float factor = d * static_cast<float>((low | (high << 4)) - 32);
      const int half = sub / 8, shift = 2 * ((sub % 8) / 2), first = 16 * (sub % 2);
      const int plane = sub / 2;  // (16 * sub) / 32
      const uint8_t* src = qs + 32 * half + first;
      const uint8_t* hsrc = hmask + first;
      float* out = y + 16 * sub;
      for (int l = 0; l < 16; ++l) {
        const int q = ((src[l] >> shift) & 3) - (((hsrc[l] >> plane) & 1) != 0 ? 0 : 4);
        out[l] = factor * static_cast<float>(q);
      }
    }
  }
}

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: for sub-block
// j < 4, scale = bytes[j] & 63 and min = bytes[j + 4] & 63; for j >= 4 the low four bits come
// from byte j + 4 (scale: low nibble, min: high nibble) and the top two from bits 6..7 of
// byte j - 4 (scale) and byte j (min).
void UnpackScalesMins(const uint8_t* packed, int scale[8], int min[8]) {
  for (int j = 0; j < 4; ++j) {
    scale[j] = packed[j] & 63;
    min[j] = packed[j + 4] & 63;
  }
  for (int j = 4; j < 8; ++j) {
    scale[j] = (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4);
    min[j] = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

// Q4_K and Q5_K: d, dmin, scales[12], (Q5_K: qh[32],) qs[128]. Sub-block j (32 elements) takes
// the low nibbles (even j) or high nibbles (odd j) of qs[32 * (j / 2), +32); Q5_K's bit 4 of
// element l of sub-block j is bit j of qh[l].
template <bool kHighBits>
void DecodeQ45_K(const uint8_t* b, int64_t blocks, float* y) {
  constexpr int kBytes = kHighBits ? 176 : 144;
  for (int64_t i = 0; i < blocks; ++i, b += kBytes, y += kSuper) {
    const float d = LoadHalf(b);
    const float dmin = LoadHalf(b + 2);
    int scale[8], min[8];
    UnpackScalesMins(b + 4, scale, min);
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + (kHighBits ? 48 : 16);
    for (int j = 0; j < 8; ++j) {
      const float factor = d * static_cast<float>(scale[j]);
      const float offset = dmin * static_cast<float>(min[j]);
      const uint8_t* src = qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      float* out = y + 32 * j;
      for (int l = 0; l < 32; ++l) {
        int q = (src[l] >> shift) & 0x0f;
        if constexpr (kHighBits) q |= ((qh[l] >> j) & 1) << 4;
        out[l] = factor * static_cast<float>(q) - offset;
      }
    }
  }
}

void DecodeQ6_K(const uint8_t* b, int64_t blocks, float* y) {
  // ql[128], qh[64], int8 scales[16], d. Each half of the super-block (128 elements) reads 64
  // bytes of ql and 32 of qh. Element 32 * t + l of a half (t = 0..3, l = 0..31): low four bits
  // from ql[32 * (t % 2) + l] (low nibble for t < 2, high nibble otherwise), top two bits from
  // bits 2t, 2t + 1 of qh[l]; the value is that 6-bit number - 32.
  for (int64_t i = 0; i < blocks; ++i, b += 210, y += kSuper) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const uint8_t* scales = b + 192;
    const float d = LoadHalf(b + 208);
    for (int sub = 0; sub < 16; ++sub) {
      const float factor = d * static_cast<float>(static_cast<int8_t>(scales[sub]));
      const int half = sub / 8, t = (sub % 8) / 2, first = 16 * (sub % 2);
      const uint8_t* lsrc = ql + 64 * half + 32 * (t % 2) + first;
      const uint8_t* hsrc = qh + 32 * half + first;
      const int lshift = 4 * (t / 2), hshift = 2 * t;
      float* out = y + 16 * sub;
      for (int l = 0; l < 16; ++l) {
        const int q = (((lsrc[l] >> lshift) & 0x0f) | (((hsrc[l] >> hshift) & 3) << 4)) - 32;
        out[l] = factor * static_cast<float>(q);
      }
    }
  }
}

void DecodeQ8_K(const uint8_t* b, int64_t blocks, float* y) {
  // fp32 d, int8 qs[256], then 16 int16 block sums that only matter to dot products.
  for (int64_t i = 0; i < blocks; ++i, b += 292, y += kSuper) {
    float d;
    std::memcpy(&d, b, sizeof(d));
    const uint8_t* qs = b + 4;
    for (int j = 0; j < kSuper; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(qs[j]));
  }
}

using BlockDecoder = void (*)(const uint8_t* blocks, int64_t count, float* dst);

// nullptr for the types this module does not decode.
BlockDecoder DecoderFor(uint32_t type) {
  switch (type) {
    case kGgmlTypeQ4_0:
      return DecodeQ4_0;
    case kGgmlTypeQ4_1:
      return DecodeQ4_1;
    case kGgmlTypeQ5_0:
      return DecodeQ5<false>;
    case kGgmlTypeQ5_1:
      return DecodeQ5<true>;
    case kGgmlTypeQ8_0:
      return DecodeQ8_0;
    case kGgmlTypeQ2_K:
      return DecodeQ2_K;
    case kGgmlTypeQ3_K:
      return DecodeQ3_K;
    case kGgmlTypeQ4_K:
      return DecodeQ45_K<false>;
    case kGgmlTypeQ5_K:
      return DecodeQ45_K<true>;
    case kGgmlTypeQ6_K:
      return DecodeQ6_K;
    case kGgmlTypeQ8_K:
      return DecodeQ8_K;
    default:
      return nullptr;
  }
}

std::string TypeForMessage(uint32_t type) {
  const absl::string_view name = GgmlTypeName(type);
  return name.empty() ? absl::StrCat("unknown GGML type ", type) : std::string(name);
}

// The checks DequantizeRow and DequantizeTensor share; on success *blocks is the block count.
absl::Status Check(uint32_t type, absl::Span<const uint8_t> src, int64_t n, BlockDecoder* decoder,
                   int64_t* blocks) {
  *decoder = DecoderFor(type);
  if (*decoder == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot dequantize ", TypeForMessage(type),
                                                   " (decoded types: ", DequantizableTypeNames(),
                                                   ")"));
  }
  ASSIGN_OR_RETURN(const int64_t bytes, GgmlBytes(type, n));
  if (static_cast<uint64_t>(bytes) != src.size()) {
    return absl::InvalidArgumentError(absl::StrCat(GgmlTypeName(type), ": ", n, " elements take ",
                                                   bytes, " bytes, got ", src.size()));
  }
  *blocks = n / FindGgmlType(type)->block_elements;
  return absl::OkStatus();
}

// Below this many elements a tensor decodes on the calling thread: starting threads would cost
// more than the work.
constexpr int64_t kMinParallelElements = int64_t{1} << 16;

}  // namespace

const GgmlTypeInfo* FindGgmlType(uint32_t type) {
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (t.id == type) return &t;
  }
  return nullptr;
}

absl::string_view GgmlTypeName(uint32_t type) {
  const GgmlTypeInfo* info = FindGgmlType(type);
  return info == nullptr ? "" : info->name;
}

bool IsDequantizable(uint32_t type) { return DecoderFor(type) != nullptr; }

std::string DequantizableTypeNames() {
  std::string out;
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (IsDequantizable(t.id)) absl::StrAppend(&out, out.empty() ? "" : ", ", t.name);
  }
  return out;
}

absl::StatusOr<int64_t> GgmlBytes(uint32_t type, int64_t n) {
  const GgmlTypeInfo* info = FindGgmlType(type);
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown GGML type ", type));
  }
  if (n < 0 || n % info->block_elements != 0) {
    return absl::InvalidArgumentError(absl::StrCat(info->name, ": ", n,
                                                   " elements are not a whole number of ",
                                                   info->block_elements, "-element blocks"));
  }
  const int64_t blocks = n / info->block_elements;
  if (blocks > INT64_MAX / info->block_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " elements of ", info->name, " do not fit in 64-bit byte counts"));
  }
  return blocks * info->block_bytes;
}

absl::Status DequantizeRow(uint32_t type, absl::Span<const uint8_t> src, int64_t n, float* dst) {
  BlockDecoder decode;
  int64_t blocks;
  RETURN_IF_ERROR(Check(type, src, n, &decode, &blocks));
  decode(src.data(), blocks, dst);
  return absl::OkStatus();
}

absl::Status DequantizeTensor(uint32_t type, absl::Span<const uint8_t> src, int64_t n, float* dst,
                              int threads) {
  BlockDecoder decode;
  int64_t blocks;
  RETURN_IF_ERROR(Check(type, src, n, &decode, &blocks));
  const GgmlTypeInfo& info = *FindGgmlType(type);
  const int use = n < kMinParallelElements ? 1 : threads > 0 ? threads : DefaultThreads();
  ParallelFor(blocks, use, [&](int64_t begin, int64_t end, int) {
    decode(src.data() + begin * info.block_bytes, end - begin, dst + begin * info.block_elements);
  });
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
