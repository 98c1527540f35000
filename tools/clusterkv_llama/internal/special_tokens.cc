#include "tools/clusterkv_llama/internal/special_tokens.h"

#include <algorithm>
#include <utility>

namespace clusterkv::llama::internal {

SpecialTokenSplitter::SpecialTokenSplitter(const Vocab& vocab) : vocab_(vocab) {
  root_children_.fill(-1);
  nodes_.emplace_back();
  for (size_t rank = 0; rank < vocab.special.size(); ++rank) {
    const std::string& text = vocab.texts[vocab.special[rank]];
    int32_t node = 0;
    for (const char c : text) {
      const uint8_t byte = static_cast<uint8_t>(c);
      int32_t child = Child(node, byte);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        if (node == 0) {
          root_children_[byte] = child;
        } else {
          edges_.emplace((static_cast<uint64_t>(node) << 8) | byte, child);
        }
      }
      node = child;
    }
    nodes_[node].rank = static_cast<int32_t>(rank);  // texts are unique, so set once
  }
}

int32_t SpecialTokenSplitter::Child(int32_t node, uint8_t byte) const {
  if (node == 0) return root_children_[byte];
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

std::vector<Fragment> SpecialTokenSplitter::Split(absl::string_view text,
                                                  bool parse_special) const {
  std::vector<Fragment> out;
  if (text.empty()) return out;
  // Every occurrence of every eligible token, as (rank, start), in order of start.
  std::vector<std::pair<int32_t, uint32_t>> hits;
  for (size_t start = 0; start < text.size(); ++start) {
    int32_t node = 0;
    for (size_t i = start; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      const int32_t rank = nodes_[node].rank;
      if (rank < 0) continue;
      const uint32_t attr = vocab_.attrs[vocab_.special[rank]];
      if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
      hits.emplace_back(rank, static_cast<uint32_t>(start));
    }
  }
  if (hits.empty()) {
    out.push_back({0, text.size(), -1});
    return out;
  }
  // Group the starts by rank (a counting sort keeps each group in order of start).
  std::vector<uint32_t> first(vocab_.special.size() + 1, 0);
  for (const auto& hit : hits) ++first[hit.first + 1];
  for (size_t r = 1; r < first.size(); ++r) first[r] += first[r - 1];
  std::vector<uint32_t> starts(hits.size());
  {
    std::vector<uint32_t> next(first.begin(), first.end() - 1);
    for (const auto& [rank, start] : hits) starts[next[rank]++] = start;
  }
  // Token by token in rank order, take each occurrence that starts after the previous one of
  // the same token ended and covers no byte an earlier token took.
  std::vector<bool> taken(text.size(), false);
  std::vector<int32_t> token_at(text.size(), -1);  // the token taken at each start
  for (size_t rank = 0; rank + 1 < first.size(); ++rank) {
    const int32_t id = vocab_.special[rank];
    const size_t len = vocab_.texts[id].size();
    size_t last_end = 0;
    for (uint32_t k = first[rank]; k < first[rank + 1]; ++k) {
      const size_t start = starts[k];
      const size_t end = start + len;
      if (start < last_end) continue;
      if (std::any_of(taken.begin() + start, taken.begin() + end, [](bool t) { return t; })) {
        continue;
      }
      std::fill(taken.begin() + start, taken.begin() + end, true);
      token_at[start] = id;
      last_end = end;
    }
  }
  size_t pos = 0;
  while (pos < text.size()) {
    if (token_at[pos] >= 0) {
      const size_t end = pos + vocab_.texts[token_at[pos]].size();
      out.push_back({pos, end, token_at[pos]});
      pos = end;
      continue;
    }
    const size_t begin = pos;
    while (pos < text.size() && !taken[pos]) ++pos;
    out.push_back({begin, pos, -1});
  }
  return out;
}

}  // namespace clusterkv::llama::internal
