#include "client/client.h"

#include <utility>

#include "core/status_macros.h"
#include "gpu/backend.h"

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
  return std::unique_ptr<Client>(
      new Client(std::move(connection), raw, std::move(sequence_options)));
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
