// SentencePiece-style BPE as llama.cpp runs it for "llama" vocabularies: the text (spaces
// already written as U+2581) starts as one symbol per UTF-8 character; repeatedly the adjacent
// pair whose concatenation is a vocabulary token with the highest score merges (ties: the
// leftmost pair). A final symbol that is no token is written byte by byte with the byte
// fallback (<0xXX> tokens, else one-byte tokens, else UNK). A priority queue of candidate
// pairs over a linked list of symbols keeps it O(n log n). Stateless; thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPM_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPM_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/internal/vocab.h"

namespace clusterkv::llama::internal {

// Appends the ids of `text` (valid UTF-8, at most 4 GiB) to `out`. InvalidArgument when a byte
// needs the fallback and the vocabulary has neither a token for it nor an UNK token; `out` then
// holds the ids before that byte.
absl::Status SpmEncode(const Vocab& vocab, absl::string_view text, std::vector<int32_t>* out);

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPM_H_
