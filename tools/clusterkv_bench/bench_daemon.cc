#include "tools/clusterkv_bench/bench_daemon.h"

#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/status_macros.h"

namespace clusterkv::bench {

absl::StatusOr<std::unique_ptr<BenchDaemon>> BenchDaemon::Start(const DaemonConfig& config,
                                                                absl::string_view name,
                                                                int64_t host_capacity_mib) {
  if (config.binary.empty()) return absl::InvalidArgumentError("--daemon is empty");
  if (host_capacity_mib < 1) return absl::InvalidArgumentError("host capacity must be >= 1 MiB");
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> dir, ScratchDir::Create(config.dir, name));
  const std::string socket = dir->Sub("clusterkvd.sock");
  std::cerr << name << ": starting " << config.binary << " (host tier " << host_capacity_mib
            << " MiB) in " << dir->path() << "\n";
  ASSIGN_OR_RETURN(std::unique_ptr<demo::DaemonLauncher> launcher,
                   demo::DaemonLauncher::Start(
                       config.binary,
                       // --auth=none: the benchmarks name tenants through metadata (the soak
                       // bench splits its clients over two) and measure the data path, not
                       // authentication; the daemon is private to this process's temp dir.
                       {"--socket=" + socket, "--data_dir=" + dir->Sub("data"),
                        absl::StrCat("--host_capacity_mib=", host_capacity_mib), "--auth=none",
                        "--metrics_address="},
                       absl::Seconds(config.ready_timeout_s)));
  return std::unique_ptr<BenchDaemon>(
      new BenchDaemon(std::move(dir), std::move(launcher), "unix:" + socket));
}

BenchDaemon::~BenchDaemon() {
  if (launcher_ != nullptr) {
    const absl::Status s = Stop();
    if (!s.ok()) std::cerr << "clusterkv_bench: " << s << "\n";
  }
}

absl::Status BenchDaemon::Stop() {
  if (launcher_ == nullptr) return absl::OkStatus();
  absl::StatusOr<int> code = launcher_->Stop();
  launcher_.reset();
  if (!code.ok()) return code.status();
  if (*code != 0) return absl::InternalError(absl::StrCat("clusterkvd exited with ", *code));
  return absl::OkStatus();
}

}  // namespace clusterkv::bench
