// The comparison the tool exists for: one prompt, prefilled once (dense), then D greedy decode
// steps with full attention (the reference) and D steps through libclusterkv at each budget,
// all in this process against one clusterkvd.
//
// Teacher forcing: the full-attention run decodes greedily (g_1..g_D from the prompt's last
// logits g_0); every ClusterKV run is fed the same tokens g_0..g_{D-1}, so at step s both see
// the same history and differ only in how attention was computed. Without it, one early
// mismatch would change every later input and the remaining steps would compare unrelated
// continuations. Timing: each ClusterKV step is paired with a full-attention step on the same
// input run right before it (a second full-attention cache), and that paired time is the
// latency baseline, so machine load that varies over the run affects both alike.
// Agreement = the fraction of steps whose argmax equals full attention's next
// token; logit error = max |l - l_full| and ||l - l_full|| / ||l_full|| per step.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_COMPARISON_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_COMPARISON_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/config.h"
#include "core/kv_layout.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct ComparisonOptions : ServiceOptions {
  int32_t steps = 384;
  std::vector<int64_t> budgets = {256, 512, 1024, 2048};
  bool oracle = true;                // measure full attention's top-B mass
  std::ostream* progress = nullptr;  // progress lines; null = silent
};

// Per-run figures. Times are microseconds per decode step (all layers) unless named otherwise.
struct VariantResult {
  std::string name;                  // "full_attention" or "clusterkv_b<budget>"
  int64_t budget = 0;                // 0 for full attention
  std::vector<int32_t> argmax;       // per step
  std::vector<double> step_us;       // per step: the whole forward
  std::vector<double> dense_us;      // per step: everything but attention
  std::vector<double> attention_us;  // per step: the backend's calls
  // ClusterKV runs: full attention timed step by step in the same loop (same input token, run
  // just before each ClusterKV step), so both see the same machine load. The time baseline.
  std::vector<double> paired_full_step_us;
  std::vector<double> paired_full_attention_us;
  AttentionStepStats totals;       // summed over steps and layers
  double token_agreement = 1.0;    // vs full attention
  double logit_max_abs = 0.0;      // max over steps
  double logit_rel_l2_mean = 0.0;  // mean over steps
  double logit_rel_l2_max = 0.0;
  double load_s = 0.0;          // LoadPrefill over every layer (offload + clustering)
  double cache_hit_rate = 0.0;  // ClusterKV device cache, token-weighted
  std::string data_plane;       // "ucx", "grpc" or "local"
};

struct ComparisonResult {
  int64_t prompt_tokens = 0;
  double prefill_s = 0.0;
  std::vector<int32_t> greedy_tokens;  // g_0..g_D of full attention
  VariantResult full;
  std::vector<VariantResult> clusterkv;  // in options.budgets order
  // Oracle: mean softmax mass of full attention's top-B tokens per budget, over the sparse
  // (non-dense) layers, query heads and steps. Empty unless options.oracle.
  std::vector<double> oracle_top_mass;
};

// Runs the comparison for `prompt`. InvalidArgument: bad options or prompt (steps < 1, no
// budgets, a prompt + steps longer than max_context); otherwise the first failing call's status
// (forward pass, libclusterkv, the daemon).
absl::StatusOr<ComparisonResult> RunComparison(const ModelWeights& weights,
                                               const std::vector<int32_t>& prompt,
                                               const ComparisonOptions& options);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_COMPARISON_H_
