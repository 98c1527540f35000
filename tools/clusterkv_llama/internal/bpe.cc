#include "tools/clusterkv_llama/internal/bpe.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tools/clusterkv_llama/internal/unicode.h"

namespace clusterkv::llama::internal {
namespace {

constexpr char kMergesKey[] = "tokenizer.ggml.merges";

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Heap order: the lowest rank on top, then the leftmost pair.
bool Later(const BpeMerger::Scratch::Pair& a, const BpeMerger::Scratch::Pair& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeMerger>> BpeMerger::Build(const GgufIndex& index,
                                                            const Vocab& vocab) {
  const GgufValue* merges = index.Find(kMergesKey);
  if (merges == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("a gpt2 tokenizer needs ", kMergesKey));
  }
  if (merges->type != GgufType::kArray || merges->element_type != GgufType::kString ||
      merges->strings.size() != merges->ArraySize()) {
    return absl::InvalidArgumentError(absl::StrCat(kMergesKey, " is not an array of strings"));
  }
  auto merger = std::unique_ptr<BpeMerger>(new BpeMerger(vocab));
  for (int b = 0; b < 256; ++b) {
    std::string alphabet;
    AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(b)), &alphabet);
    merger->byte_symbol_[b] = vocab.Find(alphabet);
    merger->raw_byte_token_[b] = vocab.Find(std::string(1, static_cast<char>(b)));
  }
  // Merged texts that are no token get ids past the vocabulary; such a symbol merges no further
  // (every rule joins two tokens) and is written with the byte fallback.
  std::unordered_map<std::string, int32_t> extra;
  const int32_t n_merges = static_cast<int32_t>(
      std::min<size_t>(merges->strings.size(), static_cast<size_t>(INT32_MAX)));
  merger->merges_.reserve(static_cast<size_t>(n_merges));
  for (int32_t rank = 0; rank < n_merges; ++rank) {
    const std::string& rule = merges->strings[rank];
    const size_t space = rule.size() > 1 ? rule.find(' ', 1) : std::string::npos;
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(kMergesKey, "[", rank, "] = \"", rule, "\" is not \"left right\""));
    }
    const absl::string_view left = absl::string_view(rule).substr(0, space);
    const absl::string_view right = absl::string_view(rule).substr(space + 1);
    const int32_t left_id = vocab.Find(left);
    const int32_t right_id = vocab.Find(right);
    if (left_id < 0 || right_id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(kMergesKey, "[", rank, "] = \"", rule,
                                                     "\" names \"", left_id < 0 ? left : right,
                                                     "\", which is no token"));
    }
    std::string joined = absl::StrCat(left, right);
    int32_t result = vocab.Find(joined);
    if (result < 0) {
      result = vocab.size() + static_cast<int32_t>(extra.size());
      result = extra.emplace(std::move(joined), result).first->second;
    }
    // The first rule for a pair wins, as in llama.cpp.
    merger->merges_.emplace(PairKey(left_id, right_id), Merge{rank, result});
  }
  return merger;
}

void BpeMerger::QueuePair(int32_t left, int32_t right, Scratch* s) const {
  if (left < 0 || right < 0) return;
  const Scratch::Symbol& l = s->symbols[left];
  const Scratch::Symbol& r = s->symbols[right];
  if (l.id < 0 || r.id < 0) return;
  auto it = merges_.find(PairKey(l.id, r.id));
  if (it == merges_.end()) return;
  s->queue.push_back({it->second.rank, left, right, l.len, r.len, it->second.result});
  std::push_heap(s->queue.begin(), s->queue.end(), Later);
}

void BpeMerger::AppendFallback(absl::string_view raw, std::vector<int32_t>* out) const {
  // llama.cpp looks up each byte of the symbol's alphabet text as a one-byte token.
  std::string alphabet;
  for (const char c : raw) AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(c)), &alphabet);
  for (const char c : alphabet) {
    const int32_t id = raw_byte_token_[static_cast<uint8_t>(c)];
    if (id >= 0) out->push_back(id);
  }
}

void BpeMerger::EncodeWord(absl::string_view word, Scratch* s, std::vector<int32_t>* out) const {
  const int32_t n = static_cast<int32_t>(word.size());
  if (n == 0) return;
  s->symbols.clear();
  s->queue.clear();
  for (int32_t i = 0; i < n; ++i) {
    s->symbols.push_back({byte_symbol_[static_cast<uint8_t>(word[i])], i - 1,
                          i + 1 < n ? i + 1 : -1, static_cast<uint32_t>(i), 1});
  }
  for (int32_t i = 1; i < n; ++i) QueuePair(i - 1, i, s);
  while (!s->queue.empty()) {
    std::pop_heap(s->queue.begin(), s->queue.end(), Later);
    const Scratch::Pair pair = s->queue.back();
    s->queue.pop_back();
    Scratch::Symbol& left = s->symbols[pair.left];
    Scratch::Symbol& right = s->symbols[pair.right];
    if (left.len != pair.left_len || right.len != pair.right_len || right.len == 0) continue;
    left.id = pair.result;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) s->symbols[right.next].prev = pair.left;
    QueuePair(left.prev, pair.left, s);
    QueuePair(pair.left, left.next, s);
  }
  for (int32_t i = 0; i >= 0; i = s->symbols[i].next) {
    const Scratch::Symbol& sym = s->symbols[i];
    if (sym.id >= 0 && sym.id < vocab_.size()) {
      out->push_back(sym.id);
    } else {
      AppendFallback(word.substr(sym.begin, sym.len), out);
    }
  }
}

}  // namespace clusterkv::llama::internal
