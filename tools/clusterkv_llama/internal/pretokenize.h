// Pre-tokenizers of byte-level BPE vocabularies: they cut a text fragment into words before the
// merges run, as llama.cpp does for the GGUF's `tokenizer.ggml.pre` value. Each is a chain of
// passes, each pass cutting every piece of the previous one further:
//   kGpt2:    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kSmollm:  each \p{N} code point on its own, then kGpt2's pattern;
//   kDefault: [\p{P}$+<=>^~|]+ (ASCII: every printable but letters, digits and '`'), kGpt2's
//             pattern, \p{N}+, then [0-9]{3} groups from the left.
// A pass keeps the text between its matches as pieces of their own. The GPT-2 pass follows
// llama.cpp's hand-written matcher (not a regex engine), so it gives the same words.
// Stateless; thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_PRETOKENIZE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_PRETOKENIZE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace clusterkv::llama::internal {

enum class PreTokenizer { kDefault, kGpt2, kSmollm };

// The words of `cps` (one text fragment's code points) as lengths in code points, in order;
// they add up to cps.size() and none is 0.
std::vector<size_t> PreTokenize(PreTokenizer kind, absl::Span<const uint32_t> cps);

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_PRETOKENIZE_H_
