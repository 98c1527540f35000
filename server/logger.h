// Logger: where the daemon's operational messages go (a sweep's result, a peer that failed, a
// listener error). Injected, so tests capture or silence them and a deployment can route them;
// the daemon's default writes lines to stderr through a RateLimitedLogger, so a fault that
// repeats every request (an accept loop failing, a peer down) cannot flood the log.
//
// Each message names its `site`, a short constant for the place that logs it ("ttl_sweep",
// "accept"); rate limits apply per site. Implementations are thread-safe.
//
// Example:
//   logger->Log(LogSeverity::kWarning, "ttl_sweep", absl::StrCat("TTL sweep: ", status));
#ifndef CLUSTERKV_SERVER_LOGGER_H_
#define CLUSTERKV_SERVER_LOGGER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"

namespace clusterkv::server {

enum class LogSeverity { kInfo, kWarning, kError };

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void Log(LogSeverity severity, absl::string_view site, absl::string_view message) = 0;
};

// "clusterkvd: <message>" (warnings and errors say so) on stderr, one write per line.
class StderrLogger final : public Logger {
 public:
  void Log(LogSeverity severity, absl::string_view site, absl::string_view message) override;
};

// Passes at most `burst` messages per site and `interval` to `base`; the rest are counted, and
// the next message of the site that gets through says how many were dropped.
class RateLimitedLogger final : public Logger {
 public:
  RateLimitedLogger(std::shared_ptr<Logger> base, std::shared_ptr<const Clock> clock,
                    int burst = 10, absl::Duration interval = absl::Seconds(60));
  void Log(LogSeverity severity, absl::string_view site, absl::string_view message) override;

 private:
  struct Window {
    absl::Time start;
    int passed = 0;
    uint64_t dropped = 0;
  };
  const std::shared_ptr<Logger> base_;
  const std::shared_ptr<const Clock> clock_;
  const int burst_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
};

// The daemon's default: stderr, at most 10 messages per site a minute.
std::shared_ptr<Logger> MakeDefaultLogger(std::shared_ptr<const Clock> clock);

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_LOGGER_H_
