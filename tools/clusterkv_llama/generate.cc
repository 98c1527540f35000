#include "tools/clusterkv_llama/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/connection.h"
#include "client/internal/client_internals.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

using internal::SecondsSince;
using internal::SteadyClock;

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

// Teacher-forces `reference` from `prefill` through `backend`: the perplexity of reference[1..].
absl::StatusOr<double> ReferencePerplexity(const DecoderModel& model, const PrefillResult& prefill,
                                           AttentionBackend& backend,
                                           const std::vector<int32_t>& reference, int32_t chunk) {
  const int64_t vocab = model.config().vocab;
  const int64_t n = static_cast<int64_t>(reference.size()) - 1;
  double nll = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    const int64_t m = std::min<int64_t>(chunk, n - i0);
    RETURN_IF_ERROR(model.DecodeChunk(
        absl::MakeConstSpan(reference.data() + i0, static_cast<size_t>(m)), prefill.tokens + i0,
        backend,
        [&](int64_t pos, const float* logits) {
          const int32_t target = reference[static_cast<size_t>(pos - prefill.tokens + 1)];
          float best = logits[0];
          for (int64_t t = 1; t < vocab; ++t) best = std::max(best, logits[t]);
          double sum = 0.0;
          for (int64_t t = 0; t < vocab; ++t) sum += std::exp(double(logits[t]) - best);
          nll += best + std::log(sum) - logits[target];
        },
        nullptr));
  }
  return std::exp(nll / static_cast<double>(n));
}

std::string TierLine(client::Client& client) {
  client::Connection* conn = client::ClientInternals::connection(client);
  if (conn == nullptr) return "";
  absl::StatusOr<v1::StatsResponse> s = conn->Stats();
  if (!s.ok()) return absl::StrCat("(tier statistics unavailable: ", s.status().message(), ")");
  constexpr double kMiB = 1024.0 * 1024.0;
  return absl::StrFormat(
      "host tier %.1f MiB in %d blocks (capacity %.0f MiB), SSD tier %.1f MiB in %d blocks, "
      "host hits %d / misses %d, evictions %d, promotions %d",
      s->host().bytes() / kMiB, s->host().blocks(), s->host_capacity_bytes() / kMiB,
      s->ssd().bytes() / kMiB, s->ssd().blocks(), s->host().hits(), s->host().misses(),
      s->evictions(), s->promotions());
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

  const int64_t capacity =
      n + std::max<int64_t>(o.max_new_tokens, static_cast<int64_t>(o.reference.size()));
  if (!o.reference.empty() && o.reference.size() < 2) {
    return absl::InvalidArgumentError("the reference continuation needs at least 2 tokens");
  }
  if (o.full_attention) {
    auto fresh = [&] {
      return ForModelLayers(c,
                            std::make_unique<FullAttentionBackend>(c, o.kv_dtype, capacity, exec));
    };
    std::unique_ptr<AttentionBackend> full = fresh();
    GeneratedRun run;
    run.variant = full->Name();
    run.data_plane = "local";
    RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *full));
    RETURN_IF_ERROR(Run(model, tokenizer, *full, n, first, o, &run));
    if (!o.reference.empty()) {
      std::unique_ptr<AttentionBackend> forced = fresh();
      RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *forced));
      ASSIGN_OR_RETURN(run.perplexity,
                       ReferencePerplexity(model, prefill, *forced, o.reference, o.chunk));
    }
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
  if (status.ok()) run.daemon_tiers = TierLine(*session.client);
  const absl::Status closed = session.sparse->sequence().Close(/*drop=*/true);
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(closed);
  if (!o.reference.empty()) {
    ASSIGN_OR_RETURN(ClusterKvSession forced,
                     OpenClusterKv(c, o, o.budget, name + "-reference", threads));
    absl::Status s = LoadPrefillInto(c, prefill, *forced.backend);
    absl::StatusOr<double> ppl =
        s.ok() ? ReferencePerplexity(model, prefill, *forced.backend, o.reference, o.chunk)
               : absl::StatusOr<double>(s);
    const absl::Status dropped = forced.sparse->sequence().Close(/*drop=*/true);
    RETURN_IF_ERROR(ppl.status());
    RETURN_IF_ERROR(dropped);
    run.perplexity = *ppl;
  }
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
