// ClusterNode: one clusterkvd's part in a cluster, owned by the Daemon when
// --cluster_etcd is set. It bundles the etcd client, this node's membership, the sequence
// directory, the peer clients and the bookkeeping of read-only copies, and answers the routing
// questions of the cluster request handler (cluster_handler.h): who owns a sequence, which
// nodes are live, where a new sequence goes.
//
// Join() registers the node, reconciles the local store with the directory and starts the
// keep-alive. Reconciliation: read-only copies (tenant ":cluster-cache") are dropped; a local
// sequence the directory gives to this node (owner or replica) is kept; one it gives to other
// nodes only is dropped (stale: a replica took it over while this node was away); one it does
// not list is claimed on the node's first join of the cluster (adopting a single-node store)
// and dropped afterwards (it was dropped cluster-wide while this node was away).
//
// Fail-over: after every keep-alive round that shows a node gone (its lease expired), each
// replica of that node's sequences tries to take them over (Directory::TakeOver: one wins).
// With --replication above 1, an owner whose sequence has fewer holders than that (after a
// take-over) copies it to the least-loaded live node that does not hold it, on a background
// thread, and adds that node to the entry (Directory::AddReplica); writes through this node
// pause for the final catch-up so none is missed (decision D56).
// Every fifth round also drops read-only copies whose sequence the directory no longer lists
// at the same incarnation.
//
// Thread-safe.
#ifndef CLUSTERKV_SERVER_CLUSTER_CLUSTER_NODE_H_
#define CLUSTERKV_SERVER_CLUSTER_CLUSTER_NODE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/ids.h"
#include "server/clock.h"
#include "server/logger.h"
#include "server/cluster/cluster_keys.h"
#include "server/cluster/directory.h"
#include "server/cluster/etcd_client.h"
#include "server/cluster/membership.h"
#include "server/cluster/peer_auth.h"
#include "server/cluster/peer_client.h"
#include "server/cluster/peer_data_plane.h"
#include "server/cluster/placement.h"
#include "server/cluster/remote_cache.h"
#include "server/cluster/sequence_write_locks.h"

namespace clusterkv::storage {
class TieredStore;
}  // namespace clusterkv::storage

namespace clusterkv::server::metrics {
class DaemonMetrics;
}  // namespace clusterkv::server::metrics

namespace clusterkv::server::cluster {

struct ClusterOptions {
  // http://host:port of etcd's client URL. Empty: single-node mode (no cluster).
  std::string etcd_endpoint;
  std::string cluster_name = "clusterkv";
  std::string node_id;
  // host:port other daemons call this one on; empty: the TCP listener's host and bound port.
  std::string advertise_grpc;
  absl::Duration lease_ttl = absl::Seconds(10);
  // Copies of each new sequence (1: owner only; 2: owner + one replica written synchronously).
  int replication = 1;
  // The shared peer token (peer_auth.h); required.
  std::string token_file;
  // PEM roots of peers' certificates; empty: the daemon's own --tls_cert (a cluster sharing one
  // self-signed certificate). Ignored when the daemon serves plaintext TCP.
  std::string tls_root_cert_file;
  std::string tls_target_name;  // checked instead of the peer address's host ("" = the host)
  absl::Duration peer_timeout = absl::Seconds(30);
  // Pull remote blocks over the owner's UCX data plane (peer_data_plane.h); gRPC streaming
  // for what UCX does not deliver, and for everything when this is off or UCX is missing.
  bool peer_ucx = true;
  std::string peer_ucx_transports;  // UCX_TLS syntax; empty: UCX's default (or $UCX_TLS)
  size_t peer_ucx_region_bytes = size_t{64} << 20;
  size_t peer_ucx_sessions = 8;  // (peer node, tenant) UCX sessions kept open
  absl::Duration etcd_timeout = absl::Seconds(5);
  // How long Join waits for a previous instance's registration to expire.
  absl::Duration register_timeout = absl::Seconds(30);

  bool enabled() const { return !etcd_endpoint.empty(); }
};

class ClusterNode {
 public:
  struct Deps {
    storage::TieredStore* store = nullptr;       // not owned; required
    metrics::DaemonMetrics* metrics = nullptr;   // not owned; optional
    std::shared_ptr<const Clock> clock;          // null: the system clock
    std::shared_ptr<Logger> logger;              // null: the default (rate-limited stderr)
    std::unique_ptr<EtcdTransport> etcd_transport;  // null: HTTP to options.etcd_endpoint
    // Plaintext between daemons (the daemon serves --allow_insecure_tcp without TLS).
    bool plaintext_peers = false;
    std::string default_tls_root_file;  // the daemon's --tls_cert
    int max_message_bytes = 64 << 20;
  };

  // Validates the options and reads the token and roots; no network yet. InvalidArgument for
  // bad options or unreadable files.
  static absl::StatusOr<std::unique_ptr<ClusterNode>> Create(const ClusterOptions& options,
                                                             Deps deps);
  ~ClusterNode();

  // Registers as `advertise_grpc` (host:port) with its UCX worker address (empty: no UCX data
  // plane), reconciles the local store, starts the keep-alive. Errors of etcd; AlreadyExists
  // when another live daemon has this node id.
  absl::Status Join(const std::string& advertise_grpc, const std::string& ucx_address,
                    double high_watermark);
  // Leaves the cluster (revokes the lease). Idempotent.
  absl::Status Leave();

