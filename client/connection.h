// Connection: the gRPC client of clusterkvd's KvCache service. It owns the channel (Unix socket
// "unix:/run/clusterkv.sock" or TCP "host:port"), the stub and the caller's tenant, and gives
// every RPC of proto/clusterkv/v1/kvcache.proto a method that
//   - sends the tenant as metadata (rpc::kTenantMetadataKey) and a per-call deadline,
//   - converts the grpc::Status with rpc::FromGrpcStatus (the project's one conversion),
//   - retries UNAVAILABLE with bounded exponential backoff (retry.h) for idempotent calls:
//     OpenSequence, ListSequences, GetIndex, FetchClusters, Select, Stats, CloseSequence, the
//     PutClusters stream, whose blocks are immutable: ALREADY_EXISTS from a retried attempt
//     means the earlier attempt stored them, and counts as stored; and AppendClusters, which
//     the daemon applies once when the request names each head's first cluster id.
// gRPC's channel reconnects by itself; the backoff here bounds how long a call waits for a
// daemon that is restarting before UNAVAILABLE reaches the caller.
//
// Thread-safe: any number of threads may call concurrently (the stub is thread-safe and the
// Connection has no mutable state).
//
// Example:
//   ConnectionOptions opt;
//   opt.target = "unix:/run/clusterkv/clusterkvd.sock";
//   opt.tenant = "engine-0";
//   ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Create(opt));
//   ASSIGN_OR_RETURN(v1::StatsResponse stats, conn->Stats());
#ifndef CLUSTERKV_CLIENT_CONNECTION_H_
#define CLUSTERKV_CLIENT_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/clock.h"
#include "client/retry.h"
#include "client/transport.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "grpcpp/channel.h"

namespace grpc::internal {
class RpcMethod;
}

namespace clusterkv::client {

struct ConnectionOptions {
  // gRPC target: "unix:/path/to.sock" (the sidecar default) or "host:port".
  std::string target;
  // Tenant sent with every call as `clusterkv-tenant` metadata. Only a daemon run with
  // --auth=none honours it; otherwise the daemon derives the tenant from the credentials (the
  // bearer token, or the Unix socket peer's uid).
  std::string tenant;
  // Bearer token sent as `authorization: Bearer <token>` metadata with every call; empty: none.
  // Required by daemons with --auth=token and over TCP; send it only over TLS or a Unix socket.
  std::string bearer_token;
  // TLS: a PEM file of root certificates the daemon's certificate must chain to. Set: the
  // channel uses TLS (grpc::SslCredentials with these roots); empty: insecure credentials
  // (a Unix socket, or a daemon run with --allow_insecure_tcp).
  std::string tls_root_cert_file;
  // The name the daemon's certificate is checked against instead of the target's host (e.g.
  // "localhost" while connecting to 127.0.0.1); empty: the target's host. Needs
  // tls_root_cert_file. For tests and odd deployments only.
  std::string tls_target_name_override;
  // Deadline of each attempt of each call.
  absl::Duration call_timeout = absl::Seconds(30);
  RetryPolicy retry;
  // Send and receive limit; the daemon's default --max_message_bytes is 64 MiB as well.
  int32_t max_message_bytes = 64 << 20;
  // Time source for deadlines and the backoff sleeper; null means the system clock.
  std::shared_ptr<Clock> clock;

