// clusterkv_grpc_minimal_server: the server of `clusterkv_bench fetch`'s grpc_minimal row
// (tools/clusterkv_bench/grpc_minimal.h), a raw-bytes gRPC stream over a seeded pool. It prints
// its readiness line, serves until SIGTERM or SIGINT, then exits 0.
#include <signal.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/cli_help.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_bench/grpc_minimal.h"

ABSL_FLAG(std::string, socket, "", "Unix socket path to serve on (required).");
ABSL_FLAG(int64_t, pool_bytes, int64_t{256} << 20,
          "Bytes of the block pool (Ring::FillRandom(seed)), as clusterkv_bench fetch's pool.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the pool's bytes.");
ABSL_FLAG(int32_t, max_message_mib, 64, "Largest gRPC message either way, MiB (as clusterkvd).");

namespace {

constexpr char kUsage[] =
    "clusterkv_grpc_minimal_server: the server of `clusterkv_bench fetch`'s grpc_minimal row, a\n"
    "raw-bytes gRPC stream of the blocks of a seeded pool (no protobuf, no store). Started by\n"
    "the bench; prints its readiness line and serves until SIGTERM.\n\n"
    "Usage: clusterkv_grpc_minimal_server --socket=PATH [--pool_bytes=N] [--seed=S]\n";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  if (clusterkv::WantsHelp(argc, argv)) {
    clusterkv::PrintHelp(kUsage, {{"Server", {"socket", "pool_bytes", "seed", "max_message_mib"}}},
                         std::cout);
    return 0;
  }
  absl::ParseCommandLine(argc, argv);
  const std::string socket = absl::GetFlag(FLAGS_socket);
  const int64_t pool_bytes = absl::GetFlag(FLAGS_pool_bytes);
  const int32_t max_mib = absl::GetFlag(FLAGS_max_message_mib);
  if (socket.empty() || pool_bytes < 1 || max_mib < 1 || max_mib > 1024) {
    std::cerr << "clusterkv_grpc_minimal_server: need --socket, --pool_bytes >= 1 and "
                 "--max_message_mib in [1, 1024] (--help)\n";
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // every thread; main waits for them below

  clusterkv::bench::Ring pool(pool_bytes);
  pool.FillRandom(absl::GetFlag(FLAGS_seed));
  const std::string target = "unix:" + socket;
  auto server = clusterkv::bench::GrpcMinimalServer::Start(target, &pool, max_mib << 20);
  if (!server.ok()) {
    std::cerr << "clusterkv_grpc_minimal_server: " << server.status() << "\n";
    return 1;
  }
  std::cout << clusterkv::bench::kGrpcMinimalReadyLine << " " << target << std::endl;
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server->reset();
  // As clusterkvd: skip gRPC's global shutdown, which can wait on an executor's poll timeout.
  std::_Exit(0);
}
