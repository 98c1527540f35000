#include "server/cluster/cluster_handler.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "proto/rpc_support.h"
#include "server/metrics/daemon_metrics.h"
#include "server/request_validation.h"
#include "storage/tiered_store.h"

namespace clusterkv::server::cluster {
namespace {

absl::StatusOr<SequenceKey> KeyOf(const CallContext& call, const std::string& sequence_id) {
  SequenceKey key{call.tenant, sequence_id};
  RETURN_IF_ERROR(key.Validate());
  return key;
}

template <typename Blocks>
uint64_t BlockBytes(const Blocks& blocks) {
  uint64_t bytes = 0;
  for (const v1::ClusterBlock& b : blocks) bytes += b.data().size();
  return bytes;
}

}  // namespace

ClusterRequestHandler::ClusterRequestHandler(storage::TieredStore* store,
                                             const HandlerOptions& options, ClusterNode* node)
    : RequestHandler(store, options), store_(store), node_(node) {}

absl::StatusOr<DirectoryEntry> ClusterRequestHandler::Route(const SequenceKey& key) {
  ASSIGN_OR_RETURN(std::optional<DirectoryEntry> entry, node_->Lookup(key));
  if (!entry.has_value()) {
    return absl::NotFoundError(absl::StrCat("no sequence '", key.sequence, "'"));
  }
  return *std::move(entry);
}

absl::Status ClusterRequestHandler::ReadFromHolder(
    const SequenceKey& key, const DirectoryEntry& entry,
    const std::function<absl::Status(PeerClient& peer)>& read) {
  // Why each holder did not answer, for the error.
  std::vector<std::string> reasons;
  for (const std::string& holder : entry.Holders()) {
    if (holder == node_->node_id()) continue;
    // Peer() refuses a node that is not registered (asking etcd when the last keep-alive round
    // did not list it: it may have come back since).
    absl::StatusOr<PeerClient*> peer = node_->Peer(holder);
    absl::Status s = peer.ok() ? read(**peer) : peer.status();
    if (peer.ok() && absl::IsUnavailable(s)) {
      // It may have restarted on another address since the last keep-alive round.
      absl::StatusOr<PeerClient*> again = node_->Peer(holder, /*refresh=*/true);
      if (!again.ok()) {
        peer = again;
        s = again.status();
      } else if (*again != *peer) {
        peer = again;
        s = read(**peer);
      }
    }
    // Any answer but "unreachable" is the holder's answer (a replica is tried only when the
    // node before it could not be reached).
    if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) return s;
    reasons.push_back(peer.ok() ? absl::StrCat("node ", holder, " cannot be reached (",
                                               s.message(), ")")
                                : std::string(s.message()));
  }
  return absl::UnavailableError(absl::StrCat(
      "sequence '", key.sequence, "' is owned by node ", entry.owner, ", which is unavailable",
      entry.replicas.empty() ? " (the sequence has no replica)" : " and so are its replicas",
      ": ", absl::StrJoin(reasons, "; ")));
}

