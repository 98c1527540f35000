// Test harness for the real daemon: DaemonProcess runs the clusterkvd binary as a child process
// (fork/exec) in a fresh temporary directory (socket + data dir), synchronises on its
// "clusterkvd: serving on ..." line (no sleeps), and stops it with SIGTERM or SIGKILL.
// RunProcess runs any binary to completion with a bound on its run time, capturing its output;
// KvCacheClient is a gRPC channel + generated KvCache stub set up as a real client would be.
//
// Example:
//   DaemonProcess daemon;
//   ASSERT_OK(daemon.Start());
//   KvCacheClient client = MakeKvCacheClient(daemon.target(), "tenant-a");
//   auto context = client.Context();
//   grpc::Status s = client.stub->Stats(context.get(), request, &response);
//   ASSERT_THAT(daemon.Stop(), IsOkAndHolds(0));
//   ASSERT_OK(daemon.Restart());  // same socket and data dir
//
// Thread-compatible: one thread drives a DaemonProcess (an internal reader thread drains the
// child's output). Start it from a long-lived thread: the child is killed when the thread that
// started it exits (PR_SET_PDEATHSIG), so a crashed test never leaves a daemon behind.
#ifndef CLUSTERKV_TESTS_TESTING_DAEMON_PROCESS_H_
#define CLUSTERKV_TESTS_TESTING_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <cstdint>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace clusterkv::testing {

// The clusterkvd binary this library was built with.
std::string DaemonBinary();

// A directory created with mkdtemp under $TMPDIR (or /tmp when that path would make a Unix
// socket path too long), removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct DaemonProcessOptions {
  std::string binary = DaemonBinary();
  // Empty: <scratch>/clusterkvd.sock and <scratch>/data in a fresh ScratchDir.
  std::string socket_path;
  std::string data_dir;
  // Extra flags, e.g. "--write_through". The defaults keep the daemon small and deterministic:
  // 64 MiB host tier without huge pages, CPU backend with one thread, 5 s shutdown grace, no
  // metrics HTTP endpoint, --auth=none (tenants from metadata; a later --auth flag wins).
  std::vector<std::string> flags;
  // Bound on the time to the "serving on" line, and on a SIGTERM shutdown.
  absl::Duration start_timeout = absl::Seconds(60);
  absl::Duration stop_timeout = absl::Seconds(60);
};

class DaemonProcess {
 public:
  explicit DaemonProcess(DaemonProcessOptions options = {});
  // Kills the daemon (SIGKILL) if it still runs.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Starts the daemon and waits for its "serving on" line. FailedPrecondition when already
  // running; Aborted when the daemon exited before serving (exit_status() and output() then
  // tell why); DeadlineExceeded (after killing it) when it did not serve within start_timeout;
  // Internal when the process could not be created.
  absl::Status Start();
  // Start() again on the same socket and data dir; FailedPrecondition while running.
  absl::Status Restart() { return Start(); }

  // SIGTERM, then waits for the exit: the exit status (128 + signal when killed by a signal).
  // FailedPrecondition when not running; DeadlineExceeded (after SIGKILL) past stop_timeout.
  absl::StatusOr<int> Stop();
  // SIGKILL and reap. FailedPrecondition when not running.
  absl::Status Kill();

  bool running() const { return pid_ > 0; }
  // The daemon's pid while it runs, -1 otherwise.
  pid_t pid() const { return pid_; }
  // The daemon's resident set (VmRSS) in KiB; -1 when not running or unreadable.
  int64_t RssKib() const;
  // "unix:<socket_path>".
  std::string target() const { return "unix:" + socket_path_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& data_dir() const { return data_dir_; }
  // Everything the current (or last) process wrote to stdout and stderr.
  std::string output() const;
  // Exit status of the last process, once reaped.
  std::optional<int> exit_status() const { return exit_status_; }

 private:
  // Waits up to `timeout` for the child's output to end (it exited), then reaps it.
  absl::StatusOr<int> Reap(absl::Duration timeout);
  void ReadOutput(int fd);

  DaemonProcessOptions options_;
  std::unique_ptr<ScratchDir> scratch_;
  std::string socket_path_;
  std::string data_dir_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  std::thread reader_;

  mutable absl::Mutex mu_;
  std::string output_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

struct ProcessResult {
  int exit_status = -1;  // 128 + signal when killed by a signal
  std::string output;    // stdout and stderr, interleaved
};

// Runs argv[0] (a path) with argv to completion. DeadlineExceeded (after SIGKILL) when it runs
// longer than `timeout`; Internal when it cannot be started.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout = absl::Seconds(120));

// A client of the daemon: the channel (64 MiB message limits both ways, as the daemon's) and
// the generated stub. Contexts carry the tenant metadata and a deadline.
struct KvCacheClient {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::KvCache::Stub> stub;
  std::string tenant;

  std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline = absl::Seconds(60)) const;
};

KvCacheClient MakeKvCacheClient(const std::string& target, const std::string& tenant = "default");

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_TESTING_DAEMON_PROCESS_H_
