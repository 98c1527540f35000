// KvCacheService: the gRPC callback-API front of RequestHandler (service clusterkv.v1.KvCache).
// Unary calls answer from the handler on the callback thread; PutClusters reads its stream one
// message at a time; FetchClusters writes one message at a time, producing each lazily so a
// large fetch never sits in memory whole. Reactors own their per-call state and delete
// themselves in OnDone.
#ifndef CLUSTERKV_SERVER_KV_SERVICE_H_
#define CLUSTERKV_SERVER_KV_SERVICE_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "clusterkv/v1/kvcache.grpc.pb.h"
#include "server/auth/authenticator.h"      // tenants and security (issue 8)
#include "server/metrics/instrumentation.h"  // observability (issue 7)
#include "server/request_handler.h"

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

// Cluster mode (issue 10): recognises calls of other daemons of the cluster (the cluster peer
// token, server/cluster/peer_auth.h). nullopt: not a peer call (the TenantResolver decides);
// otherwise the end tenant the peer acts for (or why the peer call is refused). Such calls get
// CallContext::cluster_peer.
using PeerResolver = std::function<std::optional<absl::StatusOr<std::string>>(
    const grpc::CallbackServerContext& context)>;

// Serves ConnectDataPlane (the UCX data plane's session setup, server/ucx_endpoint.h). Null:
// the daemon has no data plane, and the call answers UNIMPLEMENTED.
using DataPlaneConnector = std::function<absl::StatusOr<v1::ConnectDataPlaneResponse>(
    const CallContext& call, const v1::ConnectDataPlaneRequest& request)>;

class KvCacheService final : public v1::KvCache::CallbackService {
 public:
  // `handler` must outlive the service; so must the objects `instrumentation` points to
  // (observability, issue 7: per-RPC latency and codes, spans continuing the caller's
  // traceparent; null members are off).
  KvCacheService(RequestHandler* handler, TenantResolver resolver,
                 DataPlaneConnector data_plane = nullptr, Instrumentation instrumentation = {},
                 PeerResolver peer_resolver = nullptr);

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
  grpc::ServerWriteReactor<v1::FetchClustersResponse>* FetchClusters(
      grpc::CallbackServerContext* context, const v1::FetchClustersRequest* request) override;
  grpc::ServerUnaryReactor* Select(grpc::CallbackServerContext* context,
                                   const v1::SelectRequest* request,
                                   v1::SelectResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* ConnectDataPlane(grpc::CallbackServerContext* context,
                                             const v1::ConnectDataPlaneRequest* request,
                                             v1::ConnectDataPlaneResponse* response) override;
  // Observability (issue 7): a client's device-cache hit/miss token counts, into the metrics.
  grpc::ServerUnaryReactor* ReportClientStats(grpc::CallbackServerContext* context,
                                              const v1::ReportClientStatsRequest* request,
                                              v1::ReportClientStatsResponse* response) override;

 private:
  // Runs `body` with the caller's context and finishes the unary call with its status.
  template <typename Response>
  grpc::ServerUnaryReactor* Unary(
      grpc::CallbackServerContext* context, Response* response,
      const std::function<absl::StatusOr<Response>(const CallContext&)>& body);

  RequestHandler* handler_;
  TenantResolver resolver_;
  DataPlaneConnector data_plane_;
  Instrumentation instrumentation_;  // observability (issue 7)
  PeerResolver peer_resolver_;       // cluster mode (issue 10)
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_KV_SERVICE_H_
