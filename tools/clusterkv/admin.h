// The clusterkv admin commands over a daemon's KvCache service: list, stats, drop, health,
// index. The binary (main.cc) only parses flags; RunCommand does the rest and is what the tests
// drive.
//
// Example:
//   AdminOptions options{"unix:/run/clusterkv/clusterkvd.sock", "default", absl::Seconds(10)};
//   int code = RunCommand(options, {"stats"}, std::cout, std::cerr);
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_ADMIN_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_ADMIN_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace clusterkv::admin {

// Exit codes of RunCommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // daemon unreachable, an RPC failed, not serving
inline constexpr int kExitUsage = 2;    // unknown command or wrong operands

// The command summary printed by --help and on a usage error.
extern const char kCommandsUsage[];

struct AdminOptions {
  std::string target = "unix:/run/clusterkv/clusterkvd.sock";
  std::string tenant = "default";  // honoured only by a daemon run with --auth=none
  std::string token;  // bearer token ("" = none): `authorization: Bearer <token>` metadata
  absl::Duration timeout = absl::Seconds(10);  // per call
  // PEM root certificates; set: TLS (for a TCP target), empty: insecure credentials.
  std::string tls_root_cert_pem;
};

// Runs `args` = {command, operands...}: results go to `out`, errors (naming the target when
// the daemon cannot be reached) to `err`. Returns one of the exit codes above.
int RunCommand(const AdminOptions& options, const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err);

// 1536 -> "1.5 KiB"; below 1 KiB, "512 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace clusterkv::admin

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_ADMIN_H_
