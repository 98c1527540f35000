// Client: the entry point of libclusterkv. It owns the connection to the local clusterkvd
// (or any KvTransport, for tests), the algorithm configuration and the compute context, and
// opens Sequences over them.
//
// Thread-safe: OpenSequence/ReopenSequence may be called from any thread; each Sequence is
// then driven by one thread. The Client must outlive its Sequences.
//
// Example:
//   ClientOptions opt;
//   opt.target = "unix:/run/clusterkv/clusterkvd.sock";
//   opt.tenant = "engine-0";
//   ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(opt));
//   ASSIGN_OR_RETURN(std::unique_ptr<Sequence> seq,
//                    client->OpenSequence("req-42", KvLayout::Llama3_8B()));
#ifndef CLUSTERKV_CLIENT_CLIENT_H_
#define CLUSTERKV_CLIENT_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/clock.h"
#include "client/connection.h"
#include "client/retry.h"
#include "client/sequence.h"
#include "client/transport.h"
#include "client/ucx_data_plane.h"
#include "core/config.h"
#include "core/kv_layout.h"

namespace clusterkv::client {

struct ClientOptions {
  // Daemon address ("unix:/path" or "host:port") and the caller's tenant. Unused by
  // CreateWithTransport.
  std::string target;
  std::string tenant;
  ClusterKvConfig config;
  // Compute backend of the ops: "cpu", "cuda" or "auto"; threads 0 = all cores.
  std::string backend = "cpu";
  int threads = 0;
  // Device cache memory: "host", "cuda" or "auto".
  std::string device_memory = "host";
  absl::Duration call_timeout = absl::Seconds(30);
  RetryPolicy retry;
  size_t put_message_bytes = 4 << 20;
  bool write_through = false;
  // Null means the system clock.
  std::shared_ptr<Clock> clock;
  // Fetch data path: "auto" (the UCX data plane when this build and the daemon both have it,
  // else gRPC streaming), "ucx" (Connect fails without it), "grpc" (streaming only).
  // With UCX, the device cache lives in one registered host region of ucx_region_bytes
  // (device_memory "cuda" keeps the gRPC path).
  std::string data_plane = "auto";
  std::string ucx_transports;  // UCX_TLS-like; empty: UCX's default (or $UCX_TLS)
  size_t ucx_region_bytes = size_t{256} << 20;
  absl::Duration ucx_fetch_timeout = absl::Seconds(10);
  absl::Duration ucx_fetch_spin = absl::Microseconds(250);  // UcxTransportOptions::fetch_spin
};

class Client {
 public:
  // Connects (lazily: an absent daemon surfaces as UNAVAILABLE at the first call).
  // InvalidArgument for bad options; FailedPrecondition when backend "cuda" is not usable, or
  // when data_plane "ucx" was asked for and this build or the daemon has no UCX data plane.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  // Over any transport (an in-memory fake in tests).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> CreateWithTransport(
      std::unique_ptr<KvTransport> transport, ClientOptions options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sequence::Open / Sequence::Reopen with this client's transport and options.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Sequence>> OpenSequence(
      absl::string_view sequence_id, const KvLayout& layout);
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Sequence>> ReopenSequence(
      absl::string_view sequence_id);

  KvTransport& transport() { return *transport_; }
  // The gRPC connection, or null when built over another transport.
  Connection* connection() { return connection_; }
  const SequenceOptions& sequence_options() const { return sequence_options_; }
  // The UCX data plane in use, or null (gRPC streaming only).
  DataPlane* data_plane() { return data_plane_.get(); }
  // Why "auto" settled on gRPC (OK when it did not).
  const absl::Status& data_plane_status() const { return data_plane_status_; }

 private:
  Client(std::unique_ptr<KvTransport> transport, Connection* connection,
         SequenceOptions sequence_options);
  static absl::StatusOr<SequenceOptions> MakeSequenceOptions(const ClientOptions& options);
  // Creates the UCX data plane as options.data_plane asks (see ClientOptions).
  absl::Status OpenDataPlane(const ClientOptions& options);

  std::unique_ptr<KvTransport> transport_;
  Connection* connection_;  // = transport_ when it is a Connection
  // Uses connection_, so it is declared (and destroyed) after it.
  std::unique_ptr<DataPlane> data_plane_;
  absl::Status data_plane_status_;
  SequenceOptions sequence_options_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_CLIENT_H_
