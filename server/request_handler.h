// RequestHandler: the daemon's request logic, independent of the transport. The gRPC service
// (kv_service.h) and the UCX data plane call the same methods, so both paths validate, resolve
// tiers and account identically. Every method validates its request first (layout, ids,
// sizes, budgets, NaN/Inf in centroids and queries) and answers with a precise status; no input
// reaches a CHECK.
//
// Tenancy: every method takes the caller's tenant from CallContext; sequences are keyed by
// (tenant, sequence_id), so another tenant's sequence is simply NOT_FOUND.
//
// Thread-safe: the store is thread-safe and the session cache has its own mutex, never held
// across store I/O.
#ifndef CLUSTERKV_SERVER_REQUEST_HANDLER_H_
#define CLUSTERKV_SERVER_REQUEST_HANDLER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "core/config.h"
#include "core/ids.h"
#include "gpu/backend.h"
#include "server/auth/tenant_quota.h"  // tenants and security
#include "server/clock.h"
#include "server/metrics/instrumentation.h"  // observability
#include "server/tracing/trace_context.h"    // observability
#include "storage/tiered_store.h"

namespace clusterkv::server {

// Who is calling. Filled by the transport from its credentials.
struct CallContext {
  std::string tenant;
  // The caller reached the daemon over its Unix socket, i.e. runs on this host.
  bool local_peer = false;
  // ---- observability ----
  // The call's span: the parent of the handler's spans (invalid: not traced).
  tracing::SpanContext trace;
  // The transport a fetch's blocks leave over (the UCX data plane sets kUcx on its sessions).
  metrics::Transport transport = metrics::Transport::kGrpc;
  // ---- end observability ----
  // Cluster mode: the caller is another clusterkvd (it presented the cluster peer
  // token) acting for `tenant`; it is served from this node's store, never routed further.
  bool cluster_peer = false;
};

class FetchTrace;
class DocumentDirectory;

// A fork's view of its base document (OpenSequenceRequest.base_document): the clusters of each
// layer below clusters[layer] are the document's blocks, read under the document's key.
struct BaseAlias {
  SequenceKey document;
  int32_t segments = 0;
  int64_t tokens = 0;
  std::vector<int32_t> clusters;  // per layer

  // The stored block behind `cluster` of the fork `fork`.
  storage::BlockKey Resolve(const SequenceKey& fork, const ClusterId& cluster) const {
    const size_t layer = static_cast<size_t>(cluster.head.layer);
    if (layer < clusters.size() && cluster.cluster < clusters[layer]) {
      return storage::BlockKey{document, cluster};
    }
    return storage::BlockKey{fork, cluster};
  }
};

struct HandlerOptions {
  ClusterKvConfig config;  // defaults for server-side selection
  gpu::ExecContext exec;   // backend for server-side scoring
  // Largest accepted cluster block; bigger ones are InvalidArgument.
  uint64_t max_block_bytes = uint64_t{32} << 20;
  // Largest number of clusters one fetch (or one append) may name.
  int32_t max_fetch_clusters = 1 << 16;
  // Largest number of clusters one promotion hint may name.
  int32_t max_hint_clusters = 4096;
  // Largest unary response (GetIndex): a larger answer is RESOURCE_EXHAUSTED before it is
  // built. The daemon keeps it under its gRPC message limit.
  uint64_t max_response_bytes = uint64_t{32} << 20;
  // Most sequences one ListSequences page returns.
  int32_t max_list_sequences = 1024;
  // Target bytes of one FetchClusters response message.
  uint64_t fetch_message_bytes = uint64_t{4} << 20;
  // Metrics and tracing (observability); null members: off.
  Instrumentation instrumentation;
  // Per-tenant sequence quota (OpenSequence); the byte quotas are the store's hook.
  auth::TenantQuotas quotas;
  // Time source of the sequence TTL (last access); null: the system clock.
  std::shared_ptr<const Clock> clock;
  // Records every fetch for `clusterkv_bench heat` (clusterkvd --fetch_trace_file); null: off.
  // Not owned; outlives the handler.
  FetchTrace* fetch_trace = nullptr;
};

// Cluster mode: the per-sequence calls are virtual so that
// cluster::ClusterRequestHandler (server/cluster/cluster_handler.h) can route them to the
// owning node; in single-node mode this class is used as it is.
class RequestHandler {
 public:
  RequestHandler(storage::TieredStore* store, const HandlerOptions& options);
  virtual ~RequestHandler();

