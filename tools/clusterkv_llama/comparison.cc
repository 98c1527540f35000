#include "tools/clusterkv_llama/comparison.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/client.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

using internal::SecondsSince;
using internal::SteadyClock;

// Loads every layer's prompt K/V into `backend`, reporting per layer.
absl::Status LoadPrefill(const ModelConfig& c, const PrefillResult& prefill,
                         AttentionBackend& backend, std::ostream* progress, double* seconds) {
  const auto t0 = SteadyClock::now();
  RETURN_IF_ERROR(LoadPrefillInto(c, prefill, backend, [&](int32_t l, double layer_s) {
    if (progress == nullptr) return;
    *progress << absl::StreamFormat("  %s: layer %d/%d loaded (%.2f s)\n", backend.Name(), l + 1,
                                    c.n_layers, layer_s);
    progress->flush();
  }));
  *seconds = SecondsSince(t0);
  return absl::OkStatus();
}

// Runs `steps` decode steps feeding inputs[s] at position prompt + s, recording logits (when
// `logits` is non-null) and timings into `r`. With `paired`, each step first runs the same
// token through `paired` (full attention) and records its time as the paired baseline.
absl::Status Decode(const DecoderModel& model, AttentionBackend& backend, int64_t prompt,
                    const std::vector<int32_t>& inputs, int32_t steps,
                    std::vector<std::vector<float>>* logits, VariantResult* r,
                    std::ostream* progress, AttentionBackend* paired,
                    const std::function<void(int32_t step, const std::vector<float>&)>& on_step) {
  std::vector<float> out(static_cast<size_t>(model.config().vocab));
  for (int32_t s = 0; s < steps; ++s) {
    if (paired != nullptr) {
      DecodeTiming t;
      RETURN_IF_ERROR(model.DecodeStep(inputs[static_cast<size_t>(s)], prompt + s, *paired,
                                       out.data(), &t, nullptr));
      r->paired_full_step_us.push_back(static_cast<double>(t.total_us));
      r->paired_full_attention_us.push_back(static_cast<double>(t.attention_us));
    }
    DecodeTiming timing;
    AttentionStepStats stats;
    RETURN_IF_ERROR(model.DecodeStep(inputs[static_cast<size_t>(s)], prompt + s, backend,
                                     out.data(), &timing, &stats));
    r->argmax.push_back(ArgMax(out.data(), static_cast<int64_t>(out.size())));
    r->step_us.push_back(static_cast<double>(timing.total_us));
    r->dense_us.push_back(static_cast<double>(timing.dense_us));
    r->attention_us.push_back(static_cast<double>(timing.attention_us));
    r->totals.Add(stats);
    if (logits != nullptr) logits->push_back(out);
    if (on_step) on_step(s, out);
    if (progress != nullptr && (s + 1 == steps || (s + 1) % 8 == 0)) {
      *progress << absl::StreamFormat("  %s: step %d/%d (%.1f ms)\n", backend.Name(), s + 1, steps,
                                      timing.total_us / 1000.0);
      progress->flush();
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ComparisonResult> RunComparison(const ModelWeights& weights,
                                               const std::vector<int32_t>& prompt,
                                               const ComparisonOptions& o) {
  RETURN_IF_ERROR(weights.Validate());
  RETURN_IF_ERROR(o.config.Validate());
  const ModelConfig& c = weights.config;
  if (o.steps < 1) return absl::InvalidArgumentError("steps must be >= 1");
  if (o.budgets.empty()) return absl::InvalidArgumentError("no ClusterKV budgets given");
  for (int64_t b : o.budgets) {
    if (b < 1 || b > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat("bad budget ", b));
    }
  }
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n + o.steps > c.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", n, ") + steps (", o.steps, ") exceed the model's max context ",
                     c.max_context, " (raise it with --max_context for a random model)"));
  }
  const int threads = o.threads > 0 ? o.threads : DefaultThreads();
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  DecoderModel model(&weights, threads);
  std::ostream* progress = o.progress;

  // 1. Dense prefill, once: every backend starts from the same K/V and the same last logits.
  ComparisonResult result;
  result.prompt_tokens = n;
  const auto t_prefill = SteadyClock::now();
  if (progress != nullptr) *progress << "prefill: " << n << " tokens, dense\n";
  ASSIGN_OR_RETURN(PrefillResult prefill, model.Prefill(prompt, [&](int64_t done, int64_t total) {
    if (progress == nullptr) return;
    *progress << absl::StreamFormat("  prefill %d/%d tokens (%.1f s)\n", done, total,
                                    SecondsSince(t_prefill));
    progress->flush();
  }));
  result.prefill_s = SecondsSince(t_prefill);

  // 2. Full attention, greedy.
  std::vector<int32_t> inputs = {
      ArgMax(prefill.last_logits.data(), static_cast<int64_t>(prefill.last_logits.size()))};
  std::vector<std::vector<float>> full_logits;
  const std::vector<int32_t> global_layers = c.GlobalLayers();
  {
    auto full_global = std::make_unique<FullAttentionBackend>(c, o.kv_dtype, n + o.steps, exec);
    FullAttentionBackend* oracle = full_global.get();
    std::unique_ptr<AttentionBackend> full_ptr = ForModelLayers(c, std::move(full_global));
    AttentionBackend& full = *full_ptr;
    VariantResult& r = result.full;
    r.name = full.Name();
    r.data_plane = "local";
    if (progress != nullptr) *progress << "full attention: " << o.steps << " greedy steps\n";
    RETURN_IF_ERROR(LoadPrefill(c, prefill, full, nullptr, &r.load_s));
    std::vector<double> mass(o.budgets.size(), 0.0);
    int64_t mass_samples = 0;
    absl::Status hook_status;
    if (o.oracle) {
      model.set_query_hook([&](int32_t layer, const float* q) {
        // The sparse layers: global and not dense.
        if (c.IsLocalLayer(layer) || o.config.IsDenseLayer(layer) || !hook_status.ok()) return;
        const auto g = std::find(global_layers.begin(), global_layers.end(), layer);
        hook_status = oracle->TopMass(static_cast<int32_t>(g - global_layers.begin()), q, o.budgets,
                                      absl::MakeSpan(mass));
        ++mass_samples;
      });
    }
    // Greedy: each step's input is the previous step's argmax, so run one step at a time.
    for (int32_t s = 0; s < o.steps; ++s) {
      RETURN_IF_ERROR(Decode(model, full, n + s, {inputs.back()}, 1, &full_logits, &r, nullptr,
                             nullptr, nullptr));
      inputs.push_back(r.argmax.back());
      if (progress != nullptr && ((s + 1) % 8 == 0 || s + 1 == o.steps)) {
        *progress << absl::StreamFormat("  full_attention: step %d/%d (%.1f ms)\n", s + 1, o.steps,
                                        r.step_us.back() / 1000.0);
        progress->flush();
      }
    }
    model.set_query_hook(nullptr);
    RETURN_IF_ERROR(hook_status);
    if (o.oracle && mass_samples > 0) {
      for (double& m : mass) m /= static_cast<double>(mass_samples);
      result.oracle_top_mass = mass;
    }
  }
  result.greedy_tokens = inputs;

  // 3. ClusterKV at each budget, teacher-forced on the full-attention tokens.
  for (int64_t budget : o.budgets) {
    const std::string name = absl::StrCat("clusterkv_b", budget);
    ASSIGN_OR_RETURN(ClusterKvSession session, OpenClusterKv(c, o, budget, name, threads));
    AttentionBackend& backend = *session.backend;
    VariantResult r;
    r.name = name;
    r.budget = budget;
    if (progress != nullptr) {
      *progress << name << ": offloading the prefill ("
                << session.sparse->sequence().config().DebugString() << ")\n";
    }
    std::unique_ptr<AttentionBackend> paired_ptr =
        ForModelLayers(c, std::make_unique<FullAttentionBackend>(c, o.kv_dtype, n + o.steps, exec));
    AttentionBackend& paired = *paired_ptr;
    double unused = 0;
    absl::Status run = LoadPrefill(c, prefill, paired, nullptr, &unused);
    if (run.ok()) run = LoadPrefill(c, prefill, backend, progress, &r.load_s);
    if (run.ok()) {
      double rel_sum = 0;
      run = Decode(model, backend, n, inputs, o.steps, nullptr, &r, progress, &paired,
                   [&](int32_t s, const std::vector<float>& logits) {
                     const std::vector<float>& want = full_logits[static_cast<size_t>(s)];
                     double diff2 = 0, ref2 = 0;
                     for (size_t i = 0; i < want.size(); ++i) {
                       const double d = static_cast<double>(logits[i]) - want[i];
                       diff2 += d * d;
                       ref2 += static_cast<double>(want[i]) * want[i];
                       r.logit_max_abs = std::max(r.logit_max_abs, std::abs(d));
                     }
                     const double rel = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
                     rel_sum += rel;
                     r.logit_rel_l2_max = std::max(r.logit_rel_l2_max, rel);
                   });
      r.logit_rel_l2_mean = rel_sum / o.steps;
    }
    client::Sequence& sequence = session.sparse->sequence();
    // Drop the sequence from the daemon whatever happened; the run's error comes first.
    const absl::Status closed = sequence.Close(/*drop=*/true);
    RETURN_IF_ERROR(run);
    RETURN_IF_ERROR(closed);
    int32_t matches = 0;
    for (int32_t s = 0; s < o.steps; ++s) {
      matches += r.argmax[static_cast<size_t>(s)] == inputs[static_cast<size_t>(s) + 1];
    }
    r.token_agreement = static_cast<double>(matches) / o.steps;
    // Token-weighted over the sparse layers' Attend calls (the first step's fetch included).
    const int64_t looked_up = r.totals.hit_tokens + r.totals.miss_tokens;
    r.cache_hit_rate = looked_up > 0 ? static_cast<double>(r.totals.hit_tokens) / looked_up : 0.0;
    r.data_plane = session.DataPlaneUsed();
    for (double v : {r.logit_max_abs, r.logit_rel_l2_mean, r.logit_rel_l2_max}) {
      if (!std::isfinite(v)) {
        return absl::InternalError(absl::StrCat(name, ": non-finite logit error"));
      }
    }
    if (progress != nullptr) {
      *progress << absl::StreamFormat("%s: agreement %.3f, logit rel L2 %.4f\n", name,
                                      r.token_agreement, r.logit_rel_l2_mean);
    }
    result.clusterkv.push_back(std::move(r));
  }
  return result;
}

}  // namespace clusterkv::llama
