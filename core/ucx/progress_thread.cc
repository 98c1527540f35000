#include "core/ucx/progress_thread.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <utility>

#include "core/ucx/ucx_status.h"

namespace clusterkv::ucx {
namespace {

// Upper bound of one sleep on the event fd. Wakeups come from the fd (UCX events and
// ucp_worker_signal); the bound only keeps a transport that misses an event from stalling
// its peer forever. It is not used for synchronisation.
constexpr int kPollTimeoutMs = 100;

}  // namespace

absl::StatusOr<std::unique_ptr<ProgressThread>> ProgressThread::Start(
    std::shared_ptr<Worker> worker, absl::Duration busy_poll) {
  if (worker == nullptr) return absl::InvalidArgumentError("null UCX worker");
  int fd = -1;
  if (ucs_status_t s = ucp_worker_get_efd(worker->get(), &fd); s != UCS_OK) {
    return FromUcsStatus(s, "ucp_worker_get_efd");
  }
  std::unique_ptr<ProgressThread> out(new ProgressThread(std::move(worker), fd, busy_poll));
  out->thread_ = std::thread([p = out.get()] { p->Loop(); });
  return out;
}

ProgressThread::ProgressThread(std::shared_ptr<Worker> worker, int event_fd,
                               absl::Duration busy_poll)
    : worker_(std::move(worker)),
      event_fd_(event_fd),
      busy_poll_ns_(std::max<int64_t>(0, absl::ToInt64Nanoseconds(busy_poll))) {}

ProgressThread::~ProgressThread() { Stop(); }

absl::Status ProgressThread::Post(Task task) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("UCX progress thread stopped");
    tasks_.push_back(std::move(task));
    queued_.fetch_add(1, std::memory_order_release);
  }
  // Safe from any thread; wakes the loop from its event-fd wait (or makes the next arm busy).
  ucp_worker_signal(worker_->get());
  return absl::OkStatus();
}

absl::Status ProgressThread::RunStatus(const std::function<absl::Status()>& fn) {
  absl::StatusOr<bool> r = Run<bool>([&]() -> absl::StatusOr<bool> {
    absl::Status s = fn();
    if (!s.ok()) return s;
    return true;
  });
  return r.status();
}

absl::Status ProgressThread::Drive(absl::FunctionRef<void()> fn) {
  if (OnThread()) {
    fn();
    return absl::OkStatus();
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("UCX progress thread stopped");
  }
  driven_.store(true, std::memory_order_release);
  drivers_.fetch_add(1, std::memory_order_acq_rel);
  absl::MutexLock worker_lock(&worker_mu_);
  drivers_.fetch_sub(1, std::memory_order_acq_rel);
  fn();
  return absl::OkStatus();
}

ProgressThread::EventWatch ProgressThread::WatchEvents() {
  {
    absl::MutexLock lock(&mu_);
    ++watches_;
  }
  // Wakes the loop from either sleep: the unarmed wait (through mu_) or the event fd.
  ucp_worker_signal(worker_->get());
  return EventWatch(this);
}

ProgressThread::EventWatch& ProgressThread::EventWatch::operator=(EventWatch&& other) noexcept {
  if (this != &other) {
    EventWatch dropped(std::move(*this));
    owner_ = std::exchange(other.owner_, nullptr);
  }
  return *this;
}

ProgressThread::EventWatch::~EventWatch() {
  if (owner_ == nullptr) return;
  absl::MutexLock lock(&owner_->mu_);
  --owner_->watches_;
}

bool ProgressThread::RunTasks() {
  std::deque<Task> tasks;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(tasks_);
    queued_.fetch_sub(static_cast<int64_t>(tasks.size()), std::memory_order_relaxed);
  }
  for (Task& task : tasks) task();
  return !tasks.empty();
}

void ProgressThread::Loop() {
  using Clock = std::chrono::steady_clock;
  ucp_worker_h worker = worker_->get();
  worker_mu_.Lock();
  for (;;) {
    while (ucp_worker_progress(worker) != 0) {
    }
    if (tick_) tick_();
    if (RunTasks()) continue;  // a task may have produced work to progress
    if (busy_poll_ns_ > 0) {
      // Idle: keep polling for the busy-poll window before paying for an event-fd sleep,
      // unless a Drive() caller wants the worker (then sleep, leaving it to the caller).
      const Clock::time_point until = Clock::now() + std::chrono::nanoseconds(busy_poll_ns_);
      bool active = false;
      while (!active && drivers_.load(std::memory_order_acquire) == 0 && Clock::now() < until) {
        active = ucp_worker_progress(worker) != 0 || queued_.load(std::memory_order_acquire) > 0;
      }
      if (active) continue;
    }
    bool watch_fd = true;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ && tasks_.empty()) break;
      // Callers have driven the worker since the last sleep (Drive) and none waits for this
      // thread (EventWatch): they progress it themselves, so an armed event fd would only
      // wake this thread for events they have already consumed, and on a busy host that
      // wakeup competes with them and their peers for a core.
      const bool driven = driven_.exchange(false, std::memory_order_acq_rel);
      watch_fd = watches_ > 0 || !driven;
    }
    if (!watch_fd) {
      // Sleep without arming until a task, an EventWatch, Stop(), or the poll bound; then
      // progress once and, with no Drive() in between, go back to the event fd.
      worker_mu_.Unlock();
      {
        absl::MutexLock lock(&mu_);
        auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !tasks_.empty() || stopping_ || watches_ > 0;
        };
        mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(kPollTimeoutMs));
      }
      worker_mu_.Lock();
      continue;
    }
    const ucs_status_t armed = ucp_worker_arm(worker);
    if (armed == UCS_ERR_BUSY) continue;  // events arrived since the last progress
    // Armed: a Post() from now on signals the fd. One that slipped in before the arm is seen
    // here, so the wait below can never miss a task.
    {
      absl::MutexLock lock(&mu_);
      if (!tasks_.empty() || stopping_) continue;
    }
    // Drive() callers may use the worker while this thread sleeps; events they leave behind
    // signal the fd (an EventWatch signals it too), so this thread re-progresses and re-arms.
    worker_mu_.Unlock();
    pollfd pfd{event_fd_, POLLIN, 0};
    const int n = poll(&pfd, 1, kPollTimeoutMs);
    (void)n;  // EINTR, timeout and readiness all lead back to progress
    worker_mu_.Lock();
  }
  worker_mu_.Unlock();
}

void ProgressThread::SetTickOnThread(Task tick) { tick_ = std::move(tick); }

void ProgressThread::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (joined_) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  ucp_worker_signal(worker_->get());
  if (thread_.joinable()) thread_.join();
  joined_ = true;
}

}  // namespace clusterkv::ucx
