#include "server/worker_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace clusterkv::server {

WorkerPool::WorkerPool(WorkerPoolOptions options) : options_(std::move(options)) {
  const int threads = std::max(options_.threads, 1);
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back(&WorkerPool::Loop, this);
}

WorkerPool::~WorkerPool() { Stop(); }

absl::Status WorkerPool::Submit(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::FailedPreconditionError(
          absl::StrCat("the ", options_.name, " worker pool is stopped"));
    }
    if (tasks_.size() < std::max<size_t>(options_.max_queued, 1)) {
      tasks_.push_back(std::move(task));
      return absl::OkStatus();
    }
    ++rejected_;
  }
  if (options_.on_rejected) options_.on_rejected(options_.name);
  return absl::ResourceExhaustedError(absl::StrCat(
      "the daemon is saturated: the ", options_.name, " worker pool has ",
      options_.max_queued, " tasks queued; retry later"));
}

void WorkerPool::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return p->stopping_ || !p->tasks_.empty();
          },
          this));
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void WorkerPool::Stop() {
  absl::MutexLock stop(&stop_mu_);
  if (joined_) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
  joined_ = true;
}

size_t WorkerPool::queued() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

uint64_t WorkerPool::rejected() const {
  absl::MutexLock lock(&mu_);
  return rejected_;
}

}  // namespace clusterkv::server
