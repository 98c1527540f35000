// LockFile: an exclusive advisory lock (flock) on a file, held for the owner's lifetime. The
// daemon locks "<socket>.lock" before binding, because gRPC silently binds a second server to a
// Unix socket path already in use (DESIGN.md section 10). Move-only RAII owner.
#ifndef CLUSTERKV_SERVER_LOCK_FILE_H_
#define CLUSTERKV_SERVER_LOCK_FILE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace clusterkv::server {

class LockFile {
 public:
  // FailedPrecondition naming the holder's pid when another process holds the lock;
  // Unavailable when the file cannot be created.
  static absl::StatusOr<std::unique_ptr<LockFile>> Acquire(const std::string& path);
  // Unlocks. The file stays: removing it would let a process that opened it before the removal
  // lock an orphaned inode while another locks a new file.
  ~LockFile();
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  LockFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_LOCK_FILE_H_
