// LocalWindowBackend: the attention backend of a model with local (sliding-window) layers, such
// as Gemma 3. It serves the local layers itself, from a ring of the last `sliding_window`
// tokens' K/V per layer kept in fp32 in the engine (those layers never need more, so they never
// go to clusterkvd), and hands the global layers to an inner backend (full attention or
// ClusterKV) renumbered 0..G-1 in ModelConfig::GlobalLayers() order. Both variants of a
// comparison therefore compute the local layers identically and differ only on global layers.
// Owns the inner backend. Not thread-safe; one decode loop drives it.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_LOCAL_WINDOW_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_LOCAL_WINDOW_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

class LocalWindowBackend : public AttentionBackend {
 public:
  LocalWindowBackend(const ModelConfig& config, std::unique_ptr<AttentionBackend> global);

  std::string Name() const override { return global_->Name(); }
  // Local layers: keeps the last sliding_window rows (InvalidArgument on a bad shape or a
  // second load); global layers: the inner backend's LoadPrefill with the global index.
  absl::Status LoadPrefill(int32_t layer, const Tensor3View& keys,
                           const Tensor3View& values) override;
  void BeginStep() override { global_->BeginStep(); }
  // Local layers: appends k/v (dropping the oldest token once the window is full) and attends
  // over the window with scale 1/sqrt(head_dim) (the model pre-scales q); stats count the
  // attended tokens and attend time only. Global layers: the inner backend.
  absl::Status AppendAndAttend(int32_t layer, const float* q, const float* k, const float* v,
                               float* out, AttentionStepStats* stats) override;

  // Global layers: the inner backend's, with the global index; local layers: false / no-op.
  bool WantsPrefetch(int32_t layer) const override;
  absl::Status Prefetch(int32_t layer, const float* q_guess) override;
  AttentionBackend& global() { return *global_; }

  // The local layers' windows as PrefillResult holds them (oldest token first), encoded by
  // EncodeLocalWindows: an engine state a checkpoint carries (client::Sequence::Checkpoint),
  // since these windows never reach the daemon.
  std::string SaveWindows() const;
  // Loads windows saved by SaveWindows (or EncodeLocalWindows) into this backend's local
  // layers, which must hold nothing yet. InvalidArgument: bytes of another model.
  absl::Status RestoreWindows(absl::string_view bytes);

 private:
  struct Window {
    std::vector<float> keys;    // [sliding_window][kv_dim], a ring
    std::vector<float> values;  // same
    int64_t count = 0;          // tokens held (<= sliding_window)
    int64_t next = 0;           // ring slot of the next token
    bool loaded = false;
  };

  ModelConfig config_;
  std::unique_ptr<AttentionBackend> global_;
  std::vector<int32_t> global_index_;  // per model layer: index in the inner backend, or -1
  std::vector<Window> windows_;        // per model layer (empty for global layers)
};

// The local layers' rows of `prefill` (their last windows), as bytes: [magic][layers] then per
// model layer its row count and fp32 keys and values ([rows, kv_dim]; 0 rows for a global
// layer).
std::string EncodeLocalWindows(const ModelConfig& config, const PrefillResult& prefill);
// Fills the local layers of `prefill` (keys, values) from EncodeLocalWindows' bytes.
// InvalidArgument: bytes of another model.
absl::Status DecodeLocalWindows(const ModelConfig& config, absl::string_view bytes,
                                PrefillResult* prefill);

// `global` itself when `config` has no local layers, else a LocalWindowBackend around it.
std::unique_ptr<AttentionBackend> ForModelLayers(const ModelConfig& config,
                                                 std::unique_ptr<AttentionBackend> global);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_LOCAL_WINDOW_H_
