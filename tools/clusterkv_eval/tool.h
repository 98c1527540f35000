// The clusterkv_eval tool as a library: main.cc only turns flags into ToolOptions and calls
// RunEvalTool, so tests can run the whole tool in-process.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_TOOL_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_TOOL_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/kv_layout.h"
#include "tools/clusterkv_eval/eval.h"
#include "tools/clusterkv_eval/synthetic.h"

namespace clusterkv::eval {

// The --help text: what the tool does and the .npy dump layout.
absl::string_view UsageText();

struct ToolOptions {
  // Input: a dump directory (layout in layer_data.h), else synthetic data.
  std::string npy_dir;
  bool bf16 = false;
  SyntheticOptions synthetic;

  // Evaluation (eval.h). eval.ctx is built from backend/threads.
  EvalOptions eval;
  std::string backend = "cpu";
  int threads = 0;

  // Outputs.
  std::string json_path;
  std::string calibration_png;  // the estimated-recall calibration plot (calibration_plot.h)
  std::string dump_npy_dir;  // synthetic only
  DType dump_dtype = DType::kFloat16;
  bool dump_only = false;
  bool progress = true;
};

// "256,512,1024" -> {256, 512, 1024}. InvalidArgument naming `what` on an empty list, a
// non-integer or a negative entry.
absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view text, absl::string_view what);

// Runs the tool: table on `out`, progress and notes on `err`, JSON and .npy dump files as asked.
// InvalidArgument for inconsistent options (e.g. --dump_npy with --npy_dir); other errors pass
// through from the source, the evaluation and the writers.
absl::Status RunEvalTool(const ToolOptions& options, std::ostream& out, std::ostream& err);

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_TOOL_H_
