#include "gpu/adaptive_budget.h"

#include <algorithm>
#include <cmath>

namespace clusterkv::gpu {

int64_t RecallCurve::TokensFor(double target) const {
  if (recall[0] >= target) return 0;
  for (size_t i = 1; i < recall.size(); ++i) {
    if (recall[i] < target) continue;
    const double gain = recall[i] - recall[i - 1];
    const double share = gain > 0.0 ? (target - recall[i - 1]) / gain : 1.0;
    const int64_t span = tokens[i] - tokens[i - 1];
    const int64_t take =
        std::clamp<int64_t>(static_cast<int64_t>(std::ceil(share * static_cast<double>(span) - 1e-9)),
                            1, span);
    return tokens[i - 1] + take;
  }
  return tokens.back();
}

RecallCurve MakeRecallCurve(const ClusterMasses& masses, const ClusterSelection& order,
                            absl::Span<const int32_t> sizes) {
  RecallCurve curve;
  curve.tokens.reserve(order.clusters.size() + 1);
  curve.recall.reserve(order.clusters.size() + 1);
  curve.tokens.push_back(0);
  if (masses.no_clustered_tokens) {
    curve.recall.push_back(1.0);
    return curve;
  }
  const size_t g_count = static_cast<size_t>(masses.num_query_heads);
  const size_t c = static_cast<size_t>(masses.num_clusters);
  double recall = 0.0;
  for (size_t g = 0; g < g_count; ++g) recall += masses.exact[g] / masses.total[g];
  recall /= static_cast<double>(g_count);
  curve.recall.push_back(recall);
  for (size_t i = 0; i < order.clusters.size(); ++i) {
    const int32_t j = order.clusters[i];
    const double share =
        static_cast<double>(order.tokens[i]) / static_cast<double>(std::max(sizes[j], 1));
    double gain = 0.0;
    for (size_t g = 0; g < g_count; ++g) {
      gain += masses.cluster[g * c + static_cast<size_t>(j)] / masses.total[g];
    }
    recall += share * gain / static_cast<double>(g_count);
    curve.tokens.push_back(curve.tokens.back() + order.tokens[i]);
    curve.recall.push_back(std::min(recall, 1.0));
  }
  return curve;
}

std::vector<int64_t> PlanBudgets(absl::Span<const RecallCurve> curves, const BudgetLimits& limits) {
  struct Head {
    int64_t tokens = 0;  // taken so far
    int64_t want = 0;    // for the target, within [lo, hi]
    size_t segment = 1;  // the curve segment the next token falls in
  };
  std::vector<Head> heads(curves.size());
  int64_t left = limits.total_tokens;
  for (size_t h = 0; h < curves.size(); ++h) {
    const RecallCurve& c = curves[h];
    const int64_t n = c.total_tokens();
    const int64_t lo = std::min(std::max<int64_t>(limits.min_tokens, 1), n);
    const int64_t hi = std::max(std::min(limits.max_tokens, n), lo);
    Head& head = heads[h];
    head.tokens = lo;
    head.want = std::clamp(c.TokensFor(limits.target), lo, hi);
    while (head.segment + 1 < c.tokens.size() && c.tokens[head.segment] <= head.tokens) {
      ++head.segment;
    }
    left -= lo;
  }
  // The rest of the cap, a curve segment at a time, to the head whose next segment gains the
  // most estimated recall per token (ties: the lower head).
  while (left > 0) {
    double best = -1.0;
    size_t pick = 0;
    for (size_t h = 0; h < heads.size(); ++h) {
      const Head& head = heads[h];
      if (head.tokens >= head.want) continue;
      const RecallCurve& c = curves[h];
      const size_t i = head.segment;
      const double density = (c.recall[i] - c.recall[i - 1]) /
                              static_cast<double>(std::max<int64_t>(c.tokens[i] - c.tokens[i - 1], 1));
      if (density > best) {
        best = density;
        pick = h;
      }
    }
    if (best < 0.0) break;  // every head has what it wants
    Head& head = heads[pick];
    const RecallCurve& c = curves[pick];
    const int64_t take = std::min({c.tokens[head.segment] - head.tokens, head.want - head.tokens, left});
    head.tokens += take;
    left -= take;
    if (head.tokens >= c.tokens[head.segment] && head.segment + 1 < c.tokens.size()) ++head.segment;
  }
  std::vector<int64_t> budgets(heads.size());
  for (size_t h = 0; h < heads.size(); ++h) budgets[h] = heads[h].tokens;
  return budgets;
}

ClusterSelection TruncateSelection(const ClusterSelection& order, int64_t budget) {
  ClusterSelection out;
  for (size_t i = 0; i < order.clusters.size() && out.total_tokens < budget; ++i) {
    const int64_t take = std::min<int64_t>(order.tokens[i], budget - out.total_tokens);
    out.clusters.push_back(order.clusters[i]);
    out.tokens.push_back(static_cast<int32_t>(take));
    out.total_tokens += take;
  }
  return out;
}

}  // namespace clusterkv::gpu
