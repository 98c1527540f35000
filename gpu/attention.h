// Decode-step attention for the query heads that share one kv head (GQA), over any list of
// K/V spans: full attention is one span over every token; ClusterKV's sparse attention is the
// sinks, the recalled cluster ranges and the recent window. Keys and values are converted on
// load and accumulated in fp32 with an online softmax, so no [G, tokens] matrix is formed.
#ifndef CLUSTERKV_GPU_ATTENTION_H_
#define CLUSTERKV_GPU_ATTENTION_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/tensor_view.h"
#include "core/token_range.h"
#include "gpu/backend.h"

namespace clusterkv::gpu {

// Keys and values of the same tokens: keys.rows == values.rows, same head_dim.
struct KvSpan {
  ConstMatrixView keys;
  ConstMatrixView values;
};

// One attention problem: G queries over the union of `spans`, writing out [G, head_dim].
struct AttentionTask {
  ConstMatrixView queries;
  std::vector<KvSpan> spans;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
  MatrixView out;
};

// out[g] = sum_t softmax_t(scale * q_g . k_t) v_t over every row of every span.
// InvalidArgument: shape mismatch, no tokens at all, NaN/Inf in the queries.
absl::Status Attention(const AttentionTask& task, const ExecContext& ctx);

// Runs independent tasks (e.g. every kv head of a layer); CPU threads spread over tasks.
absl::Status AttentionBatch(absl::Span<const AttentionTask> tasks, const ExecContext& ctx);

// The spans of `ranges` inside one K/V matrix pair (e.g. selected clusters of the
// cluster-contiguous store). InvalidArgument when a range leaves [0, keys.rows).
absl::StatusOr<std::vector<KvSpan>> SpansOfRanges(const KvSpan& all,
                                                  absl::Span<const TokenRange> ranges);

// Softmax attention weights of every key: probs[g, t] = softmax_t(scale * q_g . k_t).
// probs: [G, keys.rows]. For evaluation and the oracle baseline, not for the decode path.
absl::Status AttentionWeights(const ConstMatrixView& queries, const ConstMatrixView& keys,
                              float scale, MatrixView probs, int threads);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_ATTENTION_H_
