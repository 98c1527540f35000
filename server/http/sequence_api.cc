#include "server/http/sequence_api.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace clusterkv::server::http {
namespace {

using Json = nlohmann::ordered_json;

Json Latest(const metrics::SequenceHistory& h) {
  Json row = {{"tenant", h.tenant}, {"sequence", h.sequence}, {"reports", h.reports}};
  if (h.points.empty()) return row;
  const metrics::SequenceReport& last = h.points.back();
  row["step"] = last.step;
  row["estimated_recall"] = last.EstimatedRecall();
  row["budget_tokens"] = last.BudgetTokens();
  row["hit_ratio"] = last.HitRatio();
  return row;
}

}  // namespace

std::string SequencesJson(const metrics::DaemonMetrics& metrics) {
  Json list = Json::array();
  for (const metrics::SequenceHistory& h : metrics.sequences().Snapshot()) {
    list.push_back(Latest(h));
  }
  return Json{{"max_sequences", metrics.sequences().options().max_sequences},
              {"sequences", std::move(list)}}
      .dump();
}

std::optional<std::string> SequenceJson(metrics::DaemonMetrics& metrics, const std::string& tenant,
                                        const std::string& sequence) {
  metrics::SequenceHistory h;
  if (!metrics.sequences().Get(tenant, sequence, &h)) return std::nullopt;
  Json out = Latest(h);
  Json points = Json::array();
  for (const metrics::SequenceReport& p : h.points) {
    points.push_back({{"unix_s", absl::ToDoubleSeconds(p.at - absl::UnixEpoch())},
                      {"step", p.step},
                      {"estimated_recall", p.EstimatedRecall()},
                      {"recall_estimates", p.recall_estimates},
                      {"budget_tokens", p.BudgetTokens()},
                      {"selected_heads", p.selected_heads},
                      {"hit_ratio", p.HitRatio()},
                      {"hit_tokens", p.hit_tokens},
                      {"miss_tokens", p.miss_tokens}});
  }
  out["points"] = std::move(points);
  const std::optional<storage::HeatMap> map = metrics.SequenceHeatMap(tenant, sequence, kMaxHeatRows);
  if (!map.has_value()) {
    out["heatmap"] = nullptr;
  } else {
    Json rows = Json::array();
    for (const ClusterId& c : map->rows) {
      rows.push_back(absl::StrCat(c.head.layer, ".", c.head.kv_head, ".", c.cluster));
    }
    out["heatmap"] = {{"fetches_per_bucket", map->fetches_per_bucket},
                      {"first_fetch", map->first_fetch},
                      {"fetches", map->fetches},
                      {"rows", std::move(rows)},
                      {"counts", map->counts},
                      {"other", map->other}};
  }
  return out.dump();
}

}  // namespace clusterkv::server::http
