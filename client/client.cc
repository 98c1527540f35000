#include "client/client.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/internal/client_internals.h"
#include "client/internal/session_state.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#if defined(CLUSTERKV_WITH_UCX)
#include "client/ucx_transport.h"
#endif

namespace clusterkv::client {

struct Client::State {
  State(std::unique_ptr<KvTransport> transport_in, Connection* connection_in,
        SequenceOptions sequence_options_in)
      : transport(std::move(transport_in)),
        connection(connection_in),
        sequence_options(std::move(sequence_options_in)) {}

  std::unique_ptr<KvTransport> transport;
  Connection* connection;  // = transport when it is a Connection
  // Uses connection, so it is declared (and destroyed) after it.
  std::unique_ptr<DataPlane> data_plane;
  absl::Status data_plane_status;
  SequenceOptions sequence_options;
};

namespace {

absl::StatusOr<SequenceOptions> MakeSequenceOptions(const ClientOptions& options) {
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

// A UCX data plane, or null and why there is none.
struct DataPlaneChoice {
  std::unique_ptr<DataPlane> plane;
  absl::Status why_not;
};

DataPlaneChoice TryDataPlane(const ClientOptions& options, Connection* connection) {
  DataPlaneChoice choice;
#if defined(CLUSTERKV_WITH_UCX)
  if (options.device_memory == "cuda") {
    choice.why_not = absl::FailedPreconditionError(
        "the UCX data plane writes host memory; device_memory \"cuda\" uses gRPC");
    return choice;
  }
  UcxTransportOptions ucx_options;
  ucx_options.transports = options.ucx_transports;
  ucx_options.region_bytes = options.ucx_region_bytes;
  ucx_options.fetch_timeout = options.ucx_fetch_timeout;
  ucx_options.fetch_spin = options.ucx_fetch_spin;
  absl::StatusOr<std::unique_ptr<UcxTransport>> ucx =
      UcxTransport::Create(connection, ucx_options);
  absl::Status status = ucx.status();
  if (status.ok()) status = (*ucx)->Connect();
  // UNAVAILABLE: no daemon yet; the plane connects at the first fetch (gRPC meanwhile).
  if (status.ok() || (absl::IsUnavailable(status) && ucx.ok())) {
    choice.plane = *std::move(ucx);
  } else {
    choice.why_not = status;
  }
#else
  (void)connection;
  choice.why_not = absl::FailedPreconditionError("libclusterkv was built without UCX");
#endif
  return choice;
}

// As ClientOptions::data_plane asks: "grpc" none; "auto" the plane or why not; "ucx" the plane
// or the reason as the error.
absl::StatusOr<DataPlaneChoice> OpenDataPlane(const ClientOptions& options,
                                              Connection* connection) {
  if (options.data_plane == "grpc") return DataPlaneChoice();
  DataPlaneChoice choice = TryDataPlane(options, connection);
  if (options.data_plane == "ucx" && !choice.why_not.ok()) return choice.why_not;
  return choice;
}

}  // namespace

Client::Client(std::unique_ptr<State> state) : state_(std::move(state)) {}

Client::~Client() = default;

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
  auto state = std::make_unique<State>(std::move(connection), raw, std::move(sequence_options));
  ASSIGN_OR_RETURN(DataPlaneChoice choice, OpenDataPlane(options, raw));
  state->data_plane = std::move(choice.plane);
  state->data_plane_status = std::move(choice.why_not);
  state->sequence_options.data_plane = state->data_plane.get();
  return std::unique_ptr<Client>(new Client(std::move(state)));
}

absl::StatusOr<std::unique_ptr<Sequence>> Client::OpenSequence(absl::string_view sequence_id,
                                                               const KvLayout& layout) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceCore> core,
                   SequenceCore::Open(state_->transport.get(), std::string(sequence_id), layout,
                                      state_->sequence_options));
  return ClientInternals::Wrap(std::move(core));
}

absl::StatusOr<std::unique_ptr<Sequence>> Client::ReopenSequence(absl::string_view sequence_id) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceCore> core,
                   SequenceCore::Reopen(state_->transport.get(), std::string(sequence_id),
                                        state_->sequence_options));
  return ClientInternals::Wrap(std::move(core));
}

absl::StatusOr<std::unique_ptr<Sequence>> Client::ResumeSequence(absl::string_view sequence_id) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceCore> core,
                   SequenceCore::Resume(state_->transport.get(), std::string(sequence_id),
                                        state_->sequence_options));
  return ClientInternals::Wrap(std::move(core));
}

absl::StatusOr<std::optional<Client::StoredPrefix>> Client::FindPrefix(
    absl::Span<const int32_t> tokens, absl::string_view model, const KvLayout& layout) {
  RETURN_IF_ERROR(layout.Validate());
  const ClusterKvConfig& config = state_->sequence_options.config;
  std::vector<int64_t> ends =
      internal::SegmentEnds(static_cast<int64_t>(tokens.size()), config.prefill_segment_tokens);
  // The daemon bounds a lookup; a longer prompt asks for its first segments.
  if (ends.size() > 4096) ends.resize(4096);
  v1::FindPrefixRequest request;
  for (std::string& hash : internal::PrefixHashes(tokens, ends, model, layout, config)) {
    request.add_hashes(std::move(hash));
  }
  ASSIGN_OR_RETURN(v1::FindPrefixResponse response, state_->transport->FindPrefix(request));
  if (response.document().empty()) return std::nullopt;
  return StoredPrefix{response.document(), response.segments(), response.tokens(), layout,
                      response.owner()};
}

absl::StatusOr<std::unique_ptr<Sequence>> Client::OpenSequenceFrom(absl::string_view sequence_id,
                                                                   const StoredPrefix& prefix) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequenceCore> core,
                   SequenceCore::OpenFork(state_->transport.get(), std::string(sequence_id),
                                          prefix.layout, prefix.document, prefix.owner,
                                          prefix.segments,
                                          state_->sequence_options));
  return ClientInternals::Wrap(std::move(core));
}

const char* Client::data_plane_name() const {
  return state_->data_plane != nullptr ? "ucx" : "grpc";
}

const absl::Status& Client::data_plane_status() const { return state_->data_plane_status; }

absl::StatusOr<std::unique_ptr<Client>> ClientInternals::CreateWithTransport(
    std::unique_ptr<KvTransport> transport, ClientOptions options) {
  if (transport == nullptr) return absl::InvalidArgumentError("null transport");
  ASSIGN_OR_RETURN(SequenceOptions sequence_options, MakeSequenceOptions(options));
  return std::unique_ptr<Client>(new Client(std::make_unique<Client::State>(
      std::move(transport), nullptr, std::move(sequence_options))));
}

KvTransport& ClientInternals::transport(Client& client) { return *client.state_->transport; }

Connection* ClientInternals::connection(Client& client) { return client.state_->connection; }

DataPlane* ClientInternals::data_plane(Client& client) { return client.state_->data_plane.get(); }

const SequenceOptions& ClientInternals::sequence_options(const Client& client) {
  return client.state_->sequence_options;
}

std::unique_ptr<Sequence> ClientInternals::Wrap(std::unique_ptr<SequenceCore> core) {
  return std::unique_ptr<Sequence>(new Sequence(std::move(core)));
}

}  // namespace clusterkv::client
