// ProgressThread: the one thread that drives a UCX worker (STYLE.md "Threads"). It progresses
// the worker until idle, runs the tasks other threads posted, arms the worker and sleeps on
// its event fd (ucp_worker_get_efd + ucp_worker_arm, retrying on UCS_ERR_BUSY); Post() wakes
// it with ucp_worker_signal, the one UCX call that is safe from any thread. Every other use of
// the worker, its endpoints and remote keys happens inside posted tasks (or callbacks that
// progress calls), so the worker can stay UCS_THREAD_MODE_SINGLE.
//
// Busy polling: after the last event or task the loop keeps progressing for `busy_poll`
// before it arms and sleeps, so a request/reply exchange arriving within that window costs no
// event-fd wakeup (tens of microseconds each on a VM). Zero sleeps at once.
//
// Caller-driven use: Drive() lends the worker to the calling thread. After a Drive() the
// thread sleeps unarmed (the callers take their own events) unless someone holds an
// EventWatch (see below).
//
// Stop() (also run by the destructor) runs the tasks already posted, refuses new ones, and
// joins. Owns the thread; holds a reference to the worker. Post/Run/Stop are thread-safe.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<ProgressThread> progress, ProgressThread::Start(worker));
//   absl::StatusOr<std::string> addr = progress->Run<std::string>(
//       [&]() -> absl::StatusOr<std::string> { return worker->Address(); });
#ifndef CLUSTERKV_CORE_UCX_PROGRESS_THREAD_H_
#define CLUSTERKV_CORE_UCX_PROGRESS_THREAD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/ucx/ucx_handles.h"

namespace clusterkv::ucx {

class ProgressThread {
 public:
  using Task = std::function<void()>;

  // Starts the thread. The UCX error when the worker has no event fd (e.g. a transport without
  // wakeup support).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ProgressThread>> Start(
      std::shared_ptr<Worker> worker, absl::Duration busy_poll = absl::ZeroDuration());
  ~ProgressThread();
  ProgressThread(const ProgressThread&) = delete;
  ProgressThread& operator=(const ProgressThread&) = delete;

  // Queues `task` to run on the progress thread (outside ucp_worker_progress, so it may call
  // any UCX function and progress the worker itself). FailedPrecondition after Stop().
  [[nodiscard]] absl::Status Post(Task task);

  // Runs `fn` on the progress thread and waits for its result; runs it inline when called on
  // the progress thread. FailedPrecondition after Stop().
  template <typename T>
  absl::StatusOr<T> Run(const std::function<absl::StatusOr<T>()>& fn);
  absl::Status RunStatus(const std::function<absl::Status()>& fn);

  // Runs `fn` on the CALLING thread with exclusive use of the worker: the progress thread is
  // parked (or asleep) meanwhile, so `fn` may call any UCX function and progress the worker
  // itself. A request/reply done this way skips the two thread hand-offs of Run(). Requires a
  // worker created UCS_THREAD_MODE_SERIALIZED (ucx_handles.h) unless called on the progress
  // thread. FailedPrecondition after Stop().
  [[nodiscard]] absl::Status Drive(absl::FunctionRef<void()> fn);

  // While Drive() callers use the worker, the thread sleeps without arming the worker's event
  // fd (their own progress consumes the events; an armed fd would wake this thread for each
  // one only to find it gone), waking for tasks, Stop, or at most every 100 ms. A caller that
  // leaves Drive() with a reply still outstanding holds an EventWatch until the reply is in:
  // while any is held, the thread sleeps on the event fd and takes every event at once.
  class EventWatch {
   public:
    EventWatch() = default;
    EventWatch(EventWatch&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    EventWatch& operator=(EventWatch&& other) noexcept;
    ~EventWatch();

   private:
    friend class ProgressThread;
    explicit EventWatch(ProgressThread* owner) : owner_(owner) {}
    ProgressThread* owner_ = nullptr;
  };
  [[nodiscard]] EventWatch WatchEvents();

  // Installs `tick`, which the thread runs on every turn of its loop: after each progress
  // and task pass, and at least every 100 ms while idle. Keep it cheap (e.g. a deadline check).
  // Only from the progress thread (inside a posted task); an empty `tick` removes it.
  void SetTickOnThread(Task tick);

  // Runs pending tasks, stops and joins (idempotent). Call from any thread but this one.
  void Stop();

  bool OnThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  Worker& worker() const { return *worker_; }

 private:
  ProgressThread(std::shared_ptr<Worker> worker, int event_fd, absl::Duration busy_poll);
  void Loop();
  // Runs every queued task; false when none was queued.
  bool RunTasks();

  std::shared_ptr<Worker> worker_;
  Task tick_;  // progress thread only
  int event_fd_;
  const int64_t busy_poll_ns_;
  // Tasks queued and not yet taken: lets the busy-poll loop look without taking mu_.
  std::atomic<int64_t> queued_{0};
  // Drive() callers waiting for worker_mu_: the busy-poll loop yields the worker to them.
  std::atomic<int32_t> drivers_{0};
  std::thread thread_;
  // Held by the progress thread except while it sleeps on the event fd; Drive() takes it.
  absl::Mutex worker_mu_;
  absl::Mutex mu_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  // Set by Drive() callers; the loop consumes it when it goes to sleep (then unarmed).
  std::atomic<bool> driven_{false};
  int64_t watches_ ABSL_GUARDED_BY(mu_) = 0;  // EventWatch handles alive
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool joined_ = false;  // touched only by Stop's caller
  absl::Mutex stop_mu_;
};

template <typename T>
absl::StatusOr<T> ProgressThread::Run(const std::function<absl::StatusOr<T>()>& fn) {
  if (OnThread()) return fn();
  std::optional<absl::StatusOr<T>> result;
  absl::Notification done;
  absl::Status posted = Post([&] {
    result.emplace(fn());
    done.Notify();
  });
  if (!posted.ok()) return posted;
  done.WaitForNotification();
  return *std::move(result);
}

}  // namespace clusterkv::ucx

#endif  // CLUSTERKV_CORE_UCX_PROGRESS_THREAD_H_
