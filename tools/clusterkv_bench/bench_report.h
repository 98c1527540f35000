// Reporting for clusterkv_bench: timing of repeated runs (median, p50, p99), result rows, the
// table printed to stdout and the JSON report (DESIGN.md section 9):
//
//   {"bench": NAME, "machine": {...},
//    "results": [{"variant": ..., "params": {...}, "value": X, "unit": ..., "baseline": ...,
//                 "baseline_value": Y, "ratio": R, "ratio_meaning": ..., "p50_us": ...,
//                 "p99_us": ..., <extra fields>}]}
//
// For times ratio = baseline_value / value, so a ratio > 1 always means better than the
// baseline; ratio_meaning says which formula a row uses. Not thread-safe; one Report per run.
//
// Example:
//   ASSIGN_OR_RETURN(TimingStats ours, TimeRuns(1, 3, [&] { return RunOurs(); }));
//   ASSIGN_OR_RETURN(TimingStats base, TimeRuns(1, 3, [&] { return RunBaseline(); }));
//   Report report("kmeans");
//   report.Add(TimeRow("ours", {{"threads", 2}}, "ms", ours, "faiss", base));
//   report.PrintTable(std::cout);
//   RETURN_IF_ERROR(report.WriteJson(path));
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_REPORT_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_REPORT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace clusterkv::bench {

using Json = nlohmann::ordered_json;

inline constexpr absl::string_view kTimeRatioMeaning =
    "baseline_value / value (time): > 1 means faster than the baseline";
inline constexpr absl::string_view kHigherBetterRatioMeaning =
    "value / baseline_value (higher is better): > 1 means better than the baseline";

// q-quantile (q in [0, 1]) of `samples` with linear interpolation between order statistics;
// NaN for an empty input.
double Percentile(std::vector<double> samples, double q);

// Wall times of repeated runs of one measurement, in microseconds.
struct TimingStats {
  std::vector<double> samples_us;
  double p50_us = 0.0;  // the median: the figure a row reports as its value
  double p99_us = 0.0;

  static TimingStats FromSamples(std::vector<double> samples_us);
};

// Runs fn `warmup` times untimed, then `repeats` times timed (steady clock). Returns the first
// error of fn; InvalidArgument when repeats < 1 or warmup < 0.
absl::StatusOr<TimingStats> TimeRuns(int warmup, int repeats,
                                     const std::function<absl::Status()>& fn);

// One row of a report. A row without timings (e.g. a clustering objective) leaves p50/p99
// unset; they are written as null.
struct ResultRow {
  std::string variant;
  Json params = Json::object();
  double value = 0.0;
  std::string unit;
  std::string baseline;
  double baseline_value = 0.0;
  double ratio = 0.0;
  std::string ratio_meaning;
  std::optional<double> p50_us;
  std::optional<double> p99_us;
  Json extra = Json::object();  // appended after the standard fields
};

// A time row: value and baseline_value are the medians in `unit` ("s", "ms" or "us"),
// ratio = baseline / ours; extra holds the baseline's own p50/p99 and the repeat count.
ResultRow TimeRow(std::string variant, Json params, absl::string_view unit, const TimingStats& ours,
                  std::string baseline, const TimingStats& base);

// A higher-is-better row (ratio = value / baseline_value).
ResultRow HigherBetterRow(std::string variant, Json params, double value, std::string unit,
                          std::string baseline, double baseline_value);

// Facts about this machine recorded in every report: cpu, cores, memory_gib,
// openblas_coretype (the environment variable or null), omp_max_threads, compiler, os, cuda.
Json MachineInfo();

// MemAvailable of /proc/meminfo in bytes; -1 when unknown.
int64_t AvailableMemoryBytes();

// The thread count a `threads` option stands for (0: all cores).
int ResolveThreads(int threads);

class Report {
 public:
  explicit Report(std::string bench) : bench_(std::move(bench)) {}

  void Add(ResultRow row) { rows_.push_back(std::move(row)); }
  const std::vector<ResultRow>& rows() const { return rows_; }

  // {"bench", "machine", "results"} as documented above.
  Json ToJson() const;
  // A fixed-width table, one line per row, with a title line.
  void PrintTable(std::ostream& os) const;
  // Writes ToJson() to `path` (pretty-printed). Unavailable when the file cannot be opened or
  // written.
  absl::Status WriteJson(const std::string& path) const;

 private:
  std::string bench_;
  std::vector<ResultRow> rows_;
};

// Prints the table and, when json_path is non-empty, writes the JSON file.
absl::Status EmitReport(const Report& report, const std::string& json_path);

// Comma-free compact rendering of a params object for the table: "k=v k=v".
std::string FormatParams(const Json& params);

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_REPORT_H_
