#include "tools/clusterkv_llama/clusterkv_attention.h"

#include <chrono>
#include <utility>
#include <vector>

#include "core/status_macros.h"

namespace clusterkv::llama {
namespace {

int64_t MicrosSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

}  // namespace

ClusterKvBackend::ClusterKvBackend(std::string name, std::unique_ptr<client::Sequence> sequence)
    : name_(std::move(name)), sequence_(std::move(sequence)) {}

absl::Status ClusterKvBackend::LoadPrefill(int32_t layer, const Tensor3View& keys,
                                           const Tensor3View& values) {
  // The forward pass keeps token-major rows; Sequence reads them in place.
  return sequence_->OffloadPrefill(layer, keys, values);
}

absl::Status ClusterKvBackend::AppendAndAttend(int32_t layer, const float* q, const float* k,
                                               const float* v, float* out,
                                               AttentionStepStats* stats) {
  const KvLayout& layout = sequence_->layout();
  const auto t0 = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(sequence_->AppendToken(layer,
                                         ConstMatrixView(k, layout.num_kv_heads, layout.head_dim),
                                         ConstMatrixView(v, layout.num_kv_heads, layout.head_dim)));
  const int64_t append_us = MicrosSince(t0);
  client::StepStats s;
  RETURN_IF_ERROR(sequence_->Attend(layer, ConstMatrixView(q, layout.num_q_heads, layout.head_dim),
                                    MatrixView(out, layout.num_q_heads, layout.head_dim), &s));
  if (stats != nullptr) {
    *stats = AttentionStepStats();
    stats->total_us = MicrosSince(t0);
    stats->append_us = append_us;
    stats->score_us = s.score_us;
    stats->select_us = s.select_us;
    stats->fetch_us = s.fetch_us;
    stats->attend_us = s.attend_us;
    stats->bytes_fetched = s.bytes_fetched;
    stats->hit_tokens = s.hit_tokens;
    stats->miss_tokens = s.miss_tokens;
    stats->attended_tokens = s.attended_tokens;
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
