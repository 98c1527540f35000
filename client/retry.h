// Bounded exponential backoff for calls to the daemon. Only UNAVAILABLE is retried: it is the
// code gRPC gives a call that never reached a live daemon (socket missing, daemon restarting,
// connection reset), and the daemon's own answer for "retry the call" (STYLE.md errors). Every
// other code is the daemon's considered answer and goes back to the caller unchanged.
//
// Example:
//   RetryPolicy policy;  // 5 attempts, 50 ms doubling up to 2 s
//   absl::Status s = RetryWithBackoff(policy, *clock, [&](int attempt) {
//     return CallOnce(attempt);
//   });
#ifndef CLUSTERKV_CLIENT_RETRY_H_
#define CLUSTERKV_CLIENT_RETRY_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/clock.h"

namespace clusterkv::client {

struct RetryPolicy {
  // Attempts in total, the first included; 1 disables retrying.
  int32_t max_attempts = 5;
  // Delay before the first retry; each later delay is `multiplier` times the previous one,
  // capped at max_backoff. Deterministic (no jitter): one client per engine process talks to
  // one local daemon, so there is no herd to spread out.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  double multiplier = 2.0;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Delay before retry number `retry` (0 = the wait after the first failed attempt).
absl::Duration BackoffDelay(const RetryPolicy& policy, int32_t retry);

// True for the codes worth retrying (UNAVAILABLE).
bool IsRetryable(const absl::Status& status);

// Calls attempt(0), attempt(1), ... until it returns a status that is not retryable or
// max_attempts calls were made, sleeping BackoffDelay() on `clock` between calls. Returns the
// last attempt's status; when every attempt was UNAVAILABLE the message says how many were made.
[[nodiscard]] absl::Status RetryWithBackoff(const RetryPolicy& policy, Clock& clock,
                                            absl::FunctionRef<absl::Status(int32_t)> attempt);

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_RETRY_H_
