// Structured synthetic K/V/Q with the properties that decide how well ClusterKV, Quest and
// StreamingLLM do on real LLM caches, for when no model dump is at hand (DESIGN.md section 10:
// no pretrained weights are reachable from this machine).
//
// The model, per (layer, kv head), all in pre-RoPE space unless said otherwise:
//  * Topics. `num_topics` random directions u_z whose energy sits mostly in the low-frequency
//    RoPE pairs (pairs whose rotation over the whole context stays small, so semantic content
//    survives RoPE as it does in real keys); high-frequency pairs get a small share.
//  * Text-like token stream. The context is a sequence of topic segments with log-normal lengths
//    (mean `mean_segment_tokens`); the next segment revisits one of the recent topics with
//    probability `revisit_probability`, else draws a topic by Zipf popularity, so topics recur
//    across the whole context. Each segment instance adds its own small perturbation, and a
//    fraction `filler_fraction` of tokens are topic-less "function words" drawn from a small
//    pool of filler directions.
//  * Keys: amplitude * u_z + segment perturbation + gaussian noise (relative norm `key_noise`)
//    + a few heavy-tailed outlier channels (large per-head offsets with Student-t-like
//    fluctuations, in low-frequency pairs, as in real Llama keys); then RoPE at the token's
//    position with base `rope_theta` (500000 as Llama 3).
//  * Values: unit gaussian per channel plus a topic value direction (no RoPE).
//  * Decode queries at positions context, context + 1, ...: a weighted mix of `query_topics`
//    topics -- the topic of the last context segment (the text being continued, which gives
//    StreamingLLM its due) plus topics recalled from earlier context -- with a little noise.
//    The recalled topics drift slowly: each step each recalled slot is replaced with probability
//    `topic_drift` and the weights random-walk. RoPE at the query's position. The query is then
//    scaled so the softmax is as peaked as in real models: the top `peak_fraction` of tokens
//    (1k of 32k by default) hold `peak_mass` of the attention of the group's base query.
//  * GQA: the G query heads of a kv head are perturbations of the group's query (jittered topic
//    weights plus `gqa_perturbation` relative noise), sharing the group's temperature.
//
// RoPE pairing: kRotateHalf rotates channel pairs (i, i + d/2) with frequency theta^(-2i/d) (HF
// Llama's rotate_half); kAdjacent rotates pairs (2i, 2i + 1) (the original Meta / GPT-J
// layout). Either way the evaluation sees post-RoPE keys and queries, as a real cache holds.
//
// Deterministic: every (seed, layer, kv head) has its own xoshiro256** stream seeded through
// splitmix64, normals by Box-Muller; results do not depend on `threads`.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_EVAL_SYNTHETIC_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_EVAL_SYNTHETIC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/clusterkv_eval/layer_data.h"

namespace clusterkv::eval {

enum class RopeStyle { kRotateHalf, kAdjacent };

struct SyntheticOptions {
  int64_t context = 32768;
  int32_t num_layers = 4;
  int32_t num_kv_heads = 8;
  int32_t num_q_heads = 32;
  int32_t head_dim = 128;
  int32_t num_queries = 16;
  uint64_t seed = 1;

  int32_t num_topics = 200;
  double mean_segment_tokens = 48.0;
  double revisit_probability = 0.35;
  double filler_fraction = 0.2;
  double key_noise = 0.45;
  double rope_theta = 500000.0;
  RopeStyle rope_style = RopeStyle::kRotateHalf;

  int32_t query_topics = 3;
  double topic_drift = 0.1;
  double gqa_perturbation = 0.25;
  double peak_fraction = 1.0 / 32.0;
  double peak_mass = 0.8;

  // CPU threads over kv heads (0 = all cores); does not change the data.
  int threads = 0;

  // InvalidArgument naming the first field out of range.
  absl::Status Validate() const;
};

// Generates one layer (fp32 tensors in the dump layout of layer_data.h).
// InvalidArgument when the options are invalid or layer is outside [0, num_layers).
absl::StatusOr<LayerTensors> GenerateSyntheticLayer(const SyntheticOptions& options, int32_t layer);

// Generates layers on demand (nothing is held between Load calls).
class SyntheticSource : public LayerSource {
 public:
  explicit SyntheticSource(SyntheticOptions options) : options_(options) {}
  std::vector<int32_t> layers() const override;
  absl::StatusOr<LayerTensors> Load(int32_t layer) override;
  std::string Describe() const override;

 private:
  SyntheticOptions options_;
};

// Deterministic portable RNG (xoshiro256** seeded through splitmix64). Exposed for tests.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  // Standard normal (Box-Muller).
  double Normal();
  // Uniform integer in [0, n).
  uint64_t Below(uint64_t n);

 private:
  uint64_t s_[4];
  bool have_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace clusterkv::eval

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_EVAL_SYNTHETIC_H_
