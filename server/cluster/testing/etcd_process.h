// EtcdProcess: a real etcd (Debian's /usr/bin/etcd) for cluster-mode tests and benchmarks
// (clusterkv_bench remote), a single member on
// free loopback ports with its data in a fresh temporary directory (removed afterwards).
// Start() returns once etcd answers a request through its JSON gateway (bounded by a
// deadline); the destructor kills it (SIGKILL) and removes the directory. Start it from a
// long-lived thread: the child dies with that thread (PR_SET_PDEATHSIG).
//
// Example:
//   EtcdProcess etcd;
//   ASSERT_OK(etcd.Start());
//   ... --cluster_etcd=etcd.endpoint() ...
#ifndef CLUSTERKV_SERVER_CLUSTER_TESTING_ETCD_PROCESS_H_
#define CLUSTERKV_SERVER_CLUSTER_TESTING_ETCD_PROCESS_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace clusterkv::server::cluster {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
int PickFreePort();

class EtcdProcess {
 public:
  EtcdProcess() = default;
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // FailedPrecondition when the binary is missing or etcd already runs; Unavailable when it
  // did not serve within `timeout` (a few tries on fresh ports, in case one was taken).
  absl::Status Start(absl::Duration timeout = absl::Seconds(60));
  // SIGKILL and reap; no-op when not running.
  void Kill();

  bool running() const { return pid_ > 0; }
  // "http://127.0.0.1:<client port>".
  const std::string& endpoint() const { return endpoint_; }
  const std::string& data_dir() const { return dir_; }

 private:
  absl::Status StartOnce(absl::Duration timeout);

  pid_t pid_ = -1;
  std::string dir_;
  std::string endpoint_;
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_TESTING_ETCD_PROCESS_H_
