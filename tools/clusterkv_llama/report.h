// The tool's output for a ComparisonResult: a fixed-width table (per-step latency breakdown and
// agreement per variant) and the DESIGN.md section 9 JSON report:
//   {"bench": "llama", "machine": {...}, "results": [
//     {"variant": "clusterkv_b1024", "params": {..., "metric": "decode_step_ms"}, "value": p50,
//      "unit": "ms", "baseline": "full_attention", "baseline_value": p50, "ratio": base/value,
//      "ratio_meaning": ..., "p50_us", "p99_us", <breakdown and quality fields>},
//     {"variant": "clusterkv_b1024", "params": {..., "metric": "token_agreement"}, "value": a,
//      "unit": "fraction", "baseline": "full_attention", "baseline_value": 1.0, "ratio": a, ...}]}
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_REPORT_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_REPORT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_llama/comparison.h"

namespace clusterkv::llama {

// What the report records about the run besides the result (model, prompt, options).
struct ReportContext {
  nlohmann::ordered_json params = nlohmann::ordered_json::object();  // shared by every row
  int32_t n_layers = 0;
  int32_t n_kv_heads = 0;
};

// The report's "machine" object: cpu, cores, memory, os, compiler, backend.
nlohmann::ordered_json MachineInfo();
// Writes `json` (invalid UTF-8 replaced); Unavailable when the file cannot be written.
absl::Status WriteJsonFile(const nlohmann::ordered_json& json, const std::string& path);

void PrintTable(const ComparisonResult& result, const ReportContext& context, std::ostream& out);
nlohmann::ordered_json ReportJson(const ComparisonResult& result, const ReportContext& context);
// Unavailable when the file cannot be written.
absl::Status WriteReportJson(const ComparisonResult& result, const ReportContext& context,
                             const std::string& path);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_REPORT_H_
