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

// A contiguous fp32 [d0, d1, d2] copy of `t` in `buf`.
Tensor3View HeadMajor(const Tensor3View& t, std::vector<float>* buf) {
  buf->resize(static_cast<size_t>(t.dims[0] * t.dims[1] * t.dims[2]));
  for (int64_t h = 0; h < t.dims[0]; ++h) {
    const ConstMatrixView m = t.Slice(h);
    for (int64_t r = 0; r < t.dims[1]; ++r) {
      m.LoadRow(r, &(*buf)[static_cast<size_t>((h * t.dims[1] + r) * t.dims[2])]);
    }
  }
  return Tensor3View(buf->data(), DType::kFloat32, t.dims);
}

}  // namespace

ClusterKvBackend::ClusterKvBackend(std::string name, std::unique_ptr<client::Sequence> sequence)
    : name_(std::move(name)), sequence_(std::move(sequence)) {}

absl::Status ClusterKvBackend::LoadPrefill(int32_t layer, const Tensor3View& keys,
                                           const Tensor3View& values) {
  // Sequence takes head-major tensors ([kv head][token][dim], heads apart by whole token
  // ranges); the forward pass keeps token-major rows, so regroup them first when needed.
  if (keys.strides[0] >= keys.dims[1] * keys.strides[1] &&
      values.strides[0] >= values.dims[1] * values.strides[1]) {
    return sequence_->OffloadPrefill(layer, keys, values);
  }
  std::vector<float> k, v;
  const Tensor3View hk = HeadMajor(keys, &k), hv = HeadMajor(values, &v);
  return sequence_->OffloadPrefill(layer, hk, hv);
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
