// ClusterRequestHandler: the request logic of a clusterkvd in cluster mode. It is a
// RequestHandler whose per-sequence calls first ask the directory (through ClusterNode) where
// the sequence lives, and only then run the single-node logic on the node that holds it:
//
//   - OpenSequence of a new sequence: placement picks the owner (this node unless it is above
//     its high watermark) and, with replication 2, a replica; the entry is claimed with a
//     transaction, then the sequence is created on every holder. Opening an existing sequence
//     of another node is answered by its owner.
//   - PutClusters / AppendClusters: written to every holder (owner first, then replicas; this
//     node's own copy locally, the others through peer calls), and acknowledged only when all
//     have stored it, so a write-through put is durable on both copies before the ack.
//   - FetchClusters (gRPC and UCX alike, through PrepareFetch): a sequence this node holds is
//     served locally. Another node's sequence is served from a local read-only copy
//     (remote_cache.h); missing blocks are first fetched from the owner, or from a live
//     replica when the owner is down. With neither reachable: UNAVAILABLE naming the owner.
//   - GetIndex / Select: answered locally when this node holds a copy, else by a holder.
//   - CloseSequence(drop): the directory entry is removed first, then every copy.
//   - ListSequences: the tenant's sequences across the cluster (from the directory).
// Calls from other daemons (CallContext::cluster_peer) are served from the local store as a
// single-node daemon would.
//
// Tenancy is kept across nodes: the directory key, the peer call's tenant and the local store
// key all carry the caller's tenant, so another tenant's sequence is NOT_FOUND here as well.
//
// Thread-safe.
#ifndef CLUSTERKV_SERVER_CLUSTER_CLUSTER_HANDLER_H_
#define CLUSTERKV_SERVER_CLUSTER_CLUSTER_HANDLER_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/cluster/cluster_node.h"
#include "server/request_handler.h"

namespace clusterkv::server::cluster {

class ClusterRequestHandler final : public RequestHandler {
 public:
  // Neither `store` nor `node` is owned; both must outlive the handler.
  ClusterRequestHandler(storage::TieredStore* store, const HandlerOptions& options,
                        ClusterNode* node);

  absl::StatusOr<v1::OpenSequenceResponse> OpenSequence(
      const CallContext& call, const v1::OpenSequenceRequest& request) override;
  absl::StatusOr<v1::CloseSequenceResponse> CloseSequence(
      const CallContext& call, const v1::CloseSequenceRequest& request) override;
  absl::StatusOr<v1::ListSequencesResponse> ListSequences(
      const CallContext& call, const v1::ListSequencesRequest& request) override;
  absl::Status PutClusters(const CallContext& call, const v1::PutClustersRequest& request,
                           v1::PutClustersResponse* response) override;
  absl::StatusOr<v1::AppendClustersResponse> AppendClusters(
      const CallContext& call, const v1::AppendClustersRequest& request) override;
  absl::StatusOr<v1::GetIndexResponse> GetIndex(const CallContext& call,
                                                const v1::GetIndexRequest& request) override;
  absl::StatusOr<FetchPlan> PrepareFetch(const CallContext& call,
                                         const v1::FetchClustersRequest& request) override;
  absl::StatusOr<v1::SelectResponse> Select(const CallContext& call,
                                            const v1::SelectRequest& request) override;

 protected:
  // Only another node's pulls are served from the local store as they are; a client's fetch
  // is routed (PrepareFetch), which may call peers.
  bool ServesLocally(const CallContext& call) const override { return call.cluster_peer; }

 private:
  // The directory entry of the caller's sequence; NOT_FOUND (as a single node says it) when no
  // node has it.
  absl::StatusOr<DirectoryEntry> Route(const SequenceKey& key);
  // Runs `read` on a node holding a full copy: the owner when live, else a live replica (also
  // when the owner fails with UNAVAILABLE). UNAVAILABLE naming the owner when none answers.
  absl::Status ReadFromHolder(const SequenceKey& key, const DirectoryEntry& entry,
                              const std::function<absl::Status(PeerClient& peer)>& read);
  // Runs `write` on every holder, owner first: `local` for this node's copy, `remote` for the
  // others. Stops at the first error (a holder that is down is UNAVAILABLE naming it).
  absl::Status WriteToHolders(const SequenceKey& key, const DirectoryEntry& entry,
                              const std::function<absl::Status(bool owner)>& local,
                              const std::function<absl::Status(PeerClient& peer, bool owner)>& remote);
  absl::StatusOr<v1::OpenSequenceResponse> Create(const CallContext& call, const SequenceKey& key,
                                                  const v1::OpenSequenceRequest& request);
  // Makes the local read-only copy of `key` hold `refs` (fetching what it lacks from a
  // holder); returns the copy's local key.
  absl::StatusOr<SequenceKey> FillCopy(const SequenceKey& key, const DirectoryEntry& entry,
                                       const v1::FetchClustersRequest& request);
  void DropCopy(const SequenceKey& key);

  storage::TieredStore* const store_;  // not owned
  ClusterNode* const node_;            // not owned
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_CLUSTER_HANDLER_H_
