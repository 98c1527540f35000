#include "tools/clusterkv_eval/tool.h"

#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_eval/calibration_plot.h"
#include "tools/clusterkv_eval/layer_data.h"
#include "tools/clusterkv_eval/report.h"

namespace clusterkv::eval {
namespace {

constexpr char kUsage[] =
    R"(clusterkv_eval: token-selection quality of ClusterKV vs Quest, StreamingLLM
and the oracle top-k, against full attention, at equal token budgets.

Usage:
  clusterkv_eval [--synthetic] [--context=32768 --layers=4 --kv_heads=8 ...]
  clusterkv_eval --npy_dir=DIR [--bf16]
  clusterkv_eval --dump_npy=DIR [--dump_dtype=fp16] [--dump_only]

For every kv head of every non-dense layer and every decode query, each method keeps the
--sinks first tokens plus `budget` tokens; per (method, budget) the table shows, averaged
over heads, queries and the query heads of each kv head:
  recall        attention-mass recall: full-attention probability of the selected tokens
  output_err    ||o_sparse - o_full|| / ||o_full||, o_sparse = attention over the selection
  topk_overlap  fraction of the oracle's top-`budget` tokens the method selected (k = budget)
ClusterKV clusters the keys after the sinks once per head (spherical K-means, --clusters,
--kmeans_iters), scores centroids per query and takes whole clusters up to the budget.
Layers in --dense_layers use full attention in ClusterKV and are skipped.

.npy dump layout (--npy_dir; --dump_npy writes the same):
  DIR/layer_<L>_k.npy  keys    [num_kv_heads, tokens, head_dim], after RoPE
  DIR/layer_<L>_v.npy  values  [num_kv_heads, tokens, head_dim]
  DIR/layer_<L>_q.npy  queries [num_q_heads, num_queries, head_dim], after RoPE, the decode
                       queries at positions tokens, tokens+1, ... (after the context)
  Query head h belongs to kv head h / (num_q_heads / num_kv_heads) (HF repeat_kv grouping).
  dtypes: '<f2' (fp16), '<f4' (fp32); bfloat16 stored as '<V2', '|V2' or '<u2' (raw bf16 bit
  patterns, e.g. t.view(torch.int16).numpy().view(np.uint16)) needs --bf16. C order only;
  .npy format versions 1.0, 2.0 and 3.0. Layer numbers need not be contiguous.

Synthetic data (default without --npy_dir): per kv head, topic directions concentrated in the
low-frequency RoPE pairs, text-like topic segments that recur over the context, filler tokens,
heavy-tailed outlier channels, RoPE (theta 500000, rotate_half pairs (i, i+d/2)); decode queries
mix a few slowly drifting topics and are scaled so the top 1/32 of the tokens hold ~80% of the
attention; GQA query heads perturb their group's query. Deterministic for a --seed.

Output: table on stdout, progress on stderr, --json FILE in the clusterkv_bench JSON format,
--calibration_png FILE the calibration plot of the estimated recall (unit centroid scoring).
)";

// Writes every synthetic layer (dense ones included) as .npy in the dump layout.
absl::Status DumpSynthetic(const ToolOptions& o, std::ostream& err) {
  SyntheticSource source(o.synthetic);
  for (int32_t layer : source.layers()) {
    ASSIGN_OR_RETURN(LayerTensors t, source.Load(layer));
    RETURN_IF_ERROR(WriteLayerNpy(o.dump_npy_dir, layer, t, o.dump_dtype));
  }
  err << "[eval] wrote " << source.layers().size() << " layers (" << DTypeName(o.dump_dtype)
      << ") to " << o.dump_npy_dir << "\n";
  return absl::OkStatus();
}

}  // namespace

absl::string_view UsageText() { return kUsage; }

absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view text, absl::string_view what) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": '", part, "' is not a non-negative integer"));
    }
    out.push_back(v);
  }
  if (out.empty() && !text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": empty list"));
  }
  return out;
}

absl::Status RunEvalTool(const ToolOptions& options, std::ostream& out, std::ostream& err) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto elapsed = [&start] { return std::chrono::duration<double>(Clock::now() - start).count(); };

  if (!options.dump_npy_dir.empty() && !options.npy_dir.empty()) {
    return absl::InvalidArgumentError("--dump_npy writes synthetic data; drop --npy_dir");
  }
  if (options.dump_only && options.dump_npy_dir.empty()) {
    return absl::InvalidArgumentError("--dump_only needs --dump_npy");
  }
  ToolOptions o = options;
  ASSIGN_OR_RETURN(o.eval.ctx, gpu::MakeExecContext(o.backend, o.threads));
  o.synthetic.threads = o.eval.ctx.CpuThreads();
  RETURN_IF_ERROR(o.eval.config.Validate());

  std::unique_ptr<LayerSource> source;
  if (o.npy_dir.empty()) {
    RETURN_IF_ERROR(o.synthetic.Validate());
    if (!o.dump_npy_dir.empty()) RETURN_IF_ERROR(DumpSynthetic(o, err));
    if (o.dump_only) return absl::OkStatus();
    source = std::make_unique<SyntheticSource>(o.synthetic);
  } else {
    ASSIGN_OR_RETURN(NpyDirSource npy, NpyDirSource::Open(o.npy_dir, o.bf16));
    source = std::make_unique<NpyDirSource>(std::move(npy));
  }
  if (o.progress) {
    err << "[eval] " << source->Describe() << "; backend " << gpu::BackendName(o.eval.ctx.backend)
        << ", " << o.eval.ctx.CpuThreads() << " threads; " << o.eval.config.DebugString() << "\n";
    o.eval.on_head_done = [&err, &elapsed](const HeadProgress& p) {
      err << absl::StrFormat(
          "[eval] layer %d kv head %d done (%d/%d heads), k-means objective %.4f, "
          "elapsed %.1f s\n",
          p.layer, p.kv_head, p.heads_done, p.heads_total, p.kmeans_objective, elapsed());
      err.flush();
    };
  }
  ASSIGN_OR_RETURN(EvalReport report, Evaluate(*source, o.eval));
  for (const std::string& note : report.notes) err << "[eval] note: " << note << "\n";
  out << FormatTable(report);
  out.flush();
  if (!o.json_path.empty()) {
    RunInfo info{.source = source->Describe(),
                 .ctx = o.eval.ctx,
                 .config = o.eval.config,
                 .quest_page_size = o.eval.quest_page_size,
                 .seconds = elapsed()};
    RETURN_IF_ERROR(WriteReportJson(o.json_path, report, info));
    if (o.progress) err << "[eval] wrote " << o.json_path << "\n";
  }
  if (!o.calibration_png.empty()) {
    RETURN_IF_ERROR(WriteCalibrationPng(o.calibration_png, report));
    if (o.progress) err << "[eval] wrote " << o.calibration_png << "\n";
  }
  if (o.progress) err << absl::StrFormat("[eval] done in %.1f s\n", elapsed());
  return absl::OkStatus();
}

}  // namespace clusterkv::eval
