#include "tools/clusterkv_llama/internal/unicode.h"

#include <algorithm>
#include <array>

#include "absl/strings/str_format.h"
#include "tools/clusterkv_llama/internal/unicode_tables.h"

namespace clusterkv::llama::internal {
namespace {

uint8_t LookupClass(uint32_t cp) {
  if (std::binary_search(kWhiteSpace, kWhiteSpace + kWhiteSpaceCount, cp)) {
    return kClassWhitespace;
  }
  const UnicodeRange* end = kUnicodeRanges + kUnicodeRangeCount;
  const UnicodeRange* it = std::upper_bound(
      kUnicodeRanges, end, cp, [](uint32_t v, const UnicodeRange& r) { return v < r.start; });
  const uint8_t flags = (it - 1)->flags;  // kUnicodeRanges[0].start == 0
  uint8_t out = 0;
  if (flags & kUnicodeLetter) out |= kClassLetter;
  if (flags & kUnicodeNumber) out |= kClassNumber;
  if (flags & kUnicodePunctuation) out |= kClassPunctuation;
  return out;
}

struct AsciiClasses {
  std::array<uint8_t, 128> classes;
  AsciiClasses() {
    for (uint32_t c = 0; c < 128; ++c) classes[c] = LookupClass(c);
  }
};

struct ByteAlphabet {
  std::array<uint32_t, 256> to_cp;
  std::array<int16_t, 324> from_cp;  // every code point of the alphabet is below 256 + 68
  ByteAlphabet() {
    from_cp.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? b : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* const alphabet = new ByteAlphabet();
  return *alphabet;
}

}  // namespace

uint8_t CodepointClass(uint32_t cp) {
  static const AsciiClasses* const ascii = new AsciiClasses();
  if (cp < 128) return ascii->classes[cp];
  return LookupClass(cp);
}

absl::Status ValidateUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "text is not valid UTF-8: bad sequence at byte offset %d (byte 0x%02X)", i, c));
    }
    i += len;
  }
  return absl::OkStatus();
}

void DecodeUtf8(absl::string_view text, std::vector<uint32_t>* cps, std::vector<size_t>* offsets) {
  cps->clear();
  offsets->clear();
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const size_t len = std::min(Utf8Length(s[i]), text.size() - i);
    uint32_t cp = len == 1 ? s[i] : s[i] & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    cps->push_back(cp);
    offsets->push_back(i);
    i += len;
  }
  offsets->push_back(text.size());
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t ByteToCodepoint(uint8_t b) { return Alphabet().to_cp[b]; }

int ByteFromCodepoint(uint32_t cp) {
  const ByteAlphabet& a = Alphabet();
  return cp < a.from_cp.size() ? a.from_cp[cp] : -1;
}

}  // namespace clusterkv::llama::internal
