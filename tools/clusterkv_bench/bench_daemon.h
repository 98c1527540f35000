// A real clusterkvd for the benchmarks that go through the daemon (fetch, e2e): a scratch
// directory holding its socket and data dir, and the child process started by
// demo::DaemonLauncher (readiness = its "serving on" line). Stop() or the destructor ends the
// daemon, then the directory is removed. Not thread-safe; the daemon itself is.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_DAEMON_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_DAEMON_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_demo/daemon_launcher.h"

namespace clusterkv::bench {

class BenchDaemon {
 public:
  // Starts `config.binary` with its socket and data dir in a fresh scratch directory under
  // `config.dir` and a host tier of `host_capacity_mib`. `name` names the directory.
  // Unavailable when the directory cannot be made or the daemon does not become ready.
  static absl::StatusOr<std::unique_ptr<BenchDaemon>> Start(const DaemonConfig& config,
                                                            absl::string_view name,
                                                            int64_t host_capacity_mib);
  ~BenchDaemon();
  BenchDaemon(const BenchDaemon&) = delete;
  BenchDaemon& operator=(const BenchDaemon&) = delete;

  // gRPC target of the daemon ("unix:<socket>").
  const std::string& target() const { return target_; }
  // The daemon's process id; -1 once stopped.
  pid_t pid() const { return launcher_ != nullptr ? launcher_->pid() : -1; }
  // SIGTERM and wait; Internal when it exits non-zero or dies of a signal.
  absl::Status Stop();

 private:
  BenchDaemon(std::unique_ptr<ScratchDir> dir, std::unique_ptr<demo::DaemonLauncher> launcher,
              std::string target)
      : dir_(std::move(dir)), launcher_(std::move(launcher)), target_(std::move(target)) {}

  std::unique_ptr<ScratchDir> dir_;  // destroyed after the daemon
  std::unique_ptr<demo::DaemonLauncher> launcher_;
  std::string target_;
};

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_BENCH_DAEMON_H_
