#include "client/clock.h"

#include "absl/time/clock.h"

namespace clusterkv::client {
namespace {

// The only place in client/ that reads the wall clock or sleeps.
class SystemClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
};

}  // namespace

std::shared_ptr<Clock> MakeSystemClock() { return std::make_shared<SystemClock>(); }

}  // namespace clusterkv::client
