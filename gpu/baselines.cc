#include "gpu/baselines.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "gpu/attention.h"
#include "gpu/internal/kernel_math.h"

namespace clusterkv::gpu {
namespace {

absl::Status CheckBudget(int64_t num_tokens, int32_t sinks, int64_t budget) {
  if (sinks < 0 || sinks >= num_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("sinks must be in [0, ", num_tokens, "), got ", sinks));
  }
  if (budget < 1 || sinks + budget > num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("budget must be in [1, ", num_tokens - sinks,
                                                   "] (tokens after the sinks), got ", budget));
  }
  return absl::OkStatus();
}

void AddSinks(int32_t sinks, std::vector<TokenRange>& ranges) {
  if (sinks > 0) ranges.push_back(TokenRange{0, sinks});
}

}  // namespace

absl::StatusOr<std::vector<TokenRange>> StreamingLlmSelect(int64_t num_tokens, int32_t sinks,
                                                           int64_t budget) {
  RETURN_IF_ERROR(CheckBudget(num_tokens, sinks, budget));
  std::vector<TokenRange> ranges;
  AddSinks(sinks, ranges);
  ranges.push_back(TokenRange{num_tokens - budget, num_tokens});
  return NormalizeRanges(std::move(ranges));
}

absl::StatusOr<std::vector<TokenRange>> OracleTopKSelect(const ConstMatrixView& queries,
                                                         const ConstMatrixView& keys, float scale,
                                                         int32_t sinks, int64_t budget) {
  RETURN_IF_ERROR(CheckBudget(keys.rows, sinks, budget));
  std::vector<float> probs(static_cast<size_t>(queries.rows * keys.rows));
  RETURN_IF_ERROR(AttentionWeights(queries, keys, scale,
                                   MatrixView(probs.data(), queries.rows, keys.rows),
                                   /*threads=*/1));
  std::vector<float> weight(static_cast<size_t>(keys.rows), 0.0f);
  for (int64_t g = 0; g < queries.rows; ++g) {
    for (int64_t t = 0; t < keys.rows; ++t) weight[t] += probs[g * keys.rows + t];
  }
  std::vector<int64_t> ids(static_cast<size_t>(keys.rows - sinks));
  std::iota(ids.begin(), ids.end(), sinks);
  std::nth_element(ids.begin(), ids.begin() + (budget - 1), ids.end(),
                   [&](int64_t a, int64_t b) {
                     return weight[a] > weight[b] || (weight[a] == weight[b] && a < b);
                   });
  ids.resize(static_cast<size_t>(budget));
  std::vector<TokenRange> ranges;
  AddSinks(sinks, ranges);
  for (int64_t t : ids) ranges.push_back(TokenRange{t, t + 1});
  return NormalizeRanges(std::move(ranges));
}

absl::StatusOr<QuestIndex> BuildQuestIndex(const ConstMatrixView& keys, int32_t sinks,
                                           int32_t page_size) {
  RETURN_IF_ERROR(keys.Validate("keys"));
  if (page_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("page_size must be >= 1, got ", page_size));
  }
  if (sinks < 0 || sinks >= keys.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("sinks must be in [0, ", keys.rows, "), got ", sinks));
  }
  RETURN_IF_ERROR(keys.CheckFinite("keys"));
  QuestIndex index;
  index.page_size = page_size;
  index.sinks = sinks;
  index.num_tokens = keys.rows;
  index.head_dim = static_cast<int32_t>(keys.cols);
  const int64_t d = keys.cols;
  const int64_t pages = (keys.rows - sinks + page_size - 1) / page_size;
  index.min.assign(static_cast<size_t>(pages * d), 3.402823466e38f);
  index.max.assign(static_cast<size_t>(pages * d), -3.402823466e38f);
  std::vector<float> row(static_cast<size_t>(d));
  for (int64_t t = sinks; t < keys.rows; ++t) {
    keys.LoadRow(t, row.data());
    const int64_t page = (t - sinks) / page_size;
    float* mn = &index.min[page * d];
    float* mx = &index.max[page * d];
    for (int64_t i = 0; i < d; ++i) {
      mn[i] = std::min(mn[i], row[i]);
      mx[i] = std::max(mx[i], row[i]);
    }
  }
  return index;
}

absl::StatusOr<std::vector<TokenRange>> QuestSelect(const QuestIndex& index,
                                                    const ConstMatrixView& queries,
                                                    int64_t budget) {
  RETURN_IF_ERROR(CheckBudget(index.num_tokens, index.sinks, budget));
  RETURN_IF_ERROR(queries.Validate("queries"));
  if (queries.rows < 1 || queries.cols != index.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("queries must be [G >= 1, ", index.head_dim,
                                                   "], got [", queries.rows, ", ", queries.cols,
                                                   "]"));
  }
  RETURN_IF_ERROR(queries.CheckFinite("queries"));
  const int64_t d = index.head_dim;
  const int64_t pages = index.num_pages();
  std::vector<float> score(static_cast<size_t>(pages), 0.0f);
  std::vector<float> q(static_cast<size_t>(d));
  for (int64_t g = 0; g < queries.rows; ++g) {
    queries.LoadRow(g, q.data());
    for (int64_t p = 0; p < pages; ++p) {
      score[p] += internal::QuestBound(q.data(), &index.min[p * d], &index.max[p * d],
                                       static_cast<int>(d));
    }
  }
  std::vector<int64_t> ids(static_cast<size_t>(pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  });
  std::vector<TokenRange> ranges;
  AddSinks(index.sinks, ranges);
  int64_t taken = 0;
  for (int64_t p : ids) {
    if (taken == budget) break;
    const int64_t begin = index.sinks + p * index.page_size;
    const int64_t end = std::min(index.num_tokens, begin + index.page_size);
    const int64_t take = std::min(end - begin, budget - taken);
    ranges.push_back(TokenRange{begin, begin + take});
    taken += take;
  }
  return NormalizeRanges(std::move(ranges));
}

}  // namespace clusterkv::gpu
