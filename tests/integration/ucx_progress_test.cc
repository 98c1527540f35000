// core/ucx ProgressThread: Drive() gives the calling thread exclusive use of the worker, posted
// tasks run only outside it, busy polling still runs tasks and stops cleanly, and events that
// arrive after Drive() callers left (handed off or not) still reach the progress thread.
#include "core/ucx/progress_thread.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
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

// Counts active messages of id 7 and records whether they ran on the progress thread.
struct AmCounter {
  ProgressThread* progress = nullptr;
  absl::Mutex mu;
  int received ABSL_GUARDED_BY(mu) = 0;
  bool off_thread ABSL_GUARDED_BY(mu) = false;
  static ucs_status_t OnMessage(void* arg, const void*, size_t, void*, size_t,
                                const ucp_am_recv_param_t*) {
    auto* self = static_cast<AmCounter*>(arg);
    absl::MutexLock lock(&self->mu);
    ++self->received;
    if (!self->progress->OnThread()) self->off_thread = true;
    return UCS_OK;
  }
};

// A peer's messages sent after a Drive() caller has left are progressed by the thread, both
// when the caller holds an EventWatch (the thread sleeps on the event fd) and when it does not
// (the unarmed sleep is bounded). Tasks posted meanwhile run too.
TEST_P(ProgressThreadTest, EventsAfterDriveReachTheProgressThread) {
  ContextOptions options;
  options.transports = "posix,sysv,self";
  absl::StatusOr<std::unique_ptr<Context>> made = Context::Create(options);
  ASSERT_TRUE(made.ok()) << made.status();
  std::shared_ptr<Context> context = *std::move(made);
  absl::StatusOr<std::unique_ptr<Worker>> receiver = Worker::Create(context, /*serialized=*/true);
  absl::StatusOr<std::unique_ptr<Worker>> sender = Worker::Create(context);
  ASSERT_TRUE(receiver.ok() && sender.ok());
  std::shared_ptr<Worker> rx = *std::move(receiver);
  std::shared_ptr<Worker> tx = *std::move(sender);
  AmCounter counter;
  ucp_am_handler_param_t handler;
  std::memset(&handler, 0, sizeof(handler));
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                       UCP_AM_HANDLER_PARAM_FIELD_ARG;
  handler.id = 7;
  handler.cb = &AmCounter::OnMessage;
  handler.arg = &counter;
  ASSERT_EQ(ucp_worker_set_am_recv_handler(rx->get(), &handler), UCS_OK);
  absl::StatusOr<std::string> address = rx->Address();
  ASSERT_TRUE(address.ok()) << address.status();
  absl::StatusOr<std::unique_ptr<Endpoint>> ep =
      Endpoint::Create(tx, *address, [](ucs_status_t) {}, /*peer_errors=*/false);
  ASSERT_TRUE(ep.ok()) << ep.status();
  absl::StatusOr<std::unique_ptr<ProgressThread>> progress = ProgressThread::Start(rx, busy_poll());
  ASSERT_TRUE(progress.ok()) << progress.status();
  counter.progress = progress->get();

  constexpr int kRounds = 6;
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE((*progress)->Drive([&] { ucp_worker_progress(rx->get()); }).ok());
    ProgressThread::EventWatch watch;
    if (round % 2 == 0) watch = (*progress)->WatchEvents();
    const uint64_t payload = round;
    ucp_request_param_t param;
    std::memset(&param, 0, sizeof(param));
    ASSERT_TRUE(WaitRequest(tx->get(),
                            ucp_am_send_nbx((*ep)->get(), 7, nullptr, 0, &payload,
                                            sizeof(payload), &param),
                            "ucp_am_send_nbx")
                    .ok());
    absl::Notification task_ran;
    ASSERT_TRUE((*progress)->Post([&] { task_ran.Notify(); }).ok());
    task_ran.WaitForNotification();
    // The sender keeps progressing its side until the receiver's thread has taken the message.
    auto received = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(counter.mu) {
      return counter.received == round + 1;
    };
    bool done = false;
    while (!done) {
      ucp_worker_progress(tx->get());
      absl::MutexLock lock(&counter.mu);
      done = counter.mu.AwaitWithTimeout(absl::Condition(&received), absl::Milliseconds(1));
    }
  }
  absl::MutexLock lock(&counter.mu);
  EXPECT_EQ(counter.received, kRounds);
  EXPECT_FALSE(counter.off_thread) << "a message was progressed outside the progress thread";
}

INSTANTIATE_TEST_SUITE_P(BusyPollMicros, ProgressThreadTest, ::testing::Values(0, 50, 1000));

}  // namespace
}  // namespace clusterkv::ucx
