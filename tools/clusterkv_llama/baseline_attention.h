// BaselineBackend: the token-selection baselines of gpu/baselines.h as decode attention of a
// model's global layers, in the engine (no daemon), over the same K/V storage and attention
// kernel as full attention (full_attention.h), so that they and ClusterKV differ only in which
// tokens they attend. Per step and kv head each attends, like ClusterKV:
//   the first `sinks` tokens, every token decoded since the prefill (ClusterKV's recent window;
//   the evaluation protocols decode fewer than m = 320 tokens, so the window holds them all),
//   and `budget` tokens of the rest of the prompt chosen by the method:
//     kOracle        the B highest attention weights of this very query (summed over the query
//                    heads of the kv head): it reads every key, an upper bound no real method
//                    reaches;
//     kQuest         whole 16-token pages by Quest's per-channel min/max bound (the last page
//                    truncated);
//     kStreamingLlm  the last B prompt tokens.
// Dense layers (sequence numbering, as ClusterKvConfig::dense_layers after SequenceConfig)
// attend every token. Not thread-safe; one decode loop drives it.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_BASELINE_ATTENTION_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_BASELINE_ATTENTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config.h"
#include "gpu/baselines.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/full_attention.h"

namespace clusterkv::llama {

enum class BaselineMethod : uint8_t { kOracle = 0, kQuest = 1, kStreamingLlm = 2 };
// "oracle", "quest", "streamingllm".
absl::string_view BaselineMethodName(BaselineMethod method);
// The inverse; InvalidArgument naming the accepted names.
absl::StatusOr<BaselineMethod> ParseBaselineMethod(absl::string_view name);

class BaselineBackend : public AttentionBackend {
 public:
  // `config` supplies sinks and dense layers (sequence numbering); `budget` the selected tokens
  // per kv head; room for `capacity` tokens per global layer.
  BaselineBackend(BaselineMethod method, const ModelConfig& model, const ClusterKvConfig& config,
                  int64_t budget, DType kv_dtype, int64_t capacity, gpu::ExecContext exec,
                  int32_t quest_page = 16);

  std::string Name() const override;
  // Stores the prompt (FullAttentionBackend::LoadPrefill) and, for Quest, builds the pages.
  absl::Status LoadPrefill(int32_t layer, const Tensor3View& keys,
                           const Tensor3View& values) override;
  // Appends k/v, selects (see the file comment) and attends. gpu/baselines.h's and the
  // store's errors.
  absl::Status AppendAndAttend(int32_t layer, const float* q, const float* k, const float* v,
                               float* out, AttentionStepStats* stats) override;

 private:
  BaselineMethod method_;
  ModelConfig model_;
  ClusterKvConfig config_;
  int64_t budget_;
  int32_t quest_page_;
  FullAttentionBackend store_;
  std::vector<int64_t> prompt_tokens_;               // per global layer
  std::vector<std::vector<gpu::QuestIndex>> quest_;  // per global layer and kv head
};

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_BASELINE_ATTENTION_H_
