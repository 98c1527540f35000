// The calibration plot: drawn where the bins say, and encoded as a PNG that zlib decodes back to
// the same pixels.
#include "tools/clusterkv_eval/calibration_plot.h"

#include <zlib.h>

#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace clusterkv::eval {
namespace {

uint32_t Be32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

EvalReport OneBudget() {
  EvalReport report;
  MethodMetrics row;
  row.budget = 1024;
  row.estimate.pairs = 10;
  row.estimate.bins = {CalibrationBin{.lower = 0.5, .count = 4, .mean_estimate = 0.55,
                                      .mean_true = 0.5},
                       CalibrationBin{.lower = 0.9, .count = 6, .mean_estimate = 0.95,
                                      .mean_true = 0.9}};
  report.rows.push_back(row);
  MethodMetrics other;  // no estimate: not drawn
  report.rows.push_back(other);
  return report;
}

TEST(CalibrationPlotTest, DrawsEachBinWhereItsMeansPlaceIt) {
  absl::StatusOr<Image> image = RenderCalibrationPlot(OneBudget(), 200);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->width, 200);
  ASSERT_EQ(image->rgb.size(), 200u * 200 * 3);
  auto pixel = [&](double x, double y) {
    const int margin = 200 / 12, span = 200 - 2 * margin;
    const int px = margin + static_cast<int>(std::lround(x * span));
    const int py = 199 - (margin + static_cast<int>(std::lround(y * span)));
    const uint8_t* p = &image->rgb[(static_cast<size_t>(py) * 200 + px) * 3];
    return std::array<uint8_t, 3>{p[0], p[1], p[2]};
  };
  const std::array<uint8_t, 3> blue = {31, 119, 180};
  EXPECT_EQ(pixel(0.55, 0.5), blue);  // the first budget's colour at each bin's (estimate, true)
  EXPECT_EQ(pixel(0.95, 0.9), blue);
  EXPECT_EQ(pixel(0.3, 0.3), (std::array<uint8_t, 3>{128, 128, 128}));  // the diagonal
  EXPECT_EQ(pixel(0.25, 0.75), (std::array<uint8_t, 3>{255, 255, 255}));  // empty

  EXPECT_EQ(RenderCalibrationPlot(EvalReport()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderCalibrationPlot(OneBudget(), 20).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CalibrationPlotTest, ThePngDecodesToThePixels) {
  absl::StatusOr<Image> image = RenderCalibrationPlot(OneBudget(), 120);
  ASSERT_TRUE(image.ok());
  const std::string png = EncodePng(*image);
  ASSERT_EQ(png.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)), 0);
  ASSERT_EQ(Be32(png, 8), 13u);
  ASSERT_EQ(png.compare(12, 4, "IHDR"), 0);
  EXPECT_EQ(Be32(png, 16), 120u);
  EXPECT_EQ(Be32(png, 20), 120u);
  EXPECT_EQ(png[24], 8);  // bit depth
  EXPECT_EQ(png[25], 2);  // RGB
  // Every chunk's CRC covers its type and data.
  size_t at = 8;
  std::string idat;
  while (at < png.size()) {
    const uint32_t length = Be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), length + 4));
    EXPECT_EQ(Be32(png, at + 8 + length), crc) << type;
    if (type == "IDAT") idat += png.substr(at + 8, length);
    at += 12 + length;
  }
  EXPECT_EQ(at, png.size());
  EXPECT_EQ(png.compare(png.size() - 8, 4, "IEND"), 0);
  std::string raw(120 * (1 + 120 * 3), '\0');
  uLongf raw_size = raw.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_size,
                       reinterpret_cast<const Bytef*>(idat.data()), idat.size()),
            Z_OK);
  ASSERT_EQ(raw_size, raw.size());
  for (int y = 0; y < 120; ++y) {
    ASSERT_EQ(raw[y * (1 + 360)], 0) << "filter of row " << y;
    ASSERT_EQ(std::memcmp(&raw[y * (1 + 360) + 1], &image->rgb[y * 360], 360), 0) << "row " << y;
  }
}

}  // namespace
}  // namespace clusterkv::eval
