// ClusterKV settings for a model family, measured on the real models to beat the paper's
// defaults there (docs/decisions.md D88). The library's defaults stay the paper's; the engine
// knows the architecture it runs and picks these unless the user set the fields.
//
// Models with QK-norm (each query and key head RMS-normalised before RoPE, e.g. Gemma 3):
// centroid_scoring = key_norm and prefill_segment_clusters = 200 (clusters per later 2048-token
// segment, twice the default density). Every other model keeps the configuration as given.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_PROFILE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_PROFILE_H_

#include <string>

#include "core/config.h"
#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

// Which profile fields the user set explicitly (those are never changed).
struct ProfileOverrides {
  bool centroid_scoring = false;
  bool prefill_segment_clusters = false;
};

// Applies `model`'s profile to `config`; returns what it changed ("centroid_scoring=key_norm,
// prefill_segment_clusters=200"), or "" when nothing.
std::string ApplyModelProfile(const ModelConfig& model, const ProfileOverrides& given,
                              ClusterKvConfig* config);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_MODEL_PROFILE_H_
