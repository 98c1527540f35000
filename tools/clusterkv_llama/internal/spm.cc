#include "tools/clusterkv_llama/internal/spm.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "tools/clusterkv_llama/internal/unicode.h"

namespace clusterkv::llama::internal {
namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  uint32_t begin;  // bytes of the text
  uint32_t len;    // 0 once merged into the symbol on its left
};

struct Pair {
  float score;
  int32_t left;
  int32_t right;
  uint32_t len;  // left + right when queued: a pair whose symbols changed is stale
};

// Heap order: the highest score on top, then the leftmost pair.
bool Later(const Pair& a, const Pair& b) {
  return a.score != b.score ? a.score < b.score : a.left > b.left;
}

}  // namespace

absl::Status SpmEncode(const Vocab& vocab, absl::string_view text, std::vector<int32_t>* out) {
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = std::min(Utf8Length(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const int32_t index = static_cast<int32_t>(symbols.size());
    pos += len;
    symbols.push_back({index - 1, pos == text.size() ? -1 : index + 1,
                       static_cast<uint32_t>(pos - len), static_cast<uint32_t>(len)});
  }
  std::vector<Pair> queue;
  auto queue_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t len = symbols[left].len + symbols[right].len;
    const int32_t id = vocab.Find(text.substr(symbols[left].begin, len));
    if (id < 0) return;
    queue.push_back({vocab.scores[id], left, right, len});
    std::push_heap(queue.begin(), queue.end(), Later);
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) queue_pair(i - 1, i);
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), Later);
    const Pair pair = queue.back();
    queue.pop_back();
    Symbol& left = symbols[pair.left];
    Symbol& right = symbols[pair.right];
    if (left.len == 0 || right.len == 0 || left.len + right.len != pair.len) continue;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = pair.left;
    queue_pair(left.prev, pair.left);
    queue_pair(pair.left, left.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const absl::string_view piece = text.substr(symbols[i].begin, symbols[i].len);
    const int32_t id = vocab.Find(piece);
    if (id >= 0) {
      out->push_back(id);
      continue;
    }
    for (const char c : piece) {
      const uint8_t byte = static_cast<uint8_t>(c);
      if (vocab.byte_fallback[byte] < 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "byte 0x%02X has no token (no <0x%02X>, no one-byte token, no UNK)", byte, byte));
      }
      out->push_back(vocab.byte_fallback[byte]);
    }
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama::internal
