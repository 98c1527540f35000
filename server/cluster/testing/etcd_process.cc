#include "server/cluster/testing/etcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/cluster/etcd_client.h"

namespace clusterkv::server::cluster {
namespace {

pid_t SpawnEtcd(const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0) ::dup2(null_fd, 0);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (log_fd >= 0) {
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
  }
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

}  // namespace

int PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

EtcdProcess::~EtcdProcess() {
  Kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void EtcdProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

absl::Status EtcdProcess::Start(absl::Duration timeout) {
  if (running()) return absl::FailedPreconditionError("etcd already runs");
  if (::access(kEtcdBinary, X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(kEtcdBinary, " is missing"));
  }
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    last = StartOnce(timeout);
    if (last.ok()) return last;
    Kill();
  }
  return last;
}

absl::Status EtcdProcess::StartOnce(absl::Duration timeout) {
  if (dir_.empty()) {
    std::string pattern = "/tmp/clusterkv_etcd_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
    }
    dir_ = pattern;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_ + "/data", ec);
  const int client_port = PickFreePort();
  const int peer_port = PickFreePort();
  if (client_port == 0 || peer_port == 0 || client_port == peer_port) {
    return absl::UnavailableError("no free loopback port");
  }
  endpoint_ = absl::StrCat("http://127.0.0.1:", client_port);
  const std::string peer = absl::StrCat("http://127.0.0.1:", peer_port);
  pid_ = SpawnEtcd({kEtcdBinary, "--name=test", "--data-dir=" + dir_ + "/data",
                    "--listen-client-urls=" + endpoint_, "--advertise-client-urls=" + endpoint_,
                    "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
                    "--initial-cluster=test=" + peer, "--initial-cluster-state=new",
                    "--log-level=warn", "--logger=zap"},
                   dir_ + "/etcd.log");
  if (pid_ < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  // Ready when a request through the gateway succeeds; bounded by the deadline.
  absl::StatusOr<std::unique_ptr<EtcdTransport>> transport =
      MakeHttpEtcdTransport(
          {endpoint_, absl::Milliseconds(200), absl::Seconds(2)});
  if (!transport.ok()) return transport.status();
  EtcdClient client(*std::move(transport));
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status probe;
  while (absl::Now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("etcd exited before serving (see ", dir_,
                                                 "/etcd.log)"));
    }
    probe = client.Get("/clusterkv-test-probe").status();
    if (probe.ok()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));  // polling a process's readiness, bounded above
  }
  return absl::UnavailableError(
      absl::StrCat("etcd did not serve within ", absl::FormatDuration(timeout), ": ", probe.message()));
}

}  // namespace clusterkv::server::cluster
