// Long real text for the evaluation, from Debian packages (or a file):
//   "austen"    r-cran-janeaustenr's six novels in the package's order (Emma, Mansfield Park,
//               Northanger Abbey, Persuasion, Pride and Prejudice, Sense and Sensibility), read
//               from its R database, lines joined with '\n' (about 4.0 MB);
//   "kjv"       the King James Bible of bible-kjv, Genesis 1:1 to Revelation 22:21, as its
//               `bible` program prints it (chapter headings, numbered verses; about 4.3 MB);
//   any other   a path to a UTF-8 text file.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TEXT_SOURCE_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TEXT_SOURCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/tokenizer.h"

namespace clusterkv::llama {

// A one-line description of `source` for reports ("Jane Austen's novels (r-cran-janeaustenr)").
std::string DescribeTextSource(absl::string_view source);

// The text. NotFound: the package or file is missing (the message names the package to
// install); DataLoss: the package's data cannot be read.
absl::StatusOr<std::string> LoadText(absl::string_view source);

// The first `min_tokens` tokens of `text` (no BOS), or all of them when the text holds fewer:
// the same ids as encoding the whole text, from only an opening of it. Whole novels run to a
// million tokens while an evaluation needs at most its longest context, so the opening is cut
// at a line break, encoded, and doubled until it yields `min_tokens` plus a margin. Encoder
// errors (text that is not UTF-8) are returned as they are.
absl::StatusOr<std::vector<int32_t>> EncodeOpening(const Tokenizer& tokenizer,
                                                   absl::string_view text, int64_t min_tokens);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_TEXT_SOURCE_H_
