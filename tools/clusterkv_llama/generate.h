// Text in, text out: the engine's generation mode. One prompt is prefilled once (dense); then
// the model generates greedily from the same prefill twice: with full attention (the reference,
// every token's K/V kept in the engine) and with ClusterKV (global layers' K/V offloaded to
// clusterkvd, clusters recalled per step over the data plane). Each run is free-running (its own
// argmax is its next input) and stops at max_new_tokens or, when asked, at an end-of-generation
// token. Text is streamed through `on_text` as complete UTF-8 characters become available.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GENERATE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GENERATE_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/tokenizer.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct GenerateOptions : ServiceOptions {
  int32_t max_new_tokens = 64;
  int64_t budget = 1024;       // ClusterKV token budget B
  bool full_attention = true;  // also generate with full attention, for comparison
  bool stop_at_end = true;     // stop at the tokenizer's end-of-generation tokens
  std::ostream* progress = nullptr;
  // When non-empty: the tokens that follow the prompt in its source text. Each variant also
  // teacher-forces them from the same prefill (a fresh backend) and reports the perplexity of
  // reference[1..] (GeneratedRun::perplexity): the quality gap on real text, beside the
  // free-running generation.
  std::vector<int32_t> reference;
  int32_t chunk = 64;  // teacher-forcing chunk (DecoderModel::DecodeChunk)
  // Called with (variant, text) as each run produces text, then once with (variant, "") when
  // the run ends; may be null.
  std::function<void(absl::string_view variant, absl::string_view text)> on_text;
};

struct GeneratedRun {
  std::string variant;  // "full_attention" or "clusterkv_b<budget>"
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<double> step_us;        // per step: the whole forward
  AttentionStepStats totals;          // summed over steps and layers
  double cache_hit_rate = 0.0;        // ClusterKV only, token-weighted
  std::string data_plane;             // used: "local", "ucx", "grpc", "ucx+grpc", "none"
  std::string data_plane_configured;  // ClusterKV: what recalls go over (clusterkv_attention.h)
  bool stopped_at_end = false;
  double perplexity = 0.0;  // of GenerateOptions::reference (0 when not measured)
  // ClusterKV: the daemon's tier statistics while the run's sequence was stored (one line).
  std::string daemon_tiers;
};

struct GenerateResult {
  int64_t prompt_tokens = 0;
  double prefill_s = 0.0;
  std::vector<GeneratedRun> runs;  // full attention first (when run), then ClusterKV
  // Tokens the ClusterKV run generated before its first difference from full attention (-1
  // when full attention did not run).
  int64_t agreeing_prefix = -1;
};

// InvalidArgument: an empty prompt, max_new_tokens < 1, a budget < 1, or prompt +
// max_new_tokens beyond the model's context; otherwise the forward pass's or libclusterkv's
// status.
absl::StatusOr<GenerateResult> Generate(const ModelWeights& weights, const Tokenizer& tokenizer,
                                        const std::vector<int32_t>& prompt,
                                        const GenerateOptions& options);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GENERATE_H_
