#include "tools/clusterkv_llama/model_profile.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace clusterkv::llama {

std::string ApplyModelProfile(const ModelConfig& model, const ProfileOverrides& given,
                              ClusterKvConfig* config) {
  if (!model.qk_norm) return "";
  // Measured on Gemma 3 (D88): with the paper's cosine scores a passkey copied from deep in a
  // 16k or 32k prompt lost single digits; key-norm scoring with finer later segments answered
  // as full attention does and cut the mean logit error against full attention. On SmolLM2
  // (no QK-norm) key-norm scoring was slightly worse, so only QK-norm models get the profile.
  std::vector<std::string> changed;
  if (!given.centroid_scoring && config->centroid_scoring == CentroidScoring::kUnit) {
    config->centroid_scoring = CentroidScoring::kKeyNorm;
    changed.push_back("centroid_scoring=key_norm");
  }
  if (!given.prefill_segment_clusters && config->prefill_segment_tokens > 0 &&
      config->prefill_segment_clusters == 0) {
    config->prefill_segment_clusters = 200;
    changed.push_back("prefill_segment_clusters=200");
  }
  return absl::StrJoin(changed, ", ");
}

}  // namespace clusterkv::llama
