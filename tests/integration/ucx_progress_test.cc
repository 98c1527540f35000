// core/ucx ProgressThread: Drive() gives the calling thread exclusive use of the worker, posted
// tasks run only outside it, busy polling still runs tasks and stops cleanly.
#include "core/ucx/progress_thread.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/ucx/ucx_handles.h"
#include "gtest/gtest.h"

namespace clusterkv::ucx {
namespace {

std::shared_ptr<Worker> MakeWorker(bool serialized) {
  ContextOptions options;
  options.transports = "self";
  absl::StatusOr<std::shared_ptr<Context>> context = Context::Create(options);
  EXPECT_TRUE(context.ok()) << context.status();
  if (!context.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Worker>> worker = Worker::Create(*context, serialized);
  EXPECT_TRUE(worker.ok()) << worker.status();
  return worker.ok() ? std::shared_ptr<Worker>(*std::move(worker)) : nullptr;
}

class ProgressThreadTest : public ::testing::TestWithParam<int> {
 protected:
  absl::Duration busy_poll() const { return absl::Microseconds(GetParam()); }
};

TEST_P(ProgressThreadTest, DriveRunsOnTheCallerAndExcludesPostedTasks) {
  std::shared_ptr<Worker> worker = MakeWorker(/*serialized=*/true);
  ASSERT_NE(worker, nullptr);
  absl::StatusOr<std::unique_ptr<ProgressThread>> progress =
      ProgressThread::Start(worker, busy_poll());
  ASSERT_TRUE(progress.ok()) << progress.status();
  for (int round = 0; round < 50; ++round) {
    std::atomic<bool> in_drive{false};
    std::atomic<bool> task_saw_drive{true};
    absl::Notification task_done;
    std::thread::id drive_thread;
    ASSERT_TRUE((*progress)
                    ->Drive([&] {
                      drive_thread = std::this_thread::get_id();
                      in_drive = true;
                      ASSERT_TRUE((*progress)
                                      ->Post([&] {
                                        task_saw_drive = in_drive.load();
                                        task_done.Notify();
                                      })
                                      .ok());
                      // Use the worker while the task is queued: it must not run meanwhile.
                      for (int i = 0; i < 2000; ++i) ucp_worker_progress(worker->get());
                      in_drive = false;
                    })
                    .ok());
    EXPECT_EQ(drive_thread, std::this_thread::get_id());
    task_done.WaitForNotification();
    EXPECT_FALSE(task_saw_drive) << "a posted task ran while a Drive() caller held the worker";
  }
}

TEST_P(ProgressThreadTest, DriveOnTheProgressThreadRunsInline) {
  std::shared_ptr<Worker> worker = MakeWorker(/*serialized=*/false);
  ASSERT_NE(worker, nullptr);
  absl::StatusOr<std::unique_ptr<ProgressThread>> progress =
      ProgressThread::Start(worker, busy_poll());
  ASSERT_TRUE(progress.ok()) << progress.status();
  bool ran = false;
  absl::Status status = (*progress)->RunStatus([&]() -> absl::Status {
    return (*progress)->Drive([&] { ran = (*progress)->OnThread(); });
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(ran);
}

TEST_P(ProgressThreadTest, TasksRunAndStopRefusesDrive) {
  std::shared_ptr<Worker> worker = MakeWorker(/*serialized=*/true);
  ASSERT_NE(worker, nullptr);
  absl::StatusOr<std::unique_ptr<ProgressThread>> progress =
      ProgressThread::Start(worker, busy_poll());
  ASSERT_TRUE(progress.ok()) << progress.status();
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*progress)->Post([&] { ++ran; }).ok());
  ASSERT_TRUE((*progress)->RunStatus([] { return absl::OkStatus(); }).ok());
  EXPECT_EQ(ran.load(), 100);  // tasks run in order: all before the RunStatus one
  (*progress)->Stop();
  bool called = false;
  absl::Status driven = (*progress)->Drive([&] { called = true; });
  EXPECT_TRUE(absl::IsFailedPrecondition(driven)) << driven;
  EXPECT_FALSE(called);
  EXPECT_TRUE(absl::IsFailedPrecondition((*progress)->Post([] {})));
}

INSTANTIATE_TEST_SUITE_P(BusyPollMicros, ProgressThreadTest, ::testing::Values(0, 50, 1000));

}  // namespace
}  // namespace clusterkv::ucx
