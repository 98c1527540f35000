#include "tools/clusterkv_llama/full_attention.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "gpu/attention.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"

namespace clusterkv::llama {
namespace {

using internal::MicrosSince;

}  // namespace

FullAttentionBackend::FullAttentionBackend(const ModelConfig& config, DType kv_dtype,
                                           int64_t capacity, gpu::ExecContext exec)
    : config_(config), kv_dtype_(kv_dtype), capacity_(capacity), exec_(exec) {
  layers_.resize(config.GlobalLayers().size());
  const size_t bytes = static_cast<size_t>(config.KvDim() * capacity) * DTypeSize(kv_dtype);
  for (Layer& l : layers_) {
    l.keys.resize(bytes);
    l.values.resize(bytes);
  }
}

uint8_t* FullAttentionBackend::Row(std::vector<uint8_t>& buf, int32_t head, int64_t token) {
  return buf.data() + static_cast<size_t>((int64_t{head} * capacity_ + token) * config_.head_dim) *
                          DTypeSize(kv_dtype_);
}

absl::Status FullAttentionBackend::LoadPrefill(int32_t layer, const Tensor3View& keys,
                                               const Tensor3View& values) {
  if (layer < 0 || layer >= static_cast<int32_t>(layers_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer ", layer));
  }
  Layer& l = layers_[static_cast<size_t>(layer)];
  if (l.tokens != 0) return absl::FailedPreconditionError("layer already holds tokens");
  const int64_t tokens = keys.dims[1];
  if (keys.dims != values.dims || keys.dims[0] != config_.n_kv_heads ||
      keys.dims[2] != config_.head_dim || tokens > capacity_) {
    return absl::InvalidArgumentError("prefill K/V shape does not fit the layer");
  }
  std::vector<float> row(static_cast<size_t>(config_.head_dim));
  for (int32_t h = 0; h < config_.n_kv_heads; ++h) {
    const ConstMatrixView k = keys.Slice(h), v = values.Slice(h);
    for (int64_t t = 0; t < tokens; ++t) {
      k.LoadRow(t, row.data());
      ConvertFromFloat(row.data(), config_.head_dim, kv_dtype_, Row(l.keys, h, t));
      v.LoadRow(t, row.data());
      ConvertFromFloat(row.data(), config_.head_dim, kv_dtype_, Row(l.values, h, t));
    }
  }
  l.tokens = tokens;
  return absl::OkStatus();
}

const uint8_t* FullAttentionBackend::Row(const std::vector<uint8_t>& buf, int32_t head,
                                         int64_t token) const {
  return buf.data() + static_cast<size_t>((int64_t{head} * capacity_ + token) * config_.head_dim) *
                          DTypeSize(kv_dtype_);
}

ConstMatrixView FullAttentionBackend::Keys(int32_t layer, int32_t head) const {
  const Layer& l = layers_[static_cast<size_t>(layer)];
  return ConstMatrixView(Row(l.keys, head, 0), kv_dtype_, l.tokens, config_.head_dim);
}

absl::Status FullAttentionBackend::Append(int32_t layer, const float* k, const float* v) {
  if (layer < 0 || layer >= static_cast<int32_t>(layers_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer ", layer));
  }
  Layer& l = layers_[static_cast<size_t>(layer)];
  if (l.tokens >= capacity_) {
    return absl::InvalidArgumentError(
        absl::StrCat("full attention cache of ", capacity_, " tokens is full"));
  }
  const int32_t hd = config_.head_dim;
  for (int32_t h = 0; h < config_.n_kv_heads; ++h) {
    ConvertFromFloat(k + int64_t{h} * hd, hd, kv_dtype_, Row(l.keys, h, l.tokens));
    ConvertFromFloat(v + int64_t{h} * hd, hd, kv_dtype_, Row(l.values, h, l.tokens));
  }
  ++l.tokens;
  return absl::OkStatus();
}

absl::Status FullAttentionBackend::AttendRanges(int32_t layer, const float* q,
                                                const std::vector<std::vector<TokenRange>>& ranges,
                                                float* out) const {
  if (layer < 0 || layer >= static_cast<int32_t>(layers_.size()) ||
      static_cast<int32_t>(ranges.size()) != config_.n_kv_heads) {
    return absl::InvalidArgumentError("AttendRanges: bad layer or range lists");
  }
  const Layer& l = layers_[static_cast<size_t>(layer)];
  const int32_t hd = config_.head_dim, group = config_.GroupSize();
  std::vector<gpu::AttentionTask> tasks(static_cast<size_t>(config_.n_kv_heads));
  for (int32_t h = 0; h < config_.n_kv_heads; ++h) {
    gpu::AttentionTask& task = tasks[static_cast<size_t>(h)];
    task.queries = ConstMatrixView(q + int64_t{h} * group * hd, group, hd);
    for (const TokenRange& r : ranges[static_cast<size_t>(h)]) {
      if (r.begin < 0 || r.end > l.tokens || r.begin >= r.end) {
        return absl::InvalidArgumentError(absl::StrCat("AttendRanges: range [", r.begin, ", ",
                                                       r.end, ") outside the layer's ", l.tokens,
                                                       " tokens"));
      }
      task.spans.push_back(
          gpu::KvSpan{ConstMatrixView(Row(l.keys, h, r.begin), kv_dtype_, r.size(), hd),
                      ConstMatrixView(Row(l.values, h, r.begin), kv_dtype_, r.size(), hd)});
    }
    task.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    task.out = MatrixView(out + int64_t{h} * group * hd, group, hd);
  }
  return gpu::AttentionBatch(tasks, exec_);
}

absl::Status FullAttentionBackend::AppendAndAttend(int32_t layer, const float* q, const float* k,
                                                   const float* v, float* out,
                                                   AttentionStepStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(Append(layer, k, v));
  const int64_t append_us = MicrosSince(t0);
  const auto t1 = std::chrono::steady_clock::now();
  const int64_t tokens = layers_[static_cast<size_t>(layer)].tokens;
  const std::vector<std::vector<TokenRange>> all(static_cast<size_t>(config_.n_kv_heads),
                                                 {TokenRange{0, tokens}});
  RETURN_IF_ERROR(AttendRanges(layer, q, all, out));
  if (stats != nullptr) {
    *stats = AttentionStepStats();
    stats->append_us = append_us;
    stats->attend_us = MicrosSince(t1);
    stats->total_us = MicrosSince(t0);
    stats->attended_tokens = tokens * config_.n_kv_heads;
  }
  return absl::OkStatus();
}

absl::Status FullAttentionBackend::TopMass(int32_t layer, const float* q,
                                           absl::Span<const int64_t> budgets,
                                           absl::Span<double> mass) const {
  if (layer < 0 || layer >= static_cast<int32_t>(layers_.size()) || budgets.size() != mass.size()) {
    return absl::InvalidArgumentError("TopMass: bad layer or sizes");
  }
  const Layer& l = layers_[static_cast<size_t>(layer)];
  if (l.tokens == 0) return absl::InvalidArgumentError("TopMass: the layer holds no tokens");
  const int32_t hd = config_.head_dim, group = config_.GroupSize();
  std::vector<float> probs(static_cast<size_t>(group * l.tokens));
  std::vector<float> sorted(static_cast<size_t>(l.tokens));
  for (int32_t h = 0; h < config_.n_kv_heads; ++h) {
    const size_t head_offset =
        static_cast<size_t>(int64_t{h} * capacity_ * hd) * DTypeSize(kv_dtype_);
    RETURN_IF_ERROR(
        gpu::AttentionWeights(ConstMatrixView(q + int64_t{h} * group * hd, group, hd),
                              ConstMatrixView(l.keys.data() + head_offset, kv_dtype_, l.tokens, hd),
                              1.0f / std::sqrt(static_cast<float>(hd)),
                              MatrixView(probs.data(), group, l.tokens), exec_.CpuThreads()));
    for (int32_t j = 0; j < group; ++j) {
      std::copy_n(&probs[static_cast<size_t>(j * l.tokens)], l.tokens, sorted.begin());
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      for (size_t b = 0; b < budgets.size(); ++b) {
        const int64_t n = std::min<int64_t>(budgets[b], l.tokens);
        double sum = 0;
        for (int64_t t = 0; t < n; ++t) sum += sorted[static_cast<size_t>(t)];
        mass[b] += sum / config_.n_heads;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
