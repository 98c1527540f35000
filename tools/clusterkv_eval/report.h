// Output of the quality evaluation: the stdout table (one row per method and budget) and the
// JSON file in the bench format of DESIGN.md section 9:
//   {"bench": "eval", "machine": {...}, "config": {...},
//    "results": [{"variant": "clusterkv", "params": {"budget": 1024, "context": 32768},
//                 "value": <attention-mass recall>, "unit": "attention_mass_recall",
//                 "output_rel_error": ..., "topk_overlap": ..., "samples": ...}, ...]}
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_REPORT_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_REPORT_H_

#include <string>

#include "absl/status/status.h"
#include "core/config.h"
#include "gpu/backend.h"
#include "tools/clusterkv_eval/eval.h"

namespace clusterkv::eval {

// What produced a report, for the JSON "machine" and "config" objects.
struct RunInfo {
  std::string source;  // LayerSource::Describe()
  gpu::ExecContext ctx;
  ClusterKvConfig config;
  int32_t quest_page_size = 16;
  double seconds = 0.0;
};

// Fixed-width table with a header line; ends with a newline.
std::string FormatTable(const EvalReport& report);

// The JSON document above, pretty-printed.
std::string ReportJson(const EvalReport& report, const RunInfo& info);

// Writes ReportJson to `path`. Internal if the file cannot be written.
absl::Status WriteReportJson(const std::string& path, const EvalReport& report,
                             const RunInfo& info);

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_REPORT_H_
