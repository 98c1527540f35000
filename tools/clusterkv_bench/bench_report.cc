#include "tools/clusterkv_bench/bench_report.h"

#include <omp.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/backend.h"

namespace clusterkv::bench {
namespace {

double UnitPerMicrosecond(absl::string_view unit) {
  if (unit == "s") return 1e-6;
  if (unit == "ms") return 1e-3;
  return 1.0;  // "us"
}

// The value of the first "key : value" line of a /proc file whose key equals `key`.
std::string ProcField(const char* path, absl::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (absl::StripAsciiWhitespace(kv.first) == key) {
      return std::string(absl::StripAsciiWhitespace(kv.second));
    }
  }
  return "";
}

// Renders a number for the table: integers as such, others with 4 significant digits.
std::string FormatNumber(double v) {
  if (std::isnan(v)) return "-";
  if ((v == std::floor(v) || std::fabs(v) >= 1000) && std::fabs(v) < 1e15) {
    return absl::StrFormat("%.0f", v);
  }
  return absl::StrFormat("%.4g", v);
}

std::string JsonScalarText(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return FormatNumber(v.get<double>());
  return v.dump();
}

}  // namespace

double Percentile(std::vector<double> samples, double q) {
  if (samples.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(samples.begin(), samples.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(samples.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, samples.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return samples[lo] + (samples[hi] - samples[lo]) * frac;
}

TimingStats TimingStats::FromSamples(std::vector<double> samples_us) {
  TimingStats s;
  s.p50_us = Percentile(samples_us, 0.5);
  s.p99_us = Percentile(samples_us, 0.99);
  s.samples_us = std::move(samples_us);
  return s;
}

absl::StatusOr<TimingStats> TimeRuns(int warmup, int repeats,
                                     const std::function<absl::Status()>& fn) {
  if (repeats < 1) return absl::InvalidArgumentError("repeats must be >= 1");
  if (warmup < 0) return absl::InvalidArgumentError("warmup must be >= 0");
  for (int i = 0; i < warmup; ++i) RETURN_IF_ERROR(fn());
  std::vector<double> samples;
  samples.reserve(repeats);
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(fn());
    const auto stop = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
  }
  return TimingStats::FromSamples(std::move(samples));
}

ResultRow TimeRow(std::string variant, Json params, absl::string_view unit, const TimingStats& ours,
                  std::string baseline, const TimingStats& base) {
  const double scale = UnitPerMicrosecond(unit);
  ResultRow row;
  row.variant = std::move(variant);
  row.params = std::move(params);
  row.value = ours.p50_us * scale;
  row.unit = std::string(unit);
  row.baseline = std::move(baseline);
  row.baseline_value = base.p50_us * scale;
  row.ratio = ours.p50_us > 0 ? base.p50_us / ours.p50_us : 0.0;
  row.ratio_meaning = std::string(kTimeRatioMeaning);
  row.p50_us = ours.p50_us;
  row.p99_us = ours.p99_us;
  row.extra["baseline_p50_us"] = base.p50_us;
  row.extra["baseline_p99_us"] = base.p99_us;
  row.extra["repeats"] = ours.samples_us.size();
  return row;
}

ResultRow HigherBetterRow(std::string variant, Json params, double value, std::string unit,
                          std::string baseline, double baseline_value) {
  ResultRow row;
  row.variant = std::move(variant);
  row.params = std::move(params);
  row.value = value;
  row.unit = std::move(unit);
  row.baseline = std::move(baseline);
  row.baseline_value = baseline_value;
  row.ratio = baseline_value != 0 ? value / baseline_value : 0.0;
  row.ratio_meaning = std::string(kHigherBetterRatioMeaning);
  return row;
}

int64_t AvailableMemoryBytes() {
  int64_t kib = 0;
  const std::string mem = ProcField("/proc/meminfo", "MemAvailable");
  if (!absl::SimpleAtoi(absl::StripSuffix(mem, " kB"), &kib)) return -1;
  return kib * 1024;
}

int ResolveThreads(int threads) { return threads > 0 ? threads : DefaultThreads(); }

Json MachineInfo() {
  Json m = Json::object();
  const std::string cpu = ProcField("/proc/cpuinfo", "model name");
  m["cpu"] = cpu.empty() ? Json(nullptr) : Json(cpu);
  m["cores"] = std::thread::hardware_concurrency();
  // MemTotal is "NNNN kB".
  double mem_gib = 0.0;
  int64_t kib = 0;
  std::string mem = ProcField("/proc/meminfo", "MemTotal");
  if (absl::SimpleAtoi(absl::StripSuffix(mem, " kB"), &kib)) {
    mem_gib = static_cast<double>(kib) / (1024.0 * 1024.0);
  }
  m["memory_gib"] = std::round(mem_gib * 10.0) / 10.0;
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  m["openblas_coretype"] = coretype != nullptr ? Json(coretype) : Json(nullptr);
  const char* omp_threads = std::getenv("OMP_NUM_THREADS");
  m["omp_num_threads_env"] = omp_threads != nullptr ? Json(omp_threads) : Json(nullptr);
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  m["omp_wait_policy"] = wait_policy != nullptr ? Json(wait_policy) : Json(nullptr);
  m["omp_max_threads"] = omp_get_max_threads();
  struct utsname u;
  if (uname(&u) == 0) m["os"] = absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
  m["compiler"] = absl::StrCat("gcc ", __VERSION__);
  m["backend"] = "cpu";
  const absl::Status cuda = gpu::CudaDeviceStatus();
  m["cuda"] = cuda.ok() ? std::string("available") : std::string(cuda.message());
  return m;
}

Json Report::ToJson() const {
  Json results = Json::array();
  for (const ResultRow& r : rows_) {
    Json j = Json::object();
    j["variant"] = r.variant;
    j["params"] = r.params;
    j["value"] = r.value;
    j["unit"] = r.unit;
    j["baseline"] = r.baseline;
    j["baseline_value"] = r.baseline_value;
    j["ratio"] = r.ratio;
    j["ratio_meaning"] = r.ratio_meaning;
    j["p50_us"] = r.p50_us.has_value() ? Json(*r.p50_us) : Json(nullptr);
    j["p99_us"] = r.p99_us.has_value() ? Json(*r.p99_us) : Json(nullptr);
    for (const auto& [key, value] : r.extra.items()) j[key] = value;
    results.push_back(std::move(j));
  }
  Json out = Json::object();
  out["bench"] = bench_;
  out["machine"] = MachineInfo();
  out["results"] = std::move(results);
  return out;
}

std::string FormatParams(const Json& params) {
  std::string out;
  for (const auto& [key, value] : params.items()) {
    if (!out.empty()) out += ' ';
    absl::StrAppend(&out, key, "=", JsonScalarText(value));
  }
  return out;
}

void Report::PrintTable(std::ostream& os) const {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"variant", "params", "value", "unit", "baseline", "baseline_value", "ratio",
                   "p50_us", "p99_us"});
  for (const ResultRow& r : rows_) {
    cells.push_back({r.variant, FormatParams(r.params), FormatNumber(r.value), r.unit, r.baseline,
                     FormatNumber(r.baseline_value), absl::StrFormat("%.3f", r.ratio),
                     r.p50_us ? FormatNumber(std::round(*r.p50_us)) : "-",
                     r.p99_us ? FormatNumber(std::round(*r.p99_us)) : "-"});
  }
  std::vector<size_t> widths(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t i = 0; i < line.size(); ++i) widths[i] = std::max(widths[i], line[i].size());
  }
  os << "== clusterkv_bench " << bench_ << " ==\n";
  for (size_t l = 0; l < cells.size(); ++l) {
    std::string text;
    for (size_t i = 0; i < cells[l].size(); ++i) {
      // Text columns left-aligned, numeric columns right-aligned.
      const bool left = i == 0 || i == 1 || i == 3 || i == 4;
      const std::string& c = cells[l][i];
      const std::string pad(widths[i] - c.size(), ' ');
      absl::StrAppend(&text, left ? c + pad : pad + c, i + 1 < cells[l].size() ? "  " : "");
    }
    os << absl::StripTrailingAsciiWhitespace(text) << "\n";
  }
  os << "ratio: time rows " << kTimeRatioMeaning << "; other rows " << kHigherBetterRatioMeaning
     << "\n";
  os.flush();
}

absl::Status Report::WriteJson(const std::string& path) const {
  std::ofstream out(path, std::ios::out | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot open ", path, " for writing"));
  out << ToJson().dump(2) << "\n";
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status EmitReport(const Report& report, const std::string& json_path) {
  report.PrintTable(std::cout);
  if (json_path.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(report.WriteJson(json_path));
  std::cout << "wrote " << json_path << "\n";
  return absl::OkStatus();
}

}  // namespace clusterkv::bench