  virtual absl::StatusOr<v1::OpenSequenceResponse> OpenSequence(
      const CallContext& call, const v1::OpenSequenceRequest& request);
  virtual absl::StatusOr<v1::CloseSequenceResponse> CloseSequence(
      const CallContext& call, const v1::CloseSequenceRequest& request);
  virtual absl::StatusOr<v1::ListSequencesResponse> ListSequences(
      const CallContext& call, const v1::ListSequencesRequest& request);

  // One message of a PutClusters stream; accumulates into `response`.
  virtual absl::Status PutClusters(const CallContext& call, const v1::PutClustersRequest& request,
                                   v1::PutClustersResponse* response);
  virtual absl::StatusOr<v1::AppendClustersResponse> AppendClusters(
      const CallContext& call, const v1::AppendClustersRequest& request);
  virtual absl::StatusOr<v1::GetIndexResponse> GetIndex(const CallContext& call,
                                                        const v1::GetIndexRequest& request);

  // ---- resumable sessions and shared documents (request_handler_state.cc) ----
  // PutState stores the request's state chunks (immutable: a chunk stored before with the same
  // bytes is success, different bytes ALREADY_EXISTS), then commits its SequenceState durably.
  // A sealed document refuses it (FAILED_PRECONDITION). GetState answers the last committed
  // state (with the fork's base filled in) and the chunks of the named layers.
  absl::StatusOr<v1::PutStateResponse> PutState(const CallContext& call,
                                                const v1::PutStateRequest& request);
  absl::StatusOr<v1::GetStateResponse> GetState(const CallContext& call,
                                                const v1::GetStateRequest& request);
  // Seals a checkpointed sequence as a document: from now on it is immutable (puts, appends
  // and state writes are FAILED_PRECONDITION), it cannot be dropped while a fork uses it, and
  // its segment hashes enter the tenant's prefix directory. FAILED_PRECONDITION: never
  // checkpointed, already sealed, or the segments do not match its clusters.
  absl::StatusOr<v1::SealDocumentResponse> SealDocument(const CallContext& call,
                                                        const v1::SealDocumentRequest& request);
  // The longest prefix of the request's hash chain that a document of the caller's tenant
  // holds (an empty answer when none). Only the caller's tenant's directory is consulted.
  absl::StatusOr<v1::FindPrefixResponse> FindPrefix(const CallContext& call,
                                                    const v1::FindPrefixRequest& request);
  // The owner of a sealed document lets request.tenant() find and fork it (revoke: no more;
  // forks made before keep working). FAILED_PRECONDITION: not a sealed document.
  absl::StatusOr<v1::GrantDocumentResponse> GrantDocument(
      const CallContext& call, const v1::GrantDocumentRequest& request);

  // Validates the request and resolves every cluster (promoting SSD blocks) in request order,
  // calling `sink` with each block's bytes, which stay valid (pinned in the host tier, or in a
  // temporary copy when the host tier has no room) until the sink returns. A sink error stops
  // the fetch. NOT_FOUND names the first missing cluster.
  using BlockSink = std::function<absl::Status(const v1::ClusterRef& ref, int32_t num_tokens,
                                               absl::Span<const uint8_t> block)>;
  absl::Status FetchClusters(const CallContext& call, const v1::FetchClustersRequest& request,
                             const BlockSink& sink);

  // The same fetch, one cluster at a time, for transports that produce their output lazily
  // (a streaming reactor writes one message at a time). PrepareFetch validates everything;
  // FetchOne(plan, i, sink) then serves request.clusters(i).
  struct FetchPlan {
    SequenceKey key;
    KvLayout layout;
    // From the CallContext (observability).
    tracing::SpanContext trace;
    metrics::Transport transport = metrics::Transport::kGrpc;
    // A fork's base document (null otherwise): where its shared clusters are stored.
    std::shared_ptr<const BaseAlias> base;

