#include "server/auth/unix_listener.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace clusterkv::server::auth {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

void UniqueFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Bind(const std::string& path,
                                                                 std::shared_ptr<Logger> logger) {
  if (logger == nullptr) logger = MakeDefaultLogger(nullptr);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path must be 1-", sizeof(addr.sun_path) - 1, " bytes: ", path));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(absl::StrCat("bind ", path, ": ", std::strerror(errno)));
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    return absl::UnavailableError(absl::StrCat("listen ", path, ": ", std::strerror(errno)));
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::UnavailableError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  return std::unique_ptr<UnixListener>(
      new UnixListener(std::move(fd), UniqueFd(pipe_fds[0]), UniqueFd(pipe_fds[1]),
                       std::move(logger)));
}

UnixListener::UnixListener(UniqueFd listen_fd, UniqueFd wake_read, UniqueFd wake_write,
                           std::shared_ptr<Logger> logger)
    : logger_(std::move(logger)),
      listen_fd_(std::move(listen_fd)),
      wake_read_(std::move(wake_read)),
      wake_write_(std::move(wake_write)) {}

UnixListener::~UnixListener() { Stop(); }

void UnixListener::Start(AcceptFn on_accept) {
  on_accept_ = std::move(on_accept);
  thread_ = std::thread(&UnixListener::Loop, this);
}

void UnixListener::Stop() {
  if (thread_.joinable()) {
    const char byte = 0;
    while (::write(wake_write_.get(), &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  listen_fd_.reset();
}

void UnixListener::Loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      logger_->Log(LogSeverity::kError, "listener_poll",
                   absl::StrCat("listener poll: ", std::strerror(errno)));
      return;
    }
    if (fds[1].revents != 0) return;  // Stop()
    // Drain the backlog; the listening socket is non-blocking.
    while (true) {
      UniqueFd connection(
          ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (connection.get() < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          // e.g. EMFILE: report and let poll retry (the connection stays in the backlog).
          logger_->Log(LogSeverity::kWarning, "accept",
                       absl::StrCat("accept: ", std::strerror(errno)));
        }
        break;
      }
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (::getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
          len != sizeof(cred)) {
        continue;  // no credentials: the connection is closed
      }
      on_accept_(std::move(connection), PeerCredentials{cred.pid, cred.uid, cred.gid});
    }
  }
}

}  // namespace clusterkv::server::auth
