// WorkerPool: tasks run on the pool's threads, a full queue refuses at once with
// RESOURCE_EXHAUSTED (and reports the refusal), Stop runs what was queued and refuses the rest.
#include "server/worker_pool.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace clusterkv::server {
namespace {

TEST(WorkerPoolTest, RunsEveryTaskOffTheSubmittingThread) {
  WorkerPool pool(WorkerPoolOptions{"test", 3, 64, nullptr});
  std::atomic<int> ran{0};
  std::atomic<int> on_caller{0};
  const std::thread::id caller = std::this_thread::get_id();
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(pool.Submit([&] {
                      if (std::this_thread::get_id() == caller) ++on_caller;
                      ++ran;
                    }).ok());
  }
  pool.Stop();
  EXPECT_EQ(ran.load(), 50);
  EXPECT_EQ(on_caller.load(), 0);
}

TEST(WorkerPoolTest, AFullQueueIsRefusedAtOnceAndCounted) {
  std::vector<std::string> refused_by;
  absl::Mutex refused_mu;
  WorkerPoolOptions options;
  options.name = "storage";
  options.threads = 1;
  options.max_queued = 2;
  options.on_rejected = [&](const std::string& pool) {
    absl::MutexLock lock(&refused_mu);
    refused_by.push_back(pool);
  };
  WorkerPool pool(options);
  // The one thread blocks in the first task; the next two fill the queue.
  absl::Notification started;
  absl::Notification release;
  ASSERT_TRUE(pool.Submit([&] {
                    started.Notify();
                    release.WaitForNotification();
                  }).ok());
  started.WaitForNotification();
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  EXPECT_EQ(pool.queued(), 2u);
  const absl::Status full = pool.Submit([&] { ran += 100; });
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("storage"), std::string::npos) << full;
  EXPECT_EQ(pool.rejected(), 1u);
  {
    absl::MutexLock lock(&refused_mu);
    EXPECT_EQ(refused_by, std::vector<std::string>{"storage"});
  }
  release.Notify();
  pool.Stop();
  EXPECT_EQ(ran.load(), 2);  // the refused task never ran
}

TEST(WorkerPoolTest, StopRunsQueuedTasksAndRefusesNewOnes) {
  WorkerPool pool(WorkerPoolOptions{"test", 1, 16, nullptr});
  absl::Notification release;
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.Submit([&] { release.WaitForNotification(); }).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  std::thread stopper([&] { pool.Stop(); });
  release.Notify();
  stopper.join();
  EXPECT_EQ(ran.load(), 5);
  EXPECT_EQ(pool.Submit([] {}).code(), absl::StatusCode::kFailedPrecondition);
  pool.Stop();  // idempotent
}

}  // namespace
}  // namespace clusterkv::server
