// RateLimitedLogger: at most `burst` messages per site and interval reach the base logger; the
// next one that does says how many were dropped; sites are limited independently.
#include "server/logger.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace clusterkv::server {
namespace {

class FakeClock final : public Clock {
 public:
  absl::Time Now() const override { return now; }
  absl::Time now = absl::FromUnixSeconds(1000);
};

class Capture final : public Logger {
 public:
  void Log(LogSeverity, absl::string_view site, absl::string_view message) override {
    lines.push_back(std::string(site) + ": " + std::string(message));
  }
  std::vector<std::string> lines;
};

TEST(RateLimitedLoggerTest, DropsBeyondTheBurstAndSaysHowManyWhenTheIntervalRolls) {
  auto capture = std::make_shared<Capture>();
  auto clock = std::make_shared<FakeClock>();
  RateLimitedLogger logger(capture, clock, /*burst=*/2, absl::Seconds(60));
  for (int i = 0; i < 5; ++i) logger.Log(LogSeverity::kWarning, "accept", "accept: EMFILE");
  logger.Log(LogSeverity::kInfo, "ttl_sweep", "dropped 1 sequence(s)");  // another site
  EXPECT_EQ(capture->lines, (std::vector<std::string>{"accept: accept: EMFILE",
                                                      "accept: accept: EMFILE",
                                                      "ttl_sweep: dropped 1 sequence(s)"}));
  clock->now += absl::Seconds(61);
  logger.Log(LogSeverity::kWarning, "accept", "accept: EMFILE");
  ASSERT_EQ(capture->lines.size(), 4u);
  EXPECT_EQ(capture->lines[3],
            "accept: accept: EMFILE (3 similar messages dropped before this one)");
}

}  // namespace
}  // namespace clusterkv::server
