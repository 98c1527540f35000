#include "client/client.h"

#include <utility>

#include "core/status_macros.h"
#include "gpu/backend.h"
#if defined(CLUSTERKV_WITH_UCX)
#include "client/ucx_transport.h"
#endif

namespace clusterkv::client {

Client::Client(std::unique_ptr<KvTransport> transport, Connection* connection,
               SequenceOptions sequence_options)
    : transport_(std::move(transport)),
      connection_(connection),
      sequence_options_(std::move(sequence_options)) {}

absl::StatusOr<SequenceOptions> Client::MakeSequenceOptions(const ClientOptions& options) {
  RETURN_IF_ERROR(options.config.Validate());
  if (options.put_message_bytes < (64 << 10)) {
    return absl::InvalidArgumentError("put_message_bytes must be at least 64 KiB");
  }
  if (options.device_memory != "host" && options.device_memory != "cuda" &&
      options.device_memory != "auto") {
    return absl::InvalidArgumentError("device_memory must be host, cuda or auto");
  }
  if (options.data_plane != "auto" && options.data_plane != "ucx" &&
      options.data_plane != "grpc") {
    return absl::InvalidArgumentError("data_plane must be auto, ucx or grpc");
  }
  SequenceOptions out;
  out.config = options.config;
  ASSIGN_OR_RETURN(out.exec, gpu::MakeExecContext(options.backend, options.threads));
  out.device_memory = options.device_memory;
  out.put_message_bytes = options.put_message_bytes;
  out.write_through = options.write_through;
  out.clock = options.clock != nullptr ? options.clock : MakeSystemClock();
  return out;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  ASSIGN_OR_RETURN(SequenceOptions sequence_options, MakeSequenceOptions(options));
  ConnectionOptions conn;
  conn.target = options.target;
  conn.tenant = options.tenant;
  conn.call_timeout = options.call_timeout;
  conn.retry = options.retry;
  conn.clock = sequence_options.clock;
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection, Connection::Create(std::move(conn)));
  Connection* raw = connection.get();
  std::unique_ptr<Client> client(
      new Client(std::move(connection), raw, std::move(sequence_options)));
  RETURN_IF_ERROR(client->OpenDataPlane(options));
  return client;
}

absl::Status Client::OpenDataPlane(const ClientOptions& options) {
  if (options.data_plane == "grpc") return absl::OkStatus();
  const bool required = options.data_plane == "ucx";
#if defined(CLUSTERKV_WITH_UCX)
  if (options.device_memory == "cuda") {
    data_plane_status_ = absl::FailedPreconditionError(
        "the UCX data plane writes host memory; device_memory \"cuda\" uses gRPC");
    return required ? data_plane_status_ : absl::OkStatus();
  }
  UcxTransportOptions ucx_options;
  ucx_options.transports = options.ucx_transports;
  ucx_options.region_bytes = options.ucx_region_bytes;
  ucx_options.fetch_timeout = options.ucx_fetch_timeout;
  ucx_options.fetch_spin = options.ucx_fetch_spin;
  absl::StatusOr<std::unique_ptr<UcxTransport>> ucx =
      UcxTransport::Create(connection_, ucx_options);
  absl::Status status = ucx.status();
  if (status.ok()) status = (*ucx)->Connect();
  // UNAVAILABLE: no daemon yet; the plane connects at the first fetch (gRPC meanwhile).
  if (status.ok() || (absl::IsUnavailable(status) && ucx.ok())) {
    data_plane_ = *std::move(ucx);
    sequence_options_.data_plane = data_plane_.get();
    return absl::OkStatus();
  }
  data_plane_status_ = status;
  return required ? status : absl::OkStatus();
#else
  data_plane_status_ = absl::FailedPreconditionError("libclusterkv was built without UCX");
  return required ? data_plane_status_ : absl::OkStatus();
#endif
}

absl::StatusOr<std::unique_ptr<Client>> Client::CreateWithTransport(
    std::unique_ptr<KvTransport> transport, ClientOptions options) {
  if (transport == nullptr) return absl::InvalidArgumentError("null transport");
  ASSIGN_OR_RETURN(SequenceOptions sequence_options, MakeSequenceOptions(options));
  return std::unique_ptr<Client>(
      new Client(std::move(transport), nullptr, std::move(sequence_options)));
}

absl::StatusOr<std::unique_ptr<Sequence>> Client::OpenSequence(absl::string_view sequence_id,
                                                               const KvLayout& layout) {
  return Sequence::Open(transport_.get(), std::string(sequence_id), layout, sequence_options_);
}

absl::StatusOr<std::unique_ptr<Sequence>> Client::ReopenSequence(absl::string_view sequence_id) {
  return Sequence::Reopen(transport_.get(), std::string(sequence_id), sequence_options_);
}

}  // namespace clusterkv::client
