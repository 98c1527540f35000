// BackgroundWorker: one thread that runs posted jobs in order. A Sequence's speculative
// recalls (Sequence::Prefetch) run on it while the engine thread goes on computing. The thread
// starts with the first Post; the destructor runs every job already posted, then joins.
// Thread-safe.
//
// Event: a one-shot signal between the worker and the engine thread (a job's "planned" and
// "done"). Both are built on the standard library's mutex and condition variable rather than
// Abseil's: ThreadSanitizer intercepts those, so the prefetch's hand-offs stay checkable even
// where Abseil is a prebuilt, uninstrumented library (Debian's is).
#ifndef CLUSTERKV_CLIENT_INTERNAL_BACKGROUND_WORKER_H_
#define CLUSTERKV_CLIENT_INTERNAL_BACKGROUND_WORKER_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace clusterkv::client {

class Event {
 public:
  void Notify();
  void Wait() const;
  bool HasBeenNotified() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool notified_ = false;
};

class BackgroundWorker {
 public:
  BackgroundWorker() = default;
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;
  ~BackgroundWorker();

  void Post(std::function<void()> job);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::thread thread_;                      // started by the first Post, under mu_
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_INTERNAL_BACKGROUND_WORKER_H_
