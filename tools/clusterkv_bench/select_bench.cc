// `clusterkv_bench select`: the per-step selection work of ClusterKV for a whole model
// (DESIGN.md section 9) against the attention it is meant to be negligible beside. For every
// (layer, kv head): gpu::ScoreCentroids over the G query heads of the group, gpu::SelectClusters
// up to the budget and gpu::SelectionToRanges; the (layer, kv head) pairs are spread over the
// threads. Baseline: one full-attention decode step over the same layout (gpu::AttentionBatch,
// one task per (layer, kv head), fp16 K/V of `context` tokens each), with the same threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "core/kv_layout.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "core/tensor_view.h"
#include "core/token_range.h"
#include "gpu/attention.h"
#include "gpu/backend.h"
#include "gpu/selection.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_data.h"
#include "tools/clusterkv_bench/bench_report.h"

namespace clusterkv::bench {
namespace {

constexpr int64_t kSinkTokens = 16;  // never clustered (DESIGN.md section 4)

// Centroid indexes of every (layer, kv head): unit-norm random centroids and cluster sizes
// covering the clustered part of the context.
struct ModelIndex {
  int32_t centroids = 0;
  int32_t head_dim = 0;
  std::vector<float> mu;                      // [heads, C, head_dim]
  std::vector<std::vector<int32_t>> sizes;    // [heads][C]
  std::vector<std::vector<int32_t>> offsets;  // [heads][C + 1]

