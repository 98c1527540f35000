// The ClusterKV paper's accuracy protocol on a real model, every method in one run:
//   full attention (the reference), ClusterKV through clusterkvd (libclusterkv over the data
//   plane), and the engine-side baselines of baseline_attention.h (Quest with 16-token pages,
//   StreamingLLM, the oracle top-B), each at every budget.
//
// Per context length C (the first C tokens of `text` prefilled densely, once, shared by every
// method):
//   perplexity  the next `ppl_tokens` tokens of the text teacher-forced through each method's
//               attention (the paper's PG-19 protocol); perplexity of those tokens, its ratio to
//               full attention's, and the max / mean |logit - full attention's logit|;
//   agreement   full attention's own greedy continuation (`agreement_tokens` tokens)
//               teacher-forced through each method: the fraction of steps whose greedy token is
//               full attention's;
//   cost        from the perplexity pass: the device-cache hit rate (ClusterKV's cluster reuse
//               across steps), bytes recalled per token, tokens attended per kv head, the mean
//               per-head budget and estimated recall (ClusterKV), and the
//               attention time per step split into score / select / fetch / attend.
// Passkey retrieval (passkey.h) at `passkey_contexts` (default: every context): the needle at
// `passkey_depths` depths in `passkey_text`, one dense prefill per depth, each method's greedy
// answer over 8 tokens, exact match.
//
// Teacher-forced passes run the dense parts in chunks (DecoderModel::DecodeChunk): the same
// results as one step per token, several times faster. Each method's pass uses a fresh backend
// (a fresh sequence on the daemon) loaded from the shared prefill.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_QUALITY_EVAL_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_QUALITY_EVAL_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/tokenizer.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct QualityEvalOptions : ServiceOptions {
  std::vector<int64_t> contexts = {2048};
  std::vector<int64_t> budgets = {256, 512, 1024, 2048};
  // Any of "clusterkv", "clusterkv_adaptive", "quest", "streamingllm", "oracle". A ClusterKV
  // entry may carry configuration overrides for its variants only, "clusterkv+key=value+...",
  // keys centroid_scoring, clusters, prefill_segment_tokens, prefill_segment_clusters, sinks,
  // recluster_interval: several configurations then share one dense prefill.
  // clusterkv_adaptive (docs/decisions.md D75) runs at each budget (the cap of the mean per-head
  // budget) for each of `recall_targets`; config.min/max_token_budget apply.
  std::vector<std::string> methods = {"clusterkv", "quest", "streamingllm", "oracle"};
  std::vector<double> recall_targets = {0.9};
  std::string text = "austen";       // text_source.h
  std::string passkey_text = "kjv";  // the passkey haystack
  int32_t ppl_tokens = 256;
  int32_t agreement_tokens = 256;
  int32_t passkey_depths = 10;            // 0: no passkey
  // Indices (in [0, passkey_depths)) of the depths to run; empty: all. A depth keeps its needle
  // position and key, so one depth of a full run can be rerun alone.
  std::vector<int64_t> passkey_depth_indices;
  std::vector<int64_t> passkey_contexts;  // empty: every context
  int32_t chunk = 64;                     // teacher-forcing chunk
  uint64_t seed = 1;                      // passkeys
  std::string model_name;                 // for the report
  // Writes the first context's real keys, values and decode queries of every global layer in
  // clusterkv_eval's .npy layout (tools/clusterkv_eval/layer_data.h) to this directory.
  std::string dump_npy_dir;
  std::ostream* progress = nullptr;
};

// The report's "results" rows (DESIGN.md section 9 shape), one per (task, context, method,
// budget), and a summary table on `out`. InvalidArgument: bad options (no context, a context
// past the model's, an unknown method, a text too short); otherwise the engine's,
// libclusterkv's or the text source's status.
absl::StatusOr<nlohmann::ordered_json> RunQualityEval(const ModelWeights& weights,
                                                      const Tokenizer& tokenizer,
                                                      const QualityEvalOptions& options,
                                                      std::ostream& out);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_QUALITY_EVAL_H_
