// Client: the entry point of libclusterkv. It owns the connection to the local clusterkvd, the
// UCX data plane when there is one, the algorithm configuration and the compute context, and
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
//
// This header is part of the installed API: it includes only the standard library, Abseil and
// the project's value types; the transport, the gRPC connection and the data plane stay inside
// the library (client/internal/client_internals.h reaches them for in-tree tools and tests).
#ifndef CLUSTERKV_CLIENT_CLIENT_H_
#define CLUSTERKV_CLIENT_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "absl/status/status.h"
#include "client/clock.h"
#include "client/retry.h"
#include "client/sequence.h"
#include "core/config.h"
#include "core/kv_layout.h"

namespace clusterkv::client {

struct ClientOptions {
  // Daemon address ("unix:/path" or "host:port") and the caller's tenant.
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

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Opens `sequence_id` with `layout`, creating it when missing; when it existed, its centroid
  // indexes are restored from the daemon. InvalidArgument: bad id or layout;
  // FailedPrecondition: the sequence exists with another layout; DataLoss: a malformed index;
  // otherwise the daemon's status.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Sequence>> OpenSequence(
      absl::string_view sequence_id, const KvLayout& layout);
  // Opens an existing sequence with the daemon's layout. NotFound when missing.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Sequence>> ReopenSequence(
      absl::string_view sequence_id);

  // ---- Resumable sessions and shared documents (see client/sequence.h) ----
  // Rebuilds a checkpointed sequence (Sequence::Checkpoint) from the daemon alone: indexes,
  // sinks, dense layers, recent window and position, as they were at the last checkpoint, so
  // that decoding continues exactly as it would have without the interruption. A fork that
  // was never checkpointed resumes at its base. NotFound: no such sequence;
  // FailedPrecondition: never checkpointed; DataLoss: the stored state is inconsistent.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Sequence>> ResumeSequence(
      absl::string_view sequence_id);
  // A stored prefix: a document of this tenant holding the first `tokens` tokens (its first
  // `segments` clustering segments).
  struct StoredPrefix {
    std::string document;
    int32_t segments = 0;
    int64_t tokens = 0;
    KvLayout layout;
    std::string owner;  // the document's tenant when another tenant granted it (else empty)
  };
  // The longest stored prefix of `tokens` for `model` and `layout` (under this client's
  // clustering configuration) among this tenant's documents; nullopt when none.
  [[nodiscard]] absl::StatusOr<std::optional<StoredPrefix>> FindPrefix(
      absl::Span<const int32_t> tokens, absl::string_view model, const KvLayout& layout);
  // Creates `sequence_id` as a fork of `prefix`: it holds the prefix's tokens, shared with the
  // document (no copy, no prefill); OffloadPrefill then adds the rest of the prompt.
  // FailedPrecondition: the document is gone or not sealed; AlreadyExists: the id is taken.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Sequence>> OpenSequenceFrom(
      absl::string_view sequence_id, const StoredPrefix& prefix);

  // The fetch path in use: "ucx" (the daemon writes recalled clusters into this process's
  // registered memory) or "grpc" (streamed, then copied).
  const char* data_plane_name() const;
  // Why "auto" settled on gRPC (OK when it did not).
  const absl::Status& data_plane_status() const;

 private:
  friend class ClientInternals;
  struct State;
  explicit Client(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_CLIENT_H_