  ConstMatrixView Centroids(int64_t head) const {
    return ConstMatrixView(mu.data() + static_cast<size_t>(head) * centroids * head_dim, centroids,
                           head_dim);
  }
};

ModelIndex MakeModelIndex(int64_t heads, int32_t centroids, int32_t head_dim,
                          int64_t clustered_tokens, uint64_t seed) {
  ModelIndex index;
  index.centroids = centroids;
  index.head_dim = head_dim;
  index.mu.resize(static_cast<size_t>(heads) * centroids * head_dim);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t row = 0; row < heads * centroids; ++row) {
    float* v = &index.mu[static_cast<size_t>(row) * head_dim];
    double norm2 = 0.0;
    for (int32_t i = 0; i < head_dim; ++i) {
      v[i] = normal(rng);
      norm2 += static_cast<double>(v[i]) * v[i];
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(std::max(norm2, 1e-30)));
    for (int32_t i = 0; i < head_dim; ++i) v[i] *= inv;
  }
  for (int64_t h = 0; h < heads; ++h) {
    std::vector<int32_t> sizes = RandomClusterSizes(clustered_tokens, centroids, seed + 1 + h);
    std::vector<int32_t> offsets(sizes.size() + 1, 0);
    std::partial_sum(sizes.begin(), sizes.end(), offsets.begin() + 1);
    index.sizes.push_back(std::move(sizes));
    index.offsets.push_back(std::move(offsets));
  }
  return index;
}

absl::Status ValidateConfig(const SelectBenchConfig& cfg) {
  if (cfg.layers < 1 || cfg.centroids < 1 || cfg.budget < 1) {
    return absl::InvalidArgumentError("select: layers, centroids and budget must be >= 1");
  }
  if (cfg.context - kSinkTokens < cfg.budget || cfg.context - kSinkTokens < cfg.centroids) {
    return absl::InvalidArgumentError(
        absl::StrCat("select: context ", cfg.context, " must hold ", kSinkTokens,
                     " sinks plus at least max(budget, centroids) clustered tokens"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSelectBench(const BenchOptions& options) {
  const SelectBenchConfig& cfg = options.select;
  RETURN_IF_ERROR(ValidateConfig(cfg));
  const KvLayout model = KvLayout::Llama3_8B();
  KvLayout layout = model;
  layout.num_layers = cfg.layers;
  RETURN_IF_ERROR(layout.Validate());
  const int threads = ResolveThreads(options.threads);
  const int64_t heads = static_cast<int64_t>(layout.num_layers) * layout.num_kv_heads;
  const int32_t d = layout.head_dim;
  const int32_t group = layout.GroupSize();
  const int64_t ctx_tokens = cfg.context;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // K and V of every (layer, kv head): [heads, context, d] fp16 each, allocated once.
  const int64_t kv_elems = heads * ctx_tokens * d;
  const int64_t kv_bytes = 2 * kv_elems * static_cast<int64_t>(sizeof(uint16_t));
  const int64_t available = AvailableMemoryBytes();
  if (available > 0 && kv_bytes > available * 9 / 10) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "select: K/V of %d layers needs %.2f GiB but only %.2f GiB are available; pass a "
        "smaller --layers (figures then cover fewer layers and are reported per layer too)",
        cfg.layers, kv_bytes / 1073741824.0, available / 1073741824.0));
  }
  std::unique_ptr<uint16_t[]> keys(new uint16_t[static_cast<size_t>(kv_elems)]);
  std::unique_ptr<uint16_t[]> values(new uint16_t[static_cast<size_t>(kv_elems)]);
  FillRandomHalf(keys.get(), kv_elems, 1.0f, options.seed * 2 + 1, threads);
  FillRandomHalf(values.get(), kv_elems, 1.0f, options.seed * 2 + 2, threads);
  // Queries of every layer: [layers, q_heads, d] fp16; kv head h serves q heads
  // [h * G, (h + 1) * G).
  const int64_t q_elems = static_cast<int64_t>(layout.num_layers) * layout.num_q_heads * d;
  std::vector<uint16_t> queries(static_cast<size_t>(q_elems));
  FillRandomHalf(queries.data(), q_elems, 1.0f, options.seed * 2 + 3, threads);
  auto group_queries = [&](int64_t head) {
    // head = layer * num_kv_heads + kv_head, so its query rows start at head * G.
    return ConstMatrixView(queries.data() + static_cast<size_t>(head) * group * d, DType::kFloat16,
                           group, d);
  };
  const ModelIndex index =
      MakeModelIndex(heads, cfg.centroids, d, ctx_tokens - kSinkTokens, options.seed);

  // Selection for every (layer, kv head).
  gpu::ExecContext inner;  // one head per call; the heads are what is spread over threads
  inner.backend = gpu::Backend::kCpu;
  inner.threads = 1;
  std::vector<int64_t> selected(static_cast<size_t>(heads), 0);
  auto select_step = [&]() -> absl::Status {
    std::vector<absl::Status> errors(static_cast<size_t>(threads));
    ParallelFor(heads, threads, [&](int64_t begin, int64_t end, int worker) {
      std::vector<float> scores(static_cast<size_t>(cfg.centroids));
      absl::Status& err = errors[static_cast<size_t>(worker)];
      for (int64_t h = begin; h < end && err.ok(); ++h) {
        err = gpu::ScoreCentroids(group_queries(h), index.Centroids(h), scale,
                                  absl::MakeSpan(scores), inner);
        if (!err.ok()) break;
        absl::StatusOr<gpu::ClusterSelection> sel =
            gpu::SelectClusters(scores, index.sizes[h], cfg.budget);
        if (!sel.ok()) {
          err = sel.status();
          break;
        }
        absl::StatusOr<std::vector<TokenRange>> ranges =
            gpu::SelectionToRanges(*sel, index.offsets[h]);
        if (!ranges.ok()) {
          err = ranges.status();
          break;
        }
        selected[h] = TotalTokens(*ranges);
      }
    });
    for (const absl::Status& s : errors) RETURN_IF_ERROR(s);
    return absl::OkStatus();
  };

  // One full-attention decode step over the same layout.
  std::vector<float> out(static_cast<size_t>(heads) * group * d);
  std::vector<gpu::AttentionTask> tasks(static_cast<size_t>(heads));
  for (int64_t h = 0; h < heads; ++h) {
    const size_t base = static_cast<size_t>(h) * ctx_tokens * d;
    gpu::AttentionTask& t = tasks[h];
    t.queries = group_queries(h);
    t.spans.push_back({ConstMatrixView(keys.get() + base, DType::kFloat16, ctx_tokens, d),
                       ConstMatrixView(values.get() + base, DType::kFloat16, ctx_tokens, d)});
    t.scale = scale;
    t.out = MatrixView(out.data() + static_cast<size_t>(h) * group * d, group, d);
  }
  gpu::ExecContext full_ctx;
  full_ctx.backend = gpu::Backend::kCpu;
  full_ctx.threads = threads;

  ASSIGN_OR_RETURN(TimingStats select_time, TimeRuns(options.warmup, options.repeats, select_step));
  ASSIGN_OR_RETURN(TimingStats full_time, TimeRuns(options.warmup, options.repeats, [&] {
                     return gpu::AttentionBatch(tasks, full_ctx);
                   }));
  for (int64_t h = 0; h < heads; ++h) {
    if (selected[h] != cfg.budget) {
      return absl::InternalError(absl::StrCat("select: head ", h, " selected ", selected[h],
                                              " tokens, expected the budget ", cfg.budget));
    }
  }

  Report report("select");
  Json params = {{"layers", layout.num_layers},
                 {"kv_heads", layout.num_kv_heads},
                 {"q_heads", layout.num_q_heads},
                 {"head_dim", d},
                 {"centroids", cfg.centroids},
                 {"budget", cfg.budget},
                 {"context", ctx_tokens},
                 {"kv_dtype", "fp16"},
                 {"threads", threads}};
  ResultRow row = TimeRow("clusterkv_score_select_index_cpu", std::move(params), "us", select_time,
                          "full_attention_decode_step_cpu", full_time);
  row.extra["kv_gib"] = kv_bytes / 1073741824.0;
  row.extra["select_us_per_layer"] = select_time.p50_us / layout.num_layers;
  row.extra["full_us_per_layer"] = full_time.p50_us / layout.num_layers;
  if (layout.num_layers != model.num_layers) {
    const double f = static_cast<double>(model.num_layers) / layout.num_layers;
    row.extra["note"] = absl::StrCat("measured over ", layout.num_layers, " of ", model.num_layers,
                                     " layers; the *_scaled figures scale ",
                                     "the per-layer times linearly to the full model");
    row.extra["select_us_scaled"] = select_time.p50_us * f;
    row.extra["full_us_scaled"] = full_time.p50_us * f;
  }
  report.Add(std::move(row));
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
