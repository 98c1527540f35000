// GPT-2 byte-level BPE: the merges of `tokenizer.ggml.merges` applied to one pre-tokenized
// word, lowest rank first (ties: leftmost pair), as llama.cpp applies them. Each byte of the
// word starts as the token of its code point in GPT-2's byte alphabet; a merge rule joins two
// adjacent symbols whose texts it names. A symbol that ends as no vocabulary token is written
// as the one-byte tokens of its text's bytes, where the vocabulary has them.
// A priority queue of candidate pairs over a linked list of symbols keeps a word of n bytes at
// O(n log n). Immutable once built; thread-safe (per-call state lives in the caller's Scratch).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_BPE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_BPE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/internal/vocab.h"

namespace clusterkv::llama::internal {

class BpeMerger {
 public:
  // Working memory of EncodeWord, reused across the words of one text.
  struct Scratch {
    struct Symbol {
      int32_t id;  // vocabulary id, an id past the vocabulary for merged text no token has, or
                   // -1 for a byte whose alphabet code point is no token
      int32_t prev;
      int32_t next;
      uint32_t begin;  // bytes of the word
      uint32_t len;    // 0 once merged into the symbol on its left
    };
    struct Pair {
      int32_t rank;
      int32_t left;
      int32_t right;
      uint32_t left_len;  // the lengths when queued: a pair whose symbols changed is stale
      uint32_t right_len;
      int32_t result;
    };
    std::vector<Symbol> symbols;
    std::vector<Pair> queue;  // a heap
  };

  // Reads `tokenizer.ggml.merges` ("left right" per rule, in rank order). `vocab` must outlive
  // the merger. InvalidArgument: the array is missing or not strings, a rule without a space,
  // or a rule naming a text that is no vocabulary token.
  static absl::StatusOr<std::unique_ptr<BpeMerger>> Build(const GgufIndex& index,
                                                          const Vocab& vocab);

  // Appends the ids of `word` (raw text bytes; at most 4 GiB) to `out`.
  void EncodeWord(absl::string_view word, Scratch* scratch, std::vector<int32_t>* out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  explicit BpeMerger(const Vocab& vocab) : vocab_(vocab) {}
  void QueuePair(int32_t left, int32_t right, Scratch* s) const;
  void AppendFallback(absl::string_view raw, std::vector<int32_t>* out) const;

  const Vocab& vocab_;
  std::array<int32_t, 256> byte_symbol_{};      // token of each byte's alphabet code point
  std::array<int32_t, 256> raw_byte_token_{};   // token whose text is the single raw byte
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rule
};

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_BPE_H_
