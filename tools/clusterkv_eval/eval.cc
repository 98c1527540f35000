#include "tools/clusterkv_eval/eval.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "gpu/attention.h"
#include "gpu/baselines.h"
#include "gpu/kmeans.h"
#include "gpu/recall_estimate.h"
#include "gpu/selection.h"

namespace clusterkv::eval {
namespace {

constexpr std::array<Method, kNumMethods> kMethods = {Method::kClusterKv, Method::kQuest,
                                                      Method::kStreamingLlm, Method::kOracle};

// Prefixes an error with where it happened; keeps the code.
absl::Status Annotate(const absl::Status& s, int32_t layer, int64_t head, absl::string_view op) {
  if (s.ok()) return s;
  return absl::Status(
      s.code(), absl::StrCat("layer ", layer, " kv head ", head, ": ", op, ": ", s.message()));
}

// Sums of the metrics of one (method, budget).
struct Sums {
  double recall = 0.0;
  double error = 0.0;
  double overlap = 0.0;
  int64_t samples = 0;
  // ClusterKV only: the estimated recall (gpu/recall_estimate.h) against the true one, per
  // (kv head, query): x = estimate, y = true recall averaged over the group's query heads.
  int64_t pairs = 0;
  double sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0, abs_err = 0.0;
  std::array<int64_t, kCalibrationBins> bin_count{};
  std::array<double, kCalibrationBins> bin_estimate{}, bin_true{};
};

// Sorted positions -> merged ranges.
std::vector<TokenRange> PositionsToRanges(std::vector<int64_t> positions) {
  std::sort(positions.begin(), positions.end());
  std::vector<TokenRange> out;
  for (int64_t p : positions) {
    if (!out.empty() && out.back().end == p) {
      ++out.back().end;
    } else if (out.empty() || out.back().end < p) {
      out.push_back({p, p + 1});
    }
  }
  return out;
}

// Everything of one (layer, kv head) that does not change across queries and budgets.
class HeadEvaluator {
 public:
  HeadEvaluator(const LayerTensors& t, int32_t layer, int64_t head, const EvalOptions& o,
                int32_t num_clusters, const std::vector<int64_t>& budgets, std::vector<Sums>* sums)
      : t_(t),
        layer_(layer),
        head_(head),
        o_(o),
        num_clusters_(num_clusters),
        budgets_(budgets),
        sums_(sums),
        keys_(t.Keys(head)),
        values_(t.Values(head)),
        n_(t.tokens()),
        d_(t.head_dim()),
        g_(t.group_size()),
        sinks_(o.config.num_sink_tokens),
        scale_(1.0f / std::sqrt(static_cast<float>(t.head_dim()))) {}

  absl::StatusOr<double> Run() {
    const gpu::KMeansOptions kopt{.num_clusters = num_clusters_,
                                  .iterations = o_.config.kmeans_iterations,
                                  .seed = o_.config.seed +
                                          static_cast<uint64_t>(layer_) * 1000003u +
                                          static_cast<uint64_t>(head_)};
    absl::StatusOr<gpu::Clustering> clustering =
        gpu::SphericalKMeans(keys_.Rows(sinks_, n_), kopt, o_.ctx);
    RETURN_IF_ERROR(Annotate(clustering.status(), layer_, head_, "SphericalKMeans"));
    clustering_ = *std::move(clustering);
    if (o_.centroid_scoring == EvalOptions::CentroidScoring::kMeanKey) {
      clustering_.centroids = MeanKeyCentroids(keys_.Rows(sinks_, n_), clustering_);
    }
    absl::StatusOr<gpu::QuestIndex> quest = gpu::BuildQuestIndex(keys_, sinks_, o_.quest_page_size);
    RETURN_IF_ERROR(Annotate(quest.status(), layer_, head_, "BuildQuestIndex"));
    quest_ = *std::move(quest);

    probs_.assign(static_cast<size_t>(g_ * n_), 0.0f);
    full_out_.assign(static_cast<size_t>(g_ * d_), 0.0f);
    sparse_out_.assign(full_out_.size(), 0.0f);
    scores_.assign(static_cast<size_t>(clustering_.num_clusters), 0.0f);
    oracle_mark_.assign(static_cast<size_t>(n_), 0);
    for (int64_t s = 0; s < t_.num_queries(); ++s) RETURN_IF_ERROR(EvaluateQuery(s));
    return clustering_.objective;
  }

