// The protocol from the Python ecosystem: Python stubs generated at test time from
// proto/clusterkv/v1/kvcache.proto by grpc_tools.protoc drive a real daemon (client.py: open,
// put, fetch bit-exact, index, stats, an invalid request). Skips when /usr/bin/python3 lacks
// grpcio or grpcio-tools (deploy/setup.sh installs them).
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/daemon_process.h"

namespace clusterkv::testing {
namespace {

constexpr char kPython[] = "/usr/bin/python3";

TEST(PythonClientTest, GeneratedStubsRoundTripAgainstTheDaemon) {
  absl::StatusOr<ProcessResult> probe =
      RunProcess({kPython, "-c", "import grpc, grpc_tools"}, absl::Seconds(60));
  if (!probe.ok() || probe->exit_status != 0) {
    GTEST_SKIP() << "python3 with grpc and grpc_tools is not installed (deploy/setup.sh): "
                 << (probe.ok() ? probe->output : probe.status().ToString());
  }
  ScratchDir stubs("clusterkv_pystubs");
  absl::StatusOr<ProcessResult> protoc = RunProcess(
      {kPython, "-m", "grpc_tools.protoc", std::string("--proto_path=") + CLUSTERKV_PROTO_ROOT,
       "--python_out=" + stubs.path(), "--grpc_python_out=" + stubs.path(),
       std::string(CLUSTERKV_PROTO_ROOT) + "/clusterkv/v1/kvcache.proto"},
      absl::Seconds(120));
  ASSERT_TRUE(protoc.ok()) << protoc.status();
  ASSERT_EQ(protoc->exit_status, 0) << protoc->output;

  DaemonProcess daemon;
  const absl::Status started = daemon.Start();
  ASSERT_TRUE(started.ok()) << started;
  absl::StatusOr<ProcessResult> client = RunProcess(
      {kPython, CLUSTERKV_PYTHON_CLIENT, "--target=" + daemon.target(), "--stubs=" + stubs.path()},
      absl::Seconds(300));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(client->exit_status, 0) << client->output;
  EXPECT_NE(client->output.find("all checks passed"), std::string::npos) << client->output;

  absl::StatusOr<int> stopped = daemon.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, 0) << daemon.output();
}

}  // namespace
}  // namespace clusterkv::testing
