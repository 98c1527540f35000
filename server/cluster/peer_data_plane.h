// PeerDataPlane: pulls whole cluster blocks from a peer daemon over that daemon's UCX data plane
// (UCX over tcp where available, gRPC streaming otherwise; decision D53). For the
// pull this daemon is a UCX client of its peer: per (peer node, tenant) one client::Connection
// (the cluster peer token as bearer, the end tenant in metadata, TLS as for the gRPC peer
// calls) opens a data-plane session bound to that tenant, and one client::UcxTransport's
// registered region receives the blocks (UcxTransport::FetchBlocksInto: positions, keys and
// values as stored), which the caller then stores. Over TCP the peer puts into the region with
// ucp_put_nbx; on one host UCX may pick shared memory.
//
// Pulls through one (node, tenant) transport take turns (its region is reused). At most
// `max_sessions` sessions stay open (each holds a UCX context, a progress thread and its
// region): opening one more closes the least recently used, once no pull is using it. A peer
// that cannot open a session (no UCX there, no common transport) is left to gRPC for
// `retry_after` before it is tried again. Thread-safe.
//
// Example:
//   ASSIGN_OR_RETURN(std::vector<ClusterId> left,
//                    plane->Pull("node-1", "10.0.0.1:7443", "tenant-a", "seq-7", clusters,
//                                [&](const ClusterId& id, int32_t tokens,
//                                    absl::Span<const uint8_t> block) { ... }));
//   // `left`: the clusters to fetch over gRPC (not served over UCX).
#ifndef CLUSTERKV_SERVER_CLUSTER_PEER_DATA_PLANE_H_
#define CLUSTERKV_SERVER_CLUSTER_PEER_DATA_PLANE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/clock.h"
#include "absl/types/span.h"
#include "core/ids.h"

namespace clusterkv::server::cluster {

struct PeerDataPlaneOptions {
  std::string bearer_token;        // the cluster peer token (raw, without "Bearer ")
  std::string tls_root_cert_file;  // empty: plaintext gRPC to peers (loopback tests)
  std::string tls_target_name;     // checked instead of the peer address's host
  // UCX transports of the pulling side (UCX_TLS syntax); empty: UCX's default (or $UCX_TLS).
  std::string transports;
  size_t region_bytes = size_t{64} << 20;  // registered receive region per (node, tenant)
  uint32_t slot_bytes = 1u << 20;          // largest block pulled over UCX (others: gRPC)
  absl::Duration timeout = absl::Seconds(30);
  // How long the pulling thread progresses UCX itself before it sleeps (UcxTransportOptions::
  // fetch_spin). Over tcp the peer's puts arrive as messages this side must progress, and a
  // sleeping waiter then pays a wakeup per burst: spinning for the transfer is ~4x faster.
  absl::Duration spin = absl::Milliseconds(20);
  absl::Duration retry_after = absl::Seconds(30);  // after a peer could not open a session
  std::shared_ptr<const Clock> clock;              // time of retry_after; null: the system's
  size_t max_sessions = 8;                         // (node, tenant) sessions kept open
};

class PeerDataPlane {
 public:
  // Each delivered block: its id, token count and whole stored bytes (valid during the call).
  using BlockSink = std::function<absl::Status(const ClusterId& id, int32_t tokens,
                                               absl::Span<const uint8_t> block)>;

  // Unimplemented when this build has no UCX; InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<PeerDataPlane>> Create(const PeerDataPlaneOptions& options);
  virtual ~PeerDataPlane() = default;

  // Pulls `clusters` of `tenant`'s `sequence` from node `node` at gRPC address `address` into
  // `sink`, in batches that fit the region. Returns the clusters it did not deliver (the peer
  // answered that block with an error, or the block exceeds slot_bytes): the caller fetches
  // them over gRPC, which reports their errors. A whole-pull failure (no session, the
  // request failed or timed out) is returned as is, nothing of the failed batch delivered; a
  // sink error stops the pull and is returned.
  virtual absl::StatusOr<std::vector<ClusterId>> Pull(const std::string& node,
                                                      const std::string& address,
                                                      const std::string& tenant,
                                                      const std::string& sequence,
                                                      absl::Span<const ClusterId> clusters,
                                                      const BlockSink& sink) = 0;

  // Sessions open now (<= max_sessions, plus any a pull still holds after it was replaced).
  virtual size_t num_sessions() const = 0;
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_PEER_DATA_PLANE_H_