 private:
  absl::Status EvaluateQuery(int64_t s) {
    const ConstMatrixView q = t_.GroupQueries(head_, s);
    RETURN_IF_ERROR(
        Annotate(gpu::AttentionWeights(q, keys_, scale_, MatrixView(probs_.data(), g_, n_),
                                       o_.ctx.CpuThreads()),
                 layer_, head_, "AttentionWeights"));
    const std::vector<TokenRange> all = {{0, n_}};
    RETURN_IF_ERROR(SparseAttention(q, all, full_out_.data()));
    RETURN_IF_ERROR(Annotate(
        gpu::ScoreCentroids(q, clustering_.CentroidView(), scale_, absl::MakeSpan(scores_), o_.ctx),
        layer_, head_, "ScoreCentroids"));
    for (size_t b = 0; b < budgets_.size(); ++b) {
      const int64_t budget = budgets_[b];
      absl::StatusOr<std::vector<TokenRange>> oracle =
          gpu::OracleTopKSelect(q, keys_, scale_, sinks_, budget);
      RETURN_IF_ERROR(Annotate(oracle.status(), layer_, head_, "OracleTopKSelect"));
      SetOracleMarks(*oracle, 1);
      for (Method m : kMethods) {
        absl::StatusOr<std::vector<TokenRange>> ranges = *oracle;
        if (m != Method::kOracle) ranges = Select(m, q, budget);
        RETURN_IF_ERROR(ranges.status());
        RETURN_IF_ERROR(Score(m, q, NormalizeRanges(*std::move(ranges)), budget,
                              &(*sums_)[static_cast<size_t>(m) * budgets_.size() + b]));
      }
      SetOracleMarks(*oracle, 0);
    }
    return absl::OkStatus();
  }

  void SetOracleMarks(const std::vector<TokenRange>& ranges, uint8_t value) {
    for (const TokenRange& r : ranges) {
      for (int64_t p = std::max<int64_t>(r.begin, sinks_); p < r.end; ++p) oracle_mark_[p] = value;
    }
  }

  absl::StatusOr<std::vector<TokenRange>> Select(Method m, const ConstMatrixView& q,
                                                 int64_t budget) {
    switch (m) {
      case Method::kClusterKv:
        return ClusterKvSelect(budget);
      case Method::kQuest: {
        absl::StatusOr<std::vector<TokenRange>> r = gpu::QuestSelect(quest_, q, budget);
        RETURN_IF_ERROR(Annotate(r.status(), layer_, head_, "QuestSelect"));
        return r;
      }
      case Method::kStreamingLlm: {
        absl::StatusOr<std::vector<TokenRange>> r = gpu::StreamingLlmSelect(n_, sinks_, budget);
        RETURN_IF_ERROR(Annotate(r.status(), layer_, head_, "StreamingLlmSelect"));
        return r;
      }
      case Method::kOracle:
        break;
    }
    return absl::InternalError("oracle ranges are computed by the caller");
  }

  // Sinks plus whole clusters by centroid score, as token positions.
  absl::StatusOr<std::vector<TokenRange>> ClusterKvSelect(int64_t budget) {
    absl::StatusOr<gpu::ClusterSelection> sel =
        gpu::SelectClusters(scores_, clustering_.sizes, budget);
    RETURN_IF_ERROR(Annotate(sel.status(), layer_, head_, "SelectClusters"));
    selection_ = *sel;
    absl::StatusOr<std::vector<TokenRange>> rows =
        gpu::SelectionToRanges(*sel, clustering_.offsets);
    RETURN_IF_ERROR(Annotate(rows.status(), layer_, head_, "SelectionToRanges"));
    std::vector<int64_t> positions;
    positions.reserve(static_cast<size_t>(sinks_ + budget));
    for (int64_t p = 0; p < sinks_; ++p) positions.push_back(p);
    for (const TokenRange& r : *rows) {
      for (int64_t i = r.begin; i < r.end; ++i) positions.push_back(sinks_ + clustering_.order[i]);
    }
    return PositionsToRanges(std::move(positions));
  }