    storage::BlockKey BlockOf(const ClusterId& cluster) const {
      return base != nullptr ? base->Resolve(key, cluster) : storage::BlockKey{key, cluster};
    }
  };
  virtual absl::StatusOr<FetchPlan> PrepareFetch(const CallContext& call,
                                                 const v1::FetchClustersRequest& request);
  absl::Status FetchOne(const FetchPlan& plan, const v1::ClusterRef& ref, const BlockSink& sink);
  // FetchOne for every ref of `refs`, in order, for transports that write asynchronously (UCX):
  // the sink gets the ref's index in `refs` and `holder`, which keeps `block`'s bytes valid
  // (the pin, or a temporary copy) for as long as the sink keeps a reference. Host-resident
  // blocks are pinned as one batch (storage::TieredStore::PinResident: one store lock to pin
  // them all, one to release them when the last holder goes), the rest one by one. Returns
  // each block's status; once `stop()` turns true after a block, the rest are left CANCELLED
  // without being looked at.
  using IndexedBlockSink = std::function<absl::Status(
      int index, int32_t num_tokens, absl::Span<const uint8_t> block,
      std::shared_ptr<const void> holder)>;
  std::vector<absl::Status> FetchManyRetained(
      const FetchPlan& plan, const google::protobuf::RepeatedPtrField<v1::ClusterRef>& refs,
      const IndexedBlockSink& sink, const std::function<bool()>& stop);

  // A whole fetch resolved ahead of its transfer, for transports that send from another thread
  // than the one that resolved (UCX: resolved on the worker pool, put on the progress thread).
  // Each block's bytes stay valid while its holder lives.
  struct ResolvedBlock {
    absl::Status status = absl::CancelledError("fetch stopped before this block");
    int32_t num_tokens = 0;
    absl::Span<const uint8_t> bytes;
    std::shared_ptr<const void> holder;
  };
  struct ResolvedFetch {
    absl::Status status;  // a whole-request error (bad sequence, bad refs); blocks then empty
    FetchPlan plan;
    std::vector<ResolvedBlock> blocks;  // request order
  };
  // Blocking: may load the sequence, read the SSD or (cluster mode) pull from peers. Run it on
  // a worker pool.
  ResolvedFetch ResolveFetch(const CallContext& call, const v1::FetchClustersRequest& request);
  // Never blocks on I/O: resolves the fetch only when the sequence is already loaded, it is
  // served from this node's store, the call is not traced and every block is in the host tier
  // (pinned as one batch). nullopt otherwise, holding nothing: use ResolveFetch. A request
  // that is invalid on its face (bad sequence id, too many clusters) is resolved to its error.
  std::optional<ResolvedFetch> TryResolveResident(const CallContext& call,
                                                  const v1::FetchClustersRequest& request);

  // Promotion hints (HintClusters). CheckHint validates what needs no I/O (the sequence id and
  // the number of clusters), for the network thread to answer at once. PromoteHinted blocks
  // (it may load the sequence and reads the SSD: run it on a worker pool): it validates the
  // refs against the sequence's layout and copies each named SSD-only block into the host tier
  // (storage::TieredStore::Promote, which counts each block's outcome in the store's stats).
  // Clusters the sequence does not hold are skipped. A sequence another node serves (cluster
  // mode) is left alone: nothing is promoted.
  absl::Status CheckHint(const CallContext& call, const v1::HintClustersRequest& request) const;
  absl::Status PromoteHinted(const CallContext& call, const v1::HintClustersRequest& request);

  virtual absl::StatusOr<v1::SelectResponse> Select(const CallContext& call,
                                                    const v1::SelectRequest& request);
  absl::StatusOr<v1::StatsResponse> Stats(const CallContext& call);

  const HandlerOptions& options() const { return options_; }

 protected:
  // Whether `call`'s fetches are served from this node's store as they are (cluster mode
  // routes the rest; see ClusterRequestHandler).
  virtual bool ServesLocally(const CallContext& call) const {
    (void)call;
    return true;
  }

 public:

  // Sequence TTL: drops every sequence (of every tenant) not accessed for `ttl` and
  // returns how many it dropped. A sequence counts as accessed when it is opened or created or
  // any call finds it; one the handler has not seen since it started (e.g. after a restart) is
  // considered accessed now. Errors of the store (the sweep stops at the first).
  absl::StatusOr<int64_t> ExpireIdle(absl::Duration ttl);
  // The sequence is open in this daemon (a session is held for it).
  bool HasOpenSession(const SequenceKey& key) const;
  // Sequences dropped by ExpireIdle since the handler was created.
  uint64_t expired_sequences() const;

