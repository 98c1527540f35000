// UnixListener: owns the daemon's listening Unix socket when connections are authenticated by
// peer credentials. gRPC 1.51 does not expose a connection's SO_PEERCRED, so the daemon accepts
// connections itself: a thread accepts each one, reads the peer's pid/uid/gid (SO_PEERCRED) and
// hands the connected fd to a callback, which passes it to gRPC
// (grpc::AddInsecureChannelFromFd) or drops it (the fd is closed).
//
// Owns the listening fd and its thread; Stop() (or the destructor) closes the socket and joins
// the thread. Not thread-safe: one owner calls Start/Stop.
#ifndef CLUSTERKV_SERVER_AUTH_UNIX_LISTENER_H_
#define CLUSTERKV_SERVER_AUTH_UNIX_LISTENER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/logger.h"

namespace clusterkv::server::auth {

// A move-only owner of a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

class UnixListener {
 public:
  // Called on the listener thread with each accepted connection.
  using AcceptFn = std::function<void(UniqueFd connection, const PeerCredentials& peer)>;

  // Binds and listens on `path` (a stale socket file must already be removed).
  // InvalidArgument when the path is too long; Unavailable when the socket cannot be bound.
  // `logger` (null: the default, rate-limited stderr) reports poll and accept errors.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Bind(
      const std::string& path, std::shared_ptr<Logger> logger = nullptr);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Starts the accept thread. Call once.
  void Start(AcceptFn on_accept);
  // Stops accepting and closes the listening socket; idempotent. Connections already handed
  // over are not affected.
  void Stop();

 private:
  UnixListener(UniqueFd listen_fd, UniqueFd wake_read, UniqueFd wake_write,
               std::shared_ptr<Logger> logger);
  void Loop();

  std::shared_ptr<Logger> logger_;
  UniqueFd listen_fd_;
  UniqueFd wake_read_;  // Stop() writes to wake_write_ to end the thread's poll
  UniqueFd wake_write_;
  AcceptFn on_accept_;
  std::thread thread_;
};

}  // namespace clusterkv::server::auth

#endif  // CLUSTERKV_SERVER_AUTH_UNIX_LISTENER_H_
