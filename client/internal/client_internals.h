// ClientInternals: what the installed Client and Sequence keep out of their headers, for the
// project's own tools and tests: the KvTransport a client talks through (clusterkv.v1
// messages), its gRPC Connection and data plane, the SequenceOptions it opens sequences with,
// and the SequenceCore behind a Sequence. Engines use client/client.h alone.
#ifndef CLUSTERKV_CLIENT_INTERNAL_CLIENT_INTERNALS_H_
#define CLUSTERKV_CLIENT_INTERNAL_CLIENT_INTERNALS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/connection.h"
#include "client/internal/sequence_core.h"
#include "client/sequence.h"
#include "client/transport.h"
#include "client/ucx_data_plane.h"

namespace clusterkv::client {

class ClientInternals {
 public:
  // A Client over any transport (an in-memory fake in tests); options.target and tenant are
  // unused and there is no data plane.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> CreateWithTransport(
      std::unique_ptr<KvTransport> transport, ClientOptions options);

  static KvTransport& transport(Client& client);
  // The gRPC connection, or null when the client was built over another transport.
  static Connection* connection(Client& client);
  // The UCX data plane in use, or null (gRPC streaming only).
  static DataPlane* data_plane(Client& client);
  static const SequenceOptions& sequence_options(const Client& client);

  static SequenceCore& core(Sequence& sequence) { return *sequence.core_; }
  static const SequenceCore& core(const Sequence& sequence) { return *sequence.core_; }
  // The public face of a core opened directly (SequenceCore::Open).
  static std::unique_ptr<Sequence> Wrap(std::unique_ptr<SequenceCore> core);
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_INTERNAL_CLIENT_INTERNALS_H_
