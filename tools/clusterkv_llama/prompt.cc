#include "tools/clusterkv_llama/prompt.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace clusterkv::llama {
namespace {

// splitmix64: portable and seedable.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  int64_t Below(int64_t n) { return static_cast<int64_t>(Next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

}  // namespace

absl::StatusOr<std::vector<int32_t>> ParseTokenList(absl::string_view text, int32_t vocab) {
  std::vector<int32_t> tokens;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &id)) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token \"", part, "\" is not an id"));
    }
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", id, " outside the vocabulary [0, ", vocab, ")"));
    }
    tokens.push_back(id);
  }
  if (tokens.empty()) return absl::InvalidArgumentError("the prompt token list is empty");
  return tokens;
}

absl::StatusOr<std::vector<int32_t>> SyntheticPrompt(const SyntheticPromptOptions& o,
                                                     int32_t vocab) {
  if (o.length < 1 || o.topics < 1 || o.topic_tokens < 1 || !(o.segment_mean >= 1.0) || vocab < 1) {
    return absl::InvalidArgumentError("synthetic prompt: sizes must be positive");
  }
  Rng rng(o.seed);
  const int32_t per_topic = std::min(o.topic_tokens, vocab);
  std::vector<std::vector<int32_t>> topics(static_cast<size_t>(o.topics));
  for (auto& topic : topics) {
    for (int32_t i = 0; i < per_topic; ++i) topic.push_back(static_cast<int32_t>(rng.Below(vocab)));
  }
  // Zipf(1) cumulative weights over a topic's ranks.
  std::vector<double> cumulative(static_cast<size_t>(per_topic));
  double sum = 0;
  for (int32_t r = 0; r < per_topic; ++r)
    cumulative[static_cast<size_t>(r)] = (sum += 1.0 / (r + 1));
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(o.length));
  const double p_end = 1.0 / o.segment_mean;  // geometric segment lengths
  size_t topic = static_cast<size_t>(rng.Below(o.topics));
  while (static_cast<int64_t>(out.size()) < o.length) {
    const double u = rng.Uniform() * sum;
    const size_t rank = static_cast<size_t>(
        std::lower_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
    out.push_back(topics[topic][std::min(rank, topics[topic].size() - 1)]);
    if (rng.Uniform() < p_end) topic = static_cast<size_t>(rng.Below(o.topics));
  }
  return out;
}

}  // namespace clusterkv::llama
