#include "server/cluster/membership.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace clusterkv::server::cluster {

Membership::Membership(EtcdClient* etcd, const ClusterKeys* keys, MembershipOptions options)
    : etcd_(etcd), keys_(keys), options_(std::move(options)) {
  if (options_.clock == nullptr) options_.clock = std::make_shared<SystemClock>();
  if (options_.logger == nullptr) options_.logger = MakeDefaultLogger(options_.clock);
}

absl::StatusOr<std::unique_ptr<Membership>> Membership::Join(EtcdClient* etcd,
                                                             const ClusterKeys* keys,
                                                             MembershipOptions options) {
  RETURN_IF_ERROR(ValidateName("node id", options.self.node_id));
  if (options.lease_ttl < absl::Seconds(2)) {
    return absl::InvalidArgumentError("the lease TTL must be at least 2 s");
  }
  std::unique_ptr<Membership> m(new Membership(etcd, keys, std::move(options)));
  constexpr absl::Duration kRetry = absl::Milliseconds(250);
  const int64_t attempts = 1 + m->options_.register_timeout / kRetry;
  absl::Status registered;
  for (int64_t i = 0; i < attempts; ++i) {
    registered = m->RegisterOnce();
    if (!absl::IsAlreadyExists(registered)) break;
    absl::MutexLock lock(&m->mu_);  // a pause between tries; nothing signals it
    m->mu_.AwaitWithTimeout(absl::Condition(&m->stopping_), kRetry);
  }
  RETURN_IF_ERROR(registered);
  absl::StatusOr<std::vector<NodeInfo>> nodes = m->LiveNodes();
  if (nodes.ok()) {
    absl::MutexLock lock(&m->mu_);
    m->last_nodes_ = *nodes;
  }
  return m;
}

Membership::~Membership() {
  absl::Status s = Leave();
  (void)s;  // best effort: the lease expires by itself otherwise
}

absl::Status Membership::Publish(EtcdLeaseId lease) {
  NodeInfo info = options_.self;
  if (options_.load) info.load = options_.load();
  return etcd_->Put(keys_->Node(info.node_id), EncodeNodeInfo(info), lease).status();
}

absl::Status Membership::RegisterOnce() {
  ASSIGN_OR_RETURN(EtcdLease lease, etcd_->LeaseGrant(options_.lease_ttl));
  NodeInfo info = options_.self;
  if (options_.load) info.load = options_.load();
  const std::string key = keys_->Node(info.node_id);
  absl::StatusOr<bool> claimed = etcd_->PutIfAbsent(key, EncodeNodeInfo(info), lease.id);
  if (!claimed.ok() || !*claimed) {
    (void)etcd_->Revoke(lease.id);  // best effort; it expires anyway
    if (!claimed.ok()) return claimed.status();
    return absl::AlreadyExistsError(absl::StrCat(
        "node id '", info.node_id, "' is registered by a live node (a previous instance whose "
        "lease has not expired yet, or another daemon configured with the same --node_id)"));
  }
  absl::MutexLock lock(&mu_);
  lease_ = lease.id;
  renewed_at_ = options_.clock->Now();
  return absl::OkStatus();
}

absl::Status Membership::Tick() {
  absl::MutexLock round(&tick_mu_);
  EtcdLeaseId lease;
  {
    absl::MutexLock lock(&mu_);
    if (left_) return absl::FailedPreconditionError("the node has left the cluster");
    lease = lease_;
  }
  absl::Status renewed = etcd_->KeepAlive(lease).status();
  if (absl::IsNotFound(renewed)) {
    // The lease expired (etcd was unreachable for a TTL, or the process stalled): every other
    // node already considers this one gone. Register again under a new lease.
    {
      absl::MutexLock lock(&mu_);
      ++lease_losses_;
    }
    renewed = RegisterOnce();
  } else if (renewed.ok()) {
    {
      absl::MutexLock lock(&mu_);
      renewed_at_ = options_.clock->Now();
    }
    renewed = Publish(lease);
  }
  RETURN_IF_ERROR(renewed);
  ASSIGN_OR_RETURN(std::vector<NodeInfo> nodes, LiveNodes());
  {
    absl::MutexLock lock(&mu_);
    last_nodes_ = nodes;
  }
  if (options_.on_refresh) options_.on_refresh(nodes);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NodeInfo>> Membership::LiveNodes() {
  ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> kvs, etcd_->Range(keys_->NodesPrefix()));
  std::vector<NodeInfo> nodes;
  for (const EtcdKeyValue& kv : kvs) {
    absl::StatusOr<NodeInfo> info = DecodeNodeInfo(kv.value);
    absl::StatusOr<std::string> id = keys_->ParseNode(kv.key);
    if (!info.ok() || !id.ok() || info->node_id != *id) continue;  // not ours to judge
    nodes.push_back(*std::move(info));
  }
  return nodes;
}

void Membership::StartKeepAlive() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || left_) return;
  thread_ = std::thread(&Membership::KeepAliveLoop, this);
}

void Membership::KeepAliveLoop() {
  const absl::Duration interval = options_.lease_ttl / 3;
  bool last_round_ok = true;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // The period of the keep-alive; Leave() sets stopping_ and ends the wait at once.
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) return;
    }
    const absl::Status s = Tick();
    // The next round retries; lease_current() tells how stale the registration is. Logged on
    // a change only, so an etcd outage is one line, not one per round.
    if (s.ok() != last_round_ok) {
      if (s.ok()) {
        options_.logger->Log(LogSeverity::kInfo, "membership",
                             absl::StrCat("cluster membership of ", node_id(), " renewed again"));
      } else {
        options_.logger->Log(LogSeverity::kWarning, "membership",
                             absl::StrCat("cluster membership of ", node_id(),
                                          " could not be renewed: ", s.ToString()));
      }
      last_round_ok = s.ok();
    }
  }
}

absl::Status Membership::Leave() {
  EtcdLeaseId lease;
  {
    absl::MutexLock lock(&mu_);
    if (left_) return absl::OkStatus();
    left_ = true;
    stopping_ = true;
    lease = lease_;
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock round(&tick_mu_);  // no round in flight past this point
  const absl::Status revoked = etcd_->Revoke(lease);
  return absl::IsNotFound(revoked) ? absl::OkStatus() : revoked;
}

std::vector<NodeInfo> Membership::last_nodes() const {
  absl::MutexLock lock(&mu_);
  return last_nodes_;
}

EtcdLeaseId Membership::lease() const {
  absl::MutexLock lock(&mu_);
  return lease_;
}

bool Membership::lease_current() const {
  absl::MutexLock lock(&mu_);
  return !left_ && options_.clock->Now() - renewed_at_ < options_.lease_ttl;
}

uint64_t Membership::lease_losses() const {
  absl::MutexLock lock(&mu_);
  return lease_losses_;
}

}  // namespace clusterkv::server::cluster
