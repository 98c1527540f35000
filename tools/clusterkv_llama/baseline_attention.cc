#include "tools/clusterkv_llama/baseline_attention.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"

namespace clusterkv::llama {
namespace {

using internal::MicrosSince;

}  // namespace

absl::string_view BaselineMethodName(BaselineMethod method) {
  switch (method) {
    case BaselineMethod::kOracle:
      return "oracle";
    case BaselineMethod::kQuest:
      return "quest";
    case BaselineMethod::kStreamingLlm:
      return "streamingllm";
  }
  return "unknown";
}

absl::StatusOr<BaselineMethod> ParseBaselineMethod(absl::string_view name) {
  for (BaselineMethod m :
       {BaselineMethod::kOracle, BaselineMethod::kQuest, BaselineMethod::kStreamingLlm}) {
    if (name == BaselineMethodName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown baseline \"", name, "\" (oracle, quest, streamingllm)"));
}

BaselineBackend::BaselineBackend(BaselineMethod method, const ModelConfig& model,
                                 const ClusterKvConfig& config, int64_t budget, DType kv_dtype,
                                 int64_t capacity, gpu::ExecContext exec, int32_t quest_page)
    : method_(method),
      model_(model),
      config_(config),
      budget_(budget),
      quest_page_(quest_page),
      store_(model, kv_dtype, capacity, exec) {
  const size_t layers = model.GlobalLayers().size();
  prompt_tokens_.assign(layers, 0);
  quest_.resize(layers);
}

std::string BaselineBackend::Name() const {
  return absl::StrCat(BaselineMethodName(method_), "_b", budget_);
}

absl::Status BaselineBackend::LoadPrefill(int32_t layer, const Tensor3View& keys,
                                          const Tensor3View& values) {
  RETURN_IF_ERROR(store_.LoadPrefill(layer, keys, values));
  prompt_tokens_[static_cast<size_t>(layer)] = store_.num_tokens(layer);
  if (method_ == BaselineMethod::kQuest && !config_.IsDenseLayer(layer)) {
    const int64_t prompt = store_.num_tokens(layer);
    const int32_t sinks = static_cast<int32_t>(std::min<int64_t>(config_.num_sink_tokens, prompt));
    for (int32_t h = 0; h < model_.n_kv_heads; ++h) {
      ASSIGN_OR_RETURN(gpu::QuestIndex index,
                       gpu::BuildQuestIndex(store_.Keys(layer, h), sinks, quest_page_));
      quest_[static_cast<size_t>(layer)].push_back(std::move(index));
    }
  }
  return absl::OkStatus();
}

absl::Status BaselineBackend::AppendAndAttend(int32_t layer, const float* q, const float* k,
                                              const float* v, float* out,
                                              AttentionStepStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(store_.Append(layer, k, v));
  const int64_t tokens = store_.num_tokens(layer);
  const int64_t prompt = prompt_tokens_[static_cast<size_t>(layer)];
  const int32_t sinks = static_cast<int32_t>(std::min<int64_t>(config_.num_sink_tokens, prompt));
  const int32_t hd = model_.head_dim, group = model_.GroupSize();
  std::vector<std::vector<TokenRange>> ranges(static_cast<size_t>(model_.n_kv_heads));
  const auto t_select = std::chrono::steady_clock::now();
  // Dense layers, and prompts whose selectable part fits the budget, attend everything.
  const bool all = config_.IsDenseLayer(layer) || prompt - sinks <= budget_;
  for (int32_t h = 0; h < model_.n_kv_heads && !all; ++h) {
    const ConstMatrixView queries(q + int64_t{h} * group * hd, group, hd);
    std::vector<TokenRange>& r = ranges[static_cast<size_t>(h)];
    switch (method_) {
      case BaselineMethod::kOracle: {
        const ConstMatrixView keys = store_.Keys(layer, h);
        ASSIGN_OR_RETURN(
            r, gpu::OracleTopKSelect(queries, keys.Rows(0, prompt),
                                     1.0f / std::sqrt(static_cast<float>(hd)), sinks, budget_));
        break;
      }
      case BaselineMethod::kQuest: {
        const gpu::QuestIndex& index = quest_[static_cast<size_t>(layer)][static_cast<size_t>(h)];
        ASSIGN_OR_RETURN(r, gpu::QuestSelect(index, queries, budget_));
        break;
      }
      case BaselineMethod::kStreamingLlm: {
        ASSIGN_OR_RETURN(r, gpu::StreamingLlmSelect(prompt, sinks, budget_));
        break;
      }
    }
    if (tokens > prompt) r.push_back(TokenRange{prompt, tokens});  // decoded since the prefill
    r = NormalizeRanges(std::move(r));
  }
  if (all) {
    for (auto& r : ranges) r = {TokenRange{0, tokens}};
  }
  const int64_t select_us = MicrosSince(t_select);
  const auto t_attend = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(store_.AttendRanges(layer, q, ranges, out));
  if (stats != nullptr) {
    *stats = AttentionStepStats();
    stats->select_us = select_us;
    stats->attend_us = MicrosSince(t_attend);
    stats->total_us = MicrosSince(t0);
    for (const auto& r : ranges) stats->attended_tokens += TotalTokens(r);
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