  // InvalidArgument naming the first bad field (empty target or tenant, bad retry policy, ...).
  absl::Status Validate() const;
};

class Connection final : public KvTransport {
 public:
  // Builds the channel (TLS when tls_root_cert_file is set, else insecure credentials;
  // connecting is lazy, so an absent daemon shows up as UNAVAILABLE on the first call, not
  // here). InvalidArgument for bad options; NotFound when tls_root_cert_file cannot be read.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Connection>> Create(
      ConnectionOptions options);
  // Over an existing channel (e.g. an in-process server in tests) or stub (a fake stub).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Connection>> CreateWithChannel(
      std::shared_ptr<grpc::Channel> channel, ConnectionOptions options);
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Connection>> CreateWithStub(
      std::unique_ptr<v1::KvCache::StubInterface> stub, ConnectionOptions options);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  // Waits for the promotion hints still in flight (each ends by its deadline at the latest).
  ~Connection() override;

  // KvTransport.
  absl::StatusOr<v1::OpenSequenceResponse> OpenSequence(
      const v1::OpenSequenceRequest& request) override;
  absl::Status CloseSequence(const v1::CloseSequenceRequest& request) override;
  absl::StatusOr<v1::GetIndexResponse> GetIndex(const v1::GetIndexRequest& request) override;
  absl::StatusOr<v1::PutStateResponse> PutState(const v1::PutStateRequest& request) override;
  absl::StatusOr<v1::GetStateResponse> GetState(const v1::GetStateRequest& request) override;
  absl::StatusOr<v1::SealDocumentResponse> SealDocument(
      const v1::SealDocumentRequest& request) override;
  absl::StatusOr<v1::FindPrefixResponse> FindPrefix(const v1::FindPrefixRequest& request) override;
  absl::StatusOr<v1::GrantDocumentResponse> GrantDocument(
      const v1::GrantDocumentRequest& request) override;
  absl::StatusOr<v1::PutClustersResponse> PutClusters(
      absl::Span<const v1::PutClustersRequest> messages) override;
  absl::StatusOr<v1::AppendClustersResponse> AppendClusters(
      const v1::AppendClustersRequest& request) override;
  // Reads the response stream raw and hands each block to on_block straight from the received
  // bytes (one copy, into a ClusterBlock reused from block to block: valid only during the
  // callback). DataLoss, not retried, when a response message is not a well-formed
  // FetchClustersResponse (the blocks before the bad one were delivered).
  absl::Status FetchClusters(const v1::FetchClustersRequest& request,
                             const BlockCallback& on_block) override;

  // The rest of the service.
  [[nodiscard]] absl::StatusOr<v1::ListSequencesResponse> ListSequences();
  [[nodiscard]] absl::StatusOr<v1::SelectResponse> Select(const v1::SelectRequest& request);
  [[nodiscard]] absl::StatusOr<v1::StatsResponse> Stats();
  // One attempt, no retry: metrics are best effort.
  absl::Status ReportClientStats(const v1::ReportClientStatsRequest& request) override;
  // Sent with gRPC's callback API, one attempt; at most kMaxHintsInFlight at a time, later
  // ones are dropped (false) until one completes.
  bool HintClusters(const v1::HintClustersRequest& request) override;
  static constexpr int kMaxHintsInFlight = 8;
  // Hints dropped because kMaxHintsInFlight were in flight, and hints the daemon answered
  // with an error (e.g. RESOURCE_EXHAUSTED: its hint queue was full).
  uint64_t hints_dropped() const;
  uint64_t hints_refused() const;
  // Sets up a UCX data-plane session (client/ucx_transport.h). One attempt, no retry: the call
  // creates daemon state, and the UCX transport decides itself when to try again.
  [[nodiscard]] absl::StatusOr<v1::ConnectDataPlaneResponse> ConnectDataPlane(
      const v1::ConnectDataPlaneRequest& request);

  const ConnectionOptions& options() const { return options_; }
  Clock& clock() const { return *options_.clock; }

 private:
  Connection(std::shared_ptr<grpc::Channel> channel,
             std::unique_ptr<v1::KvCache::StubInterface> stub, ConnectionOptions options);

  // Tenant and authorization metadata and deadline of one attempt.
  void Prepare(grpc::ClientContext* context) const;
  // One attempt of a client stream; ALREADY_EXISTS is passed through.
  absl::StatusOr<v1::PutClustersResponse> PutOnce(
      absl::Span<const v1::PutClustersRequest> messages);
  // After a retried stream met ALREADY_EXISTS: resend block by block, each its own stream,
  // counting ALREADY_EXISTS as stored, then the indexes.
  absl::StatusOr<v1::PutClustersResponse> PutBlockByBlock(
      absl::Span<const v1::PutClustersRequest> messages);

  std::shared_ptr<grpc::Channel> channel_;  // null when built over a stub
  std::unique_ptr<v1::KvCache::StubInterface> stub_;
  // FetchClusters with raw responses (a channel's only; over a stub, the typed stream).
  std::unique_ptr<grpc::internal::RpcMethod> fetch_method_;
  ConnectionOptions options_;
  // Promotion hints in flight (gRPC callbacks still to run) and their outcomes.
  mutable absl::Mutex hints_mu_;
  int hints_in_flight_ ABSL_GUARDED_BY(hints_mu_) = 0;
  uint64_t hints_dropped_ ABSL_GUARDED_BY(hints_mu_) = 0;
  uint64_t hints_refused_ ABSL_GUARDED_BY(hints_mu_) = 0;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_CONNECTION_H_
