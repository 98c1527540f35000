#include "server/cluster/cluster_node.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/container/flat_hash_set.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"
#include "core/status_macros.h"
#include "server/metrics/daemon_metrics.h"
#include "storage/tiered_store.h"

namespace clusterkv::server::cluster {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (!in.good() && !in.eof()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  if (buf.str().empty()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  return buf.str();
}

}  // namespace

ClusterNode::ClusterNode(const ClusterOptions& options, Deps deps)
    : options_(options), deps_(std::move(deps)), keys_(options.cluster_name) {
  if (deps_.clock == nullptr) deps_.clock = std::make_shared<SystemClock>();
  if (deps_.logger == nullptr) deps_.logger = MakeDefaultLogger(deps_.clock);
}

ClusterNode::~ClusterNode() {
  absl::Status s = Leave();
  (void)s;  // best effort; the lease expires by itself
}

absl::StatusOr<std::unique_ptr<ClusterNode>> ClusterNode::Create(const ClusterOptions& options,
                                                                 Deps deps) {
  if (!options.enabled()) return absl::InvalidArgumentError("cluster mode needs an etcd endpoint");
  if (deps.store == nullptr) return absl::InvalidArgumentError("cluster mode needs the store");
  RETURN_IF_ERROR(ValidateName("--node_id", options.node_id));
  RETURN_IF_ERROR(ValidateName("--cluster_name", options.cluster_name));
  if (options.replication < 1 || options.replication > 3) {
    return absl::InvalidArgumentError("--replication must be 1, 2 or 3");
  }
  if (options.lease_ttl < absl::Seconds(2) || options.lease_ttl > absl::Hours(1)) {
    return absl::InvalidArgumentError("--lease_ttl_s must be in [2, 3600]");
  }
  if (options.token_file.empty()) {
    return absl::InvalidArgumentError("cluster mode needs --cluster_token_file (the peer token)");
  }
  std::unique_ptr<ClusterNode> node(new ClusterNode(options, std::move(deps)));
  ASSIGN_OR_RETURN(PeerToken token, PeerToken::FromFile(options.token_file));
  node->token_.emplace(std::move(token));
  PeerOptions peer;
  peer.authorization = node->token_->AuthorizationValue();
  peer.timeout = options.peer_timeout;
  peer.clock = node->deps_.clock;
  peer.max_message_bytes = node->deps_.max_message_bytes;
  peer.tls_target_name = options.tls_target_name;
  std::string roots;
  if (!node->deps_.plaintext_peers) {
    roots = !options.tls_root_cert_file.empty() ? options.tls_root_cert_file
                                                : node->deps_.default_tls_root_file;
    if (roots.empty()) {
      return absl::InvalidArgumentError(
          "cluster mode over TLS needs --cluster_tls_root_cert or --tls_cert");
    }
    ASSIGN_OR_RETURN(peer.tls_root_pem, ReadFile(roots));
  }
  node->peers_ = std::make_unique<PeerPool>(std::move(peer));
  if (options.peer_ucx) {
    PeerDataPlaneOptions data;
    data.bearer_token = node->token_->raw();
    data.tls_root_cert_file = roots;
    data.tls_target_name = options.tls_target_name;
    data.transports = options.peer_ucx_transports;
    data.region_bytes = options.peer_ucx_region_bytes;
    data.max_sessions = options.peer_ucx_sessions;
    data.timeout = options.peer_timeout;
    data.clock = node->deps_.clock;
    absl::StatusOr<std::unique_ptr<PeerDataPlane>> plane = PeerDataPlane::Create(data);
    if (plane.ok()) {
      node->peer_data_ = *std::move(plane);
    } else if (!absl::IsUnimplemented(plane.status())) {
      return plane.status();
    }  // a build without UCX pulls over gRPC
  }
  std::unique_ptr<EtcdTransport> transport = std::move(node->deps_.etcd_transport);
  if (transport == nullptr) {
    ASSIGN_OR_RETURN(transport, MakeHttpEtcdTransport({options.etcd_endpoint,
                                                       std::min(options.etcd_timeout,
                                                                absl::Seconds(2)),
                                                       options.etcd_timeout}));
  }
  node->etcd_ = std::make_unique<EtcdClient>(std::move(transport));
  node->directory_ = std::make_unique<Directory>(node->etcd_.get(), &node->keys_);
  return node;
}

absl::Status ClusterNode::Join(const std::string& advertise_grpc, const std::string& ucx_address,
                               double high_watermark) {
  MembershipOptions m;
  m.self.node_id = options_.node_id;
  m.self.grpc_address = advertise_grpc;
  m.self.ucx = !ucx_address.empty();
  m.self.ucx_address = ucx_address;
  m.lease_ttl = options_.lease_ttl;
  m.register_timeout = options_.register_timeout;
  m.clock = deps_.clock;
  m.logger = deps_.logger;
  storage::TieredStore* store = deps_.store;
  m.load = [store, high_watermark] {
    const storage::StoreStats s = store->Stats();
    NodeLoad load;
    load.host_capacity_bytes = s.host_capacity_bytes;
    load.host_bytes = s.host.bytes;
    load.ssd_bytes = s.ssd.bytes;
    load.high_watermark = high_watermark;
    return load;
  };
  m.on_refresh = [this](const std::vector<NodeInfo>& nodes) { OnRefresh(nodes); };
  ASSIGN_OR_RETURN(membership_, Membership::Join(etcd_.get(), &keys_, std::move(m)));
  {
    absl::MutexLock lock(&mu_);
    NoteNodes(membership_->last_nodes());
    if (deps_.metrics != nullptr) deps_.metrics->SetClusterNodes(static_cast<int64_t>(live_.size()));
  }
  RETURN_IF_ERROR(Reconcile());
  // Orphans whose owner died while this node was away.
  absl::StatusOr<int> taken = TakeOverOrphans();
  if (!taken.ok()) Log(LogSeverity::kWarning, "takeover", "cluster take-over pass: ", taken.status());
  if (options_.replication > 1) replicator_ = std::thread([this] { ReplicatorLoop(); });
  membership_->StartKeepAlive();
  return absl::OkStatus();
}

absl::Status ClusterNode::Leave() {
  {
    absl::MutexLock lock(&replicate_mu_);
    replicate_stop_ = true;
  }
  if (replicator_.joinable()) replicator_.join();
  if (membership_ == nullptr) return absl::OkStatus();
  return membership_->Leave();
}

absl::Status ClusterNode::Reconcile() {
  ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> joined, etcd_->Get(keys_.Joined(node_id())));
  const bool first_join = !joined.has_value();
  ASSIGN_OR_RETURN(auto listed, directory_->List(""));
  absl::flat_hash_map<SequenceKey, DirectoryEntry> entries;
  for (auto& [key, entry] : listed) entries.emplace(key, std::move(entry));
  ASSIGN_OR_RETURN(std::vector<SequenceKey> local, deps_.store->ListSequences(""));
  int adopted = 0, dropped = 0, kept = 0;
  for (const SequenceKey& key : local) {
    bool keep = false;
    if (key.tenant != kCacheTenant) {
      auto it = entries.find(key);
      if (it != entries.end()) {
        keep = it->second.Holds(node_id());
        if (it->second.owner == node_id()) NoteOwned(key, it->second);
      } else if (first_join) {
        ASSIGN_OR_RETURN(storage::SequenceMeta meta, deps_.store->GetSequence(key));
        DirectoryEntry entry;
        entry.owner = node_id();
        entry.layout = meta.layout;
        ASSIGN_OR_RETURN(Directory::ClaimResult claim, directory_->Claim(key, entry));
        keep = claim.entry.Holds(node_id());
        if (claim.claimed) {
          NoteOwned(key, claim.entry);
          ++adopted;
        }
      }
    }
    if (keep) {
      ++kept;
      continue;
    }
    const absl::Status s = deps_.store->DropSequence(key);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    ++dropped;
  }
  RETURN_IF_ERROR(directory_->MarkJoined(node_id()).status());
  if (adopted + dropped > 0) {
    Log(LogSeverity::kInfo, "join", "joined cluster '", options_.cluster_name, "' as ", node_id(),
        ": kept ", kept, " local sequence(s), adopted ", adopted, ", dropped ", dropped,
        " (read-only copies and sequences owned elsewhere)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<DirectoryEntry>> ClusterNode::Lookup(const SequenceKey& key) {
  {
    absl::MutexLock lock(&mu_);
    auto it = owned_.find(key);
    if (it != owned_.end()) return std::optional<DirectoryEntry>(it->second);
  }
  ASSIGN_OR_RETURN(std::optional<DirectoryEntry> entry, directory_->Lookup(key));
  if (entry.has_value() && entry->owner == node_id()) NoteOwned(key, *entry);
  return entry;
}

void ClusterNode::NoteOwned(const SequenceKey& key, const DirectoryEntry& entry) {
  absl::MutexLock lock(&mu_);
  owned_[key] = entry;
}

void ClusterNode::ForgetOwned(const SequenceKey& key) {
  absl::MutexLock lock(&mu_);
  owned_.erase(key);
}

absl::StatusOr<Placement> ClusterNode::Place() {
  if (membership_ == nullptr) return absl::FailedPreconditionError("not joined");
  if (!membership_->lease_current()) {
    return absl::UnavailableError(absl::StrCat(
        "node ", node_id(), " could not renew its cluster membership for a lease TTL; it "
        "places no new sequences until it can"));
  }
  ASSIGN_OR_RETURN(std::vector<NodeInfo> nodes, membership_->LiveNodes());
  const storage::StoreStats s = deps_.store->Stats();
  for (NodeInfo& n : nodes) {  // this node's own load is known better than its last record
    if (n.node_id != node_id()) continue;
    n.load.host_capacity_bytes = s.host_capacity_bytes;
    n.load.host_bytes = s.host.bytes;
    n.load.ssd_bytes = s.ssd.bytes;
  }
  return PlaceSequence(node_id(), nodes, options_.replication);
}

void ClusterNode::NoteNodes(const std::vector<NodeInfo>& nodes) {
  live_.clear();
  without_ucx_.clear();
  for (const NodeInfo& n : nodes) {
    live_[n.node_id] = n.grpc_address;
    if (!n.ucx) without_ucx_.insert(n.node_id);
  }
}

bool ClusterNode::MayServeUcx(const std::string& node) const {
  absl::MutexLock lock(&mu_);
  return !without_ucx_.contains(node);
}

bool ClusterNode::IsLive(const std::string& node) const {
  if (node == node_id()) return true;
  absl::MutexLock lock(&mu_);
  return live_.contains(node);
}

absl::StatusOr<PeerClient*> ClusterNode::Peer(const std::string& node, bool refresh) {
  std::string address;
  if (!refresh) {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(node);
    if (it != live_.end()) address = it->second;
  }
  if (address.empty() && membership_ != nullptr) {
    // Not seen at the last round (it may have joined since), or asked to look again.
    ASSIGN_OR_RETURN(std::vector<NodeInfo> nodes, membership_->LiveNodes());
    for (const NodeInfo& n : nodes) {
      if (n.node_id == node) address = n.grpc_address;
    }
    absl::MutexLock lock(&mu_);
    NoteNodes(nodes);
  }
  if (address.empty()) {
    return absl::UnavailableError(
        absl::StrCat("node ", node, " is not live (not registered: its lease expired)"));
  }
  return peers_->Get(node, address);
}

void ClusterNode::OnRefresh(const std::vector<NodeInfo>& nodes) {
  bool departed = false;
  bool scan = false;
  bool sweep = false;
  {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_set<std::string> now;
    for (const NodeInfo& n : nodes) now.insert(n.node_id);
    for (const auto& [id, address] : live_) {
      if (!now.contains(id)) departed = true;
    }
    NoteNodes(nodes);
    const uint64_t losses = membership_->lease_losses();
    if (losses != lease_losses_seen_) {
      // This node was considered gone for a while: a replica may have taken over any of its
      // sequences, so what it remembers owning is re-read from etcd.
      lease_losses_seen_ = losses;
      owned_.clear();
    }
    ++rounds_;
    scan = departed || rounds_ % 10 == 0;  // and now and then, for a missed departure
    sweep = rounds_ % 5 == 0;
  }
  if (deps_.metrics != nullptr) deps_.metrics->SetClusterNodes(static_cast<int64_t>(nodes.size()));
  if (scan) {
    absl::StatusOr<int> taken = TakeOverOrphans();
    if (!taken.ok()) Log(LogSeverity::kWarning, "takeover", "cluster take-over pass: ", taken.status());
  }
  if (sweep) {
    absl::StatusOr<int> swept = SweepCopies();
    if (!swept.ok()) Log(LogSeverity::kWarning, "sweep", "sweeping read-only copies: ", swept.status());
  }
}

absl::StatusOr<int> ClusterNode::SweepCopies() {
  const std::vector<RemoteCache::Held> held = remote_cache_.List();
  if (held.empty()) return 0;
  ASSIGN_OR_RETURN(auto entries, directory_->List(""));
  absl::flat_hash_map<SequenceKey, int64_t> incarnations;
  for (const auto& [key, entry] : entries) incarnations[key] = entry.incarnation;
  int dropped = 0;
  for (const RemoteCache::Held& copy : held) {
    auto it = incarnations.find(copy.key);
    if (it != incarnations.end() && it->second == copy.incarnation) continue;
    std::optional<SequenceKey> local = remote_cache_.ForgetIf(copy.key, copy.incarnation);
    if (!local.has_value()) continue;  // replaced meanwhile by a newer incarnation's copy
    const absl::Status s = deps_.store->DropSequence(*local);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    ++dropped;
  }
  return dropped;
}

absl::StatusOr<int> ClusterNode::TakeOverOrphans() {
  ASSIGN_OR_RETURN(auto entries, directory_->List(""));
  int taken = 0;
  const size_t wanted = static_cast<size_t>(options_.replication);
  for (const auto& [key, entry] : entries) {
    if (entry.owner == node_id()) {
      if (entry.Holders().size() < wanted) QueueReplication(key);
      continue;
    }
    if (!entry.Holds(node_id()) || IsLive(entry.owner)) continue;
    ASSIGN_OR_RETURN(bool won, directory_->TakeOver(key, entry, node_id()));
    if (!won) continue;  // another replica was faster, or the owner is back
    ForgetOwned(key);    // re-read (with its new revision) on next use
    ++taken;
    if (entry.Holders().size() - 1 < wanted) QueueReplication(key);  // the old owner is gone
  }
  if (taken > 0) {
    if (deps_.metrics != nullptr) deps_.metrics->AddTakeovers(static_cast<uint64_t>(taken));
    Log(LogSeverity::kInfo, "takeover", node_id(), " took over ", taken,
        " sequence(s) whose owner's lease expired");
  }
  return taken;
}

// ---- Re-replication -------------------------------------------------------------------------

void ClusterNode::QueueReplication(const SequenceKey& key) {
  if (options_.replication <= 1) return;
  absl::MutexLock lock(&replicate_mu_);
  if (replicate_stop_ || !replicate_queued_.insert(key).second) return;
  replicate_queue_.push_back(key);
}

void ClusterNode::ReplicatorLoop() {
  for (;;) {
    SequenceKey key;
    std::optional<LateCatchUp> late;
    {
      absl::MutexLock lock(&replicate_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(replicate_mu_) {
        return replicate_stop_ || !replicate_queue_.empty() ||
               (!late_catch_ups_.empty() && late_catch_ups_.front().due <= deps_.clock->Now());
      };
      // Late catch-ups are due at known times: wake for the earliest (or a new item).
      const absl::Time until =
          late_catch_ups_.empty() ? absl::InfiniteFuture() : late_catch_ups_.front().due;
      replicate_mu_.AwaitWithDeadline(absl::Condition(&ready), until);
      if (replicate_stop_) return;
      if (!late_catch_ups_.empty() && late_catch_ups_.front().due <= deps_.clock->Now()) {
        late = std::move(late_catch_ups_.front());
        late_catch_ups_.pop_front();
      } else if (!replicate_queue_.empty()) {
        key = std::move(replicate_queue_.front());
        replicate_queue_.pop_front();
      } else {
        continue;
      }
    }
    if (late.has_value()) {
      LateCatchUpOnce(*late);
      continue;
    }
    const absl::Status s = Replicate(key);
    // A failure is retried by a later take-over pass (every tenth keep-alive round at most).
    if (!s.ok()) {
      Log(LogSeverity::kWarning, "replicate", "re-replicating ", key.tenant, "/", key.sequence, ": ", s);
    }
    absl::MutexLock lock(&replicate_mu_);
    replicate_queued_.erase(key);
  }
}

absl::StatusOr<std::vector<ClusterId>> ClusterNode::PushSequence(
    PeerClient& peer, const SequenceKey& key, const absl::flat_hash_set<ClusterId>& skip) {
  storage::TieredStore& store = *deps_.store;
  ASSIGN_OR_RETURN(storage::SequenceMeta meta, store.GetSequence(key));
  const KvLayout& layout = meta.layout;
  constexpr size_t kMessageBytes = size_t{4} << 20;
  std::vector<v1::PutClustersRequest> messages(1);
  messages.back().set_sequence_id(key.sequence);
  for (int32_t layer = 0; layer < layout.num_layers; ++layer) {
    for (int32_t head = 0; head < layout.num_kv_heads; ++head) {
      absl::StatusOr<storage::HeadIndexRecord> index = store.GetIndex(key, HeadId{layer, head});
      if (absl::IsNotFound(index.status())) continue;
      RETURN_IF_ERROR(index.status());
      v1::HeadIndex* out = messages.back().add_indexes();
      out->set_layer(layer);
      out->set_kv_head(head);
      out->mutable_centroids()->Add(index->centroids.begin(), index->centroids.end());
      out->mutable_sizes()->Add(index->sizes.begin(), index->sizes.end());
      out->mutable_key_norms()->Add(index->key_norms.begin(), index->key_norms.end());
      out->mutable_key_spreads()->Add(index->key_spreads.begin(), index->key_spreads.end());
    }
  }
  messages.back().set_num_tokens(meta.num_tokens);
  const uint64_t token_bytes = storage::ClusterBlockBytes(1, layout.head_dim, layout.dtype);
  std::vector<ClusterId> pushed;
  size_t bytes = 0;
  auto send = [&]() -> absl::Status {
    v1::PutClustersRequest& m = messages.back();
    m.set_write_through(true);  // the copy is durable before it counts as a replica
    ASSIGN_OR_RETURN(v1::PutClustersResponse r, peer.PutClusters(key.tenant, m));
    (void)r;
    messages.back().Clear();
    messages.back().set_sequence_id(key.sequence);
    bytes = 0;
    return absl::OkStatus();
  };
  for (const ClusterId& id : store.ListBlocks(key)) {
    if (skip.contains(id)) continue;
    absl::StatusOr<std::vector<uint8_t>> block = store.GetBlock(storage::BlockKey{key, id});
    if (absl::IsNotFound(block.status())) continue;  // dropped meanwhile
    RETURN_IF_ERROR(block.status());
    if (bytes > 0 && bytes + block->size() > kMessageBytes) RETURN_IF_ERROR(send());
    v1::ClusterBlock* b = messages.back().add_blocks();
    *b->mutable_id() = rpc::ToProto(id);
    b->set_num_tokens(static_cast<int32_t>(block->size() / token_bytes));
    b->set_data(block->data(), block->size());
    bytes += block->size();
    pushed.push_back(id);
  }
  RETURN_IF_ERROR(send());  // the last blocks, or only the record and indexes
  return pushed;
}

void ClusterNode::LateCatchUpOnce(const LateCatchUp& late) {
  absl::StatusOr<std::optional<DirectoryEntry>> entry = directory_->Lookup(late.key);
  if (!entry.ok() || !entry->has_value() || (*entry)->owner != node_id() ||
      !(*entry)->Holds(late.replica)) {
    return;  // dropped, moved, or the replica left: nothing to complete
  }
  absl::StatusOr<PeerClient*> peer = Peer(late.replica);
  absl::StatusOr<std::vector<ClusterId>> pushed =
      peer.ok() ? PushSequence(**peer, late.key, late.had) : peer.status();
  if (!pushed.ok()) {
    Log(LogSeverity::kWarning, "catch_up", "late catch-up of ", late.key.tenant, "/", late.key.sequence,
        " on ", late.replica, ": ", pushed.status());
  }
}

absl::Status ClusterNode::Replicate(const SequenceKey& key) {
  ASSIGN_OR_RETURN(std::optional<DirectoryEntry> entry, directory_->Lookup(key));
  if (!entry.has_value() || entry->owner != node_id() ||
      entry->Holders().size() >= static_cast<size_t>(options_.replication)) {
    return absl::OkStatus();  // dropped, taken over elsewhere, or already replicated
  }
  // The least-loaded live node that does not hold it (ties by node id).
  ASSIGN_OR_RETURN(std::vector<NodeInfo> nodes, membership_->LiveNodes());
  const NodeInfo* target = nullptr;
  for (const NodeInfo& n : nodes) {
    if (entry->Holds(n.node_id)) continue;
    if (target == nullptr || n.load.Fraction() < target->load.Fraction() ||
        (n.load.Fraction() == target->load.Fraction() && n.node_id < target->node_id)) {
      target = &n;
    }
  }
  if (target == nullptr) {
    // Every live node holds it already (e.g. a two-node cluster after a failure): the next
    // take-over pass looks again, once another node has joined.
    return absl::OkStatus();
  }
  const std::string replica = target->node_id;
  ASSIGN_OR_RETURN(PeerClient * peer, Peer(replica));
  v1::OpenSequenceRequest open;
  open.set_sequence_id(key.sequence);
  *open.mutable_layout() = rpc::ToProto(entry->layout);
  RETURN_IF_ERROR(peer->OpenSequence(key.tenant, open).status());
  ASSIGN_OR_RETURN(std::vector<ClusterId> copied, PushSequence(*peer, key, {}));
  // Commit: from here every write through this node reaches the replica (the directory and
  // this node's cached entry name it), and the catch-up covers the writes before.
  const SequenceWriteLocks::Exclusive writes = write_locks_.LockExclusive(key);
  ASSIGN_OR_RETURN(bool added, directory_->AddReplica(key, *entry, replica));
  if (!added) {
    v1::CloseSequenceRequest drop;
    drop.set_sequence_id(key.sequence);
    drop.set_drop(true);
    (void)peer->CloseSequence(key.tenant, drop);
    return absl::AbortedError("the directory entry changed during the copy");
  }
  ForgetOwned(key);  // re-read with the replica on next use
  absl::flat_hash_set<ClusterId> had(copied.begin(), copied.end());
  ASSIGN_OR_RETURN(std::vector<ClusterId> caught_up, PushSequence(*peer, key, had));
  had.insert(caught_up.begin(), caught_up.end());
  {
    absl::MutexLock lock(&replicate_mu_);
    late_catch_ups_.push_back(
        LateCatchUp{deps_.clock->Now() + options_.peer_timeout, key, replica, std::move(had)});
  }
  Log(LogSeverity::kInfo, "replicate", node_id(), " re-replicated ", key.tenant, "/", key.sequence,
      " to ", replica, " (", copied.size() + caught_up.size(), " blocks)");
  return absl::OkStatus();
}

}  // namespace clusterkv::server::cluster
