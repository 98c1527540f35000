#include "tools/clusterkv_llama/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

// Greedy, free-running generation from `first` (the prefill's argmax) through `backend`.
absl::Status Run(const DecoderModel& model, const Tokenizer& tokenizer, AttentionBackend& backend,
                 int64_t prompt, int32_t first, const GenerateOptions& o, GeneratedRun* run) {
  std::vector<float> logits(static_cast<size_t>(model.config().vocab));
  TokenStreamDecoder stream(tokenizer, /*render_special=*/false);
  int32_t token = first;
  for (int32_t s = 0; s < o.max_new_tokens; ++s) {
    run->tokens.push_back(token);
    const bool end = o.stop_at_end && tokenizer.IsEndOfGeneration(token);
    if (!end) {
      const std::string text = stream.Push(token);
      if (!text.empty()) {
        run->text += text;
        if (o.on_text) o.on_text(run->variant, text);
      }
    }
    if (end) {
      run->stopped_at_end = true;
      break;
    }
    if (s + 1 == o.max_new_tokens) break;  // the last token needs no forward pass
    DecodeTiming timing;
    AttentionStepStats stats;
    RETURN_IF_ERROR(model.DecodeStep(token, prompt + s, backend, logits.data(), &timing, &stats));
    run->step_us.push_back(static_cast<double>(timing.total_us));
    run->totals.Add(stats);
    token = ArgMax(logits.data(), static_cast<int64_t>(logits.size()));
  }
  if (const std::string rest = stream.Flush(); !rest.empty()) {
    run->text += rest;
    if (o.on_text) o.on_text(run->variant, rest);
  }
  if (o.on_text) o.on_text(run->variant, "");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerateResult> Generate(const ModelWeights& weights, const Tokenizer& tokenizer,
                                        const std::vector<int32_t>& prompt,
                                        const GenerateOptions& o) {
  RETURN_IF_ERROR(weights.Validate());
  RETURN_IF_ERROR(o.config.Validate());
  const ModelConfig& c = weights.config;
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (o.max_new_tokens < 1) return absl::InvalidArgumentError("max_new_tokens must be >= 1");
  if (o.budget < 1) return absl::InvalidArgumentError("the ClusterKV budget must be >= 1");
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n + o.max_new_tokens > c.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt's ", n, " tokens + ", o.max_new_tokens,
                     " new tokens exceed the model's ", "context of ", c.max_context, " tokens"));
  }
  const int threads = o.threads > 0 ? o.threads : DefaultThreads();
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  DecoderModel model(&weights, threads);
  GenerateResult result;
  result.prompt_tokens = n;
  const auto t0 = SteadyClock::now();
  if (o.progress != nullptr) *o.progress << "prefill: " << n << " tokens\n";
  ASSIGN_OR_RETURN(PrefillResult prefill, model.Prefill(prompt, [&](int64_t done, int64_t total) {
    if (o.progress == nullptr) return;
    *o.progress << absl::StreamFormat("  prefill %d/%d tokens (%.1f s)\n", done, total,
                                      SecondsSince(t0));
    o.progress->flush();
  }));
  result.prefill_s = SecondsSince(t0);
  const int32_t first =
      ArgMax(prefill.last_logits.data(), static_cast<int64_t>(prefill.last_logits.size()));

  if (o.full_attention) {
    std::unique_ptr<AttentionBackend> full = ForModelLayers(
        c, std::make_unique<FullAttentionBackend>(c, o.kv_dtype, n + o.max_new_tokens, exec));
    GeneratedRun run;
    run.variant = full->Name();
    run.data_plane = "local";
    RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *full));
    RETURN_IF_ERROR(Run(model, tokenizer, *full, n, first, o, &run));
    result.runs.push_back(std::move(run));
  }

  const std::string name = absl::StrCat("clusterkv_b", o.budget);
  ASSIGN_OR_RETURN(ClusterKvSession session, OpenClusterKv(c, o, o.budget, name, threads));
  GeneratedRun run;
  run.variant = name;
  run.data_plane_configured = session.DataPlaneConfigured();
  if (o.progress != nullptr) {
    *o.progress << name << ": offloading the prefill to clusterkvd, recalls over "
                << run.data_plane_configured << " ("
                << session.sparse->sequence().config().DebugString() << ")\n";
  }
  absl::Status status = LoadPrefillInto(c, prefill, *session.backend);
  if (status.ok()) status = Run(model, tokenizer, *session.backend, n, first, o, &run);
  const absl::Status closed = session.sparse->sequence().Close(/*drop=*/true);
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(closed);
  const int64_t looked_up = run.totals.hit_tokens + run.totals.miss_tokens;
  run.cache_hit_rate = looked_up > 0 ? static_cast<double>(run.totals.hit_tokens) / looked_up : 0.0;
  run.data_plane = session.DataPlaneUsed();
  if (o.full_attention) {
    const std::vector<int32_t>& ref = result.runs.front().tokens;
    int64_t same = 0;
    while (same < static_cast<int64_t>(std::min(ref.size(), run.tokens.size())) &&
           ref[static_cast<size_t>(same)] == run.tokens[static_cast<size_t>(same)]) {
      ++same;
    }
    result.agreeing_prefix = same;
  }
  result.runs.push_back(std::move(run));
  return result;
}

}  // namespace clusterkv::llama