  // out[g] = attention of the G queries over `ranges` only.
  absl::Status SparseAttention(const ConstMatrixView& q, const std::vector<TokenRange>& ranges,
                               float* out) {
    absl::StatusOr<std::vector<gpu::KvSpan>> spans =
        gpu::SpansOfRanges(gpu::KvSpan{keys_, values_}, ranges);
    RETURN_IF_ERROR(Annotate(spans.status(), layer_, head_, "SpansOfRanges"));
    gpu::AttentionTask task;
    task.queries = q;
    task.spans = *std::move(spans);
    task.scale = scale_;
    task.out = MatrixView(out, g_, d_);
    return Annotate(gpu::Attention(task, o_.ctx), layer_, head_, "Attention");
  }

  absl::Status Score(Method m, const ConstMatrixView& q, const std::vector<TokenRange>& ranges,
                     int64_t budget, Sums* sums) {
    // Equal budgets mean equal cost: every method must keep exactly the sinks plus `budget`.
    int64_t sink_tokens = 0, total = 0, overlap = 0;
    for (const TokenRange& r : ranges) {
      total += r.size();
      sink_tokens += std::max<int64_t>(0, std::min(r.end, sinks_) - r.begin);
      for (int64_t p = std::max<int64_t>(r.begin, sinks_); p < r.end; ++p)
        overlap += oracle_mark_[p];
    }
    if (total != sinks_ + budget || sink_tokens != sinks_ || ranges.empty() ||
        ranges.front().begin < 0 || ranges.back().end > n_) {
      return absl::InternalError(absl::StrCat(
          "layer ", layer_, " kv head ", head_, ": ", MethodName(m), " selected ", total,
          " tokens (", sink_tokens, " sinks), expected ", sinks_, " sinks + ", budget));
    }
    RETURN_IF_ERROR(SparseAttention(q, ranges, sparse_out_.data()));
    double group_recall = 0.0;
    for (int64_t g = 0; g < g_; ++g) {
      const float* p = probs_.data() + g * n_;
      double recall = 0.0;
      for (const TokenRange& r : ranges) {
        for (int64_t t = r.begin; t < r.end; ++t) recall += p[t];
      }
      double diff2 = 0.0, full2 = 0.0;
      for (int64_t c = 0; c < d_; ++c) {
        const double f = full_out_[g * d_ + c];
        const double e = sparse_out_[g * d_ + c] - f;
        diff2 += e * e;
        full2 += f * f;
      }
      sums->recall += std::min(recall, 1.0);
      group_recall += std::min(recall, 1.0);
      sums->error += std::sqrt(diff2) / std::max(std::sqrt(full2), 1e-30);
      sums->overlap += static_cast<double>(overlap) / static_cast<double>(budget);
      ++sums->samples;
    }
    // The estimator sees what libclusterkv sees: unit centroids, sizes, key statistics, the
    // selection and the sinks' exact keys (no recent window here: every query is a prefill
    // query). With mean-key scoring the centroids are not unit, so there is no estimate.
    if (m == Method::kClusterKv &&
        o_.centroid_scoring == EvalOptions::CentroidScoring::kUnit) {
      gpu::RecallEstimateInput in;
      in.queries = q;
      in.scale = scale_;
      in.centroids = clustering_.CentroidView();
      in.sizes = clustering_.sizes;
      in.key_norms = clustering_.key_norms;
      in.key_spreads = clustering_.key_spreads;
      in.selection = &selection_;
      if (sinks_ > 0) in.exact_keys.push_back(keys_.Rows(0, sinks_));
      absl::StatusOr<float> estimate = gpu::EstimateRecall(in);
      RETURN_IF_ERROR(Annotate(estimate.status(), layer_, head_, "EstimateRecall"));
      const double x = *estimate, y = group_recall / static_cast<double>(g_);
      ++sums->pairs;
      sums->sx += x;
      sums->sy += y;
      sums->sxx += x * x;
      sums->syy += y * y;
      sums->sxy += x * y;
      sums->abs_err += std::fabs(x - y);
      const int bin = std::clamp(static_cast<int>(x * kCalibrationBins), 0, kCalibrationBins - 1);
      ++sums->bin_count[bin];
      sums->bin_estimate[bin] += x;
      sums->bin_true[bin] += y;
    }
    return absl::OkStatus();
  }

