// UTF-8 and Unicode helpers of the tokenizer: strict UTF-8 validation and decoding, the classes
// of a code point that the pre-tokenizers test (from the generated unicode_tables.cc), and
// GPT-2's byte-level alphabet (each byte 0..255 stands for one printable code point).
// Stateless functions over constant tables; thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_UNICODE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace clusterkv::llama::internal {

// Class bits of CodepointClass; letters, numbers and punctuation exclude each other, white
// space is none of them.
inline constexpr uint8_t kClassLetter = 1;       // \p{L}
inline constexpr uint8_t kClassNumber = 2;       // \p{N}
inline constexpr uint8_t kClassPunctuation = 4;  // \p{P}
inline constexpr uint8_t kClassWhitespace = 8;   // \s (the White_Space property)

uint8_t CodepointClass(uint32_t cp);

// OK when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF); else InvalidArgument naming the byte offset of the first bad sequence.
absl::Status ValidateUtf8(absl::string_view text);

// The bytes of the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte).
inline size_t Utf8Length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Code points of valid UTF-8 `text` (ValidateUtf8 first), with the byte offset where each one
// starts; `offsets` gets one more entry, text.size().
void DecodeUtf8(absl::string_view text, std::vector<uint32_t>* cps, std::vector<size_t>* offsets);

void AppendUtf8(uint32_t cp, std::string* out);

// GPT-2's byte-level alphabet: the code point byte `b` is written as in the vocabulary
// (printable Latin-1 stands for itself, the rest map to U+0100 onwards), and the inverse
// (-1 for a code point that stands for no byte).
uint32_t ByteToCodepoint(uint8_t b);
int ByteFromCodepoint(uint32_t cp);

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_UNICODE_H_
