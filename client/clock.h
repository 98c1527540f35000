// Clock: the time source and sleeper of the client library. Retries with backoff sleep and the
// step statistics read the time; both go through this interface so that tests drive a fake
// clock and never sleep for real (STYLE.md: no direct clock or sleep in module code). The one
// production implementation lives in clock.cc.
#ifndef CLUSTERKV_CLIENT_CLOCK_H_
#define CLUSTERKV_CLIENT_CLOCK_H_

#include <memory>

#include "absl/time/time.h"

namespace clusterkv::client {

// Implementations must be thread-safe: one clock is shared by a Connection and its Sequences.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Blocks the calling thread for `d` (a fake advances its time instead).
  virtual void SleepFor(absl::Duration d) = 0;
};

// The real clock: absl::Now() and absl::SleepFor().
std::shared_ptr<Clock> MakeSystemClock();

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_CLOCK_H_