  const LayerTensors& t_;
  const int32_t layer_;
  const int64_t head_;
  const EvalOptions& o_;
  const int32_t num_clusters_;
  const std::vector<int64_t>& budgets_;
  std::vector<Sums>* sums_;
  const ConstMatrixView keys_;
  const ConstMatrixView values_;
  const int64_t n_, d_, g_;
  const int64_t sinks_;
  const float scale_;

  gpu::Clustering clustering_;
  gpu::ClusterSelection selection_;  // ClusterKV's selection of the current query and budget
  gpu::QuestIndex quest_;
  std::vector<float> probs_;       // [G, n]
  std::vector<float> full_out_;    // [G, d]
  std::vector<float> sparse_out_;  // [G, d]
  std::vector<float> scores_;      // [C]
  std::vector<uint8_t> oracle_mark_;
};

bool SameShape(const LayerTensors& a, const LayerTensors& b) {
  return a.k.shape == b.k.shape && a.q.shape == b.q.shape;
}

}  // namespace

absl::string_view MethodName(Method method) {
  switch (method) {
    case Method::kClusterKv:
      return "clusterkv";
    case Method::kQuest:
      return "quest";
    case Method::kStreamingLlm:
      return "streamingllm";
    case Method::kOracle:
      return "oracle";
  }
  return "unknown";
}

const MethodMetrics* EvalReport::Find(Method method, int64_t budget) const {
  for (const MethodMetrics& m : rows) {
    if (m.method == method && m.budget == budget) return &m;
  }
  return nullptr;
}

std::vector<float> MeanKeyCentroids(const ConstMatrixView& keys, const gpu::Clustering& c) {
  const int64_t d = keys.cols;
  std::vector<float> means(static_cast<size_t>(c.num_clusters * d), 0.0f);
  for (int64_t i = 0; i < keys.rows; ++i) {
    float* dst = means.data() + int64_t{c.labels[static_cast<size_t>(i)]} * d;
    for (int64_t j = 0; j < d; ++j) dst[j] += keys.At(i, j);
  }
  for (int32_t k = 0; k < c.num_clusters; ++k) {
    const int32_t size = c.sizes[static_cast<size_t>(k)];
    if (size == 0) continue;
    for (int64_t j = 0; j < d; ++j) means[static_cast<size_t>(k * d + j)] /= size;
  }
  return means;
}

absl::StatusOr<EvalReport> Evaluate(LayerSource& source, const EvalOptions& options) {
  RETURN_IF_ERROR(options.config.Validate());
  if (options.quest_page_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("quest page size must be >= 1, got ", options.quest_page_size));
  }
  if (options.budgets.empty()) return absl::InvalidArgumentError("no budgets given");
  for (int64_t b : options.budgets) {
    if (b < 1) return absl::InvalidArgumentError(absl::StrCat("budget must be >= 1, got ", b));
  }
  std::vector<int64_t> requested = options.budgets;
  std::sort(requested.begin(), requested.end());
  requested.erase(std::unique(requested.begin(), requested.end()), requested.end());

