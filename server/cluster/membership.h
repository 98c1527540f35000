// Membership: this node's registration in the cluster. Join() grants a lease with
// the configured TTL and creates /clusterkv/<cluster>/nodes/<node_id> under it (a transaction:
// only if no live node holds that id). A keep-alive thread then renews the lease every TTL/3
// and rewrites the record with the node's current load; a node that dies stops renewing and
// its record disappears when the lease expires. If the lease is lost anyway (etcd unreachable
// for longer than the TTL), the next round registers again under a new lease.
//
// Every round also reads the live nodes and hands them to `on_refresh` (cluster_node.h uses it
// to notice departed owners). Tick() runs one round synchronously: tests drive it with a fake
// clock instead of starting the thread.
//
// Thread-safe. Leave() (also run by the destructor) stops the thread and revokes the lease, so
// a clean shutdown removes the node at once.
#ifndef CLUSTERKV_SERVER_CLUSTER_MEMBERSHIP_H_
#define CLUSTERKV_SERVER_CLUSTER_MEMBERSHIP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"
#include "server/logger.h"
#include "server/cluster/cluster_keys.h"
#include "server/cluster/etcd_client.h"
#include "server/cluster/node_info.h"

namespace clusterkv::server::cluster {

struct MembershipOptions {
  NodeInfo self;  // node_id and addresses; `load` is replaced by load() at every round
  absl::Duration lease_ttl = absl::Seconds(10);
  // The node's current load; null: the load in `self` stays as it is.
  std::function<NodeLoad()> load;
  // After every round that read the live nodes (on the keep-alive thread, or Tick's caller).
  std::function<void(const std::vector<NodeInfo>&)> on_refresh;
  // How long Join() keeps trying (every 250 ms) while another holder of the node id is still
  // registered (e.g. this node's previous instance, killed, whose lease has not expired yet).
  absl::Duration register_timeout = absl::Seconds(30);
  std::shared_ptr<const Clock> clock;  // null: the system clock
  std::shared_ptr<Logger> logger;      // null: the default (rate-limited stderr)
};

class Membership {
 public:
  // Registers. InvalidArgument for a bad node id or a TTL below 2 s; AlreadyExists when
  // another live node keeps the id past register_timeout; errors of etcd.
  static absl::StatusOr<std::unique_ptr<Membership>> Join(EtcdClient* etcd,
                                                          const ClusterKeys* keys,
                                                          MembershipOptions options);
  ~Membership();
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Starts the keep-alive thread (a round every lease_ttl / 3). Idempotent.
  void StartKeepAlive();
  // One round: renew the lease (register again if it was lost), publish the load, read the
  // live nodes. Returns the first error (the next round tries again).
  absl::Status Tick();
  // Stops the thread and revokes the lease. Idempotent.
  absl::Status Leave();

  // The live nodes as etcd has them now (one range read). Records that do not parse are
  // skipped.
  absl::StatusOr<std::vector<NodeInfo>> LiveNodes();
  // The live nodes of the last successful round.
  std::vector<NodeInfo> last_nodes() const;

  const std::string& node_id() const { return options_.self.node_id; }
  EtcdLeaseId lease() const;
  // True while the last renewal is younger than the TTL by the injected clock: the node may
  // act as registered (claim sequences). False once etcd has been unreachable for a TTL, when
  // other nodes may already consider this one gone.
  bool lease_current() const;
  // Times the lease was found expired and the node registered again.
  uint64_t lease_losses() const;

 private:
  Membership(EtcdClient* etcd, const ClusterKeys* keys, MembershipOptions options);
  // Grants a lease and claims the node key; AlreadyExists while another lease holds it.
  absl::Status RegisterOnce();
  absl::Status Publish(EtcdLeaseId lease);
  void KeepAliveLoop();

  EtcdClient* const etcd_;        // not owned
  const ClusterKeys* const keys_;  // not owned
  MembershipOptions options_;

  mutable absl::Mutex mu_;
  EtcdLeaseId lease_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time renewed_at_ ABSL_GUARDED_BY(mu_);
  uint64_t lease_losses_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<NodeInfo> last_nodes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool left_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  absl::Mutex tick_mu_;  // one round at a time (the thread and Tick's callers)
};

}  // namespace clusterkv::server::cluster

#endif  // CLUSTERKV_SERVER_CLUSTER_MEMBERSHIP_H_
