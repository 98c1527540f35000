#include "tools/clusterkv_llama/internal/special_tokens.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

namespace clusterkv::llama::internal {

SpecialTokenSplitter::SpecialTokenSplitter(const Vocab& vocab) : vocab_(vocab) {
  // Build with a map of edges, then lay the edges out by node for lookups.
  std::map<std::pair<int32_t, uint8_t>, int32_t> edges;
  rank_.push_back(-1);
  for (size_t rank = 0; rank < vocab.special.size(); ++rank) {
    int32_t node = 0;
    for (const char c : vocab.texts[vocab.special[rank]]) {
      auto [it, inserted] =
          edges.emplace(std::make_pair(node, static_cast<uint8_t>(c)), rank_.size());
      if (inserted) rank_.push_back(-1);
      node = it->second;
    }
    rank_[node] = static_cast<int32_t>(rank);  // texts are unique, so set once
  }
  first_edge_.assign(rank_.size() + 1, 0);
  for (const auto& [key, child] : edges) ++first_edge_[key.first + 1];
  for (size_t n = 1; n < first_edge_.size(); ++n) first_edge_[n] += first_edge_[n - 1];
  for (const auto& [key, child] : edges) {  // in (node, byte) order
    edge_bytes_.push_back(key.second);
    edge_children_.push_back(child);
  }
  root_children_.fill(-1);
  for (uint32_t e = first_edge_[0]; e < first_edge_[1]; ++e) {
    root_children_[edge_bytes_[e]] = edge_children_[e];
  }
}

int32_t SpecialTokenSplitter::Child(int32_t node, uint8_t byte) const {
  if (node == 0) return root_children_[byte];
  const auto begin = edge_bytes_.begin() + first_edge_[node];
  const auto end = edge_bytes_.begin() + first_edge_[node + 1];
  const auto it = std::lower_bound(begin, end, byte);
  return it != end && *it == byte ? edge_children_[it - edge_bytes_.begin()] : -1;
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
      const int32_t rank = rank_[node];
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
  std::vector<char> taken(text.size(), 0);
  std::vector<int32_t> token_at(text.size(), -1);  // the token taken at each start
  for (size_t rank = 0; rank + 1 < first.size(); ++rank) {
    const int32_t id = vocab_.special[rank];
    const size_t len = vocab_.texts[id].size();
    size_t last_end = 0;
    for (uint32_t k = first[rank]; k < first[rank + 1]; ++k) {
      const size_t start = starts[k];
      const size_t end = start + len;
      if (start < last_end) continue;
      if (std::memchr(taken.data() + start, 1, len) != nullptr) continue;
      std::memset(taken.data() + start, 1, len);
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
