// Clock: the daemon's time source, injected so tests drive time-dependent logic (sequence TTL)
// with a fake clock instead of sleeps. SystemClock is the production default. Implementations
// are thread-safe.
#ifndef CLUSTERKV_SERVER_CLOCK_H_
#define CLUSTERKV_SERVER_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace clusterkv::server {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_CLOCK_H_
