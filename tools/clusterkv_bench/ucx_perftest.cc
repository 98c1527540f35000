#include "tools/clusterkv_bench/ucx_perftest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

extern char** environ;

namespace clusterkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

// One child process with stdout and stderr on a pipe. Killed (SIGKILL) and reaped on
// destruction unless already reaped.
class Child {
 public:
  static absl::StatusOr<std::unique_ptr<Child>> Spawn(const std::vector<std::string>& argv,
                                                      const std::vector<std::string>& env) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    std::vector<char*> args, envp;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", std::strerror(rc)));
    }
    return std::unique_ptr<Child>(new Child(pid, fds[0]));
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads output until `marker` appears (empty: until end of output) or the deadline passes.
  // Returns whether the marker (or the end) was reached.
  bool ReadUntil(absl::string_view marker, Clock::time_point deadline) {
    char buf[4096];
    while (!eof_) {
      if (!marker.empty() && absl::StrContains(output_, marker)) return true;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) {
        eof_ = true;
      } else {
        output_.append(buf, static_cast<size_t>(n));
      }
    }
    return marker.empty() || absl::StrContains(output_, marker);
  }
  // Reaps the child (after its output ended); its exit code, or -1 for a signal.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // Whether the child has exited (not reaped: Wait() still reports its code).
  bool Exited() const {
    siginfo_t info{};
    return waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid_;
  }
  const std::string& output() const { return output_; }

 private:
  Child(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  pid_t pid_;
  int fd_;
  bool eof_ = false;
  std::string output_;
};

// Whether some socket listens on TCP `port` (any address), from /proc/net/tcp and tcp6: the
// server's readiness, checked without connecting (a connection would become its peer).
bool Listening(int port) {
  const std::string hex_port = absl::StrCat(":", absl::Hex(port, absl::kZeroPad4));
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      // "  sl  local_address rem_address   st ..."; LISTEN is state 0A.
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
      if (f.size() > 3 && absl::EndsWithIgnoreCase(f[1], hex_port) && f[3] == "0A") return true;
    }
  }
  return false;
}

// A TCP port of 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> FreePort() {
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(s);
  if (!ok) return absl::InternalError("cannot find a free port");
  return static_cast<int>(ntohs(addr.sin_port));
}

std::vector<std::string> ChildEnv(const UcxPerftestOptions& options) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (absl::StartsWith(*e, "UCX_TLS=") || absl::StartsWith(*e, "UCX_NET_DEVICES=")) continue;
    env.emplace_back(*e);
  }
  env.push_back("UCX_TLS=" + options.transports);
  env.push_back("UCX_NET_DEVICES=lo");
  return env;
}

// The last line of eight numbers (-f output): iterations, overhead p50 / average / overall
// (us), bandwidth average / overall (MB/s, where UCX's MB is 2^20 bytes), message rate
// average / overall.
absl::StatusOr<UcxPerftestResult> ParseFinalLine(const std::string& output) {
  std::vector<absl::string_view> lines = absl::StrSplit(output, '\n');
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    std::vector<absl::string_view> f = absl::StrSplit(*it, ' ', absl::SkipWhitespace());
    if (f.size() != 8) continue;
    double v[8];
    bool ok = true;
    for (int i = 0; i < 8 && ok; ++i) ok = absl::SimpleAtod(f[i], &v[i]);
    if (!ok) continue;
    UcxPerftestResult r;
    r.iterations = static_cast<int64_t>(v[0]);
    r.overhead_p50_us = v[1];
    r.bandwidth_gbps = v[5] * 1048576.0 / 1e9;
    return r;
  }
  return absl::InternalError(absl::StrCat("ucx_perftest: no result line in:\n", output));
}

}  // namespace

absl::StatusOr<UcxPerftestResult> RunUcxPutBandwidth(const UcxPerftestOptions& options,
                                                     int64_t message_bytes, int64_t iterations) {
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(options.binary, " is not an executable"));
  }
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1e3));
  const std::vector<std::string> env = ChildEnv(options);
  ASSIGN_OR_RETURN(const int port, FreePort());
  const std::string port_text = absl::StrCat(port);
  ASSIGN_OR_RETURN(std::unique_ptr<Child> server,
                   Child::Spawn({options.binary, "-p", port_text}, env));
  // The server's stdout is block-buffered on a pipe, so its banner cannot signal readiness:
  // wait for its listening socket instead (or for it to exit early).
  while (!Listening(port)) {
    if (Clock::now() >= deadline || server->Exited()) {
      server->ReadUntil("", std::min(deadline, Clock::now() + std::chrono::seconds(1)));
      return absl::DeadlineExceededError(
          absl::StrCat("ucx_perftest server did not listen:\n", server->output()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<Child> client,
      Child::Spawn({options.binary, "127.0.0.1", "-p", port_text, "-t", "ucp_put_bw", "-s",
                    absl::StrCat(message_bytes), "-n", absl::StrCat(iterations), "-w",
                    absl::StrCat(std::max<int64_t>(1, iterations / 10)), "-f"},
                   env));
  if (!client->ReadUntil("", deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("ucx_perftest ran past ", options.timeout_s,
                                                    " s:\n", client->output()));
  }
  const int client_code = client->Wait();
  if (!server->ReadUntil("", deadline)) {
    return absl::DeadlineExceededError("ucx_perftest server did not finish");
  }
  const int server_code = server->Wait();
  if (client_code != 0 || server_code != 0) {
    return absl::InternalError(absl::StrCat("ucx_perftest exited ", client_code, " (client) / ",
                                            server_code, " (server):\n", client->output(),
                                            server->output()));
  }
  return ParseFinalLine(client->output());
}

}  // namespace clusterkv::bench
