// The .npy reader/writer of tools/clusterkv_eval: round trips of every dtype under format
// versions 1.0 and 2.0, headers exactly as numpy writes them, and InvalidArgument for every kind
// of malformed file (bad magic, Fortran order, truncation, unsupported dtypes and versions).
#include "tools/clusterkv_eval/npy.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace clusterkv::eval {
namespace {

using ::testing::HasSubstr;

std::vector<float> Ramp(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>(i) - 3.0f;
  return v;
}

// A .npy image with a hand-written header (padded like numpy: data at a multiple of 64).
std::string Image(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<char>(len >> (8 * i)));
  return out + header + data;
}

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

class NpyRoundTripTest : public ::testing::TestWithParam<std::tuple<DType, int>> {};

TEST_P(NpyRoundTripTest, EncodeThenParseGivesTheSameArray) {
  const auto [dtype, version] = GetParam();
  const NpyArray a = NpyArray::FromFloats(Ramp(2 * 3 * 5), {2, 3, 5}, dtype);
  absl::StatusOr<std::string> bytes = EncodeNpy(a, {.version = version});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->substr(0, 6), "\x93NUMPY");
  EXPECT_EQ((*bytes)[6], static_cast<char>(version));
  const size_t data_start = bytes->size() - a.data.size();
  EXPECT_EQ(data_start % 64, 0u);
  EXPECT_EQ((*bytes)[data_start - 1], '\n');

  absl::StatusOr<NpyArray> b = ParseNpy(*bytes, {.bf16 = dtype == DType::kBFloat16});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->dtype, dtype);
  EXPECT_EQ(b->shape, a.shape);
  EXPECT_EQ(b->data, a.data);
  // The values survive (the ramp is exact in every dtype).
  std::vector<float> f(30);
  ConvertToFloat(b->data.data(), b->dtype, 30, f.data());
  EXPECT_EQ(f, Ramp(30));
  EXPECT_EQ(b->View3().Slice(1).At(2, 4), Ramp(30)[1 * 15 + 2 * 5 + 4]);
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, NpyRoundTripTest,
                         ::testing::Combine(::testing::Values(DType::kFloat16, DType::kFloat32,
                                                              DType::kBFloat16),
                                            ::testing::Values(1, 2)));

TEST(NpyTest, ParsesNumpyStyleHeaders) {
  const std::vector<float> v = Ramp(6);
  absl::StatusOr<NpyArray> a =
      ParseNpy(Image("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", FloatBytes(v)));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->dtype, DType::kFloat32);

  // 1-d shape "(6,)", keys in another order, double quotes, version 2.0.
  a = ParseNpy(
      Image("{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<f4\"}", FloatBytes(v), 2));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape, (std::vector<int64_t>{6}));

  // 0-d array: one element.
  a = ParseNpy(Image("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", FloatBytes({7})));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->NumElements(), 1);
}

TEST(NpyTest, Bf16NeedsTheFlagAndAcceptsVoidAndUint16) {
  const std::string data("\x80\x3f\x20\xc0", 4);  // bf16 1.0, -2.5
  for (const char* descr : {"<V2", "|V2", "<u2"}) {
    const std::string img = Image(
        std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2,), }", data);
    absl::StatusOr<NpyArray> no_flag = ParseNpy(img);
    EXPECT_EQ(no_flag.status().code(), absl::StatusCode::kInvalidArgument) << descr;
    EXPECT_THAT(no_flag.status().message(), HasSubstr("--bf16"));
    absl::StatusOr<NpyArray> a = ParseNpy(img, {.bf16 = true});
    ASSERT_TRUE(a.ok()) << descr << ": " << a.status();
    EXPECT_EQ(a->dtype, DType::kBFloat16);
    float f[2];
    ConvertToFloat(a->data.data(), a->dtype, 2, f);
    EXPECT_EQ(f[0], 1.0f);
    EXPECT_EQ(f[1], -2.5f);
  }
}

void ExpectInvalid(const std::string& bytes, const std::string& message_part) {
  absl::StatusOr<NpyArray> a = ParseNpy(bytes, {.bf16 = true});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
  EXPECT_THAT(a.status().message(), HasSubstr(message_part));
}

TEST(NpyTest, RejectsFortranOrder) {
  ExpectInvalid(
      Image("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", FloatBytes(Ramp(6))),
      "Fortran");
}

TEST(NpyTest, RejectsBadMagic) {
  std::string bytes = *EncodeNpy(NpyArray::FromFloats(Ramp(4), {4}, DType::kFloat32));
  bytes[1] = 'X';
  ExpectInvalid(bytes, "magic");
  ExpectInvalid("", "magic");
  ExpectInvalid("PK\x03\x04 this is a zip", "magic");
}

TEST(NpyTest, RejectsTruncatedFiles) {
  const std::string bytes = *EncodeNpy(NpyArray::FromFloats(Ramp(24), {2, 3, 4}, DType::kFloat16));
  ExpectInvalid(bytes.substr(0, bytes.size() - 1), "truncated");  // one data byte short
  ExpectInvalid(bytes.substr(0, 40), "truncated");                // inside the header
  ExpectInvalid(bytes.substr(0, 9), "truncated");                 // inside the length field
}

TEST(NpyTest, RejectsUnsupportedDTypesAndVersions) {
  const std::string d = FloatBytes(Ramp(2)) + FloatBytes(Ramp(2));
  ExpectInvalid(Image("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", d),
                "unsupported dtype '<f8'");
  ExpectInvalid(Image("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", d),
                "big-endian");
  ExpectInvalid(Image("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", d),
                "unsupported dtype");
  ExpectInvalid(
      Image("{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,), }", d),
      "structured");
  std::string v4 = Image("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", d);
  v4[6] = 4;
  ExpectInvalid(v4, "version 4.0");
}

TEST(NpyTest, RejectsMalformedHeaders) {
  const std::string d = FloatBytes(Ramp(2));
  ExpectInvalid(Image("{'descr': '<f4', 'shape': (2,), }", d), "fortran_order");
  ExpectInvalid(Image("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", d), "integer");
  ExpectInvalid(Image("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", d), "'}'");
  ExpectInvalid(Image("['descr', '<f4']", d), "dict");
  ExpectInvalid(Image("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, "
                      "99999999999, 99999999999), }",
                      d),
                "too large");
}

TEST(NpyTest, WriteAndReadFiles) {
  const std::string path = ::testing::TempDir() + "/npy_test_roundtrip.npy";
  const NpyArray a = NpyArray::FromFloats(Ramp(12), {3, 4}, DType::kFloat32);
  ASSERT_TRUE(WriteNpy(path, a).ok());
  absl::StatusOr<NpyArray> b = ReadNpy(path);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->data, a.data);

  EXPECT_EQ(ReadNpy(::testing::TempDir() + "/no_such_file.npy").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteNpy("/nonexistent_dir_for_npy_test/x.npy", a).code(), absl::StatusCode::kInternal);
}

TEST(NpyTest, EncodeRejectsInconsistentArrays) {
  NpyArray a = NpyArray::FromFloats(Ramp(6), {2, 3}, DType::kFloat32);
  a.data.pop_back();
  EXPECT_EQ(EncodeNpy(a).status().code(), absl::StatusCode::kInvalidArgument);
  a = NpyArray::FromFloats(Ramp(6), {2, 3}, DType::kFloat32);
  EXPECT_EQ(EncodeNpy(a, {.version = 3}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clusterkv::eval
