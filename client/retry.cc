#include "client/retry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace clusterkv::client {

absl::Status RetryPolicy::Validate() const {
  if (max_attempts < 1 || max_attempts > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry max_attempts must be in [1, 1000], got ", max_attempts));
  }
  if (initial_backoff < absl::ZeroDuration() || max_backoff < initial_backoff) {
    return absl::InvalidArgumentError("retry backoff needs 0 <= initial_backoff <= max_backoff");
  }
  if (!(multiplier >= 1.0 && multiplier <= 100.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry multiplier must be in [1, 100], got ", multiplier));
  }
  return absl::OkStatus();
}

absl::Duration BackoffDelay(const RetryPolicy& policy, int32_t retry) {
  absl::Duration d = policy.initial_backoff;
  for (int32_t i = 0; i < retry && d < policy.max_backoff; ++i) d = d * policy.multiplier;
  return std::min(d, policy.max_backoff);
}

bool IsRetryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable;
}

absl::Status RetryWithBackoff(const RetryPolicy& policy, Clock& clock,
                              absl::FunctionRef<absl::Status(int32_t)> attempt) {
  const int32_t attempts = std::max<int32_t>(1, policy.max_attempts);
  absl::Status status;
  for (int32_t i = 0; i < attempts; ++i) {
    if (i > 0) clock.SleepFor(BackoffDelay(policy, i - 1));
    status = attempt(i);
    if (!IsRetryable(status)) return status;
  }
  return absl::Status(status.code(),
                      absl::StrCat(status.message(), " (after ", attempts, " attempts)"));
}

}  // namespace clusterkv::client
