// The grpc_minimal row of `clusterkv_bench fetch`: what gRPC itself streams on this machine,
// the ceiling for clusterkvd's FetchClusters. A minimal server-streaming service with no
// protobuf, no store and no request handling: each call names blocks of one size at slots of
// a seeded random pool (the same bytes `fetch` stores in the daemon) and gets them back as raw
// byte messages, grouped into messages exactly as the daemon groups a FetchClusters answer.
// The server sends slices that point into its pool (no copy before the socket); the client
// copies each block out of the received slices into its destination, as the fetch bench's
// client copies each block into its ring. The server runs as its own process
// (clusterkv_grpc_minimal_server) on a Unix socket, like the daemon.
//
// Example (the bench's side):
//   ASSIGN_OR_RETURN(auto server, GrpcMinimalProcess::Start(binary, dir, pool_bytes, seed));
//   ASSIGN_OR_RETURN(auto client, GrpcMinimalClient::Create(server->target(), 64 << 20));
//   GrpcMinimalRequest r{block_bytes, 4 << 20, {3, 17, 42}};
//   RETURN_IF_ERROR(client->Fetch(r, [&](int64_t i) { return ring.Slot(i, block_bytes); },
//                                 absl::Seconds(60)));
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_BENCH_GRPC_MINIMAL_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_BENCH_GRPC_MINIMAL_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"
#include "grpcpp/support/byte_buffer.h"

namespace grpc::internal {
class RpcMethod;
}

namespace clusterkv::demo {
class DaemonLauncher;
}

namespace clusterkv::bench {

class Ring;
class ScratchDir;

// The readiness line the server prints once it serves.
inline constexpr absl::string_view kGrpcMinimalReadyLine = "clusterkv_grpc_minimal: serving on";

// One call: blocks of `block_bytes` at `slots` of the server's pool (Ring::Slot), grouped into
// messages of `message_bytes` by the daemon's rule (MessageBlockCounts).
struct GrpcMinimalRequest {
  int64_t block_bytes = 0;
  int64_t message_bytes = 0;
  std::vector<int64_t> slots;
};

// Fixed little-endian layout: block_bytes, message_bytes, slot count, slots (int64 each).
grpc::ByteBuffer EncodeGrpcMinimalRequest(const GrpcMinimalRequest& request);
// InvalidArgument when `buffer` is not such a request (wrong length, non-positive sizes,
// negative slots, more than 65,536 slots).
absl::StatusOr<GrpcMinimalRequest> DecodeGrpcMinimalRequest(const grpc::ByteBuffer& buffer);

// How FetchClusters groups `blocks` blocks of `block_bytes` into response messages: blocks are
// added to a message while it holds fewer than `message_bytes` (at least one block each).
// Returns the block count of each message.
std::vector<int64_t> MessageBlockCounts(int64_t blocks, int64_t block_bytes, int64_t message_bytes);

// The server: a callback generic service answering every method with the requested blocks of
// `pool`, one message per StartWrite, the next one after OnWriteDone. Thread-safe.
class GrpcMinimalServer {
 public:
  // Serves on `target` (e.g. "unix:/tmp/x.sock") with the daemon's message limits.
  // Unavailable when gRPC cannot bind it. `pool` must outlive the server.
  static absl::StatusOr<std::unique_ptr<GrpcMinimalServer>> Start(const std::string& target,
                                                                  Ring* pool,
                                                                  int max_message_bytes);
  ~GrpcMinimalServer();
  GrpcMinimalServer(const GrpcMinimalServer&) = delete;
  GrpcMinimalServer& operator=(const GrpcMinimalServer&) = delete;

 private:
  class Service;
  GrpcMinimalServer() = default;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

// The client: synchronous server-streaming calls over its own channel, read as raw
// ByteBuffers. Thread-safe.
class GrpcMinimalClient {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcMinimalClient>> Create(const std::string& target,
                                                                   int max_message_bytes);
  // One call: block i of `request` is copied to destination(i) (block_bytes writable bytes)
  // as it arrives. The call's gRPC error, or DataLoss when the answer holds more or fewer
  // bytes than the requested blocks, or a message not made of whole blocks.
  absl::Status Fetch(const GrpcMinimalRequest& request,
                     const std::function<uint8_t*(int64_t block)>& destination,
                     absl::Duration timeout) const;
  ~GrpcMinimalClient();
  GrpcMinimalClient(const GrpcMinimalClient&) = delete;
  GrpcMinimalClient& operator=(const GrpcMinimalClient&) = delete;

 private:
  explicit GrpcMinimalClient(std::shared_ptr<grpc::Channel> channel);
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::internal::RpcMethod> method_;  // registered once with the channel
};

// The server as a child process: clusterkv_grpc_minimal_server on a socket in a fresh scratch
// directory, serving a pool of `pool_bytes` filled by Ring::FillRandom(seed). Stopped (SIGTERM)
// on destruction. Not thread-safe.
class GrpcMinimalProcess {
 public:
  // Unavailable when the directory cannot be made or the server does not become ready.
  static absl::StatusOr<std::unique_ptr<GrpcMinimalProcess>> Start(const std::string& binary,
                                                                   const std::string& parent_dir,
                                                                   int64_t pool_bytes,
                                                                   uint64_t seed);
  ~GrpcMinimalProcess();
  GrpcMinimalProcess(const GrpcMinimalProcess&) = delete;
  GrpcMinimalProcess& operator=(const GrpcMinimalProcess&) = delete;

  const std::string& target() const { return target_; }
  pid_t pid() const;

 private:
  GrpcMinimalProcess() = default;
  std::unique_ptr<ScratchDir> dir_;  // destroyed after the server
  std::unique_ptr<demo::DaemonLauncher> launcher_;
  std::string target_;
};

}  // namespace clusterkv::bench

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_BENCH_GRPC_MINIMAL_H_
