#include "tools/clusterkv_llama/internal/pretokenize.h"

#include "tools/clusterkv_llama/internal/unicode.h"

namespace clusterkv::llama::internal {
namespace {

// Class bits of one code point for the passes; kInText marks a position inside the piece (a
// position past the piece's end has no bits at all).
constexpr uint8_t kInText = 0x80;

using Pieces = std::vector<size_t>;

// Runs of code points for which `pred` holds become pieces; so do the gaps between them.
template <typename Pred>
Pieces SplitRuns(absl::Span<const uint32_t> cps, const Pieces& pieces, Pred pred) {
  Pieces out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    const size_t end = start + len;
    size_t pos = start;
    while (pos < end) {
      const bool in_run = pred(cps[pos]);
      const size_t run_start = pos;
      while (pos < end && pred(cps[pos]) == in_run) ++pos;
      out.push_back(pos - run_start);
    }
    start = end;
  }
  return out;
}

// Each code point for which `pred` holds becomes a piece; the gaps between them stay whole.
template <typename Pred>
Pieces SplitEach(absl::Span<const uint32_t> cps, const Pieces& pieces, Pred pred) {
  Pieces out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    const size_t end = start + len;
    size_t gap = start;
    for (size_t pos = start; pos < end; ++pos) {
      if (!pred(cps[pos])) continue;
      if (pos > gap) out.push_back(pos - gap);
      out.push_back(1);
      gap = pos + 1;
    }
    if (end > gap) out.push_back(end - gap);
    start = end;
  }
  return out;
}

bool IsAsciiDigit(uint32_t cp) { return cp >= '0' && cp <= '9'; }

// [0-9][0-9][0-9]: leftmost groups of three ASCII digits become pieces.
Pieces SplitDigitTriples(absl::Span<const uint32_t> cps, const Pieces& pieces) {
  Pieces out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    const size_t end = start + len;
    size_t gap = start;
    size_t pos = start;
    while (pos + 3 <= end) {
      if (IsAsciiDigit(cps[pos]) && IsAsciiDigit(cps[pos + 1]) && IsAsciiDigit(cps[pos + 2])) {
        if (pos > gap) out.push_back(pos - gap);
        out.push_back(3);
        pos += 3;
        gap = pos;
      } else {
        ++pos;
      }
    }
    if (end > gap) out.push_back(end - gap);
    start = end;
  }
  return out;
}

// The GPT-2 pattern, as llama.cpp's matcher reads it: at each position try, in order, a
// contraction, ' '? letters, ' '? numbers, ' '? other (not space, letter or number), white
// space that leaves its last character to the next word when more text follows, white space;
// a position nothing matches is a piece of one code point.
Pieces SplitGpt2(absl::Span<const uint32_t> cps, const std::vector<uint8_t>& classes,
                 const Pieces& pieces) {
  constexpr uint32_t kOut = 0xFFFFFFFF;
  Pieces out;
  out.reserve(pieces.size());
  size_t start = 0;
  for (const size_t len : pieces) {
    const size_t end = start + len;
    auto cp_at = [&](size_t pos) { return pos < end ? cps[pos] : kOut; };
    auto class_at = [&](size_t pos) -> uint8_t { return pos < end ? classes[pos] : 0; };
    size_t prev_end = start;
    auto add = [&](size_t word_end) {
      if (word_end > prev_end) out.push_back(word_end - prev_end);
      prev_end = word_end;
    };
    size_t pos = start;
    while (pos < end) {
      const uint32_t cp = cps[pos];
      if (cp == '\'' && pos + 1 < end) {
        const uint32_t next = cp_at(pos + 1);
        if (next == 's' || next == 't' || next == 'm' || next == 'd') {
          pos += 2;
          add(pos);
          continue;
        }
        if (pos + 2 < end) {
          const uint32_t next2 = cp_at(pos + 2);
          if ((next == 'r' && next2 == 'e') || (next == 'v' && next2 == 'e') ||
              (next == 'l' && next2 == 'l')) {
            pos += 3;
            add(pos);
            continue;
          }
        }
      }
      uint8_t c = cp == ' ' ? class_at(pos + 1) : classes[pos];
      constexpr uint8_t kWordLike = kClassWhitespace | kClassLetter | kClassNumber;
      if (c & kClassLetter) {
        pos += cp == ' ';
        while (c & kClassLetter) c = class_at(++pos);
        add(pos);
        continue;
      }
      if (c & kClassNumber) {
        pos += cp == ' ';
        while (c & kClassNumber) c = class_at(++pos);
        add(pos);
        continue;
      }
      if (!(c & kWordLike) && (c & kInText)) {
        pos += cp == ' ';
        while (!(c & kWordLike) && (c & kInText)) c = class_at(++pos);
        add(pos);
        continue;
      }
      size_t spaces = 0;
      while (class_at(pos + spaces) & kClassWhitespace) ++spaces;
      if (spaces > 1 && cp_at(pos + spaces) != kOut) {
        pos += spaces - 1;
        add(pos);
        continue;
      }
      if (spaces > 0) {
        pos += spaces;
        add(pos);
        continue;
      }
      add(++pos);
    }
    start = end;
  }
  return out;
}

bool IsNumber(uint32_t cp) { return (CodepointClass(cp) & kClassNumber) != 0; }

// The punctuation class of the default pre-tokenizer: \p{P} and $+<=>^~| (so in ASCII every
// printable character but letters, digits and '`').
bool IsDefaultPunctuation(uint32_t cp) {
  if (cp < 128) {
    return cp >= 0x21 && cp <= 0x7E && cp != '`' && !(CodepointClass(cp) & kClassLetter) &&
           !IsAsciiDigit(cp);
  }
  return (CodepointClass(cp) & kClassPunctuation) != 0;
}

}  // namespace

std::vector<size_t> PreTokenize(PreTokenizer kind, absl::Span<const uint32_t> cps) {
  if (cps.empty()) return {};
  Pieces pieces = {cps.size()};
  std::vector<uint8_t> classes(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) classes[i] = CodepointClass(cps[i]) | kInText;
  switch (kind) {
    case PreTokenizer::kGpt2:
      return SplitGpt2(cps, classes, pieces);
    case PreTokenizer::kSmollm:
      pieces = SplitEach(cps, pieces, IsNumber);
      return SplitGpt2(cps, classes, pieces);
    case PreTokenizer::kDefault:
      pieces = SplitRuns(cps, pieces, IsDefaultPunctuation);
      pieces = SplitGpt2(cps, classes, pieces);
      pieces = SplitRuns(cps, pieces, IsNumber);
      return SplitDigitTriples(cps, pieces);
  }
  return pieces;
}

}  // namespace clusterkv::llama::internal
