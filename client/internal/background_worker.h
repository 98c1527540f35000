// BackgroundWorker: one thread that runs posted jobs in order. A Sequence's speculative
// recalls (Sequence::Prefetch) run on it while the engine thread goes on computing. The thread
// starts with the first Post; the destructor runs every job already posted, then joins.
// Thread-safe.
#ifndef CLUSTERKV_CLIENT_INTERNAL_BACKGROUND_WORKER_H_
#define CLUSTERKV_CLIENT_INTERNAL_BACKGROUND_WORKER_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace clusterkv::client {

class BackgroundWorker {
 public:
  BackgroundWorker() = default;
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;
  ~BackgroundWorker();

  void Post(std::function<void()> job);

 private:
  void Loop();
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_INTERNAL_BACKGROUND_WORKER_H_
