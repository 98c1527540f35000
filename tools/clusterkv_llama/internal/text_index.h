// TextIndex: text -> id over a vocabulary's token texts, an open-addressing hash table of
// (hash tag, id) slots. A miss usually costs one slot read and no string comparison, which is
// what the merge loops mostly do (most candidate pairs are no token). Immutable once built;
// thread-safe to share. It keeps ids only: lookups take the texts it was built from.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_TEXT_INDEX_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_TEXT_INDEX_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace clusterkv::llama::internal {

class TextIndex {
 public:
  // Indexes texts[0..n); returns the first id whose text repeats an earlier one (the index
  // then holds the earlier id), or -1.
  int32_t Build(const std::vector<std::string>& texts) {
    size_t capacity = 16;
    while (capacity < texts.size() * 2) capacity *= 2;
    mask_ = capacity - 1;
    slots_.assign(capacity, kEmpty);
    int32_t repeated = -1;
    for (size_t id = 0; id < texts.size(); ++id) {
      const uint64_t h = Hash(texts[id]);
      for (size_t i = h & mask_;; i = (i + 1) & mask_) {
        if (slots_[i] == kEmpty) {
          slots_[i] = (h & kTagMask) | id;
          break;
        }
        if ((slots_[i] & kTagMask) == (h & kTagMask) && texts[slots_[i] & kIdMask] == texts[id]) {
          if (repeated < 0) repeated = static_cast<int32_t>(id);
          break;
        }
      }
    }
    return repeated;
  }

  // The id of `text` in `texts` (the vector given to Build), or -1.
  int32_t Find(const std::vector<std::string>& texts, absl::string_view text) const {
    if (slots_.empty()) return -1;
    const uint64_t h = Hash(text);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const uint64_t slot = slots_[i];
      if (slot == kEmpty) return -1;
      if ((slot & kTagMask) == (h & kTagMask) && texts[slot & kIdMask] == text) {
        return static_cast<int32_t>(slot & kIdMask);
      }
    }
  }

 private:
  // A slot is the hash's high 32 bits over a 32-bit id; the table is at most half full.
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static constexpr uint64_t kTagMask = ~uint64_t{0} << 32;
  static constexpr uint64_t kIdMask = ~kTagMask;

  static uint64_t Hash(absl::string_view text) {
    // Mix so that the low bits (the slot) and the high bits (the tag) both vary.
    uint64_t h = std::hash<std::string_view>()(std::string_view(text.data(), text.size()));
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
  }

  size_t mask_ = 0;
  std::vector<uint64_t> slots_;
};

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_TEXT_INDEX_H_
