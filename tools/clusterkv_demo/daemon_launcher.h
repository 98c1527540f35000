// DaemonLauncher: runs clusterkvd as a child process for the demo. Start() forks/execs the
// binary with the given flags and reads its output until the "clusterkvd: serving on" line
// (or another server's readiness line), which is the readiness signal (no sleeps); Stop() sends SIGTERM and reaps it. The destructor
// kills a daemon that is still running, and the kernel sends it SIGTERM when the thread that
// called Start() exits (PR_SET_PDEATHSIG), so a killed tool leaves no daemon behind.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_DEMO_DAEMON_LAUNCHER_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_DEMO_DAEMON_LAUNCHER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace clusterkv::demo {

class DaemonLauncher {
 public:
  // Unavailable when the daemon exits or does not print a whole line containing `ready_line`
  // within `ready_timeout` (its output is in the message).
  static absl::StatusOr<std::unique_ptr<DaemonLauncher>> Start(
      const std::string& binary, const std::vector<std::string>& flags,
      absl::Duration ready_timeout = absl::Seconds(60),
      absl::string_view ready_line = "clusterkvd: serving on");
  ~DaemonLauncher();
  DaemonLauncher(const DaemonLauncher&) = delete;
  DaemonLauncher& operator=(const DaemonLauncher&) = delete;

  // SIGTERM, then waits. Returns the exit status (0 = drained and flushed cleanly), or
  // Internal when it died of a signal.
  absl::StatusOr<int> Stop();
  pid_t pid() const { return pid_; }
  // What the daemon printed up to its readiness line.
  const std::string& banner() const { return banner_; }

 private:
  DaemonLauncher(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  // Keeps reading the daemon's output after readiness so it can never block on a full pipe.
  void StartDrain();
  void StopDrain();

  pid_t pid_;
  int out_fd_;
  std::string banner_;
  std::thread drain_;
};

}  // namespace clusterkv::demo

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_DEMO_DAEMON_LAUNCHER_H_
