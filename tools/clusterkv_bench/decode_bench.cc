// `clusterkv_bench decode`: one layer's decode-step attention (Llama-3-8B geometry: 8 kv heads,
// 32 q heads, head_dim 128, fp16 K/V) on the CPU. ClusterKV's sparse step attends the sinks,
// `budget` recalled tokens as cluster-sized ranges spread over the context and the recent
// window; the baseline attends every token of the context. Both run through
// gpu::AttentionBatch with one task per kv head and the same threads.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kv_layout.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "core/tensor_view.h"
#include "core/token_range.h"
#include "gpu/attention.h"
#include "gpu/backend.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_data.h"
#include "tools/clusterkv_bench/bench_report.h"

namespace clusterkv::bench {
namespace {

absl::Status ValidateConfig(const DecodeBenchConfig& cfg) {
  if (cfg.contexts.empty() || cfg.budgets.empty()) {
    return absl::InvalidArgumentError("decode: need at least one context and one budget");
  }
  if (cfg.sinks < 0 || cfg.recent < 0 || cfg.cluster_tokens < 1) {
    return absl::InvalidArgumentError(
        "decode: sinks and recent must be >= 0 and cluster_tokens >= 1");
  }
  for (int64_t ctx : cfg.contexts) {
    for (int64_t b : cfg.budgets) {
      if (b < 1 || ctx <= cfg.sinks + cfg.recent + b) {
        return absl::InvalidArgumentError(
            absl::StrCat("decode: context ", ctx, " must exceed sinks + recent + budget (",
                         cfg.sinks, " + ", cfg.recent, " + ", b, ")"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunDecodeBench(const BenchOptions& options) {
  const DecodeBenchConfig& cfg = options.decode;
  RETURN_IF_ERROR(ValidateConfig(cfg));
  const KvLayout layout = KvLayout::Llama3_8B();
  const int threads = ResolveThreads(options.threads);
  const int32_t heads = layout.num_kv_heads;
  const int32_t group = layout.GroupSize();
  const int32_t d = layout.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  gpu::ExecContext exec;
  exec.backend = gpu::Backend::kCpu;
  exec.threads = threads;

  // The queries of the layer: [q_heads, d] fp16; kv head h serves rows [h * G, (h + 1) * G).
  std::vector<uint16_t> queries(static_cast<size_t>(layout.num_q_heads) * d);
  FillRandomHalf(queries.data(), static_cast<int64_t>(queries.size()), 1.0f, options.seed, 1);
  std::vector<float> out(static_cast<size_t>(layout.num_q_heads) * d);
  auto make_task = [&](int32_t h, std::vector<gpu::KvSpan> spans) {
    gpu::AttentionTask t;
    t.queries = ConstMatrixView(queries.data() + static_cast<size_t>(h) * group * d,
                                DType::kFloat16, group, d);
    t.spans = std::move(spans);
    t.scale = scale;
    t.out = MatrixView(out.data() + static_cast<size_t>(h) * group * d, group, d);
    return t;
  };

  Report report("decode");
  for (int64_t context : cfg.contexts) {
    // K and V of the layer: [kv_heads, context, d] fp16 each.
    const int64_t elems = static_cast<int64_t>(heads) * context * d;
    std::unique_ptr<uint16_t[]> keys(new uint16_t[static_cast<size_t>(elems)]);
    std::unique_ptr<uint16_t[]> values(new uint16_t[static_cast<size_t>(elems)]);
    FillRandomHalf(keys.get(), elems, 1.0f, options.seed * 3 + context, threads);
    FillRandomHalf(values.get(), elems, 1.0f, options.seed * 5 + context, threads);
    std::vector<gpu::KvSpan> all(heads);
    for (int32_t h = 0; h < heads; ++h) {
      const size_t base = static_cast<size_t>(h) * context * d;
      all[h] = {ConstMatrixView(keys.get() + base, DType::kFloat16, context, d),
                ConstMatrixView(values.get() + base, DType::kFloat16, context, d)};
    }

    std::vector<gpu::AttentionTask> full_tasks;
    for (int32_t h = 0; h < heads; ++h) full_tasks.push_back(make_task(h, {all[h]}));
    ASSIGN_OR_RETURN(TimingStats full_time, TimeRuns(options.warmup, options.repeats, [&] {
                       return gpu::AttentionBatch(full_tasks, exec);
                     }));

    for (int64_t budget : cfg.budgets) {
      // Each kv head recalls its own clusters, so each gets its own ranges.
      std::vector<gpu::AttentionTask> sparse_tasks;
      int64_t attended = 0;
      int64_t num_ranges = 0;
      for (int32_t h = 0; h < heads; ++h) {
        ASSIGN_OR_RETURN(
            std::vector<TokenRange> ranges,
            SparseStepRanges(context, cfg.sinks, budget, cfg.recent, cfg.cluster_tokens,
                             options.seed + 7919 * (h + 1) + budget));
        attended += TotalTokens(ranges);
        num_ranges += static_cast<int64_t>(ranges.size());
        ASSIGN_OR_RETURN(std::vector<gpu::KvSpan> spans, gpu::SpansOfRanges(all[h], ranges));
        sparse_tasks.push_back(make_task(h, std::move(spans)));
      }
      ASSIGN_OR_RETURN(TimingStats sparse_time, TimeRuns(options.warmup, options.repeats, [&] {
                         return gpu::AttentionBatch(sparse_tasks, exec);
                       }));
      Json params = {{"context", context},
                     {"budget", budget},
                     {"sinks", cfg.sinks},
                     {"recent", cfg.recent},
                     {"cluster_tokens", cfg.cluster_tokens},
                     {"attended_tokens", attended / heads},
                     {"spans_per_head", static_cast<double>(num_ranges) / heads},
                     {"kv_heads", heads},
                     {"q_heads", layout.num_q_heads},
                     {"head_dim", d},
                     {"kv_dtype", "fp16"},
                     {"threads", threads}};
      ResultRow row = TimeRow("clusterkv_sparse_attention_cpu", std::move(params), "us",
                              sparse_time, "full_attention_cpu", full_time);
      row.extra["layers"] = 1;
      row.extra["kv_mib_full"] = 2.0 * elems * sizeof(uint16_t) / 1048576.0;
      report.Add(std::move(row));
    }
  }
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
