// clusterkv: the admin CLI of clusterkvd, a thin main over admin.h. `--help` prints the usage
// and the flags, exit 0.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/cli_help.h"
#include "tools/clusterkv/admin.h"

// Connection.
ABSL_FLAG(std::string, target, "unix:/run/clusterkv/clusterkvd.sock",
          "The daemon: unix:<socket path> or host:port.");
ABSL_FLAG(std::string, tenant, "default",
          "Tenant whose sequences the commands see (daemons with --auth=none only; otherwise "
          "the credentials decide).");
ABSL_FLAG(std::string, token, "",
          "Bearer token sent as `authorization: Bearer <token>` (daemons with --auth=token, TCP). "
          "Also read from $CLUSTERKV_TOKEN when the flag is empty.");
ABSL_FLAG(std::string, tls_root_cert, "",
          "PEM root certificates for a TLS TCP target (the daemon's --tls_cert or its CA); "
          "empty: plaintext (Unix socket).");
ABSL_FLAG(double, timeout_s, 10.0, "Deadline of each call, seconds.");

namespace {

const std::string& Usage() {
  static const std::string* usage = new std::string(
      absl::StrCat("clusterkv: administer a running clusterkvd (sequences, tiers, health).\n\n"
                   "Usage:\n"
                   "  clusterkv [--target=unix:/run/clusterkv/clusterkvd.sock] [--tenant=default] "
                   "<command> [operand]\n\n",
                   clusterkv::admin::kCommandsUsage));
  return *usage;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(Usage());
  if (clusterkv::WantsHelp(argc, argv)) {
    clusterkv::PrintHelp(Usage(), {{"Connection", {"target", "tenant", "token", "tls_root_cert", "timeout_s"}}},
                         std::cout);
    return clusterkv::admin::kExitOk;
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (!(timeout_s > 0 && timeout_s <= 3600)) {
    std::cerr << "clusterkv: --timeout_s must be in (0, 3600]\n";
    return clusterkv::admin::kExitUsage;
  }
  clusterkv::admin::AdminOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.tenant = absl::GetFlag(FLAGS_tenant);
  options.token = absl::GetFlag(FLAGS_token);
  if (options.token.empty()) {
    // A flag shows in `ps`; the environment does not.
    if (const char* env = std::getenv("CLUSTERKV_TOKEN"); env != nullptr) options.token = env;
  }
  options.timeout = absl::Seconds(timeout_s);
  if (const std::string roots = absl::GetFlag(FLAGS_tls_root_cert); !roots.empty()) {
    std::ifstream in(roots, std::ios::binary);
    std::ostringstream pem;
    pem << in.rdbuf();
    if (!in.good() || pem.str().empty()) {
      std::cerr << "clusterkv: cannot read --tls_root_cert '" << roots << "'\n";
      return clusterkv::admin::kExitUsage;
    }
    options.tls_root_cert_pem = pem.str();
  }
  const std::vector<std::string> args(rest.begin() + 1, rest.end());
  return clusterkv::admin::RunCommand(options, args, std::cout, std::cerr);
}
