// Token-selection baselines compared against ClusterKV in the same run (DESIGN.md section 4).
// Each returns ranges of token positions in [0, num_tokens) of one kv head; all of them keep
// the first `sinks` tokens and choose `budget` further tokens, so equal budgets mean equal
// attention cost.
#ifndef CLUSTERKV_GPU_BASELINES_H_
#define CLUSTERKV_GPU_BASELINES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor_view.h"
#include "core/token_range.h"

namespace clusterkv::gpu {

// StreamingLLM: the sinks plus the most recent `budget` tokens.
// InvalidArgument: budget < 1, sinks < 0 or sinks + budget > num_tokens.
absl::StatusOr<std::vector<TokenRange>> StreamingLlmSelect(int64_t num_tokens, int32_t sinks,
                                                           int64_t budget);

// Oracle: the sinks plus the `budget` tokens of highest attention weight (summed over the G
// query heads of the kv head). An upper bound no real method reaches: it reads every key.
absl::StatusOr<std::vector<TokenRange>> OracleTopKSelect(const ConstMatrixView& queries,
                                                         const ConstMatrixView& keys, float scale,
                                                         int32_t sinks, int64_t budget);

// Quest (Tang et al., 2024): keys after the sinks are cut into pages of `page_size` tokens
// that keep per-channel minima and maxima; a page's score is the upper bound
// sum_i max(q_i * min_i, q_i * max_i), summed over the query heads.
struct QuestIndex {
  int32_t page_size = 16;
  int32_t sinks = 0;
  int64_t num_tokens = 0;
  int32_t head_dim = 0;
  std::vector<float> min;  // [pages, head_dim]
  std::vector<float> max;  // [pages, head_dim]
  int64_t num_pages() const { return head_dim == 0 ? 0 : static_cast<int64_t>(min.size()) / head_dim; }
};

// InvalidArgument: page_size < 1, sinks out of range, NaN/Inf keys.
absl::StatusOr<QuestIndex> BuildQuestIndex(const ConstMatrixView& keys, int32_t sinks,
                                           int32_t page_size = 16);

// Whole pages by descending bound until `budget` tokens (the last page truncated), plus sinks.
absl::StatusOr<std::vector<TokenRange>> QuestSelect(const QuestIndex& index,
                                                    const ConstMatrixView& queries,
                                                    int64_t budget);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_BASELINES_H_
