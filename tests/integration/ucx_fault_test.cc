// Faults of the UCX data plane: a client process killed with SIGKILL in the middle of a fetch
// storm must leave the daemon serving every other client.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/integration/ucx_test_util.h"

namespace clusterkv {
namespace {

using ::clusterkv::testing::DaemonProcess;
using namespace ::clusterkv::testing::ucx_test;  // NOLINT: the shared test vocabulary

// Runs the storm helper with its stdout on a pipe; returns its pid and the pipe's read end.
pid_t SpawnStorm(const std::string& target, int* out_fd) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(CLUSTERKV_UCX_FETCH_STORM, CLUSTERKV_UCX_FETCH_STORM, target.c_str(), "tenant-a", "seq",
          "32", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  *out_fd = fds[0];
  return pid;
}

// Reads until "ready" or EOF, each wait bounded by 60 s.
bool WaitReady(int fd) {
  std::string seen;
  char buf[64];
  while (seen.find("ready") == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 60000) <= 0) return false;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    seen.append(buf, static_cast<size_t>(n));
  }
  return true;
}

void KillDuringStormAndCheck(DaemonProcess& daemon) {
  ASSERT_TRUE(PutBlocks(daemon.target(), "tenant-a", "seq").ok());
  for (int round = 0; round < 3; ++round) {
    int fd = -1;
    const pid_t pid = SpawnStorm(daemon.target(), &fd);
    ASSERT_GT(pid, 0);
    const bool ready = WaitReady(fd);
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    close(fd);
    ASSERT_TRUE(ready) << "the storm never recalled a block";
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ASSERT_TRUE(daemon.running()) << daemon.output();

    // A fresh client is served, bit-exact.
    auto ucx = MakeUcxClient(daemon.target(), "tenant-a");
    ASSERT_TRUE(ucx.ok()) << ucx.status();
    auto results = ucx->transport->FetchInto("seq", Requests(kClusters));
    ASSERT_TRUE(results.ok()) << results.status() << "\nround " << round << ", daemon output:\n"
                              << daemon.output();
    EXPECT_TRUE(CheckSlots(*ucx->transport, "tenant-a", "seq", kClusters).ok());
  }
}

TEST(UcxFaultTest, ClientKilledDuringFetchStormLeavesDaemonServing) {
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  KillDuringStormAndCheck(daemon);
}

TEST(UcxFaultTest, ClientKilledDuringFetchStormWithoutPeerErrorsLeavesDaemonServing) {
  ::clusterkv::testing::DaemonProcessOptions options;
  options.flags = {"--ucx_peer_errors=false"};
  DaemonProcess daemon(options);
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  KillDuringStormAndCheck(daemon);
}

TEST(UcxFaultTest, ClientKilledDuringFetchStormOverTcpLeavesDaemonServing) {
  ScopedEnv tls("UCX_TLS", "tcp,self");
  ScopedEnv devices("UCX_NET_DEVICES", "lo");
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start().ok()) << daemon.output();
  KillDuringStormAndCheck(daemon);
}

}  // namespace
}  // namespace clusterkv
