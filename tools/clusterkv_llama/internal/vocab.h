// A tokenizer vocabulary read from GGUF metadata (`tokenizer.ggml.*`) the way llama.cpp reads
// it: token texts, scores and types; the model ("gpt2": byte-level BPE, "llama": SentencePiece
// style) and pre-tokenizer; BOS/EOS/UNK ids with llama.cpp's defaults; the special tokens
// matched as whole strings in the input; the end-of-generation set (EOS, EOT, EOM, the FIM
// pad/repo/separator tokens and llama.cpp's list of well-known end-of-turn texts); and the
// text each token decodes to. Immutable once loaded; thread-safe to share. Not copyable (it is
// large; LoadVocab hands out a unique_ptr).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_VOCAB_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_VOCAB_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/gguf.h"
#include "tools/clusterkv_llama/internal/pretokenize.h"
#include "tools/clusterkv_llama/internal/text_index.h"

namespace clusterkv::llama::internal {

// Token attributes (bits), from `tokenizer.ggml.token_type` (0 undefined, 1 normal, 2 unknown,
// 3 control, 4 user-defined, 5 unused, 6 byte) plus llama.cpp's adjustments (end-of-turn
// texts become control tokens).
inline constexpr uint32_t kAttrUnknown = 1u << 0;
inline constexpr uint32_t kAttrUnused = 1u << 1;
inline constexpr uint32_t kAttrNormal = 1u << 2;
inline constexpr uint32_t kAttrControl = 1u << 3;
inline constexpr uint32_t kAttrUserDefined = 1u << 4;
inline constexpr uint32_t kAttrByte = 1u << 5;

enum class VocabType { kBpe, kSpm };

struct Vocab {
  Vocab() = default;
  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  // The id of the token whose text is `text`, or -1.
  int32_t Find(absl::string_view text) const { return index.Find(texts, text); }
  int32_t size() const { return static_cast<int32_t>(texts.size()); }
  bool IsEog(int32_t id) const;

  VocabType type = VocabType::kSpm;
  std::string model_name;  // "gpt2" or "llama"
  std::string pre_name;    // tokenizer.ggml.pre as written ("" when absent)
  PreTokenizer pre = PreTokenizer::kDefault;
  bool add_space_prefix = false;  // SPM: a space before the text and after a special token
  bool clean_spaces = false;      // Decode drops spaces before ?!., and around contractions
  bool add_bos = false;
  bool add_eos = false;

  std::vector<std::string> texts;
  std::vector<float> scores;
  std::vector<uint32_t> attrs;
  TextIndex index;  // over `texts`

  int32_t bos = -1;  // -1: none
  int32_t eos = -1;
  int32_t unk = -1;
  std::vector<int32_t> eog;  // ascending

  // Control, user-defined and unknown-type tokens, longest text first (ties: lower id first):
  // the order in which the input is searched for them.
  std::vector<int32_t> special;
  // What each token decodes to with special tokens rendered (control and unknown-type tokens
  // as their text; byte tokens as their byte; unused and undefined tokens as nothing).
  std::vector<std::string> pieces;
  // SPM byte fallback: the token for a byte no vocabulary token covers (<0xXX>, else the
  // one-byte token, else UNK; -1 when none).
  std::array<int32_t, 256> byte_fallback{};
};

// Reads the vocabulary from `index`. InvalidArgument: an unknown tokenizer model or
// pre-tokenizer (named), missing or mistyped arrays, arrays whose lengths disagree with the
// token list, empty or duplicate token texts, a byte-type token not written <0xXX>, a special
// token id outside the vocabulary.
absl::StatusOr<std::unique_ptr<Vocab>> LoadVocab(const GgufIndex& index);

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_VOCAB_H_
