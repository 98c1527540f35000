// The clusterkv admin CLI binary against a real daemon: every command's output and exit code,
// usage errors, and a daemon that cannot be reached.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_fixture.h"
#include "tools/clusterkv/admin.h"

namespace clusterkv::testing {
namespace {

class DaemonCliTest : public DaemonTest {
 protected:
  ProcessResult Cli(const std::vector<std::string>& args, const std::string& tenant = "ops") {
    std::vector<std::string> argv = {CLUSTERKV_CLI_BIN, "--target=" + daemon_.target(),
                                     "--tenant=" + tenant, "--timeout_s=30"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<ProcessResult> result = RunProcess(argv, absl::Seconds(120));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ProcessResult{};
  }

  // Creates "cli-seq" of tenant "ops" with 2 layers x 4 heads x 3 clusters.
  SequenceData Populate() {
    KvCacheClient client = Client("ops");
    SequenceData data = MakeSequenceData(/*seed=*/51, /*clusters=*/3, /*layers=*/2);
    EXPECT_TRUE(OpenSequence(client, "cli-seq").ok());
    EXPECT_TRUE(PutSequence(client, "cli-seq", data, /*write_through=*/false).ok());
    return data;
  }
};

TEST_F(DaemonCliTest, HelpListsTheCommandsAndExitsZero) {
  absl::StatusOr<ProcessResult> help = RunProcess({CLUSTERKV_CLI_BIN, "--help"});
  ASSERT_TRUE(help.ok()) << help.status();
  EXPECT_EQ(help->exit_status, 0) << help->output;
  for (const char* word : {"list", "stats", "drop", "health", "index", "--target", "--tenant"}) {
    EXPECT_TRUE(absl::StrContains(help->output, word)) << word << " missing from\n" << help->output;
  }
}

TEST_F(DaemonCliTest, HealthIsServing) {
  const ProcessResult r = Cli({"health"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "SERVING")) << r.output;
}

TEST_F(DaemonCliTest, ListShowsIdLayoutAndTokensOfTheTenantOnly) {
  const SequenceData data = Populate();
  const ProcessResult r = Cli({"list"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "cli-seq")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, std::to_string(data.num_tokens))) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "fp16")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "1 sequence(s)")) << r.output;

  const ProcessResult other = Cli({"list"}, "someone-else");
  EXPECT_EQ(other.exit_status, 0) << other.output;
  EXPECT_FALSE(absl::StrContains(other.output, "cli-seq")) << other.output;
  EXPECT_TRUE(absl::StrContains(other.output, "0 sequence(s)")) << other.output;
}

TEST_F(DaemonCliTest, StatsPrintsTheTierTable) {
  Populate();
  const ProcessResult r = Cli({"stats"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  for (const char* word : {"host", "ssd", "BYTES", "BLOCKS", "HITS", "MISSES", "evictions",
                           "promotions", "fragmentation", "64.0 MiB", "1.2 MiB"}) {
    EXPECT_TRUE(absl::StrContains(r.output, word)) << word << " missing from\n" << r.output;
  }
}

TEST_F(DaemonCliTest, IndexPrintsClusterCountsPerHead) {
  const SequenceData data = Populate();
  const ProcessResult r = Cli({"index", "cli-seq"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "8 indexed head(s), 24 cluster(s)")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, std::to_string(data.num_tokens) + " tokens")) << r.output;
  const ProcessResult missing = Cli({"index", "no-such-seq"});
  EXPECT_EQ(missing.exit_status, 1) << missing.output;
  EXPECT_TRUE(absl::StrContains(missing.output, "NOT_FOUND")) << missing.output;
}

TEST_F(DaemonCliTest, DropRemovesTheSequence) {
  Populate();
  const ProcessResult r = Cli({"drop", "cli-seq"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "dropped")) << r.output;
  const ProcessResult list = Cli({"list"});
  EXPECT_FALSE(absl::StrContains(list.output, "cli-seq")) << list.output;
  const ProcessResult again = Cli({"drop", "cli-seq"});
  EXPECT_EQ(again.exit_status, 1) << again.output;
  EXPECT_TRUE(absl::StrContains(again.output, "NOT_FOUND")) << again.output;
}

TEST_F(DaemonCliTest, UsageErrorsExitTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {}, {"frobnicate"}, {"drop"}, {"index", "a", "b"}, {"list", "extra"}}) {
    const ProcessResult r = Cli(args);
    EXPECT_EQ(r.exit_status, 2) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "Commands:")) << r.output;
  }
}

TEST_F(DaemonCliTest, UnreachableDaemonNamesTheTargetAndExitsOne) {
  const std::string target = daemon_.target();
  absl::StatusOr<int> stopped = daemon_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  for (const char* command : {"health", "list", "stats"}) {
    const ProcessResult r = Cli({command});
    EXPECT_EQ(r.exit_status, 1) << command << ": " << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "cannot reach clusterkvd at " + target))
        << command << ": " << r.output;
  }
}

TEST(FormatBytesTest, HumanReadableSizes) {
  EXPECT_EQ(admin::FormatBytes(0), "0 B");
  EXPECT_EQ(admin::FormatBytes(1023), "1023 B");
  EXPECT_EQ(admin::FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(admin::FormatBytes(uint64_t{64} << 20), "64.0 MiB");
  EXPECT_EQ(admin::FormatBytes(uint64_t{3} << 40), "3.0 TiB");
}

}  // namespace
}  // namespace clusterkv::testing
