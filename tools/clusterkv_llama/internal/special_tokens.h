// Finds a vocabulary's special tokens (control, user-defined and unknown-type tokens) written
// out in the input text, as llama.cpp does: token by token, longest text first, every
// occurrence left to right that lies wholly in text no earlier token has taken. Control and
// unknown-type tokens count only when asked (parse_special); user-defined tokens always do.
// A trie over the token texts finds every candidate in one pass over the input, so the cost
// does not grow with the number of special tokens. Immutable once built; thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPECIAL_TOKENS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPECIAL_TOKENS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/internal/vocab.h"

namespace clusterkv::llama::internal {

// A piece of the input: the special token `token`, or (token -1) plain text [begin, end).
struct Fragment {
  size_t begin = 0;
  size_t end = 0;
  int32_t token = -1;
};

class SpecialTokenSplitter {
 public:
  // `vocab` must outlive the splitter.
  explicit SpecialTokenSplitter(const Vocab& vocab);

  // The fragments of `text` in order, covering it; empty for empty text.
  std::vector<Fragment> Split(absl::string_view text, bool parse_special) const;

 private:
  struct Node {
    int32_t rank = -1;  // position in vocab.special of the token ending here, or -1
  };
  int32_t Child(int32_t node, uint8_t byte) const;

  const Vocab& vocab_;
  std::vector<Node> nodes_;                      // node 0 is the root
  std::array<int32_t, 256> root_children_;       // -1: none
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child, below the root
};

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPECIAL_TOKENS_H_