  EvalReport report;
  const int64_t sinks = options.config.num_sink_tokens;
  std::vector<Sums> sums;
  LayerTensors first;  // shape reference (data dropped)
  bool have_first = false;
  std::vector<int32_t> to_evaluate;
  for (int32_t layer : source.layers()) {
    if (options.config.IsDenseLayer(layer)) {
      report.skipped_layers.push_back(layer);
    } else {
      to_evaluate.push_back(layer);
    }
  }
  if (!report.skipped_layers.empty()) {
    report.notes.push_back(absl::StrCat("layers ", absl::StrJoin(report.skipped_layers, ","),
                                        " are dense (full attention) and were skipped"));
  }
  if (to_evaluate.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "every layer of ", source.Describe(), " is dense (--dense_layers): nothing to evaluate"));
  }
  double objective_sum = 0.0;
  for (int32_t layer : to_evaluate) {
    ASSIGN_OR_RETURN(LayerTensors t, source.Load(layer));
    RETURN_IF_ERROR(t.Validate());
    if (!have_first) {
      have_first = true;
      first.k.shape = t.k.shape;
      first.q.shape = t.q.shape;
      report.context = t.tokens();
      report.num_kv_heads = t.num_kv_heads();
      report.num_q_heads = t.num_q_heads();
      report.head_dim = t.head_dim();
      report.num_queries = t.num_queries();
      const int64_t clustered = t.tokens() - sinks;
      if (clustered < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "context of ", t.tokens(), " tokens leaves nothing after ", sinks, " sinks"));
      }
      for (int64_t b : requested) {
        if (b <= clustered) {
          report.budgets.push_back(b);
        } else {
          report.notes.push_back(
              absl::StrCat("budget ", b, " skipped: only ", clustered, " tokens after the sinks"));
        }
      }
      if (report.budgets.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("no budget fits the ", t.tokens(),
                                                       "-token context with ", sinks, " sinks"));
      }
      report.num_clusters =
          static_cast<int32_t>(std::min<int64_t>(options.config.num_prefill_clusters, clustered));
      if (report.num_clusters < options.config.num_prefill_clusters) {
        report.notes.push_back(absl::StrCat("C0 clamped from ", options.config.num_prefill_clusters,
                                            " to ", report.num_clusters,
                                            " (tokens after the sinks)"));
      }
      sums.assign(static_cast<size_t>(kNumMethods) * report.budgets.size(), Sums{});
    } else if (!SameShape(first, t)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer ", layer, " has shapes k (", absl::StrJoin(t.k.shape, ", "), ") q (",
          absl::StrJoin(t.q.shape, ", "), "), differing from the first evaluated layer's k (",
          absl::StrJoin(first.k.shape, ", "), ") q (", absl::StrJoin(first.q.shape, ", "), ")"));
    }
    for (int64_t h = 0; h < t.num_kv_heads(); ++h) {
      HeadEvaluator head(t, layer, h, options, report.num_clusters, report.budgets, &sums);
      ASSIGN_OR_RETURN(double objective, head.Run());
      objective_sum += objective;
      ++report.heads_evaluated;
      if (options.on_head_done) {
        options.on_head_done(
            HeadProgress{.layer = layer,
                         .kv_head = h,
                         .heads_done = report.heads_evaluated,
                         .heads_total = static_cast<int64_t>(to_evaluate.size()) * t.num_kv_heads(),
                         .kmeans_objective = objective});
      }
    }
    report.evaluated_layers.push_back(layer);
  }
  report.mean_kmeans_objective = objective_sum / static_cast<double>(report.heads_evaluated);
  for (Method m : kMethods) {
    for (size_t b = 0; b < report.budgets.size(); ++b) {
      const Sums& s = sums[static_cast<size_t>(m) * report.budgets.size() + b];
      const double n = static_cast<double>(std::max<int64_t>(s.samples, 1));
      MethodMetrics row;
      row.method = m;
      row.budget = report.budgets[b];
      row.attention_recall = s.recall / n;
      row.output_rel_error = s.error / n;
      row.topk_overlap = s.overlap / n;
      row.samples = s.samples;
      if (s.pairs > 0) {
        RecallEstimateQuality& e = row.estimate;
        const double k = static_cast<double>(s.pairs);
        e.pairs = s.pairs;
        e.mean_estimate = s.sx / k;
        e.mean_true = s.sy / k;
        e.mean_abs_error = s.abs_err / k;
        const double vx = s.sxx / k - e.mean_estimate * e.mean_estimate;
        const double vy = s.syy / k - e.mean_true * e.mean_true;
        const double cov = s.sxy / k - e.mean_estimate * e.mean_true;
        e.correlation = vx > 0 && vy > 0 ? cov / std::sqrt(vx * vy) : 0.0;
        for (int i = 0; i < kCalibrationBins; ++i) {
          if (s.bin_count[i] == 0) continue;
          const double c = static_cast<double>(s.bin_count[i]);
          e.bins.push_back(CalibrationBin{.lower = static_cast<double>(i) / kCalibrationBins,
                                          .count = s.bin_count[i],
                                          .mean_estimate = s.bin_estimate[i] / c,
                                          .mean_true = s.bin_true[i] / c});
        }
      }
      report.rows.push_back(std::move(row));
    }
  }
  return report;
}

}  // namespace clusterkv::eval
