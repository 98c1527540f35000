// Real English text for the demo's token stream: the six novels of Debian's r-cran-janeaustenr,
// read straight from the package's R lazy-load database (Rdata.rdb: a sequence of zlib streams,
// each an R-serialized character vector). Also reads plain text files.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_DEMO_TEXT_CORPUS_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_DEMO_TEXT_CORPUS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace clusterkv::demo {

inline constexpr char kJaneAustenRdb[] = "/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb";

// The lines of every novel in the database, in file order. NotFound when the file is missing
// (install r-cran-janeaustenr); DataLoss when it is not a valid lazy-load database.
absl::StatusOr<std::vector<std::string>> ReadRLazyLoadStrings(const std::string& rdb_path);

// Lines of a plain text file. NotFound when missing.
absl::StatusOr<std::vector<std::string>> ReadTextLines(const std::string& path);

// Lower-cased words (letters and apostrophes) of `lines`, in order.
std::vector<std::string> Words(const std::vector<std::string>& lines);

}  // namespace clusterkv::demo

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_DEMO_TEXT_CORPUS_H_
