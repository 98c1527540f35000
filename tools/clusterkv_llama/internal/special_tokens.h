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
  // The trie's child of `node` by `byte`, or -1.
  int32_t Child(int32_t node, uint8_t byte) const;

  const Vocab& vocab_;
  // Trie nodes; node 0 is the root. rank_[n]: position in vocab.special of the token that ends
  // at node n, or -1. The children of node n are edge_bytes_/edge_children_ in
  // [first_edge_[n], first_edge_[n + 1]), by byte; the root's are also in root_children_.
  std::vector<int32_t> rank_;
  std::vector<uint32_t> first_edge_;
  std::vector<uint8_t> edge_bytes_;
  std::vector<int32_t> edge_children_;
  std::array<int32_t, 256> root_children_;
};

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_SPECIAL_TOKENS_H_
