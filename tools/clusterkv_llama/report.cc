#include "tools/clusterkv_llama/report.h"

#include <sys/utsname.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace clusterkv::llama {
namespace {

using Json = nlohmann::ordered_json;

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

// Per-step means of the breakdown, in ms (StepStats are summed over layers and steps).
struct Breakdown {
  double step_p50, step_p99, paired_p50, paired_p99, paired_attention, dense, attention, append,
      score, select, fetch, attend;
  double fetched_kib, attended_per_head;
};

Breakdown Summarize(const VariantResult& r, const ReportContext& ctx) {
  const double steps = std::max<double>(1.0, static_cast<double>(r.step_us.size()));
  const AttentionStepStats& t = r.totals;
  Breakdown b;
  b.step_p50 = Quantile(r.step_us, 0.5) / 1000.0;
  b.step_p99 = Quantile(r.step_us, 0.99) / 1000.0;
  b.paired_p50 = Quantile(r.paired_full_step_us, 0.5) / 1000.0;
  b.paired_p99 = Quantile(r.paired_full_step_us, 0.99) / 1000.0;
  b.paired_attention = Mean(r.paired_full_attention_us) / 1000.0;
  b.dense = Mean(r.dense_us) / 1000.0;
  b.attention = Mean(r.attention_us) / 1000.0;
  b.append = static_cast<double>(t.append_us) / steps / 1000.0;
  b.score = static_cast<double>(t.score_us) / steps / 1000.0;
  b.select = static_cast<double>(t.select_us) / steps / 1000.0;
  b.fetch = static_cast<double>(t.fetch_us) / steps / 1000.0;
  b.attend = static_cast<double>(t.attend_us) / steps / 1000.0;
  b.fetched_kib = static_cast<double>(t.bytes_fetched) / steps / 1024.0;
  const double per = steps * std::max(1, ctx.n_layers) * std::max(1, ctx.n_kv_heads);
  b.attended_per_head = static_cast<double>(t.attended_tokens) / per;
  return b;
}

std::string ProcField(const char* file, const char* field) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "";
}

}  // namespace

nlohmann::ordered_json MachineInfo() {
  Json m = Json::object();
  const std::string cpu = ProcField("/proc/cpuinfo", "model name");
  m["cpu"] = cpu.empty() ? Json(nullptr) : Json(cpu);
  m["cores"] = std::thread::hardware_concurrency();
  m["memory"] = ProcField("/proc/meminfo", "MemTotal");
  struct utsname u;
  if (uname(&u) == 0) m["os"] = absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
  m["compiler"] = absl::StrCat("gcc ", __VERSION__);
  m["backend"] = "cpu";
  return m;
}

absl::Status WriteJsonFile(const nlohmann::ordered_json& json, const std::string& path) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return absl::UnavailableError(absl::StrCat("cannot create ", path));
  // Replace invalid UTF-8 (e.g. in a model path or generated text) rather than throwing.
  f << json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  f.close();
  if (!f) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

void PrintTable(const ComparisonResult& result, const ReportContext& ctx, std::ostream& out) {
  out << absl::StreamFormat(
      "\n== clusterkv_llama: %d-token prompt (dense prefill %.1f s), %d decode steps, "
      "teacher-forced on full attention's greedy tokens ==\n",
      result.prompt_tokens, result.prefill_s, result.full.step_us.size());
  out << "per decode step (all layers), ms: step = dense + attention; attention = append + score"
         " + select + fetch + attend (+ overhead); full_p50 = full attention timed in the same "
         "loop\n";
  out << absl::StreamFormat(
      "%-16s %8s %8s %8s %8s %8s %7s %7s %7s %7s %7s %9s %6s %9s %7s %9s %9s\n", "variant",
      "step_p50", "step_p99", "full_p50", "dense", "attn", "append", "score", "select", "fetch",
      "attend", "tok/head", "hit", "fetch_KiB", "agree", "logit_max", "logit_rel");
  auto row = [&](const VariantResult& r) {
    const Breakdown b = Summarize(r, ctx);
    const bool full = r.budget == 0;
    out << absl::StreamFormat(
        "%-16s %8.2f %8.2f %8s %8.2f %8.2f %7.2f %7s %7s %7s %7.2f %9.0f %6s %9s %7.3f %9.4f "
        "%9.5f\n",
        r.name, b.step_p50, b.step_p99, full ? "-" : absl::StrFormat("%.2f", b.paired_p50), b.dense,
        b.attention, b.append, full ? "-" : absl::StrFormat("%.2f", b.score),
        full ? "-" : absl::StrFormat("%.2f", b.select),
        full ? "-" : absl::StrFormat("%.2f", b.fetch), b.attend, b.attended_per_head,
        full ? "-" : absl::StrFormat("%.2f", r.cache_hit_rate),
        full ? "-" : absl::StrFormat("%.0f", b.fetched_kib), r.token_agreement, r.logit_max_abs,
        r.logit_rel_l2_mean);
  };
  row(result.full);
  for (const VariantResult& r : result.clusterkv) row(r);
  if (!result.oracle_top_mass.empty()) {
    out << "full attention's concentration (sparse layers): softmax mass of the top-B tokens =";
    for (size_t i = 0; i < result.clusterkv.size() && i < result.oracle_top_mass.size(); ++i) {
      out << absl::StreamFormat(" B=%d: %.3f", result.clusterkv[i].budget,
                                result.oracle_top_mass[i]);
    }
    out << "\n";
  }
  out << "agree = fraction of steps whose argmax equals full attention's; logit_max = max |l - "
         "l_full|; logit_rel = mean ||l - l_full|| / ||l_full||; tok/head = tokens attended per "
         "layer and kv head, averaged over all layers (ClusterKV: budget + sinks + recent window "
         "on sparse layers, every token on dense layers); hit = device-cache hit rate (tokens)\n";
}