 private:
  // One block for FetchOne / FetchManyRetained; the sink also receives the holder of the
  // block's bytes (see FetchManyRetained).
  using RetainingBlockSink = std::function<absl::Status(
      const v1::ClusterRef& ref, int32_t num_tokens, absl::Span<const uint8_t> block,
      std::shared_ptr<const void> holder)>;
  // Drops the sequence's client-report history (it closed or expired).
  void ForgetSequenceStats(const SequenceKey& key);
  // Every fetch request served (once, whichever path serves it) feeds the store's recall heat
  // (the heat eviction policy, the dashboard's heat map) and the fetch trace when on.
  void RecordFetch(const FetchPlan& plan, absl::Span<const ClusterId> clusters);
  absl::Status FetchOneRetained(const FetchPlan& plan, const v1::ClusterRef& ref,
                                const RetainingBlockSink& sink);
  // The part of FetchOneRetained after the block's bytes are held: size check, spans, sink,
  // metrics. `start` is when the lookup began (metrics clock; unset without metrics).
  absl::Status DeliverBlock(const FetchPlan& plan, const v1::ClusterRef& ref,
                            absl::Span<const uint8_t> bytes, std::shared_ptr<const void> holder,
                            absl::Time start, const RetainingBlockSink& sink);

  // What the daemon keeps in memory per open sequence: the layout and, per head, the index
  // (loaded lazily from the store; needed for Select and to validate appends).
  struct Session {
    KvLayout layout;
    int64_t num_tokens = 0;
    // From the state record, loaded with the session: a fork's base (null otherwise), and
    // whether this sequence is a sealed document (immutable).
    std::shared_ptr<const BaseAlias> base;
    bool sealed = false;
    absl::flat_hash_map<HeadId, std::shared_ptr<const storage::HeadIndexRecord>> indexes;
    // Serialises the sequence's index mutations (appends, index puts, token count) so each
    // read-merge-write of an index sees the previous one. Held across the store writes of one
    // request; never taken under mu_ (mu_ may be taken under it).
    absl::Mutex write_mu;
  };

  absl::StatusOr<SequenceKey> Key(const CallContext& call, const std::string& sequence_id) const;
  // Pins every host-resident block among `clusters` of the plan's sequence (a fork's shared
  // clusters under its document's key): one PinResident per owner.
  struct PinnedBatch;
  std::shared_ptr<PinnedBatch> PinResidentBlocks(const FetchPlan& plan,
                                                 const std::vector<ClusterId>& clusters);
  // The sequence's committed state record; NotFound when never checkpointed.
  absl::StatusOr<v1::SequenceState> LoadState(const SequenceKey& key);
  // Creates `key` as a fork of request.base_document() (OpenSequence).
  absl::Status CreateFork(const SequenceKey& key, const KvLayout& layout,
                          const v1::OpenSequenceRequest& request);
  // FailedPrecondition when the session is a sealed document (no writes).
  static absl::Status CheckWritable(const SequenceKey& key, const Session& session);
  // Every tenant's documents, grants and forks, read from the store on first use.
  absl::Status EnsureDirectory();
  // The document key of a fork's base (its owner's tenant, or the fork's own).
  static SequenceKey BaseKey(const SequenceKey& fork, const v1::BaseDocument& base) {
    return SequenceKey{base.owner().empty() ? fork.tenant : base.owner(), base.document()};
  }
  // The session of an existing sequence (loaded from the store on first use). NOT_FOUND when
  // the sequence does not exist for this tenant.
  absl::StatusOr<std::shared_ptr<Session>> FindSession(const SequenceKey& key);
  absl::StatusOr<std::shared_ptr<const storage::HeadIndexRecord>> FindIndex(
      const SequenceKey& key, Session& session, const HeadId& head);
  absl::Status StoreBlock(const SequenceKey& key, const KvLayout& layout,
                          const v1::ClusterBlock& block, bool write_through);
  // Stores the sequence's token count (num_tokens <= 0: unchanged). grow_only keeps a larger
  // stored count (an append retried after a later one landed).
  absl::Status UpdateTokens(const SequenceKey& key, Session& session, int64_t num_tokens,
                            bool grow_only);

  storage::TieredStore* store_;  // not owned
  HandlerOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<SequenceKey, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  // ---- tenants and security ----
  std::shared_ptr<const Clock> clock_;
  // Last access of every sequence seen since start (TTL).
  absl::flat_hash_map<SequenceKey, absl::Time> last_access_ ABSL_GUARDED_BY(mu_);
  // Sequences being created per tenant, counted against the sequence quota until stored.
  absl::flat_hash_map<std::string, uint64_t> creating_ ABSL_GUARDED_BY(mu_);
  uint64_t expired_ ABSL_GUARDED_BY(mu_) = 0;
  // ---- end tenants and security ----
  // Sealed documents and the forks that use them, per tenant.
  std::unique_ptr<DocumentDirectory> documents_;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_REQUEST_HANDLER_H_
