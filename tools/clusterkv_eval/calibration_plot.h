// The calibration plot of libclusterkv's estimated recall: for each budget, the mean true recall
// of ClusterKV's selection (y) against the mean estimate (x) of each calibration bin
// (RecallEstimateQuality::bins), as a PNG. A perfectly calibrated estimator lies on the
// diagonal. The picture carries no text (there is no font here): axes span [0, 1] with a grid
// line every 0.1, the diagonal is grey, and budgets are drawn, ascending, in blue, orange,
// green, red, purple (then again); a point's area grows with the pairs in its bin. The README
// gives the legend.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_CALIBRATION_PLOT_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_CALIBRATION_PLOT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/clusterkv_eval/eval.h"

namespace clusterkv::eval {

// RGB pixels, row-major from the top.
struct Image {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3]
};

// Draws the plot (size x size pixels, size >= 100). InvalidArgument when size is out of range
// or no row of `report` carries an estimate.
absl::StatusOr<Image> RenderCalibrationPlot(const EvalReport& report, int32_t size = 480);

// An 8-bit RGB PNG of `image` (zlib deflate, no interlace).
std::string EncodePng(const Image& image);

// RenderCalibrationPlot + EncodePng, written to `path`.
absl::Status WriteCalibrationPng(const std::string& path, const EvalReport& report);

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_CALIBRATION_PLOT_H_
