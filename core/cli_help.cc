#include "core/cli_help.h"

#include <cstring>

#include "absl/flags/reflection.h"

namespace clusterkv {

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-help") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      return true;
    }
  }
  return false;
}

void PrintHelp(absl::string_view usage, const std::vector<FlagGroup>& groups, std::ostream& out) {
  out << usage << "\nFlags:\n";
  for (const FlagGroup& group : groups) {
    out << "  " << group.title << ":\n";
    for (const std::string& name : group.names) {
      const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      if (flag == nullptr) continue;
      out << "    --" << name << "  " << flag->Help() << " (default: \"" << flag->DefaultValue()
          << "\")\n";
    }
  }
}

}  // namespace clusterkv
