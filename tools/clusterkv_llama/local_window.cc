#include "tools/clusterkv_llama/local_window.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"
#include "tools/clusterkv_llama/ops.h"

namespace clusterkv::llama {
namespace {

using internal::MicrosSince;

}  // namespace

LocalWindowBackend::LocalWindowBackend(const ModelConfig& config,
                                       std::unique_ptr<AttentionBackend> global)
    : config_(config), global_(std::move(global)) {
  global_index_.assign(static_cast<size_t>(config.n_layers), -1);
  windows_.resize(static_cast<size_t>(config.n_layers));
  int32_t next = 0;
  const size_t ring = static_cast<size_t>(int64_t{config.sliding_window} * config.KvDim());
  for (int32_t l = 0; l < config.n_layers; ++l) {
    if (config.IsLocalLayer(l)) {
      windows_[static_cast<size_t>(l)].keys.resize(ring);
      windows_[static_cast<size_t>(l)].values.resize(ring);
    } else {
      global_index_[static_cast<size_t>(l)] = next++;
    }
  }
}

absl::Status LocalWindowBackend::LoadPrefill(int32_t layer, const Tensor3View& keys,
                                             const Tensor3View& values) {
  if (layer < 0 || layer >= config_.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer ", layer));
  }
  const int32_t g = global_index_[static_cast<size_t>(layer)];
  if (g >= 0) return global_->LoadPrefill(g, keys, values);
  Window& w = windows_[static_cast<size_t>(layer)];
  if (w.loaded) return absl::FailedPreconditionError("local layer already holds tokens");
  if (keys.dims != values.dims || keys.dims[0] != config_.n_kv_heads ||
      keys.dims[2] != config_.head_dim) {
    return absl::InvalidArgumentError("prefill K/V shape does not fit the local layer");
  }
  const int64_t tokens = keys.dims[1];
  const int64_t first = std::max<int64_t>(0, tokens - config_.sliding_window);
  const int32_t hd = config_.head_dim;
  for (int64_t t = first; t < tokens; ++t) {
    const int64_t slot = w.next;
    for (int32_t h = 0; h < config_.n_kv_heads; ++h) {
      const size_t at = static_cast<size_t>(slot * config_.KvDim() + int64_t{h} * hd);
      keys.Slice(h).LoadRow(t, &w.keys[at]);
      values.Slice(h).LoadRow(t, &w.values[at]);
    }
    w.next = (w.next + 1) % config_.sliding_window;
    w.count = std::min<int64_t>(w.count + 1, config_.sliding_window);
  }
  w.loaded = true;
  return absl::OkStatus();
}

bool LocalWindowBackend::WantsPrefetch(int32_t layer) const {
  if (layer < 0 || layer >= config_.n_layers) return false;
  const int32_t g = global_index_[static_cast<size_t>(layer)];
  return g >= 0 && global_->WantsPrefetch(g);
}

absl::Status LocalWindowBackend::Prefetch(int32_t layer, const float* q_guess) {
  if (layer < 0 || layer >= config_.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer ", layer));
  }
  const int32_t g = global_index_[static_cast<size_t>(layer)];
  return g >= 0 ? global_->Prefetch(g, q_guess) : absl::OkStatus();
}

absl::Status LocalWindowBackend::AppendAndAttend(int32_t layer, const float* q, const float* k,
                                                 const float* v, float* out,
                                                 AttentionStepStats* stats) {
  if (layer < 0 || layer >= config_.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer ", layer));
  }
  const int32_t g = global_index_[static_cast<size_t>(layer)];
  if (g >= 0) return global_->AppendAndAttend(g, q, k, v, out, stats);
  const auto t0 = std::chrono::steady_clock::now();
  Window& w = windows_[static_cast<size_t>(layer)];
  const int64_t kv_dim = config_.KvDim();
  const int32_t hd = config_.head_dim, group = config_.GroupSize();
  std::copy_n(k, kv_dim, &w.keys[static_cast<size_t>(w.next * kv_dim)]);
  std::copy_n(v, kv_dim, &w.values[static_cast<size_t>(w.next * kv_dim)]);
  w.next = (w.next + 1) % config_.sliding_window;
  w.count = std::min<int64_t>(w.count + 1, config_.sliding_window);
  w.loaded = true;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> scores(static_cast<size_t>(w.count));
  for (int32_t h = 0; h < config_.n_heads; ++h) {
    const int32_t kvh = h / group;
    const float* qh = q + int64_t{h} * hd;
    float best = -INFINITY;
    for (int64_t t = 0; t < w.count; ++t) {
      const float s = Dot(qh, &w.keys[static_cast<size_t>(t * kv_dim + int64_t{kvh} * hd)], hd);
      scores[static_cast<size_t>(t)] = s * scale;
      best = std::max(best, s * scale);
    }
    double sum = 0.0;
    for (float& s : scores) {
      s = std::exp(s - best);
      sum += s;
    }
    float* o = out + int64_t{h} * hd;
    std::fill(o, o + hd, 0.0f);
    for (int64_t t = 0; t < w.count; ++t) {
      Axpy(scores[static_cast<size_t>(t)] / static_cast<float>(sum),
           &w.values[static_cast<size_t>(t * kv_dim + int64_t{kvh} * hd)], o, hd);
    }
  }
  if (stats != nullptr) {
    *stats = AttentionStepStats();
    stats->attend_us = MicrosSince(t0);
    stats->total_us = stats->attend_us;
    stats->attended_tokens = w.count * config_.n_kv_heads;
  }
  return absl::OkStatus();
}

std::unique_ptr<AttentionBackend> ForModelLayers(const ModelConfig& config,
                                                 std::unique_ptr<AttentionBackend> global) {
  if (config.layer_is_local.empty() ||
      static_cast<int32_t>(config.GlobalLayers().size()) == config.n_layers) {
    return global;
  }
  return std::make_unique<LocalWindowBackend>(config, std::move(global));
}

}  // namespace clusterkv::llama
