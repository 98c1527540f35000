// TextKvModel: a deterministic stand-in for a transformer's K/V/Q, driven by a real word stream
// (no pretrained weights are reachable from this build machine). Each word has a fixed random
// embedding; a token's key mixes its word's embedding with an exponentially decaying context of
// the words before it, so repeated words and recurring topics give semantically clustered keys;
// every (layer, kv_head) sees its own signed permutation of that space; energy is concentrated
// in the low-frequency RoPE channel pairs, then RoPE (theta 500000) rotates keys and queries by
// position. Values are the word's second embedding. A decode query at position p is built from
// the word at p and its context, scaled so attention is peaked.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_DEMO_TEXT_MODEL_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_DEMO_TEXT_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/kv_layout.h"

namespace clusterkv::demo {

class TextKvModel {
 public:
  // `words` is the token stream; positions index into it. Thread-compatible after construction;
  // the const methods may run concurrently.
  TextKvModel(const KvLayout& layout, const std::vector<std::string>& words, uint64_t seed);

  int64_t num_tokens() const { return static_cast<int64_t>(word_ids_.size()); }
  int64_t vocabulary() const { return static_cast<int64_t>(vocab_size_); }

  // Keys and values of tokens [begin, end) of `layer`: [num_kv_heads, end - begin, head_dim]
  // fp32 each.
  void Fill(int32_t layer, int64_t begin, int64_t end, float* keys, float* values,
            int threads) const;
  // Queries of the decode step at `position`: [num_q_heads, head_dim] fp32.
  void Query(int32_t layer, int64_t position, float* queries) const;

 private:
  void Key(int32_t layer, int32_t head, int64_t position, float* out) const;
  void Value(int32_t layer, int32_t head, int64_t position, float* out) const;
  // Signed permutation of (layer, head) applied to `in`, then the RoPE energy profile.
  void Project(int32_t layer, int32_t head, const float* in, float* out) const;
  void Rope(int64_t position, float* v) const;

  KvLayout layout_;
  uint64_t seed_;
  size_t vocab_size_ = 0;
  std::vector<int32_t> word_ids_;          // per position
  std::vector<float> key_embedding_;       // [vocab, d]
  std::vector<float> value_embedding_;     // [vocab, d]
  std::vector<float> context_;             // [positions, d]: decayed mean of earlier words
  std::vector<float> energy_;              // [d] channel weights
  std::vector<float> inv_freq_;            // [d / 2]
  std::vector<std::vector<int32_t>> perm_;  // per (layer, head): channel permutation
  std::vector<std::vector<float>> sign_;    // per (layer, head): channel signs
};

}  // namespace clusterkv::demo

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_DEMO_TEXT_MODEL_H_
