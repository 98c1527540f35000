#include "tools/clusterkv_eval/calibration_plot.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace clusterkv::eval {
namespace {

using Rgb = std::array<uint8_t, 3>;

constexpr std::array<Rgb, 5> kBudgetColors = {{{31, 119, 180},
                                               {255, 127, 14},
                                               {44, 160, 44},
                                               {214, 39, 40},
                                               {148, 103, 189}}};

void Put(Image& im, int32_t x, int32_t y, const Rgb& c) {
  if (x < 0 || y < 0 || x >= im.width || y >= im.height) return;
  uint8_t* p = &im.rgb[(static_cast<size_t>(y) * im.width + x) * 3];
  p[0] = c[0];
  p[1] = c[1];
  p[2] = c[2];
}

void Line(Image& im, int32_t x0, int32_t y0, int32_t x1, int32_t y1, const Rgb& c) {
  const int32_t steps = std::max(std::abs(x1 - x0), std::abs(y1 - y0));
  for (int32_t i = 0; i <= steps; ++i) {
    const double t = steps == 0 ? 0.0 : static_cast<double>(i) / steps;
    Put(im, static_cast<int32_t>(std::lround(x0 + t * (x1 - x0))),
        static_cast<int32_t>(std::lround(y0 + t * (y1 - y0))), c);
  }
}

void Disc(Image& im, int32_t cx, int32_t cy, int32_t r, const Rgb& c) {
  for (int32_t dy = -r; dy <= r; ++dy) {
    for (int32_t dx = -r; dx <= r; ++dx) {
      if (dx * dx + dy * dy <= r * r) Put(im, cx + dx, cy + dy, c);
    }
  }
}

void Chunk(std::string& out, const char type[4], const std::string& data) {
  auto be32 = [&out](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
  };
  be32(static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.append(type, 4);
  out += data;
  be32(static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(out.data() + start),
                                   static_cast<uInt>(out.size() - start))));
}

}  // namespace

absl::StatusOr<Image> RenderCalibrationPlot(const EvalReport& report, int32_t size) {
  if (size < 100 || size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("plot size ", size, " not in [100, 4096]"));
  }
  Image im;
  im.width = im.height = size;
  im.rgb.assign(static_cast<size_t>(size) * size * 3, 255);
  const int32_t margin = size / 12, span = size - 2 * margin;
  auto px = [&](double v) { return margin + static_cast<int32_t>(std::lround(v * span)); };
  auto py = [&](double v) { return size - 1 - px(v); };
  for (int i = 0; i <= 10; ++i) {  // grid every 0.1, the frame darker
    const Rgb c = (i == 0 || i == 10) ? Rgb{0, 0, 0} : Rgb{225, 225, 225};
    Line(im, px(i / 10.0), py(0), px(i / 10.0), py(1), c);
    Line(im, px(0), py(i / 10.0), px(1), py(i / 10.0), c);
  }
  Line(im, px(0), py(0), px(1), py(1), Rgb{128, 128, 128});
  int drawn = 0;
  for (const MethodMetrics& m : report.rows) {
    if (m.estimate.pairs == 0) continue;
    const Rgb color = kBudgetColors[drawn % kBudgetColors.size()];
    ++drawn;
    int32_t prev_x = -1, prev_y = -1;
    for (const CalibrationBin& b : m.estimate.bins) {
      const int32_t x = px(b.mean_estimate), y = py(b.mean_true);
      if (prev_x >= 0) Line(im, prev_x, prev_y, x, y, color);
      const double share = static_cast<double>(b.count) / static_cast<double>(m.estimate.pairs);
      Disc(im, x, y, 2 + static_cast<int32_t>(std::lround(std::sqrt(share) * size / 60.0)), color);
      prev_x = x;
      prev_y = y;
    }
  }
  if (drawn == 0) return absl::InvalidArgumentError("no estimated-recall rows to plot");
  return im;
}

std::string EncodePng(const Image& image) {
  std::string raw;
  raw.reserve(static_cast<size_t>(image.height) * (1 + image.width * 3));
  for (int32_t y = 0; y < image.height; ++y) {
    raw.push_back(0);  // filter: none
    raw.append(reinterpret_cast<const char*>(&image.rgb[static_cast<size_t>(y) * image.width * 3]),
               static_cast<size_t>(image.width) * 3);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
            reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()), 9);
  packed.resize(packed_size);
  std::string ihdr;
  for (uint32_t v : {static_cast<uint32_t>(image.width), static_cast<uint32_t>(image.height)}) {
    for (int s = 24; s >= 0; s -= 8) ihdr.push_back(static_cast<char>((v >> s) & 0xff));
  }
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit, RGB, deflate, no filter, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  Chunk(png, "IHDR", ihdr);
  Chunk(png, "IDAT", packed);
  Chunk(png, "IEND", "");
  return png;
}

absl::Status WriteCalibrationPng(const std::string& path, const EvalReport& report) {
  absl::StatusOr<Image> image = RenderCalibrationPlot(report);
  if (!image.ok()) return image.status();
  const std::string png = EncodePng(*image);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create ", path));
  out.write(png.data(), static_cast<std::streamsize>(png.size()));
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("write error on ", path));
  return absl::OkStatus();
}

}  // namespace clusterkv::eval