  const std::string& node_id() const { return options_.node_id; }
  int replication() const { return options_.replication; }
  const PeerToken& token() const { return *token_; }
  Directory& directory() { return *directory_; }
  RemoteCache& remote_cache() { return remote_cache_; }
  // Null when pulls go over gRPC only (--cluster_peer_ucx=false, or no UCX in this build).
  PeerDataPlane* peer_data_plane() { return peer_data_.get(); }
  metrics::DaemonMetrics* metrics() { return deps_.metrics; }

  // The entry of `key`: from memory for sequences this node owns, else from etcd. nullopt:
  // no node has it.
  absl::StatusOr<std::optional<DirectoryEntry>> Lookup(const SequenceKey& key);
  void NoteOwned(const SequenceKey& key, const DirectoryEntry& entry);
  void ForgetOwned(const SequenceKey& key);

  // Placement of a new sequence over the live nodes' current loads (one etcd read).
  absl::StatusOr<Placement> Place();
  // Whether `node` was registered at the last keep-alive round (or is this node).
  bool IsLive(const std::string& node) const;
  // False when `node` registered without a UCX data plane at the last round (pulls from it go
  // straight to gRPC); true otherwise, including for a node not seen yet.
  bool MayServeUcx(const std::string& node) const;
  // The client of live node `node`. Unavailable naming it when it is not registered.
  // `refresh`: read the node's address from etcd first, even if the last keep-alive round
  // listed it (after a call failed: it may have restarted on another port).
  absl::StatusOr<PeerClient*> Peer(const std::string& node, bool refresh = false);

  // One fail-over pass (normally run after each keep-alive round): takes over the sequences
  // this node replicates whose owner is not live, and queues this node's sequences that have
  // fewer holders than --replication for re-replication. Returns how many it took over.
  absl::StatusOr<int> TakeOverOrphans();
  // Copies `key` (owned here) to a live node that does not hold it and adds that node as a
  // replica. OK when nothing is to do or no live node can take it yet; Aborted when the entry
  // changed meanwhile (the copy there is dropped). Run by the background replicator.
  absl::Status Replicate(const SequenceKey& key);
  // The node's logger (the daemon's).
  Logger& logger() const { return *deps_.logger; }
  // Writers through this node (puts and appends of the cluster request handler) hold their
  // sequence's lock shared from routing to the last holder's answer; Replicate holds it
  // exclusively while it commits a new replica, so a write either reaches the new replica or is
  // caught up by it. Per sequence: a re-replication stalls only that sequence's writes.
  SequenceWriteLocks& write_locks() { return write_locks_; }
  // Drops the read-only copies of sequences that were dropped, or dropped and created again,
  // through other nodes (run every few keep-alive rounds). Returns how many it dropped.
  absl::StatusOr<int> SweepCopies();

 private:
  ClusterNode(const ClusterOptions& options, Deps deps);
  absl::Status Reconcile();
  // One message of `site` built from `parts` (absl::StrCat arguments, statuses included).
  template <typename... Parts>
  void Log(LogSeverity severity, absl::string_view site, const Parts&... parts) const {
    deps_.logger->Log(severity, site, absl::StrCat(Text(parts)...));
  }
  static std::string Text(const absl::Status& s) { return s.ToString(); }
  template <typename T>
  static const T& Text(const T& t) { return t; }
  void OnRefresh(const std::vector<NodeInfo>& nodes);
  // A second catch-up one peer timeout after a commit: writes through other nodes that
  // routed before it (to the old holders) have landed on this owner by then.
  struct LateCatchUp {
    absl::Time due;
    SequenceKey key;
    std::string replica;
    absl::flat_hash_set<ClusterId> had;  // blocks the replica had at the commit
  };
  void ReplicatorLoop();
  void LateCatchUpOnce(const LateCatchUp& late);
  void QueueReplication(const SequenceKey& key);
  // Pushes `key`'s sequence record, indexes and the blocks not in `skip` to `peer`
  // (write-through); returns the blocks it pushed.
  absl::StatusOr<std::vector<ClusterId>> PushSequence(PeerClient& peer, const SequenceKey& key,
                                                      const absl::flat_hash_set<ClusterId>& skip);
  // Replaces the live-node tables with a membership round's nodes.
  void NoteNodes(const std::vector<NodeInfo>& nodes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClusterOptions options_;
  Deps deps_;
  ClusterKeys keys_;
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<Directory> directory_;
  std::optional<PeerToken> token_;
  std::unique_ptr<PeerPool> peers_;
  std::unique_ptr<PeerDataPlane> peer_data_;
  std::unique_ptr<Membership> membership_;
  RemoteCache remote_cache_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<SequenceKey, DirectoryEntry> owned_ ABSL_GUARDED_BY(mu_);
  // Live nodes (id -> gRPC address) of the last round.
  absl::flat_hash_map<std::string, std::string> live_ ABSL_GUARDED_BY(mu_);
  // Live nodes of the last round that registered without UCX.
  absl::flat_hash_set<std::string> without_ucx_ ABSL_GUARDED_BY(mu_);
  uint64_t lease_losses_seen_ ABSL_GUARDED_BY(mu_) = 0;

  SequenceWriteLocks write_locks_;
  // Re-replication queue (sequences owned here with too few holders) and its thread.
  absl::Mutex replicate_mu_;
  std::deque<SequenceKey> replicate_queue_ ABSL_GUARDED_BY(replicate_mu_);
  absl::flat_hash_set<SequenceKey> replicate_queued_ ABSL_GUARDED_BY(replicate_mu_);
  bool replicate_stop_ ABSL_GUARDED_BY(replicate_mu_) = false;
  std::deque<LateCatchUp> late_catch_ups_ ABSL_GUARDED_BY(replicate_mu_);
  std::thread replicator_;
  int rounds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_CLUSTER_NODE_H_
