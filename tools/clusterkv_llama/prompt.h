// Prompts as token ids (the engine has no tokenizer): a comma-separated list, or a seeded
// synthetic prompt with the statistics that make long-context attention worth compressing:
// the text is a sequence of topical segments (geometric lengths, mean `segment_mean`), each
// drawn from one of `topics` topics; a topic is a fixed set of `topic_tokens` token ids used
// with Zipf frequencies (exponent 1), and topics recur across the prompt. So token ids repeat,
// near and far, and related tokens come in groups, as words do in text.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PROMPT_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PROMPT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::llama {

// "1, 2,3" -> {1, 2, 3}. InvalidArgument on an empty list, a non-integer, or an id outside
// [0, vocab).
absl::StatusOr<std::vector<int32_t>> ParseTokenList(absl::string_view text, int32_t vocab);

struct SyntheticPromptOptions {
  int64_t length = 4096;
  int32_t topics = 24;
  int32_t topic_tokens = 48;
  double segment_mean = 64.0;
  uint64_t seed = 7;
};

// Deterministic for given options and vocab. InvalidArgument for non-positive sizes.
absl::StatusOr<std::vector<int32_t>> SyntheticPrompt(const SyntheticPromptOptions& options,
                                                     int32_t vocab);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PROMPT_H_
