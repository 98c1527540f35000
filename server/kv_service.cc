#include "server/kv_service.h"

#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/rpc_support.h"
#include "server/metrics/daemon_metrics.h"  // observability (issue 7)
#include "server/metrics/rpc_scope.h"       // observability (issue 7)

namespace clusterkv::server {
namespace {

absl::StatusOr<CallContext> Resolve(const TenantResolver& resolver,
                                    const PeerResolver& peer_resolver,
                                    const grpc::CallbackServerContext& context) {
  if (peer_resolver) {  // cluster mode (issue 10): another daemon acting for a tenant
    std::optional<absl::StatusOr<std::string>> peer = peer_resolver(context);
    if (peer.has_value()) {
      if (!peer->ok()) return peer->status();
      CallContext call;
      call.tenant = **std::move(peer);
      call.cluster_peer = true;
      return call;
    }
  }
  absl::StatusOr<std::string> tenant = resolver(context);
  if (!tenant.ok()) return tenant.status();
  CallContext call;
  call.tenant = *std::move(tenant);
  // "fd:<n>": a Unix-socket connection the daemon's own listener accepted (--auth=peercred).
  const std::string peer = context.peer();
  call.local_peer = absl::StartsWith(peer, "unix:") || absl::StartsWith(peer, "fd:");
  return call;
}

// ---- observability (issue 7) ----
// The W3C traceparent the client sent in the call's metadata ("" when none).
std::string_view Traceparent(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(tracing::kTraceparentKey);
  if (it == metadata.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// The RPC of each unary response type, so Unary<Response> instruments every call by itself.
template <typename Response>
constexpr metrics::Rpc RpcOf();
template <> constexpr metrics::Rpc RpcOf<v1::OpenSequenceResponse>() { return metrics::Rpc::kOpenSequence; }
template <> constexpr metrics::Rpc RpcOf<v1::CloseSequenceResponse>() { return metrics::Rpc::kCloseSequence; }
template <> constexpr metrics::Rpc RpcOf<v1::ListSequencesResponse>() { return metrics::Rpc::kListSequences; }
template <> constexpr metrics::Rpc RpcOf<v1::AppendClustersResponse>() { return metrics::Rpc::kAppendClusters; }
template <> constexpr metrics::Rpc RpcOf<v1::GetIndexResponse>() { return metrics::Rpc::kGetIndex; }
template <> constexpr metrics::Rpc RpcOf<v1::SelectResponse>() { return metrics::Rpc::kSelect; }
template <> constexpr metrics::Rpc RpcOf<v1::StatsResponse>() { return metrics::Rpc::kStats; }
template <> constexpr metrics::Rpc RpcOf<v1::ConnectDataPlaneResponse>() { return metrics::Rpc::kConnectDataPlane; }
template <> constexpr metrics::Rpc RpcOf<v1::ReportClientStatsResponse>() { return metrics::Rpc::kReportClientStats; }
// ---- end observability ----

// Reads a client stream one message at a time, handing each to the handler.
class PutClustersReactor final : public grpc::ServerReadReactor<v1::PutClustersRequest> {
 public:
  PutClustersReactor(RequestHandler* handler, absl::StatusOr<CallContext> call,
                     v1::PutClustersResponse* response, RpcScope scope)
      : handler_(handler), call_(std::move(call)), response_(response), scope_(std::move(scope)) {
    if (call_.ok()) call_->trace = scope_.context();  // observability (issue 7)
    if (!call_.ok()) {
      Finish(rpc::ToGrpcStatus(call_.status()));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed: the stream is complete
      Finish(rpc::ToGrpcStatus(status_));
      return;
    }
    if (status_.ok()) status_ = handler_->PutClusters(*call_, request_, response_);
    if (!status_.ok()) {
      Finish(rpc::ToGrpcStatus(status_));
      return;
    }
    request_.Clear();
    StartRead(&request_);
  }

  void OnCancel() override {}
  void OnDone() override { delete this; }

 private:
  // Observability (issue 7): records the call's status, then finishes it. Hides the base's
  // Finish so every path above is instrumented.
  void Finish(grpc::Status status) {
    scope_.End(FromGrpc(status));
    grpc::ServerReadReactor<v1::PutClustersRequest>::Finish(std::move(status));
  }

  RequestHandler* handler_;
  absl::StatusOr<CallContext> call_;
  v1::PutClustersResponse* response_;
  v1::PutClustersRequest request_;
  absl::Status status_;
  RpcScope scope_;  // observability (issue 7)
};

// Writes blocks one message at a time; each message is produced when the previous write is
// done, so memory per call stays at about one message.
class FetchClustersReactor final : public grpc::ServerWriteReactor<v1::FetchClustersResponse> {
 public:
  FetchClustersReactor(RequestHandler* handler, absl::StatusOr<CallContext> call,
                       const v1::FetchClustersRequest* request, RpcScope scope)
      : handler_(handler), request_(request), scope_(std::move(scope)) {
    if (call.ok()) call->trace = scope_.context();  // observability (issue 7)
    if (!call.ok()) {
      Finish(rpc::ToGrpcStatus(call.status()));
      return;
    }
    absl::StatusOr<RequestHandler::FetchPlan> plan = handler_->PrepareFetch(*call, *request_);
    if (!plan.ok()) {
      Finish(rpc::ToGrpcStatus(plan.status()));
      return;
    }
    plan_ = *std::move(plan);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading"));
      return;
    }
    WriteNext();
  }

  void OnCancel() override {}
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (next_ == request_->clusters_size()) {
      Finish(grpc::Status::OK);
      return;
    }
    message_.Clear();
    uint64_t bytes = 0;
    const uint64_t target = handler_->options().fetch_message_bytes;
    while (next_ < request_->clusters_size() && (bytes == 0 || bytes < target)) {
      absl::Status s = handler_->FetchOne(
          *plan_, request_->clusters(next_),
          [&](const v1::ClusterRef& ref, int32_t tokens, absl::Span<const uint8_t> data) {
            v1::ClusterBlock* block = message_.add_blocks();
            *block->mutable_id() = ref;
            block->set_num_tokens(tokens);
            block->set_data(reinterpret_cast<const char*>(data.data()), data.size());
            bytes += data.size();
            return absl::OkStatus();
          });
      if (!s.ok()) {
        Finish(rpc::ToGrpcStatus(s));
        return;
      }
      ++next_;
    }
    StartWrite(&message_);
  }

  // Observability (issue 7): records the call's status, then finishes it (hides the base's).
  void Finish(grpc::Status status) {
    scope_.End(FromGrpc(status));
    grpc::ServerWriteReactor<v1::FetchClustersResponse>::Finish(std::move(status));
  }

  RequestHandler* handler_;
  const v1::FetchClustersRequest* request_;
  std::optional<RequestHandler::FetchPlan> plan_;
  int next_ = 0;
  v1::FetchClustersResponse message_;
  RpcScope scope_;  // observability (issue 7)
};

}  // namespace

TenantResolver MetadataTenantResolver() {
  return [](const grpc::CallbackServerContext& context) -> absl::StatusOr<std::string> {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find(rpc::kTenantMetadataKey);
    if (it == metadata.end()) return std::string("default");
    if (it->second.empty()) {
      return absl::InvalidArgumentError("the clusterkv-tenant metadata is empty");
    }
    return std::string(it->second.data(), it->second.size());
  };
}

TenantResolver AuthenticatedTenantResolver(const auth::Authenticator* authenticator) {
  return [authenticator](
             const grpc::CallbackServerContext& context) -> absl::StatusOr<std::string> {
    const auto& metadata = context.client_metadata();
    auto value = [&](const char* key) -> std::optional<absl::string_view> {
      auto it = metadata.find(key);
      if (it == metadata.end()) return std::nullopt;
      return absl::string_view(it->second.data(), it->second.size());
    };
    const std::string peer = context.peer();
    auth::CallCredentials call;
    call.peer = peer;
    call.authorization = value("authorization");
    call.tenant_metadata = value(rpc::kTenantMetadataKey);
    return authenticator->Resolve(call);
  };
}

KvCacheService::KvCacheService(RequestHandler* handler, TenantResolver resolver,
                               DataPlaneConnector data_plane, Instrumentation instrumentation,
                               PeerResolver peer_resolver)
    : handler_(handler),
      resolver_(std::move(resolver)),
      data_plane_(std::move(data_plane)),
      instrumentation_(instrumentation),
      peer_resolver_(std::move(peer_resolver)) {}

template <typename Response>
grpc::ServerUnaryReactor* KvCacheService::Unary(
    grpc::CallbackServerContext* context, Response* response,
    const std::function<absl::StatusOr<Response>(const CallContext&)>& body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  RpcScope scope(instrumentation_, RpcOf<Response>(), Traceparent(*context));  // issue 7
  absl::StatusOr<CallContext> call = Resolve(resolver_, peer_resolver_, *context);
  if (!call.ok()) {
    scope.End(call.status());
    reactor->Finish(rpc::ToGrpcStatus(call.status()));
    return reactor;
  }
  call->trace = scope.context();
  absl::StatusOr<Response> result = body(*call);
  if (result.ok()) *response = *std::move(result);
  scope.End(result.status());
  reactor->Finish(rpc::ToGrpcStatus(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* KvCacheService::OpenSequence(grpc::CallbackServerContext* context,
                                                       const v1::OpenSequenceRequest* request,
                                                       v1::OpenSequenceResponse* response) {
  return Unary<v1::OpenSequenceResponse>(
      context, response, [&](const CallContext& call) { return handler_->OpenSequence(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::CloseSequence(grpc::CallbackServerContext* context,
                                                        const v1::CloseSequenceRequest* request,
                                                        v1::CloseSequenceResponse* response) {
  return Unary<v1::CloseSequenceResponse>(
      context, response, [&](const CallContext& call) { return handler_->CloseSequence(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::ListSequences(grpc::CallbackServerContext* context,
                                                        const v1::ListSequencesRequest*,
                                                        v1::ListSequencesResponse* response) {
  return Unary<v1::ListSequencesResponse>(
      context, response, [&](const CallContext& call) { return handler_->ListSequences(call); });
}

grpc::ServerReadReactor<v1::PutClustersRequest>* KvCacheService::PutClusters(
    grpc::CallbackServerContext* context, v1::PutClustersResponse* response) {
  return new PutClustersReactor(
      handler_, Resolve(resolver_, peer_resolver_, *context), response,
      RpcScope(instrumentation_, metrics::Rpc::kPutClusters, Traceparent(*context)));
}

grpc::ServerUnaryReactor* KvCacheService::AppendClusters(grpc::CallbackServerContext* context,
                                                         const v1::AppendClustersRequest* request,
                                                         v1::AppendClustersResponse* response) {
  return Unary<v1::AppendClustersResponse>(
      context, response, [&](const CallContext& call) { return handler_->AppendClusters(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::GetIndex(grpc::CallbackServerContext* context,
                                                   const v1::GetIndexRequest* request,
                                                   v1::GetIndexResponse* response) {
  return Unary<v1::GetIndexResponse>(
      context, response, [&](const CallContext& call) { return handler_->GetIndex(call, *request); });
}

grpc::ServerWriteReactor<v1::FetchClustersResponse>* KvCacheService::FetchClusters(
    grpc::CallbackServerContext* context, const v1::FetchClustersRequest* request) {
  return new FetchClustersReactor(
      handler_, Resolve(resolver_, peer_resolver_, *context), request,
      RpcScope(instrumentation_, metrics::Rpc::kFetchClusters, Traceparent(*context)));
}

grpc::ServerUnaryReactor* KvCacheService::Select(grpc::CallbackServerContext* context,
                                                 const v1::SelectRequest* request,
                                                 v1::SelectResponse* response) {
  return Unary<v1::SelectResponse>(
      context, response, [&](const CallContext& call) { return handler_->Select(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::Stats(grpc::CallbackServerContext* context,
                                                const v1::StatsRequest*,
                                                v1::StatsResponse* response) {
  return Unary<v1::StatsResponse>(context, response,
                                  [&](const CallContext& call) { return handler_->Stats(call); });
}

grpc::ServerUnaryReactor* KvCacheService::ConnectDataPlane(
    grpc::CallbackServerContext* context, const v1::ConnectDataPlaneRequest* request,
    v1::ConnectDataPlaneResponse* response) {
  return Unary<v1::ConnectDataPlaneResponse>(
      context, response,
      [&](const CallContext& call) -> absl::StatusOr<v1::ConnectDataPlaneResponse> {
        if (!data_plane_) {
          return absl::UnimplementedError("this daemon serves no UCX data plane");
        }
        return data_plane_(call, *request);
      });
}

// ---- observability (issue 7) ----
grpc::ServerUnaryReactor* KvCacheService::ReportClientStats(
    grpc::CallbackServerContext* context, const v1::ReportClientStatsRequest* request,
    v1::ReportClientStatsResponse* response) {
  return Unary<v1::ReportClientStatsResponse>(
      context, response,
      [&](const CallContext& call) -> absl::StatusOr<v1::ReportClientStatsResponse> {
        // Counts are deltas since the client's previous report; 2^48 tokens in one report
        // is not a real client, so it is refused rather than allowed to swamp the counters.
        constexpr uint64_t kMaxTokens = uint64_t{1} << 48;
        if (request->device_cache_hit_tokens() > kMaxTokens ||
            request->device_cache_miss_tokens() > kMaxTokens) {
          return absl::InvalidArgumentError("device-cache token counts above 2^48 per report");
        }
        if (instrumentation_.metrics != nullptr) {
          instrumentation_.metrics->ReportClientStats(call.tenant,
                                                      request->device_cache_hit_tokens(),
                                                      request->device_cache_miss_tokens());
        }
        return v1::ReportClientStatsResponse();
      });
}
// ---- end observability ----

}  // namespace clusterkv::server
