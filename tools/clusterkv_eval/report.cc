#include "tools/clusterkv_eval/report.h"

#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace clusterkv::eval {
namespace {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

std::string FormatTable(const EvalReport& report) {
  std::string out = absl::StrFormat(
      "context=%d kv_heads=%d q_heads=%d head_dim=%d queries=%d heads_evaluated=%d C0=%d "
      "kmeans_objective=%.4f\n",
      report.context, report.num_kv_heads, report.num_q_heads, report.head_dim, report.num_queries,
      report.heads_evaluated, report.num_clusters, report.mean_kmeans_objective);
  absl::StrAppendFormat(&out, "%-14s %7s %10s %12s %13s\n", "method", "budget", "recall",
                        "output_err", "topk_overlap");
  for (const MethodMetrics& m : report.rows) {
    absl::StrAppendFormat(&out, "%-14s %7d %10.4f %12.4f %13.4f\n", MethodName(m.method), m.budget,
                          m.attention_recall, m.output_rel_error, m.topk_overlap);
  }
  bool header = false;
  for (const MethodMetrics& m : report.rows) {
    const RecallEstimateQuality& e = m.estimate;
    if (e.pairs == 0) continue;
    if (!header) {
      absl::StrAppendFormat(&out,
                            "estimated recall (libclusterkv, from centroids) vs true recall of "
                            "ClusterKV's selection, per (kv head, query):\n%7s %8s %9s %9s %9s "
                            "%11s  calibration: [bin) n mean_estimate->mean_true\n",
                            "budget", "pairs", "estimate", "true", "mean_abs", "correlation");
      header = true;
    }
    absl::StrAppendFormat(&out, "%7d %8d %9.4f %9.4f %9.4f %11.4f ", m.budget, e.pairs,
                          e.mean_estimate, e.mean_true, e.mean_abs_error, e.correlation);
    for (const CalibrationBin& b : e.bins) {
      absl::StrAppendFormat(&out, " [%.1f) %d %.3f->%.3f", b.lower, b.count, b.mean_estimate,
                            b.mean_true);
    }
    out += "\n";
  }
  return out;
}

std::string ReportJson(const EvalReport& report, const RunInfo& info) {
  nlohmann::ordered_json machine = {
      {"hostname", HostName()},
      {"hardware_threads", std::thread::hardware_concurrency()},
      {"backend", std::string(gpu::BackendName(info.ctx.backend))},
      {"threads", info.ctx.CpuThreads()},
      {"cuda_compiled_in", gpu::CudaCompiledIn()},
  };
  nlohmann::ordered_json config = {
      {"source", info.source},
      {"sinks", info.config.num_sink_tokens},
      {"clusters", report.num_clusters},
      {"kmeans_iterations", info.config.kmeans_iterations},
      {"kmeans_seed", info.config.seed},
      {"dense_layers", info.config.dense_layers},
      {"quest_page_size", info.quest_page_size},
      {"evaluated_layers", report.evaluated_layers},
      {"skipped_layers", report.skipped_layers},
      {"kv_heads", report.num_kv_heads},
      {"q_heads", report.num_q_heads},
      {"head_dim", report.head_dim},
      {"queries", report.num_queries},
      {"heads_evaluated", report.heads_evaluated},
      {"mean_kmeans_objective", report.mean_kmeans_objective},
      {"notes", report.notes},
      {"seconds", info.seconds},
      {"topk_overlap_k", "budget"},
  };
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const MethodMetrics& m : report.rows) {
    nlohmann::ordered_json row = {
        {"variant", std::string(MethodName(m.method))},
        {"params", {{"budget", m.budget}, {"context", report.context}}},
        {"value", m.attention_recall},
        {"unit", "attention_mass_recall"},
        {"output_rel_error", m.output_rel_error},
        {"topk_overlap", m.topk_overlap},
        {"samples", m.samples},
    };
    const RecallEstimateQuality& e = m.estimate;
    if (e.pairs > 0) {
      nlohmann::ordered_json bins = nlohmann::ordered_json::array();
      for (const CalibrationBin& b : e.bins) {
        bins.push_back({{"lower", b.lower},
                        {"upper", b.lower + 1.0 / kCalibrationBins},
                        {"count", b.count},
                        {"mean_estimate", b.mean_estimate},
                        {"mean_true", b.mean_true}});
      }
      row["estimated_recall"] = {{"pairs", e.pairs},
                                 {"mean_estimate", e.mean_estimate},
                                 {"mean_true", e.mean_true},
                                 {"mean_abs_error", e.mean_abs_error},
                                 {"correlation", e.correlation},
                                 {"calibration", bins}};
    }
    results.push_back(std::move(row));
  }
  nlohmann::ordered_json doc = {
      {"bench", "eval"}, {"machine", machine}, {"config", config}, {"results", results}};
  return doc.dump(2) + "\n";
}

absl::Status WriteReportJson(const std::string& path, const EvalReport& report,
                             const RunInfo& info) {
  const std::string text = ReportJson(report, info);
  std::ofstream out(path, std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create --json file ", path));
  out << text;
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("write error on --json file ", path));
  return absl::OkStatus();
}

}  // namespace clusterkv::eval