absl::Status ClusterRequestHandler::WriteToHolders(
    const SequenceKey& key, const DirectoryEntry& entry,
    const std::function<absl::Status(bool owner)>& local,
    const std::function<absl::Status(PeerClient& peer, bool owner)>& remote) {
  for (const std::string& holder : entry.Holders()) {
    const bool owner = holder == entry.owner;
    if (holder == node_->node_id()) {
      RETURN_IF_ERROR(local(owner));
      continue;
    }
    absl::StatusOr<PeerClient*> peer = node_->Peer(holder);
    absl::Status s = peer.ok() ? remote(**peer, owner) : peer.status();
    if (peer.ok() && absl::IsUnavailable(s)) {
      // It may have restarted on another address since the last keep-alive round; writes are
      // idempotent (blocks are immutable), so one more try there is safe.
      absl::StatusOr<PeerClient*> again = node_->Peer(holder, /*refresh=*/true);
      if (!again.ok()) {
        s = again.status();
      } else if (*again != *peer) {
        s = remote(**again, owner);
      }
    }
    if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) {
      const std::string who =
          owner ? absl::StrCat("sequence '", key.sequence, "' is owned by node ", holder, ", which")
                : absl::StrCat("replica ", holder, " of sequence '", key.sequence, "'");
      return absl::UnavailableError(absl::StrCat(who, " cannot be reached: ", s.message()));
    }
    RETURN_IF_ERROR(s);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::OpenSequenceResponse> ClusterRequestHandler::Create(
    const CallContext& call, const SequenceKey& key, const v1::OpenSequenceRequest& request) {
  ASSIGN_OR_RETURN(KvLayout layout, rpc::FromProto(request.layout()));
  ASSIGN_OR_RETURN(Placement placement, node_->Place());
  DirectoryEntry wanted;
  wanted.owner = placement.owner;
  wanted.replicas = placement.replicas;
  wanted.layout = layout;
  ASSIGN_OR_RETURN(Directory::ClaimResult claim, node_->directory().Claim(key, wanted));
  if (!claim.claimed) {
    // Created concurrently through another node: open that one (its layout must match).
    v1::OpenSequenceRequest existing = request;
    existing.set_must_exist(true);
    return OpenSequence(call, existing);
  }
  v1::OpenSequenceRequest create = request;
  create.set_must_exist(false);
  v1::OpenSequenceResponse response;
  const absl::Status created = WriteToHolders(
      key, claim.entry,
      [&](bool owner) -> absl::Status {
        ASSIGN_OR_RETURN(v1::OpenSequenceResponse r, RequestHandler::OpenSequence(call, create));
        if (owner) response = std::move(r);
        return absl::OkStatus();
      },
      [&](PeerClient& peer, bool owner) -> absl::Status {
        ASSIGN_OR_RETURN(v1::OpenSequenceResponse r, peer.OpenSequence(call.tenant, create));
        if (owner) response = std::move(r);
        return absl::OkStatus();
      });
  if (!created.ok()) {
    // Undo, best effort: no entry may point at copies that do not exist.
    (void)node_->directory().Remove(key, claim.entry);
    v1::CloseSequenceRequest drop;
    drop.set_sequence_id(key.sequence);
    drop.set_drop(true);
    (void)WriteToHolders(
        key, claim.entry,
        [&](bool) { return RequestHandler::CloseSequence(call, drop).status(); },
        [&](PeerClient& peer, bool) { return peer.CloseSequence(call.tenant, drop); });
    return created;
  }
  if (claim.entry.owner == node_->node_id()) node_->NoteOwned(key, claim.entry);
  response.set_created(true);
  return response;
}

absl::StatusOr<v1::OpenSequenceResponse> ClusterRequestHandler::OpenSequence(
    const CallContext& call, const v1::OpenSequenceRequest& request) {
  if (call.cluster_peer) return RequestHandler::OpenSequence(call, request);
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::optional<DirectoryEntry> entry, node_->Lookup(key));
  if (!entry.has_value()) {
    if (request.must_exist()) {
      return absl::NotFoundError(absl::StrCat("no sequence '", key.sequence, "'"));
    }
    if (!request.has_layout()) {
      return absl::InvalidArgumentError("creating a sequence needs its layout");
    }
    return Create(call, key, request);
  }
  // It exists: never create it again anywhere, whatever the request says.
  v1::OpenSequenceRequest existing = request;
  existing.set_must_exist(true);
  if (entry->Holds(node_->node_id())) return RequestHandler::OpenSequence(call, existing);
  v1::OpenSequenceResponse response;
  RETURN_IF_ERROR(ReadFromHolder(key, *entry, [&](PeerClient& peer) -> absl::Status {
    ASSIGN_OR_RETURN(response, peer.OpenSequence(call.tenant, existing));
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::CloseSequenceResponse> ClusterRequestHandler::CloseSequence(
    const CallContext& call, const v1::CloseSequenceRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  if (call.cluster_peer) {
    // A holder's copy being dropped by the node that removed the directory entry: forget
    // what this node remembered about the sequence, too.
    if (request.drop()) {
      node_->ForgetOwned(key);
      DropCopy(key);
    }
    return RequestHandler::CloseSequence(call, request);
  }
  ASSIGN_OR_RETURN(DirectoryEntry entry, Route(key));
  if (!request.drop()) {
    if (entry.Holds(node_->node_id())) return RequestHandler::CloseSequence(call, request);
    RETURN_IF_ERROR(ReadFromHolder(
        key, entry, [&](PeerClient& peer) { return peer.CloseSequence(call.tenant, request); }));
    return v1::CloseSequenceResponse();
  }
  // Drop: the entry goes first, so no node routes to copies being deleted.
  ASSIGN_OR_RETURN(bool removed, node_->directory().Remove(key, entry));
  if (!removed) {  // changed since it was read (a take-over, a concurrent drop): once more
    node_->ForgetOwned(key);
    ASSIGN_OR_RETURN(entry, Route(key));
    ASSIGN_OR_RETURN(removed, node_->directory().Remove(key, entry));
    if (!removed) {
      return absl::AbortedError(
          absl::StrCat("sequence '", key.sequence, "' changed while it was dropped; retry"));
    }
  }
  node_->ForgetOwned(key);
  DropCopy(key);
  // Every copy, best effort: a holder that is down drops its copy when it joins again (the
  // directory no longer lists it).
  for (const std::string& holder : entry.Holders()) {
    absl::Status s;
    if (holder == node_->node_id()) {
      s = RequestHandler::CloseSequence(call, request).status();
    } else {
      absl::StatusOr<PeerClient*> peer = node_->Peer(holder);
      s = peer.ok() ? (*peer)->CloseSequence(call.tenant, request) : peer.status();
    }
    if (!s.ok() && !absl::IsNotFound(s)) {
      node_->logger().Log(LogSeverity::kWarning, "drop_copy",
                          absl::StrCat("dropping the copy on ", holder, ": ", s.ToString()));
    }
  }
  return v1::CloseSequenceResponse();
}

absl::StatusOr<v1::ListSequencesResponse> ClusterRequestHandler::ListSequences(
    const CallContext& call, const v1::ListSequencesRequest& request) {
  if (call.cluster_peer) return RequestHandler::ListSequences(call, request);
  if (call.tenant.empty()) return absl::InvalidArgumentError("tenant is empty");
  ASSIGN_OR_RETURN(const int32_t page_size, ListPageSize(request, options().max_list_sequences));
  ASSIGN_OR_RETURN(auto entries, node_->directory().List(call.tenant));
  // One page, in sequence-id order, as the single-node listing pages.
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.first.sequence < b.first.sequence;
  });
  const size_t cap = static_cast<size_t>(page_size);
  auto first = std::upper_bound(
      entries.begin(), entries.end(), request.start_after(),
      [](const std::string& after, const auto& e) { return after < e.first.sequence; });
  entries.erase(entries.begin(), first);
  v1::ListSequencesResponse response;
  if (entries.size() > cap) {
    entries.resize(cap);
    response.set_next_start_after(entries.back().first.sequence);
  }
  // Token counts of other nodes' sequences: one listing per owner, over the same page.
  v1::ListSequencesRequest page;
  page.set_start_after(request.start_after());
  page.set_max_sequences(static_cast<int32_t>(cap));
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, int64_t>> remote_tokens;
  for (const auto& [key, entry] : entries) {
    v1::SequenceInfo* info = response.add_sequences();
    info->set_sequence_id(key.sequence);
    *info->mutable_layout() = rpc::ToProto(entry.layout);
    if (entry.Holds(node_->node_id())) {
      absl::StatusOr<storage::SequenceMeta> meta = store_->GetSequence(key);
      if (meta.ok()) info->set_num_tokens(meta->num_tokens);
      continue;
    }
    auto [it, fresh] = remote_tokens.try_emplace(entry.owner);
    if (fresh) {
      (void)ReadFromHolder(key, entry, [&](PeerClient& peer) -> absl::Status {
        ASSIGN_OR_RETURN(v1::ListSequencesResponse listed, peer.ListSequences(call.tenant, page));
        for (const v1::SequenceInfo& s : listed.sequences()) {
          it->second[s.sequence_id()] = s.num_tokens();
        }
        return absl::OkStatus();
      });  // unreachable owner: its sequences are listed without a token count
    }
    auto tokens = it->second.find(key.sequence);
    if (tokens != it->second.end()) info->set_num_tokens(tokens->second);
  }
  return response;
}

absl::Status ClusterRequestHandler::PutClusters(const CallContext& call,
                                                const v1::PutClustersRequest& request,
                                                v1::PutClustersResponse* response) {
  if (call.cluster_peer) return RequestHandler::PutClusters(call, request, response);
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  // A re-replication of this sequence commits before or after this write, never during it.
  const SequenceWriteLocks::Shared writes = node_->write_locks().LockShared(key);
  ASSIGN_OR_RETURN(DirectoryEntry entry, Route(key));
  uint64_t forwarded = 0;
  const absl::Status s = WriteToHolders(
      key, entry,
      [&](bool owner) {
        v1::PutClustersResponse scratch;
        return RequestHandler::PutClusters(call, request, owner ? response : &scratch);
      },
      [&](PeerClient& peer, bool owner) -> absl::Status {
        ASSIGN_OR_RETURN(v1::PutClustersResponse r, peer.PutClusters(call.tenant, request));
        forwarded += BlockBytes(request.blocks());
        if (owner) {
          response->set_blocks_stored(response->blocks_stored() + r.blocks_stored());
          response->set_bytes_stored(response->bytes_stored() + r.bytes_stored());
        }
        return absl::OkStatus();
      });
  if (forwarded > 0 && node_->metrics() != nullptr) node_->metrics()->AddForwardedBytes(forwarded);
  return s;
}

absl::StatusOr<v1::AppendClustersResponse> ClusterRequestHandler::AppendClusters(
    const CallContext& call, const v1::AppendClustersRequest& request) {
  if (call.cluster_peer) return RequestHandler::AppendClusters(call, request);
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  // A re-replication of this sequence commits before or after this write, never during it.
  const SequenceWriteLocks::Shared writes = node_->write_locks().LockShared(key);
  ASSIGN_OR_RETURN(DirectoryEntry entry, Route(key));
  v1::AppendClustersResponse response;
  uint64_t forwarded = 0;
  const absl::Status s = WriteToHolders(
      key, entry,
      [&](bool owner) -> absl::Status {
        ASSIGN_OR_RETURN(v1::AppendClustersResponse r,
                         RequestHandler::AppendClusters(call, request));
        if (owner) response = std::move(r);
        return absl::OkStatus();
      },
      [&](PeerClient& peer, bool owner) -> absl::Status {
        ASSIGN_OR_RETURN(v1::AppendClustersResponse r, peer.AppendClusters(call.tenant, request));
        forwarded += BlockBytes(request.blocks());
        if (owner) response = std::move(r);
        return absl::OkStatus();
      });
  if (forwarded > 0 && node_->metrics() != nullptr) node_->metrics()->AddForwardedBytes(forwarded);
  RETURN_IF_ERROR(s);
  return response;
}

absl::StatusOr<v1::GetIndexResponse> ClusterRequestHandler::GetIndex(
    const CallContext& call, const v1::GetIndexRequest& request) {
  if (call.cluster_peer) return RequestHandler::GetIndex(call, request);
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  ASSIGN_OR_RETURN(DirectoryEntry entry, Route(key));
  if (entry.Holds(node_->node_id())) return RequestHandler::GetIndex(call, request);
  v1::GetIndexResponse response;
  RETURN_IF_ERROR(ReadFromHolder(key, entry, [&](PeerClient& peer) -> absl::Status {
    ASSIGN_OR_RETURN(response, peer.GetIndex(call.tenant, request));
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::SelectResponse> ClusterRequestHandler::Select(
    const CallContext& call, const v1::SelectRequest& request) {
  if (call.cluster_peer) return RequestHandler::Select(call, request);
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  ASSIGN_OR_RETURN(DirectoryEntry entry, Route(key));
  if (entry.Holds(node_->node_id())) return RequestHandler::Select(call, request);
  v1::SelectResponse response;
  RETURN_IF_ERROR(ReadFromHolder(key, entry, [&](PeerClient& peer) -> absl::Status {
    ASSIGN_OR_RETURN(response, peer.Select(call.tenant, request));
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<RequestHandler::FetchPlan> ClusterRequestHandler::PrepareFetch(
    const CallContext& call, const v1::FetchClustersRequest& request) {
  if (call.cluster_peer) return RequestHandler::PrepareFetch(call, request);
  ASSIGN_OR_RETURN(SequenceKey key, KeyOf(call, request.sequence_id()));
  ASSIGN_OR_RETURN(DirectoryEntry entry, Route(key));
  if (entry.Holds(node_->node_id())) return RequestHandler::PrepareFetch(call, request);
  ASSIGN_OR_RETURN(SequenceKey copy, FillCopy(key, entry, request));
  // Served from the local read-only copy, by the single-node path (UCX or gRPC alike).
  CallContext local = call;
  local.tenant = copy.tenant;
  v1::FetchClustersRequest from_copy = request;
  from_copy.set_sequence_id(copy.sequence);
  return RequestHandler::PrepareFetch(local, from_copy);
}

absl::StatusOr<SequenceKey> ClusterRequestHandler::FillCopy(
    const SequenceKey& key, const DirectoryEntry& entry, const v1::FetchClustersRequest& request) {
  RETURN_IF_ERROR(
      ValidateFetchRefs(entry.layout, request.clusters(), options().max_fetch_clusters));
  std::vector<ClusterId> wanted;
  wanted.reserve(request.clusters_size());
  for (const v1::ClusterRef& ref : request.clusters()) wanted.push_back(rpc::FromProto(ref));
  RemoteCache& cache = node_->remote_cache();
  const RemoteCache::Acquired copy = cache.Acquire(key, entry.incarnation);
  if (copy.stale.has_value()) (void)store_->DropSequence(*copy.stale);  // an old incarnation
  if (!copy.has_meta) {
    RETURN_IF_ERROR(store_->PutSequence(copy.cache_key, storage::SequenceMeta{entry.layout, 0}));
    cache.MarkMeta(key, entry.incarnation);
  }
  const std::vector<ClusterId> missing = cache.Missing(key, entry.incarnation, wanted);
  uint64_t bytes = 0;
  uint64_t ucx_bytes = 0;
  // Stores one pulled block in the copy. A cache: never synced, whatever --write_through says.
  auto keep = [&](const ClusterId& id, absl::Span<const uint8_t> block) -> absl::Status {
    const storage::BlockKey block_key{copy.cache_key, id};
    const absl::Status put = store_->PutBlock(block_key, block, /*write_through=*/false);
    if (!put.ok() && !absl::IsAlreadyExists(put)) return put;
    cache.MarkCached(key, entry.incarnation, id);
    bytes += block.size();
    return absl::OkStatus();
  };
  if (!missing.empty()) {
    RETURN_IF_ERROR(ReadFromHolder(key, entry, [&](PeerClient& peer) -> absl::Status {
      std::vector<ClusterId> rest = missing;
      if (PeerDataPlane* ucx = node_->peer_data_plane();
          ucx != nullptr && node_->MayServeUcx(peer.node_id())) {
        // The bulk over the holder's UCX data plane; whatever it did not deliver (or all of
        // it, when UCX fails) over gRPC below, which also gives the holder's errors.
        absl::Status stored;
        absl::StatusOr<std::vector<ClusterId>> left = ucx->Pull(
            peer.node_id(), peer.address(), key.tenant, key.sequence, missing,
            [&](const ClusterId& id, int32_t tokens, absl::Span<const uint8_t> block) {
              if (absl::Status shape = ValidateBlockShape(entry.layout, tokens, block.size(),
                                                          options().max_block_bytes);
                  !shape.ok()) {
                stored = absl::DataLossError(absl::StrCat("node ", peer.node_id(), " sent ",
                                                          ToString(id), ": ", shape.message()));
                return stored;
              }
              stored = keep(id, block);
              if (stored.ok()) ucx_bytes += block.size();
              return stored;
            });
        if (!stored.ok()) return stored;
        if (left.ok()) rest = *std::move(left);
      }
      if (rest.empty()) return absl::OkStatus();
      v1::FetchClustersRequest pull;
      pull.set_sequence_id(key.sequence);
      for (const ClusterId& id : rest) *pull.add_clusters() = rpc::ToProto(id);
      return peer.FetchClusters(key.tenant, pull, [&](v1::ClusterBlock& block) -> absl::Status {
        RETURN_IF_ERROR(ValidateBlock(entry.layout, block, options().max_block_bytes));
        const auto* data = reinterpret_cast<const uint8_t*>(block.data().data());
        return keep(rpc::FromProto(block.id()), absl::MakeConstSpan(data, block.data().size()));
      });
    }));
  }
  if (node_->metrics() != nullptr) {
    node_->metrics()->ObserveRemoteRecall(wanted.size() - std::min(wanted.size(), missing.size()),
                                          missing.size(), bytes, ucx_bytes);
  }
  return copy.cache_key;
}

void ClusterRequestHandler::DropCopy(const SequenceKey& key) {
  std::optional<SequenceKey> copy = node_->remote_cache().Forget(key);
  if (copy.has_value()) (void)store_->DropSequence(*copy);
}

}  // namespace clusterkv::server::cluster
