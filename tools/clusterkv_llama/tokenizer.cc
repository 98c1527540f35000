#include "tools/clusterkv_llama/tokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tools/clusterkv_llama/internal/bpe.h"
#include "tools/clusterkv_llama/internal/pretokenize.h"
#include "tools/clusterkv_llama/internal/special_tokens.h"
#include "tools/clusterkv_llama/internal/spm.h"
#include "tools/clusterkv_llama/internal/unicode.h"
#include "tools/clusterkv_llama/internal/vocab.h"

namespace clusterkv::llama {
namespace {

using internal::Vocab;
using internal::VocabType;

// Inputs are bounded so that byte offsets fit the 32-bit fields of the merge queues with room.
constexpr size_t kMaxTextBytes = size_t{1} << 30;

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// llama.cpp's clean-up of decoded text for byte-level BPE vocabularies that ask for it, ported
// pass by pass (the passes compact the buffer in place and read what earlier steps wrote).
void CleanSpaces(std::string* s) {
  std::string& text = *s;
  const int64_t n = static_cast<int64_t>(text.size());
  // Spaces before ?!., go.
  int64_t total = n ? 1 : 0;
  for (int64_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    text[total++] = x;
  }
  // " ' " loses both spaces.
  const int64_t n2 = total;
  total = n2 ? 1 : 0;
  for (int64_t i = 1; i < n2; ++i) {
    const char x = text[i];
    if (x == '\'' && i + 1 < n2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
      --total;
      text[++i] = '\0';
    }
    text[total++] = x;
  }
  // " 's", " 'm", " 're", " 've" lose the space.
  const int64_t n3 = total;
  total = n3 ? 1 : 0;
  for (int64_t i = 1; i < n3; ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
      const char x1 = text[i + 1];
      if (x1 == 's' || x1 == 'm') {
        --total;
      } else if (i + 2 < n3) {
        const char x2 = text[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
      }
    }
    text[total++] = x;
  }
  text.resize(static_cast<size_t>(total));
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Vocab> vocab, std::unique_ptr<internal::BpeMerger> bpe)
    : vocab_(std::move(vocab)),
      bpe_(std::move(bpe)),
      splitter_(std::make_unique<internal::SpecialTokenSplitter>(*vocab_)) {}

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufIndex& index) {
  absl::StatusOr<std::unique_ptr<Vocab>> vocab = internal::LoadVocab(index);
  if (!vocab.ok()) return vocab.status();
  std::unique_ptr<internal::BpeMerger> bpe;
  if ((*vocab)->type == VocabType::kBpe) {
    absl::StatusOr<std::unique_ptr<internal::BpeMerger>> built =
        internal::BpeMerger::Build(index, **vocab);
    if (!built.ok()) return built.status();
    bpe = *std::move(built);
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(*std::move(vocab), std::move(bpe)));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text,
                                                       const EncodeOptions& options) const {
  const Vocab& v = *vocab_;
  if (text.size() > kMaxTextBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("text of ", text.size(), " bytes is over the limit of ", kMaxTextBytes));
  }
  if (absl::Status s = internal::ValidateUtf8(text); !s.ok()) return s;
  const bool add_bos = options.add_bos.value_or(v.add_bos);
  const bool add_eos = options.add_eos.value_or(v.add_eos);
  if ((add_bos && v.bos < 0) || (add_eos && v.eos < 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the vocabulary has no ", add_bos && v.bos < 0 ? "BOS" : "EOS", " token"));
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) out.push_back(v.bos);
  const std::vector<internal::Fragment> fragments = splitter_->Split(text, options.parse_special);
  if (v.type == VocabType::kSpm) {
    bool after_special = true;  // the text start counts as following a special token
    std::string escaped;
    for (const internal::Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        after_special = true;
        continue;
      }
      escaped.clear();
      if (v.add_space_prefix && after_special) escaped = "\xE2\x96\x81";
      for (const char c : text.substr(f.begin, f.end - f.begin)) {
        if (c == ' ') {
          escaped += "\xE2\x96\x81";
        } else {
          escaped.push_back(c);
        }
      }
      if (absl::Status s = internal::SpmEncode(v, escaped, &out); !s.ok()) return s;
      after_special = false;
    }
  } else {
    internal::BpeMerger::Scratch scratch;
    std::vector<uint32_t> cps;
    std::vector<size_t> offsets;
    for (const internal::Fragment& f : fragments) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      const absl::string_view piece = text.substr(f.begin, f.end - f.begin);
      internal::DecodeUtf8(piece, &cps, &offsets);
      size_t cp = 0;
      for (const size_t len : internal::PreTokenize(v.pre, cps)) {
        const size_t begin = offsets[cp], end = offsets[cp + len];
        bpe_->EncodeWord(piece.substr(begin, end - begin), &scratch, &out);
        cp += len;
      }
    }
  }
  if (add_eos) out.push_back(v.eos);
  return out;
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool render_special) const {
  std::string out;
  bool drop_space = vocab_->add_space_prefix;
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_->size()) continue;
    const uint32_t attr = vocab_->attrs[id];
    if (render_special || !(attr & (internal::kAttrControl | internal::kAttrUnknown))) {
      const std::string& piece = vocab_->pieces[id];
      const size_t skip = drop_space && !piece.empty() && piece[0] == ' ' ? 1 : 0;
      out.append(piece, skip, std::string::npos);
    }
    drop_space = false;
  }
  if (vocab_->clean_spaces) CleanSpaces(&out);
  return out;
}

