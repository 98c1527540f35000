#include "tools/clusterkv_llama/text_source.h"

#include <stdio.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "tools/clusterkv_demo/text_corpus.h"

namespace clusterkv::llama {
namespace {

constexpr char kBibleBinary[] = "/usr/bin/bible";

// The output of `bible` for the whole book, through a pipe (no shell: popen's command is fixed).
absl::StatusOr<std::string> ReadBible() {
  std::ifstream probe(kBibleBinary);
  if (!probe) {
    return absl::NotFoundError(absl::StrCat(kBibleBinary, " is missing: install bible-kjv"));
  }
  FILE* pipe = popen("/usr/bin/bible -l 100000 Gen1:1-Rev22:21", "r");
  if (pipe == nullptr) return absl::InternalError("cannot run /usr/bin/bible");
  std::string text;
  char buf[1 << 16];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) text.append(buf, n);
  const int status = pclose(pipe);
  if (status != 0 || text.size() < (1 << 20)) {
    return absl::DataLossError(absl::StrCat("/usr/bin/bible printed ", text.size(),
                                            " bytes (exit status ", status,
                                            "); is bible-kjv-text installed?"));
  }
  return text;
}

}  // namespace

std::string DescribeTextSource(absl::string_view source) {
  if (source == "austen") {
    return "Jane Austen's six novels from Emma on (r-cran-janeaustenr)";
  }
  if (source == "kjv") return "the King James Bible from Genesis 1:1 (bible-kjv)";
  return absl::StrCat("the file ", source);
}

absl::StatusOr<std::string> LoadText(absl::string_view source) {
  if (source == "austen") {
    absl::StatusOr<std::vector<std::string>> lines =
        demo::ReadRLazyLoadStrings(demo::kJaneAustenRdb);
    if (absl::IsNotFound(lines.status())) {
      return absl::NotFoundError(
          absl::StrCat(demo::kJaneAustenRdb, " is missing: install r-cran-janeaustenr"));
    }
    RETURN_IF_ERROR(lines.status());
    return absl::StrJoin(*lines, "\n");
  }
  if (source == "kjv") return ReadBible();
  std::ifstream in{std::string(source), std::ios::binary};
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the text file ", source));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::StatusOr<std::vector<int32_t>> EncodeOpening(const Tokenizer& tokenizer,
                                                   absl::string_view text, int64_t min_tokens) {
  EncodeOptions plain;
  plain.add_bos = false;
  // Tokens near the cut may differ from the whole text's (a merge across it is lost), so the
  // opening must yield this many more than are kept.
  constexpr int64_t kMargin = 64;
  size_t chars = static_cast<size_t>(8 * (std::max<int64_t>(min_tokens, 0) + kMargin)) + 4096;
  while (true) {
    size_t cut = text.size();
    if (chars < text.size()) {
      const size_t nl = text.rfind('\n', chars);
      cut = (nl == absl::string_view::npos || nl == 0) ? chars : nl;
      // Never inside a UTF-8 sequence (only possible where no line break came before).
      while (cut < text.size() && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) ++cut;
    }
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text.substr(0, cut), plain);
    if (!ids.ok() || cut == text.size()) return ids;
    if (static_cast<int64_t>(ids->size()) >= min_tokens + kMargin) {
      ids->resize(static_cast<size_t>(min_tokens));
      return ids;
    }
    chars *= 2;
  }
}

}  // namespace clusterkv::llama
