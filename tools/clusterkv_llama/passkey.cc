#include "tools/clusterkv_llama/passkey.h"

#include <cctype>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/splitmix64.h"
#include "core/status_macros.h"

namespace clusterkv::llama {

absl::StatusOr<PasskeyPrompt> MakePasskeyPrompt(const Tokenizer& tokenizer,
                                                absl::Span<const int32_t> haystack, int64_t context,
                                                double depth, uint64_t seed) {
  if (!(depth >= 0.0 && depth <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("passkey depth ", depth, " outside [0, 1]"));
  }
  uint64_t state = seed;
  PasskeyPrompt p;
  p.depth = depth;
  p.passkey = absl::StrCat(10000 + SplitMix64(state) % 90000);
  EncodeOptions plain;
  plain.add_bos = false;
  ASSIGN_OR_RETURN(std::vector<int32_t> needle,
                   tokenizer.Encode(absl::StrCat("\nThe pass key is ", p.passkey, ". Remember it. ",
                                                 p.passkey, " is the pass key.\n"),
                                    plain));
  ASSIGN_OR_RETURN(std::vector<int32_t> question,
                   tokenizer.Encode("\nWhat is the pass key? The pass key is", plain));
  const int64_t bos = tokenizer.add_bos_default() && tokenizer.bos_id() >= 0 ? 1 : 0;
  const int64_t fill = context - bos - static_cast<int64_t>(needle.size() + question.size());
  if (fill < 1 || fill > static_cast<int64_t>(haystack.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("passkey: a context of ", context, " tokens needs ", context - fill,
                     " tokens of needle and question and ", fill, " of haystack; the text holds ",
                     haystack.size()));
  }
  const int64_t at = static_cast<int64_t>(std::llround(depth * static_cast<double>(fill)));
  p.tokens.reserve(static_cast<size_t>(context));
  if (bos == 1) p.tokens.push_back(tokenizer.bos_id());
  p.tokens.insert(p.tokens.end(), haystack.begin(), haystack.begin() + at);
  p.needle_token = static_cast<int64_t>(p.tokens.size());
  p.tokens.insert(p.tokens.end(), needle.begin(), needle.end());
  p.tokens.insert(p.tokens.end(), haystack.begin() + at, haystack.begin() + fill);
  p.tokens.insert(p.tokens.end(), question.begin(), question.end());
  return p;
}

std::string ExtractPasskey(absl::string_view answer) {
  size_t i = 0;
  while (i < answer.size()) {
    if (!std::isdigit(static_cast<unsigned char>(answer[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < answer.size() && std::isdigit(static_cast<unsigned char>(answer[j]))) ++j;
    if (j - i == 5) return std::string(answer.substr(i, 5));
    i = j;
  }
  return "";
}

}  // namespace clusterkv::llama
