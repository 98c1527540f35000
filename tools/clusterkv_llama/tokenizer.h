// Tokenizer: text <-> token ids with the vocabulary a GGUF file carries (`tokenizer.ggml.*`),
// giving the ids llama.cpp gives for the same file. Two models:
//   "gpt2"  byte-level BPE: the text is cut into words by the file's pre-tokenizer
//           (`tokenizer.ggml.pre`: smollm, gpt-2, default and a few aliases), each word's
//           bytes are written in GPT-2's byte alphabet and merged by rank
//           (`tokenizer.ggml.merges`);
//   "llama" SentencePiece-style BPE (`tokenizer.ggml.scores`): spaces become U+2581, an optional
//           space prefix (`tokenizer.ggml.add_space_prefix`), highest-score merges, characters
//           no token covers written as <0xXX> byte tokens.
// Special tokens (control, user-defined and unknown-type tokens) written out in the text are
// matched as whole strings, longest first; user-defined ones always, control ones only with
// EncodeOptions::parse_special (as llama.cpp does). Decoding reverses the byte alphabet or the
// U+2581 spaces and <0xXX> bytes.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::FromGguf(file->index()));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode("Hello world", {}));
//   std::string text = tok->Decode(ids, /*render_special=*/false);
//
// A Tokenizer is immutable once built and owns everything it uses (it keeps nothing of the
// GgufIndex); all its methods are const and thread-safe. A TokenStreamDecoder is a small
// per-stream object; not thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TOKENIZER_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tools/clusterkv_llama/gguf.h"

namespace clusterkv::llama {

namespace internal {
struct Vocab;
class BpeMerger;
class SpecialTokenSplitter;
}  // namespace internal

struct EncodeOptions {
  // Whether to start with BOS / end with EOS; unset: what the file says
  // (add_bos_default(), add_eos_default()).
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
  // Match control and unknown-type tokens written out in the text (e.g. "<|im_start|>") as
  // single tokens; otherwise they are plain text. User-defined tokens are matched either way.
  bool parse_special = false;
};

class Tokenizer {
 public:
  // Reads the vocabulary of `index`. InvalidArgument: an unknown tokenizer model or
  // pre-tokenizer (named in the message), missing or mistyped vocabulary arrays, arrays whose
  // lengths disagree, empty or repeated token texts, merge rules that name absent tokens, a
  // special token id outside the vocabulary.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufIndex& index);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // The ids of `text`. InvalidArgument: `text` is not valid UTF-8 (the message names the byte
  // offset) or longer than 1 GiB; a byte with no token and no UNK token (SPM).
  // FailedPrecondition: BOS or EOS asked for and the vocabulary has none.
  [[nodiscard]] absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                            const EncodeOptions& options) const;

  // The text of `ids`, as llama.cpp's detokenizer writes it (special tokens kept): control and
  // unknown-type tokens appear as their text only when `render_special`; with
  // add_space_prefix the first piece's leading space is dropped; for pre-tokenizers that ask
  // for it, spaces before ?!., and in " 's" / " 'm" / " 're" / " 've" are dropped. Ids outside
  // the vocabulary decode to nothing. The result can be invalid UTF-8 when the ids split a
  // character.
  std::string Decode(absl::Span<const int32_t> ids, bool render_special) const;

  // The bytes token `id` stands for (special tokens as their text); "" outside the vocabulary.
  std::string TokenPiece(int32_t id) const;
  // TokenPiece, or "" for a control or unknown-type token when not `render_special`.
  std::string TokenPiece(int32_t id, bool render_special) const;

  int32_t bos_id() const;  // -1: none
  int32_t eos_id() const;  // -1: none
  // EOS, EOT, EOM, FIM pad/repo/separator tokens and the well-known end-of-turn texts
  // ("<|im_end|>", "<end_of_turn>", "<|endoftext|>", ...), as llama.cpp's end-of-generation set.
  bool IsEndOfGeneration(int32_t id) const;
  // Control tokens (type 3, and the end-of-turn texts llama.cpp promotes to control).
  bool IsControl(int32_t id) const;
  int32_t vocab_size() const;
  bool add_bos_default() const;
  bool add_eos_default() const;
  // "gpt2" or "llama" (tokenizer.ggml.model), and the pre-tokenizer name ("" when absent).
  const std::string& model_name() const;
  const std::string& pre_tokenizer() const;

 private:
  Tokenizer(std::unique_ptr<internal::Vocab> vocab, std::unique_ptr<internal::BpeMerger> bpe);

  std::unique_ptr<internal::Vocab> vocab_;
  std::unique_ptr<internal::BpeMerger> bpe_;  // gpt2 only
  std::unique_ptr<internal::SpecialTokenSplitter> splitter_;
};

// Turns generated ids into text as they come: a token can end in the middle of a UTF-8
// character (byte tokens, byte-level BPE pieces), so Push returns only complete characters and
// keeps the rest for the next token. Bytes that cannot start or continue a character come out
// as U+FFFD, so the output is always valid UTF-8. No space clean-up (tokens follow a prompt).
//
// Example:
//   TokenStreamDecoder stream(*tokenizer, /*render_special=*/false);
//   for (int32_t id : generated) std::cout << stream.Push(id);
//   std::cout << stream.Flush();
class TokenStreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  TokenStreamDecoder(const Tokenizer& tokenizer, bool render_special)
      : tokenizer_(tokenizer), render_special_(render_special) {}

  // The complete characters that `id` finishes.
  std::string Push(int32_t id);
  // What is still held (an unfinished character, as U+FFFD), and a reset.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TOKENIZER_H_
