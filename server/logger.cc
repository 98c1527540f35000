#include "server/logger.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace clusterkv::server {

void StderrLogger::Log(LogSeverity severity, absl::string_view /*site*/,
                       absl::string_view message) {
  const char* level = severity == LogSeverity::kError     ? "error: "
                      : severity == LogSeverity::kWarning ? "warning: "
                                                          : "";
  const std::string line = absl::StrCat("clusterkvd: ", level, message, "\n");
  // One write per line: lines of concurrent threads never interleave.
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + written, line.size() - written);
    if (n <= 0) return;
    written += static_cast<size_t>(n);
  }
}

RateLimitedLogger::RateLimitedLogger(std::shared_ptr<Logger> base,
                                     std::shared_ptr<const Clock> clock, int burst,
                                     absl::Duration interval)
    : base_(std::move(base)),
      clock_(clock != nullptr ? std::move(clock) : std::make_shared<SystemClock>()),
      burst_(burst),
      interval_(interval) {}

void RateLimitedLogger::Log(LogSeverity severity, absl::string_view site,
                            absl::string_view message) {
  uint64_t dropped = 0;
  {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&mu_);
    Window& w = windows_[std::string(site)];
    if (w.passed == 0 || now - w.start >= interval_) {
      w.start = now;
      w.passed = 0;
    }
    if (w.passed >= burst_) {
      ++w.dropped;
      return;
    }
    ++w.passed;
    dropped = w.dropped;
    w.dropped = 0;
  }
  if (dropped == 0) {
    base_->Log(severity, site, message);
  } else {
    base_->Log(severity, site,
               absl::StrCat(message, " (", dropped, " similar messages dropped before this one)"));
  }
}

std::shared_ptr<Logger> MakeDefaultLogger(std::shared_ptr<const Clock> clock) {
  return std::make_shared<RateLimitedLogger>(std::make_shared<StderrLogger>(), std::move(clock));
}

}  // namespace clusterkv::server
