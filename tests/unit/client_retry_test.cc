// Backoff of client/retry.h with a fake clock: attempts are counted and sleeps recorded, never
// slept.
#include <vector>

#include "absl/time/clock.h"
#include "client/retry.h"
#include "gtest/gtest.h"

namespace clusterkv::client {
namespace {

class FakeClock final : public Clock {
 public:
  absl::Time Now() override { return now_; }
  void SleepFor(absl::Duration d) override {
    sleeps.push_back(d);
    now_ += d;
  }
  std::vector<absl::Duration> sleeps;

 private:
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST(BackoffTest, DelaysDoubleUpToTheCap) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(10);
  p.max_backoff = absl::Milliseconds(50);
  p.multiplier = 2.0;
  EXPECT_EQ(BackoffDelay(p, 0), absl::Milliseconds(10));
  EXPECT_EQ(BackoffDelay(p, 1), absl::Milliseconds(20));
  EXPECT_EQ(BackoffDelay(p, 2), absl::Milliseconds(40));
  EXPECT_EQ(BackoffDelay(p, 3), absl::Milliseconds(50));
  EXPECT_EQ(BackoffDelay(p, 100), absl::Milliseconds(50));
}

TEST(BackoffTest, RetriesUnavailableUntilAttemptsRunOut) {
  RetryPolicy p;
  p.max_attempts = 4;
  p.initial_backoff = absl::Milliseconds(5);
  FakeClock clock;
  int calls = 0;
  absl::Status s = RetryWithBackoff(p, clock, [&](int32_t attempt) {
    EXPECT_EQ(attempt, calls);
    ++calls;
    return absl::UnavailableError("daemon restarting");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("4 attempts"), absl::string_view::npos) << s;
  EXPECT_EQ(calls, 4);
  ASSERT_EQ(clock.sleeps.size(), 3u);
  EXPECT_EQ(clock.sleeps[0], absl::Milliseconds(5));
  EXPECT_EQ(clock.sleeps[1], absl::Milliseconds(10));
  EXPECT_EQ(clock.sleeps[2], absl::Milliseconds(20));
}

TEST(BackoffTest, SucceedsAfterTransientFailures) {
  RetryPolicy p;
  FakeClock clock;
  int calls = 0;
  absl::Status s = RetryWithBackoff(p, clock, [&](int32_t) {
    return ++calls < 3 ? absl::UnavailableError("x") : absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(clock.sleeps.size(), 2u);
}

TEST(BackoffTest, OtherCodesAreNotRetried) {
  RetryPolicy p;
  FakeClock clock;
  for (absl::Status answer : {absl::InvalidArgumentError("bad"), absl::NotFoundError("gone"),
                              absl::DeadlineExceededError("slow"), absl::DataLossError("crc")}) {
    int calls = 0;
    absl::Status s = RetryWithBackoff(p, clock, [&](int32_t) {
      ++calls;
      return answer;
    });
    EXPECT_EQ(s, answer);
    EXPECT_EQ(calls, 1);
  }
  EXPECT_TRUE(clock.sleeps.empty());
}

TEST(BackoffTest, SingleAttemptPolicyNeverSleeps) {
  RetryPolicy p;
  p.max_attempts = 1;
  FakeClock clock;
  int calls = 0;
  (void)RetryWithBackoff(p, clock, [&](int32_t) {
    ++calls;
    return absl::UnavailableError("x");
  });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(clock.sleeps.empty());
}

TEST(BackoffTest, PolicyValidation) {
  EXPECT_TRUE(RetryPolicy().Validate().ok());
  RetryPolicy p;
  p.max_attempts = 0;
  EXPECT_EQ(p.Validate().code(), absl::StatusCode::kInvalidArgument);
  p = RetryPolicy();
  p.max_backoff = absl::ZeroDuration();
  EXPECT_EQ(p.Validate().code(), absl::StatusCode::kInvalidArgument);
  p = RetryPolicy();
  p.multiplier = 0.5;
  EXPECT_EQ(p.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clusterkv::client
