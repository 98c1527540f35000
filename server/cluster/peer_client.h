// Daemon-to-daemon calls: the KvCache service of another clusterkvd, called with the
// cluster peer token and the end tenant's name (peer_auth.h) over the peer's TCP listener (TLS
// unless the cluster runs plaintext on loopback). A remote recall pulls blocks over the peer's
// UCX data plane when both daemons have one (peer_data_plane.h, decision D53) and streams the
// rest (or everything, without UCX) with FetchClusters.
//
// Errors are the peer's status, its message prefixed with the node it came from; a peer that
// cannot be reached is UNAVAILABLE.
//
// PeerPool keeps one channel (and stub) per peer address, created on first use. Thread-safe.
//
// Example:
//   ASSIGN_OR_RETURN(PeerClient* peer, pool.Get("node-1", "10.0.0.1:7443"));
//   RETURN_IF_ERROR(peer->FetchClusters("tenant-a", request, [&](v1::ClusterBlock& b) { ... }));
#ifndef CLUSTERKV_SERVER_CLUSTER_PEER_CLIENT_H_
#define CLUSTERKV_SERVER_CLUSTER_PEER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace clusterkv::server::cluster {

struct PeerOptions {
  std::string authorization;  // "Bearer <cluster token>"
  // PEM of the roots a peer's certificate must chain to; empty: plaintext (loopback tests).
  std::string tls_root_pem;
  // Name checked against peers' certificates instead of the address's host ("" = the host).
  std::string tls_target_name;
  absl::Duration timeout = absl::Seconds(30);  // deadline of each call
  std::shared_ptr<const Clock> clock;           // the deadlines' time source; null: the system's
  int max_message_bytes = 64 << 20;
};

class PeerClient {
 public:
  PeerClient(std::string node_id, std::string address, std::shared_ptr<grpc::Channel> channel,
             const PeerOptions* options);

  const std::string& node_id() const { return node_id_; }
  const std::string& address() const { return address_; }  // host:port of its gRPC listener

  absl::StatusOr<v1::OpenSequenceResponse> OpenSequence(const std::string& tenant,
                                                        const v1::OpenSequenceRequest& request);
  absl::Status CloseSequence(const std::string& tenant, const v1::CloseSequenceRequest& request);
  // One page of `tenant`'s sequences on the peer (see ListSequencesRequest).
  absl::StatusOr<v1::ListSequencesResponse> ListSequences(const std::string& tenant,
                                                          const v1::ListSequencesRequest& request);
  // One message as a whole PutClusters stream.
  absl::StatusOr<v1::PutClustersResponse> PutClusters(const std::string& tenant,
                                                      const v1::PutClustersRequest& request);
  absl::StatusOr<v1::AppendClustersResponse> AppendClusters(
      const std::string& tenant, const v1::AppendClustersRequest& request);
  absl::StatusOr<v1::GetIndexResponse> GetIndex(const std::string& tenant,
                                                const v1::GetIndexRequest& request);
  absl::StatusOr<v1::SelectResponse> Select(const std::string& tenant,
                                            const v1::SelectRequest& request);
  // Streams the blocks in request order into `on_block` (which may move from its argument); a
  // sink error cancels the call and is returned.
  absl::Status FetchClusters(const std::string& tenant, const v1::FetchClustersRequest& request,
                             const std::function<absl::Status(v1::ClusterBlock& block)>& on_block);

 private:
  void Prepare(grpc::ClientContext* context, const std::string& tenant) const;
  absl::Status Convert(const grpc::Status& status) const;

  const std::string node_id_;
  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvCache::Stub> stub_;
  const PeerOptions* options_;  // the pool's
};

class PeerPool {
 public:
  explicit PeerPool(PeerOptions options) : options_(std::move(options)) {}

  // The client of node `node_id` at `address` (a new channel when the address changed, e.g.
  // the node restarted on another port). Never fails: connecting is lazy.
  PeerClient* Get(const std::string& node_id, const std::string& address);

 private:
  const PeerOptions options_;
  absl::Mutex mu_;
  struct Entry {
    std::string address;
    std::unique_ptr<PeerClient> client;
  };
  // Clients are never destroyed while the pool lives (callers keep raw pointers); a node's
  // client for an old address stays in `retired_`.
  absl::flat_hash_map<std::string, Entry> clients_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<PeerClient>> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_PEER_CLIENT_H_
