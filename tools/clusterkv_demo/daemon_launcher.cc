#include "tools/clusterkv_demo/daemon_launcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace clusterkv::demo {

absl::StatusOr<std::unique_ptr<DaemonLauncher>> DaemonLauncher::Start(
    const std::string& binary, const std::vector<std::string>& flags,
    absl::Duration ready_timeout, absl::string_view ready_line) {
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  std::vector<std::string> args = {binary};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // The daemon is this process's: it gets SIGTERM (a clean shutdown) when the process (the
    // thread that started it) goes away, also when that is a kill or a Ctrl-C, so no orphaned
    // daemon keeps its socket and data directory. If the parent is already gone, exit.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::unique_ptr<DaemonLauncher> d(new DaemonLauncher(pid, fds[0]));
  const absl::Time deadline = absl::Now() + ready_timeout;
  char buf[4096];
  while (d->banner_.find(ready_line.data(), 0, ready_line.size()) == std::string::npos ||
         d->banner_.back() != '\n') {
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{d->out_fd_, POLLIN, 0};
    const int ready = wait_ms > 0 ? poll(&p, 1, static_cast<int>(wait_ms)) : 0;
    if (ready <= 0) {
      return absl::UnavailableError(absl::StrCat(binary, " did not report readiness within ",
                                                 absl::FormatDuration(ready_timeout), ": ",
                                                 d->banner_));
    }
    const ssize_t n = read(d->out_fd_, buf, sizeof(buf));
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat(binary, " exited before serving: ", d->banner_));
    }
    d->banner_.append(buf, static_cast<size_t>(n));
  }
  d->StartDrain();
  return d;
}

void DaemonLauncher::StartDrain() {
  const int fd = out_fd_;
  drain_ = std::thread([fd] {
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
  });
}

void DaemonLauncher::StopDrain() {
  // The reader ends at EOF, i.e. once the daemon has exited and closed its end.
  if (drain_.joinable()) drain_.join();
  if (out_fd_ >= 0) close(out_fd_);
  out_fd_ = -1;
}

absl::StatusOr<int> DaemonLauncher::Stop() {
  if (pid_ <= 0) return absl::FailedPreconditionError("daemon already stopped");
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  StopDrain();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return absl::InternalError(absl::StrCat("daemon died of signal ", WTERMSIG(status)));
}

DaemonLauncher::~DaemonLauncher() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  StopDrain();
}

}  // namespace clusterkv::demo
