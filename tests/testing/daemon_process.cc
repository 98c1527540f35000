#include "tests/testing/daemon_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/rpc_support.h"

#ifndef CLUSTERKV_DAEMON_BIN
#error "CLUSTERKV_DAEMON_BIN must name the clusterkvd binary"
#endif

namespace clusterkv::testing {
namespace {

constexpr char kReadyLine[] = "clusterkvd: serving on ";
constexpr int kMaxMessageBytes = 64 << 20;
// sun_path holds 108 bytes; leave room for "/clusterkvd.sock.lock".
constexpr size_t kMaxScratchPath = 80;

struct Child {
  pid_t pid = -1;
  int output_fd = -1;  // read end of the child's stdout + stderr
};

// fork/exec with stdout and stderr on a pipe and stdin on /dev/null. Everything the child runs
// between fork and exec is async-signal-safe.
absl::StatusOr<Child> Spawn(const std::vector<std::string>& args) {
  if (args.empty()) return absl::InvalidArgumentError("empty argv");
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGPIPE}) ::sigaction(sig, &dfl, nullptr);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return Child{pid, fds[0]};
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int WaitPid(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return DecodeWaitStatus(status);
}

bool HasReadyLine(const std::string& output) {
  const size_t at = output.find(kReadyLine);
  return at != std::string::npos && output.find('\n', at) != std::string::npos;
}

}  // namespace

std::string DaemonBinary() { return CLUSTERKV_DAEMON_BIN; }

ScratchDir::ScratchDir(const std::string& prefix) {
  std::error_code ec;
  std::string base = std::filesystem::temp_directory_path(ec).string();
  if (ec || base.size() + prefix.size() + 8 > kMaxScratchPath) base = "/tmp";
  std::string pattern = absl::StrCat(base, "/", prefix, "_XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::abort();  // a test machine without a writable temp dir cannot run these tests
  }
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

DaemonProcess::DaemonProcess(DaemonProcessOptions options) : options_(std::move(options)) {
  if (options_.socket_path.empty() || options_.data_dir.empty()) {
    scratch_ = std::make_unique<ScratchDir>("clusterkvd");
  }
  socket_path_ =
      options_.socket_path.empty() ? scratch_->Sub("clusterkvd.sock") : options_.socket_path;
  data_dir_ = options_.data_dir.empty() ? scratch_->Sub("data") : options_.data_dir;
}

DaemonProcess::~DaemonProcess() {
  if (running()) (void)Kill();
  if (reader_.joinable()) reader_.join();
}

std::string DaemonProcess::output() const {
  absl::MutexLock lock(&mu_);
  return output_;
}

void DaemonProcess::ReadOutput(int fd) {
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    absl::MutexLock lock(&mu_);
    output_.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  absl::MutexLock lock(&mu_);
  eof_ = true;
}

absl::Status DaemonProcess::Start() {
  if (running()) return absl::FailedPreconditionError("clusterkvd is already running");
  if (reader_.joinable()) reader_.join();
  {
    absl::MutexLock lock(&mu_);
    output_.clear();
    eof_ = false;
  }
  exit_status_.reset();
  std::vector<std::string> args = {options_.binary,
                                   "--socket=" + socket_path_,
                                   "--data_dir=" + data_dir_,
                                   "--host_capacity_mib=64",
                                   "--huge_pages=false",
                                   "--backend=cpu",
                                   "--threads=1",
                                   "--shutdown_grace_s=5",
                                   // No fixed HTTP port: tests run side by side.
                                   "--metrics_address=",
                                   "--undefok=metrics_address",
                                   // Tests name tenants in metadata; security tests override
                                   // this with --auth=token / peercred.
                                   "--auth=none"};
  args.insert(args.end(), options_.flags.begin(), options_.flags.end());
  absl::StatusOr<Child> child = Spawn(args);
  if (!child.ok()) return child.status();
  pid_ = child->pid;
  reader_ = std::thread(&DaemonProcess::ReadOutput, this, child->output_fd);

  bool ready = false;
  bool exited = false;
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return eof_ || HasReadyLine(output_); };
    mu_.AwaitWithTimeout(absl::Condition(&done), options_.start_timeout);
    ready = HasReadyLine(output_);
    exited = eof_;
  }
  if (ready) return absl::OkStatus();
  if (exited) {
    absl::StatusOr<int> status = Reap(options_.stop_timeout);
    if (!status.ok()) return status.status();
    return absl::AbortedError(
        absl::StrCat("clusterkvd exited with status ", *status, " before serving: ", output()));
  }
  (void)Kill();
  return absl::DeadlineExceededError(absl::StrCat("clusterkvd did not serve within ",
                                                  absl::FormatDuration(options_.start_timeout),
                                                  "; output: ", output()));
}

absl::StatusOr<int> DaemonProcess::Reap(absl::Duration timeout) {
  bool exited = false;
  {
    absl::MutexLock lock(&mu_);
    exited = mu_.AwaitWithTimeout(absl::Condition(&eof_), timeout);
  }
  if (!exited) ::kill(pid_, SIGKILL);
  const int status = WaitPid(pid_);
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  exit_status_ = status;
  if (!exited) {
    return absl::DeadlineExceededError(absl::StrCat("clusterkvd did not exit within ",
                                                    absl::FormatDuration(timeout), "; killed it"));
  }
  return status;
}

absl::StatusOr<int> DaemonProcess::Stop() {
  if (!running()) return absl::FailedPreconditionError("clusterkvd is not running");
  if (::kill(pid_, SIGTERM) != 0) {
    return absl::InternalError(absl::StrCat("kill(SIGTERM): ", std::strerror(errno)));
  }
  return Reap(options_.stop_timeout);
}

absl::Status DaemonProcess::Kill() {
  if (!running()) return absl::FailedPreconditionError("clusterkvd is not running");
  ::kill(pid_, SIGKILL);
  exit_status_ = WaitPid(pid_);
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return absl::OkStatus();
}

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  absl::StatusOr<Child> child = Spawn(argv);
  if (!child.ok()) return child.status();
  const absl::Time deadline = absl::Now() + timeout;
  ProcessResult result;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{child->output_fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;  // the deadline check above ends the loop
    const ssize_t n = ::read(child->output_fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  ::close(child->output_fd);
  if (timed_out) ::kill(child->pid, SIGKILL);
  result.exit_status = WaitPid(child->pid);
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        argv[0], " ran past ", absl::FormatDuration(timeout), "; output: ", result.output));
  }
  return result;
}

std::unique_ptr<grpc::ClientContext> KvCacheClient::Context(absl::Duration deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata(rpc::kTenantMetadataKey, tenant);
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline));
  return context;
}

KvCacheClient MakeKvCacheClient(const std::string& target, const std::string& tenant) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  KvCacheClient client;
  client.channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  client.stub = v1::KvCache::NewStub(client.channel);
  client.tenant = tenant;
  return client;
}

int64_t DaemonProcess::RssKib() const {
  if (pid_ <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

}  // namespace clusterkv::testing
