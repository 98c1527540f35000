#include "tools/clusterkv_llama/local_window.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
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

namespace {

constexpr uint32_t kWindowsMagic = 0x4e49574c;  // "LWIN"

void PutRaw(const void* data, size_t n, std::string* out) {
  out->append(static_cast<const char*>(data), n);
}

}  // namespace

std::string EncodeLocalWindows(const ModelConfig& config, const PrefillResult& prefill) {
  std::string out;
  PutRaw(&kWindowsMagic, sizeof(kWindowsMagic), &out);
  PutRaw(&config.n_layers, sizeof(config.n_layers), &out);
  for (int32_t l = 0; l < config.n_layers; ++l) {
    const size_t i = static_cast<size_t>(l);
    const int64_t rows = config.IsLocalLayer(l) && i < prefill.keys.size()
                             ? static_cast<int64_t>(prefill.keys[i].size()) / config.KvDim()
                             : 0;
    PutRaw(&rows, sizeof(rows), &out);
    if (rows == 0) continue;
    PutRaw(prefill.keys[i].data(), prefill.keys[i].size() * sizeof(float), &out);
    PutRaw(prefill.values[i].data(), prefill.values[i].size() * sizeof(float), &out);
  }
  return out;
}

absl::Status DecodeLocalWindows(const ModelConfig& config, absl::string_view bytes,
                                PrefillResult* prefill) {
  auto take = [&](void* dst, size_t n) {
    if (bytes.size() < n) return false;
    std::memcpy(dst, bytes.data(), n);
    bytes.remove_prefix(n);
    return true;
  };
  uint32_t magic = 0;
  int32_t layers = 0;
  if (!take(&magic, sizeof(magic)) || magic != kWindowsMagic || !take(&layers, sizeof(layers)) ||
      layers != config.n_layers) {
    return absl::InvalidArgumentError("the saved local windows belong to another model");
  }
  prefill->keys.resize(static_cast<size_t>(layers));
  prefill->values.resize(static_cast<size_t>(layers));
  for (int32_t l = 0; l < layers; ++l) {
    int64_t rows = 0;
    if (!take(&rows, sizeof(rows)) || rows < 0 || rows > config.sliding_window ||
        (rows > 0 && !config.IsLocalLayer(l))) {
      return absl::InvalidArgumentError(absl::StrCat("saved local window of layer ", l,
                                                     " is malformed"));
    }
    if (rows == 0) continue;
    const size_t floats = static_cast<size_t>(rows * config.KvDim());
    std::vector<float>& k = prefill->keys[static_cast<size_t>(l)];
    std::vector<float>& v = prefill->values[static_cast<size_t>(l)];
    k.resize(floats);
    v.resize(floats);
    if (!take(k.data(), floats * sizeof(float)) || !take(v.data(), floats * sizeof(float))) {
      return absl::InvalidArgumentError(absl::StrCat("saved local window of layer ", l,
                                                     " is truncated"));
    }
  }
  if (!bytes.empty()) return absl::InvalidArgumentError("saved local windows: trailing bytes");
  return absl::OkStatus();
}

std::string LocalWindowBackend::SaveWindows() const {
  PrefillResult windows;
  const int64_t kv_dim = config_.KvDim();
  windows.keys.resize(static_cast<size_t>(config_.n_layers));
  windows.values.resize(windows.keys.size());
  for (int32_t l = 0; l < config_.n_layers; ++l) {
    if (global_index_[static_cast<size_t>(l)] >= 0) continue;
    const Window& w = windows_[static_cast<size_t>(l)];
    // The ring's oldest token sits at `next` once it is full, at 0 before.
    const int64_t first = w.count < config_.sliding_window ? 0 : w.next;
    for (int64_t t = 0; t < w.count; ++t) {
      const size_t slot = static_cast<size_t>(((first + t) % config_.sliding_window) * kv_dim);
      windows.keys[static_cast<size_t>(l)].insert(windows.keys[static_cast<size_t>(l)].end(),
                                                  &w.keys[slot], &w.keys[slot] + kv_dim);
      windows.values[static_cast<size_t>(l)].insert(
          windows.values[static_cast<size_t>(l)].end(), &w.values[slot],
          &w.values[slot] + kv_dim);
    }
  }
  return EncodeLocalWindows(config_, windows);
}

absl::Status LocalWindowBackend::RestoreWindows(absl::string_view bytes) {
  PrefillResult windows;
  RETURN_IF_ERROR(DecodeLocalWindows(config_, bytes, &windows));
  for (int32_t l = 0; l < config_.n_layers; ++l) {
    const std::vector<float>& k = windows.keys[static_cast<size_t>(l)];
    if (global_index_[static_cast<size_t>(l)] >= 0 || k.empty()) continue;
    const int64_t rows = static_cast<int64_t>(k.size()) / config_.KvDim();
    Tensor3View kv;
    kv.dtype = DType::kFloat32;
    kv.dims = {config_.n_kv_heads, rows, config_.head_dim};
    kv.strides = {config_.head_dim, config_.KvDim()};
    Tensor3View vv = kv;
    kv.data = k.data();
    vv.data = windows.values[static_cast<size_t>(l)].data();
    RETURN_IF_ERROR(LoadPrefill(l, kv, vv));
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
