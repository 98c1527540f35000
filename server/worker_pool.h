// WorkerPool: a fixed set of threads and a bounded queue for the daemon's blocking work
// (RocksDB reads and synced writes, SSD promotions, peer pulls, etcd calls). The daemon's
// network threads (gRPC callback reactions, the UCX progress thread) never block: they parse,
// validate and Submit(); a task that finds the queue full is refused at once with
// RESOURCE_EXHAUSTED (and counted), so overload turns into a fast, retryable error instead of
// a queue that grows without bound or a network thread that stalls.
//
// Tasks run in submission order, each on one thread of the pool. Stop() (also the destructor)
// runs every task already queued, refuses new ones and joins; a task may Submit() more work
// until then. Thread-safe.
//
// Example:
//   WorkerPool pool({.name = "storage", .threads = 4, .max_queued = 1024});
//   absl::Status queued = pool.Submit([&] { store->GetBlock(key); ... });
//   if (!queued.ok()) return queued;  // RESOURCE_EXHAUSTED: the pool is saturated
#ifndef CLUSTERKV_SERVER_WORKER_POOL_H_
#define CLUSTERKV_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace clusterkv::server {

struct WorkerPoolOptions {
  // Names the pool in errors and metrics ("storage").
  std::string name = "worker";
  // Threads; at least 1.
  int threads = 4;
  // Tasks queued and not yet started; Submit beyond it is RESOURCE_EXHAUSTED. At least 1.
  size_t max_queued = 1024;
  // Called (on the submitting thread, without the pool's lock) for every refused task, e.g. to
  // count it in a metric. May be empty.
  std::function<void(const std::string& pool)> on_rejected;
};

class WorkerPool {
 public:
  explicit WorkerPool(WorkerPoolOptions options);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`. RESOURCE_EXHAUSTED when max_queued tasks wait already; FAILED_PRECONDITION
  // after Stop(). A refused task is destroyed without running.
  [[nodiscard]] absl::Status Submit(std::function<void()> task);

  // Runs the queued tasks, refuses new ones and joins the threads (idempotent). Not from a
  // task of this pool.
  void Stop();

  const std::string& name() const { return options_.name; }
  size_t queued() const;
  // Tasks refused because the queue was full, since the pool started.
  uint64_t rejected() const;

 private:
  void Loop();

  const WorkerPoolOptions options_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
  absl::Mutex stop_mu_;  // serialises Stop() callers
  bool joined_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_WORKER_POOL_H_
