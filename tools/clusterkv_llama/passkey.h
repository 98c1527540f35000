// Passkey retrieval, the long-context probe of the ClusterKV paper (after Mohtashami and Jaggi,
// 2023): a random 5-digit number stated once inside a long real text, the question at the end,
// and the model's greedy answer compared with the number (exact match).
//
//   [BOS] haystack ... "\nThe pass key is 71432. Remember it. 71432 is the pass key.\n" ...
//   haystack ... "\nWhat is the pass key? The pass key is"
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PASSKEY_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PASSKEY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tools/clusterkv_llama/tokenizer.h"

namespace clusterkv::llama {

struct PasskeyPrompt {
  std::vector<int32_t> tokens;  // exactly `context` tokens
  std::string passkey;          // the 5 digits
  double depth = 0.0;           // where the needle sits, as a fraction of the haystack
  int64_t needle_token = 0;     // index of the needle's first token
};

// A prompt of exactly `context` tokens whose needle sits at `depth` in [0, 1] of the haystack
// part (0: right after BOS, 1: right before the question), the passkey drawn from `seed`.
// `haystack` holds the text's tokens (no BOS); the needle and question are tokenized with
// `tokenizer`, BOS added when the tokenizer's file asks for it. InvalidArgument: depth outside
// [0, 1], or a context too short for needle and question or longer than the haystack plus them.
absl::StatusOr<PasskeyPrompt> MakePasskeyPrompt(const Tokenizer& tokenizer,
                                                absl::Span<const int32_t> haystack, int64_t context,
                                                double depth, uint64_t seed);

// The first run of exactly five consecutive digits in `answer` ("" when none): what the model
// answered.
std::string ExtractPasskey(absl::string_view answer);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PASSKEY_H_