std::string Tokenizer::TokenPiece(int32_t id) const { return TokenPiece(id, true); }

std::string Tokenizer::TokenPiece(int32_t id, bool render_special) const {
  if (id < 0 || id >= vocab_->size()) return "";
  if (!render_special && (vocab_->attrs[id] & (internal::kAttrControl | internal::kAttrUnknown))) {
    return "";
  }
  return vocab_->pieces[id];
}

int32_t Tokenizer::bos_id() const { return vocab_->bos; }
int32_t Tokenizer::eos_id() const { return vocab_->eos; }
bool Tokenizer::IsEndOfGeneration(int32_t id) const { return vocab_->IsEog(id); }
bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && id < vocab_->size() && (vocab_->attrs[id] & internal::kAttrControl) != 0;
}
int32_t Tokenizer::vocab_size() const { return vocab_->size(); }
bool Tokenizer::add_bos_default() const { return vocab_->add_bos; }
bool Tokenizer::add_eos_default() const { return vocab_->add_eos; }
const std::string& Tokenizer::model_name() const { return vocab_->model_name; }
const std::string& Tokenizer::pre_tokenizer() const { return vocab_->pre_name; }

std::string TokenStreamDecoder::Push(int32_t id) {
  pending_ += tokenizer_.TokenPiece(id, render_special_);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const uint8_t lead = static_cast<uint8_t>(pending_[i]);
    const size_t len = internal::Utf8Length(lead);
    const bool bad_lead = (lead >= 0x80 && len == 1) || lead == 0xC0 || lead == 0xC1 || lead > 0xF4;
    if (bad_lead) {
      out += kReplacement;
      ++i;
      continue;
    }
    const size_t have = std::min(len, pending_.size() - i);
    bool continuation_ok = true;
    for (size_t k = 1; k < have; ++k) {
      continuation_ok = continuation_ok && (static_cast<uint8_t>(pending_[i + k]) & 0xC0) == 0x80;
    }
    if (continuation_ok && have < len) break;  // the rest of the character comes later
    const absl::string_view ch(pending_.data() + i, len);
    if (continuation_ok && internal::ValidateUtf8(ch).ok()) {
      out.append(ch.data(), ch.size());
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string TokenStreamDecoder::Flush() {
  std::string out = pending_.empty() ? "" : kReplacement;
  pending_.clear();
  return out;
}

}  // namespace clusterkv::llama
