// --help for every binary: Abseil's built-in --help exits with status 1 and lists every linked
// flag (gRPC's and Abseil's own included); this prints the binary's usage text and its own flags
// in named groups, and the caller exits 0.
//
// Example:
//   if (clusterkv::WantsHelp(argc, argv)) {
//     clusterkv::PrintHelp(kUsage, {{"Storage", {"data_dir", "host_capacity_mib"}}}, std::cout);
//     return 0;
//   }
#ifndef CLUSTERKV_CORE_CLI_HELP_H_
#define CLUSTERKV_CORE_CLI_HELP_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace clusterkv {

struct FlagGroup {
  std::string title;
  std::vector<std::string> names;  // flag names without dashes
};

// True when argv holds --help, -help or -h before any "--".
bool WantsHelp(int argc, char** argv);

// Prints `usage`, then each group's flags with their help text and defaults.
void PrintHelp(absl::string_view usage, const std::vector<FlagGroup>& groups, std::ostream& out);

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_CLI_HELP_H_