Json ReportJson(const ComparisonResult& result, const ReportContext& ctx) {
  Json results = Json::array();
  for (size_t i = 0; i < result.clusterkv.size(); ++i) {
    const VariantResult& r = result.clusterkv[i];
    const Breakdown b = Summarize(r, ctx);
    Json params = ctx.params;
    params["budget"] = r.budget;
    Json time = Json::object();
    time["variant"] = r.name;
    time["params"] = params;
    time["params"]["metric"] = "decode_step_ms";
    time["value"] = b.step_p50;
    time["unit"] = "ms";
    time["baseline"] = "full_attention";
    time["baseline_value"] = b.paired_p50;
    time["ratio"] = b.step_p50 > 0 ? b.paired_p50 / b.step_p50 : 0.0;
    time["ratio_meaning"] = "baseline_value / value (time): > 1 means faster than the baseline";
    time["p50_us"] = b.step_p50 * 1000.0;
    time["p99_us"] = b.step_p99 * 1000.0;
    time["baseline_p50_us"] = b.paired_p50 * 1000.0;
    time["baseline_p99_us"] = b.paired_p99 * 1000.0;
    time["baseline_timing"] = "full attention, same input token, timed just before each step";
    time["dense_ms_mean"] = b.dense;
    time["attention_ms_mean"] = b.attention;
    time["append_ms_mean"] = b.append;
    time["score_ms_mean"] = b.score;
    time["select_ms_mean"] = b.select;
    time["fetch_ms_mean"] = b.fetch;
    time["attend_ms_mean"] = b.attend;
    time["baseline_attention_ms_mean"] = b.paired_attention;
    time["fetched_kib_per_step"] = b.fetched_kib;
    time["attended_tokens_per_layer_head"] = b.attended_per_head;
    time["cache_hit_rate"] = r.cache_hit_rate;
    time["data_plane"] = r.data_plane;
    time["prefill_offload_s"] = r.load_s;
    results.push_back(time);

    Json agree = Json::object();
    agree["variant"] = r.name;
    agree["params"] = params;
    agree["params"]["metric"] = "token_agreement";
    agree["value"] = r.token_agreement;
    agree["unit"] = "fraction";
    agree["baseline"] = "full_attention";
    agree["baseline_value"] = 1.0;
    agree["ratio"] = r.token_agreement;
    agree["ratio_meaning"] =
        "value / baseline_value (higher is better): 1 means every greedy token matched";
    agree["p50_us"] = nullptr;
    agree["p99_us"] = nullptr;
    agree["logit_max_abs_error"] = r.logit_max_abs;
    agree["logit_rel_l2_error_mean"] = r.logit_rel_l2_mean;
    agree["logit_rel_l2_error_max"] = r.logit_rel_l2_max;
    agree["teacher_forced"] = true;
    if (i < result.oracle_top_mass.size()) {
      agree["oracle_top_b_attention_mass"] = result.oracle_top_mass[i];
    }
    results.push_back(agree);
  }
  Json out = Json::object();
  out["bench"] = "llama";
  out["machine"] = MachineInfo();
  out["prompt_tokens"] = result.prompt_tokens;
  out["prefill_s"] = result.prefill_s;
  out["greedy_tokens"] = result.greedy_tokens;
  out["results"] = results;
  return out;
}

absl::Status WriteReportJson(const ComparisonResult& result, const ReportContext& ctx,
                             const std::string& path) {
  return WriteJsonFile(ReportJson(result, ctx), path);
}

}  // namespace clusterkv::llama
