// KvCacheService: the gRPC callback-API front of RequestHandler (service clusterkv.v1.KvCache).
//
// Threading: a gRPC callback reaction never blocks. On the callback thread a call is only
// authenticated (in memory) and handed to the worker pool; the handler's work (RocksDB reads
// and synced writes, SSD promotions, peer pulls in cluster mode, the UCX session setup) runs
// on a pool thread, which also finishes the call. A pool whose queue is full refuses the call
// at once with RESOURCE_EXHAUSTED. PutClusters stores each message of its stream in one pool
// task and asks for the next message from there. FetchClusters whose blocks are all in the
// host tier pins them at once (no I/O) and streams them from the gRPC threads, so a pool busy
// with SSD reads holds up no host-tier fetch; any other fetch produces each response message
// in one pool task. Either way a message is produced when the previous write is done, so a
// large fetch never sits in memory whole. Reactors own their per-call state and delete
// themselves in OnDone.
#ifndef CLUSTERKV_SERVER_KV_SERVICE_H_
#define CLUSTERKV_SERVER_KV_SERVICE_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "server/auth/authenticator.h"
#include "server/internal/pin_ledger.h"
#include "server/metrics/instrumentation.h"
#include "server/request_handler.h"
#include "server/worker_pool.h"

namespace clusterkv::server {

// Maps a call's credentials to its tenant. UNAUTHENTICATED / PERMISSION_DENIED refuse the call.
using TenantResolver =
    std::function<absl::StatusOr<std::string>(const grpc::CallbackServerContext& context)>;

// The tenant named in the `clusterkv-tenant` metadata, or "default" (--auth=none). It
// authenticates nothing (any caller can name any tenant); see README "Security".
TenantResolver MetadataTenantResolver();

// The tenant `authenticator` (not owned; must outlive the resolver) derives from the call's peer
// and its `authorization` / `clusterkv-tenant` metadata (server/auth/authenticator.h).
TenantResolver AuthenticatedTenantResolver(const auth::Authenticator* authenticator);

// Cluster mode: recognises calls of other daemons of the cluster (the cluster peer
// token, server/cluster/peer_auth.h). nullopt: not a peer call (the TenantResolver decides);
// otherwise the end tenant the peer acts for (or why the peer call is refused). Such calls get
// CallContext::cluster_peer.
using PeerResolver = std::function<std::optional<absl::StatusOr<std::string>>(
    const grpc::CallbackServerContext& context)>;

// Serves ConnectDataPlane (the UCX data plane's session setup, server/ucx_endpoint.h). Null:
// the daemon has no data plane, and the call answers UNIMPLEMENTED.
using DataPlaneConnector = std::function<absl::StatusOr<v1::ConnectDataPlaneResponse>(
    const CallContext& call, const v1::ConnectDataPlaneRequest& request)>;

// FetchClusters is served raw (grpc::ByteBuffer request and responses, the same bytes on the
// wire as the typed method): its responses are built from the blocks' bytes without a
// protobuf message (proto/fetch_wire.h).
class KvCacheService final
    : public v1::KvCache::WithRawCallbackMethod_FetchClusters<v1::KvCache::CallbackService> {
 public:
  // `handler` and `pool` must outlive the service; so must the objects `instrumentation`
  // points to (per-RPC latency and codes, spans continuing the caller's traceparent; null
  // members are off). A null `pool` runs the handler on the callback thread (unit tests only).
  KvCacheService(RequestHandler* handler, WorkerPool* pool, TenantResolver resolver,
                 DataPlaneConnector data_plane = nullptr, Instrumentation instrumentation = {},
                 PeerResolver peer_resolver = nullptr, WorkerPool* hint_pool = nullptr);

  grpc::ServerUnaryReactor* OpenSequence(grpc::CallbackServerContext* context,
                                         const v1::OpenSequenceRequest* request,
                                         v1::OpenSequenceResponse* response) override;
  grpc::ServerUnaryReactor* CloseSequence(grpc::CallbackServerContext* context,
                                          const v1::CloseSequenceRequest* request,
                                          v1::CloseSequenceResponse* response) override;
  grpc::ServerUnaryReactor* ListSequences(grpc::CallbackServerContext* context,
                                          const v1::ListSequencesRequest* request,
                                          v1::ListSequencesResponse* response) override;
  grpc::ServerReadReactor<v1::PutClustersRequest>* PutClusters(
      grpc::CallbackServerContext* context, v1::PutClustersResponse* response) override;
  grpc::ServerUnaryReactor* AppendClusters(grpc::CallbackServerContext* context,
                                           const v1::AppendClustersRequest* request,
                                           v1::AppendClustersResponse* response) override;
  grpc::ServerUnaryReactor* GetIndex(grpc::CallbackServerContext* context,
                                     const v1::GetIndexRequest* request,
                                     v1::GetIndexResponse* response) override;
  grpc::ServerUnaryReactor* PutState(grpc::CallbackServerContext* context,
                                     const v1::PutStateRequest* request,
                                     v1::PutStateResponse* response) override;
  grpc::ServerUnaryReactor* GetState(grpc::CallbackServerContext* context,
                                     const v1::GetStateRequest* request,
                                     v1::GetStateResponse* response) override;
  grpc::ServerUnaryReactor* SealDocument(grpc::CallbackServerContext* context,
                                         const v1::SealDocumentRequest* request,
                                         v1::SealDocumentResponse* response) override;
  grpc::ServerUnaryReactor* FindPrefix(grpc::CallbackServerContext* context,
                                       const v1::FindPrefixRequest* request,
                                       v1::FindPrefixResponse* response) override;
  grpc::ServerUnaryReactor* GrantDocument(grpc::CallbackServerContext* context,
                                          const v1::GrantDocumentRequest* request,
                                          v1::GrantDocumentResponse* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* FetchClusters(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Select(grpc::CallbackServerContext* context,
                                   const v1::SelectRequest* request,
                                   v1::SelectResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* ConnectDataPlane(grpc::CallbackServerContext* context,
                                             const v1::ConnectDataPlaneRequest* request,
                                             v1::ConnectDataPlaneResponse* response) override;
  // Observability: a client's device-cache hit/miss token counts, into the metrics.
  grpc::ServerUnaryReactor* ReportClientStats(grpc::CallbackServerContext* context,
                                              const v1::ReportClientStatsRequest* request,
                                              v1::ReportClientStatsResponse* response) override;
  // Promotion hints: checked on the callback thread (no I/O), answered at once, promoted by a
  // task on `hint_pool` (the main pool when null), so hints never hold up the calls that wait
  // on the main pool. A full hint queue answers RESOURCE_EXHAUSTED: the hint is dropped.
  grpc::ServerUnaryReactor* HintClusters(grpc::CallbackServerContext* context,
                                         const v1::HintClustersRequest* request,
                                         v1::HintClustersResponse* response) override;

  // Shutdown, once the gRPC server has stopped and before the store closes: releases the
  // host-tier pins that outgoing FetchClusters messages still hold (gRPC may drop a cancelled
  // stream's messages later than that), so none outlives the store.
  void ReleaseHeldPins();

 private:
  // Resolves the caller, runs `body` with its context on the worker pool and finishes the
  // unary call with its status.
  template <typename Response>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, Response* response,
                                  std::function<absl::StatusOr<Response>(const CallContext&)> body);

  RequestHandler* handler_;
  WorkerPool* pool_;
  TenantResolver resolver_;
  DataPlaneConnector data_plane_;
  Instrumentation instrumentation_;
  PeerResolver peer_resolver_;  // cluster mode
  WorkerPool* hint_pool_;
  std::shared_ptr<PinLedger> pins_;  // pins that FetchClusters messages hold (PinLedger)
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_KV_SERVICE_H_
