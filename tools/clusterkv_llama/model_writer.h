// Writes ModelWeights as a real checkpoint of either format (the loaders' test input and the
// tool's --write_random_model), and makes deterministic random-weight models.
//
// Random models: no pretrained weights are reachable from this project's machines (DESIGN.md
// section 10), so the demo runs a seeded random Llama. With i.i.d. weights, q.k is a random
// bilinear form of two unrelated tokens, every score is O(1) and attention over a few thousand
// tokens is nearly uniform: then no budget below the context can reproduce it, whatever the
// selection method, and the comparison says nothing. Real attention is content-based: a query
// attends to the keys of related tokens. RandomModelOptions therefore lets the query head draw
// on the projection of its kv head: Wq[h] = gain * (sqrt(qk_shared) * B[g] + sqrt(1 -
// qk_shared) * R[h]) and Wk[g] = gain * B[g] with B, R ~ N(0, 1/dim), so a token attends most to
// earlier tokens with similar hidden states (e.g. the same token id, through the low-frequency
// RoPE pairs that survive long distances), with a peakedness set by qk_gain. Nothing in the
// model knows which tokens ClusterKV will select; agreement is measured, never arranged.
// qk_shared = 0 and qk_gain = 1 give the plain i.i.d. model for comparison.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_WRITER_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_WRITER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/tensor_file.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct RandomModelOptions {
  ModelConfig config;
  uint64_t seed = 1;
  float qk_gain = 1.0f;
  float qk_shared = 0.0f;  // in [0, 1]
  bool tie_embeddings = false;
};

// Deterministic for given options (own RNG: splitmix64 + Box-Muller); the config's architecture
// flags decide which tensors exist (QK-norm and post-norm weights ~ 1 + N(0, 0.01) when set).
// Embeddings ~ N(0, 1);
// Wv ~ N(0, 1/dim); Wo, Wdown ~ N(0, 0.25/fan_in) (smaller residual updates keep the token's
// identity visible in deeper layers); Wgate, Wup ~ N(0, 1/dim); norms 1 + N(0, 0.01); the
// output head ~ N(0, 4/dim). InvalidArgument for an invalid config or options.
absl::StatusOr<ModelWeights> MakeRandomWeights(const RandomModelOptions& options);

struct WriteOptions {
  StoredDType dtype = StoredDType::kF32;
  // GGUF only: the file's alignment (general.alignment; 32 is the default and not written),
  // its version, and extra metadata written before the model's keys (tests put arrays of
  // every type here).
  uint32_t gguf_alignment = 32;
  uint32_t gguf_version = 3;
  GgufMetadata gguf_extra_metadata;
  // Write tokenizer.ggml.{model,tokens,scores,token_type}; without them the loader takes the
  // vocabulary size from the output (or embedding) tensor.
  bool gguf_tokenizer = true;
  // safetensors only: where config.json goes ("" = next to the model file).
  std::string config_path;
};

// Writes `weights` to `path` in `format`. Q/K rows are converted to the file's RoPE order
// (rotate-half for safetensors and Gemma GGUF files, interleaved for Llama GGUF files),
// whatever order `weights` holds. GGUF metadata: general.architecture ("llama" or "gemma3"),
// general.name, the <arch>.* keys ConfigFromGguf reads (for Gemma 3 also the window, the
// per-layer pattern as a bool array, the local RoPE base and the optional scales) and
// tokenizer.ggml.tokens ("<t0>", "<t1>", ...; or weights.token_strings), scores and token
// types. InvalidArgument: invalid weights, a Gemma model or rope frequency factors for
// safetensors (HF configs can only express them as rope_scaling); Unavailable: a file cannot
// be written.
absl::Status WriteModel(const ModelWeights& weights, const std::string& path, ModelFormat format,
                        const WriteOptions& options = {});

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_WRITER_H_
