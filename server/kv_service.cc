#include "server/kv_service.h"

#include <cmath>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "proto/fetch_wire.h"
#include "proto/rpc_support.h"
#include "server/metrics/daemon_metrics.h"
#include "server/metrics/rpc_scope.h"
#include "server/request_validation.h"

namespace clusterkv::server {
namespace {

absl::StatusOr<CallContext> Resolve(const TenantResolver& resolver,
                                    const PeerResolver& peer_resolver,
                                    const grpc::CallbackServerContext& context) {
  if (peer_resolver) {  // cluster mode: another daemon acting for a tenant
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

// ---- observability ----
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
template <> constexpr metrics::Rpc RpcOf<v1::HintClustersResponse>() { return metrics::Rpc::kHintClusters; }
template <> constexpr metrics::Rpc RpcOf<v1::PutStateResponse>() { return metrics::Rpc::kPutState; }
template <> constexpr metrics::Rpc RpcOf<v1::GetStateResponse>() { return metrics::Rpc::kGetState; }
template <> constexpr metrics::Rpc RpcOf<v1::SealDocumentResponse>() { return metrics::Rpc::kSealDocument; }
template <> constexpr metrics::Rpc RpcOf<v1::FindPrefixResponse>() { return metrics::Rpc::kFindPrefix; }
template <> constexpr metrics::Rpc RpcOf<v1::GrantDocumentResponse>() { return metrics::Rpc::kGrantDocument; }
// ---- end observability ----

// Runs `task` on `pool`, or at once on this thread when the service has no pool (tests that
// drive the handler directly). RESOURCE_EXHAUSTED when the pool's queue is full.
absl::Status RunOn(WorkerPool* pool, std::function<void()> task) {
  if (pool == nullptr) {
    task();
    return absl::OkStatus();
  }
  return pool->Submit(std::move(task));
}

// Reads a client stream one message at a time; each message is stored by a task on the worker
// pool (the store's writes may sync to the SSD), which then asks for the next message.
class PutClustersReactor final : public grpc::ServerReadReactor<v1::PutClustersRequest> {
 public:
  PutClustersReactor(RequestHandler* handler, WorkerPool* pool, absl::StatusOr<CallContext> call,
                     v1::PutClustersResponse* response, RpcScope scope)
      : handler_(handler),
        pool_(pool),
        call_(std::move(call)),
        response_(response),
        scope_(std::move(scope)) {
    if (!call_.ok()) {
      Finish(rpc::ToGrpcStatus(call_.status()));
      return;
    }
    call_->trace = scope_.context();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed: the stream is complete
      Finish(grpc::Status::OK);
      return;
    }
    const absl::Status queued = RunOn(pool_, [this] { StoreMessage(); });
    if (!queued.ok()) Finish(rpc::ToGrpcStatus(queued));
  }

  void OnCancel() override {}
  void OnDone() override { delete this; }

 private:
  void StoreMessage() {
    const absl::Status stored = handler_->PutClusters(*call_, request_, response_);
    if (!stored.ok()) {
      Finish(rpc::ToGrpcStatus(stored));
      return;
    }
    request_.Clear();
    StartRead(&request_);
  }

  // Records the call's status, then finishes it. Hides the base's Finish so every path above
  // is instrumented.
  void Finish(grpc::Status status) {
    scope_.End(FromGrpc(status));
    grpc::ServerReadReactor<v1::PutClustersRequest>::Finish(std::move(status));
  }

  RequestHandler* handler_;
  WorkerPool* pool_;
  absl::StatusOr<CallContext> call_;
  v1::PutClustersResponse* response_;
  v1::PutClustersRequest request_;
  RpcScope scope_;
};

// Writes blocks one message at a time; each message is produced by a task on the worker pool
// (a block may have to be read from the SSD) when the previous write is done, so memory per
// call stays at about one message and no gRPC thread waits on the store. The method is served
// raw (grpc::ByteBuffer both ways): the request is parsed here, and each response message is
// built by wire::FetchResponseBuilder straight from the blocks' bytes, byte-identical to the
// protobuf FetchClustersResponse (decision D84).
class FetchClustersReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  FetchClustersReactor(RequestHandler* handler, WorkerPool* pool, PinLedger* pins,
                       absl::StatusOr<CallContext> call, const grpc::ByteBuffer* raw_request,
                       RpcScope scope)
      : handler_(handler), pool_(pool), scope_(std::move(scope)) {
    if (!call.ok()) {
      Finish(rpc::ToGrpcStatus(call.status()));
      return;
    }
    if (absl::Status parsed = ParseRequest(*raw_request); !parsed.ok()) {
      Finish(rpc::ToGrpcStatus(parsed));
      return;
    }
    call->trace = scope_.context();
    // Every block in the host tier: pinned now, without I/O, and streamed from the pins on the
    // gRPC threads; the worker pool is not involved (so a pool busy with SSD reads holds up no
    // host-tier fetch).
    resident_ = handler_->TryResolveResident(*call, request_);
    if (resident_.has_value()) {
      if (!resident_->status.ok()) {
        Finish(rpc::ToGrpcStatus(resident_->status));
        return;
      }
      // All of the request's pins, held through the ledger (see PinLedger).
      auto holders = std::make_shared<std::vector<std::shared_ptr<const void>>>();
      holders->reserve(resident_->blocks.size());
      for (RequestHandler::ResolvedBlock& b : resident_->blocks) {
        holders->push_back(std::move(b.holder));
      }
      held_ = pins->Hold(std::move(holders));
      WriteNext();
      return;
    }
    const absl::Status queued = RunOn(pool_, [this, call = *std::move(call)] { Prepare(call); });
    if (!queued.ok()) Finish(rpc::ToGrpcStatus(queued));
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading"));
      return;
    }
    if (resident_.has_value()) {
      WriteNext();
      return;
    }
    const absl::Status queued = RunOn(pool_, [this] { WriteNext(); });
    if (!queued.ok()) Finish(rpc::ToGrpcStatus(queued));
  }

  void OnCancel() override {}
  void OnDone() override { delete this; }

 private:
  absl::Status ParseRequest(const grpc::ByteBuffer& raw) {
    grpc::ByteBuffer copy(raw);  // shares the slices; Deserialize consumes its argument
    if (!grpc::SerializationTraits<v1::FetchClustersRequest>::Deserialize(&copy, &request_).ok()) {
      return absl::InvalidArgumentError("the request is not a FetchClustersRequest");
    }
    return absl::OkStatus();
  }

  void Prepare(const CallContext& call) {
    absl::StatusOr<RequestHandler::FetchPlan> plan = handler_->PrepareFetch(call, request_);
    if (!plan.ok()) {
      Finish(rpc::ToGrpcStatus(plan.status()));
      return;
    }
    plan_ = *std::move(plan);
    WriteNext();
  }

  void WriteNext() {
    if (next_ == request_.clusters_size()) {
      Finish(grpc::Status::OK);
      return;
    }
    const uint64_t target = handler_->options().fetch_message_bytes;
    while (next_ < request_.clusters_size() &&
           (builder_.blocks() == 0 || builder_.data_bytes() < target)) {
      if (resident_.has_value()) {
        // The message references the pinned bytes; the pins go with gRPC's last reference to
        // them (once they are on the socket) or at the ledger's Close, whichever is first.
        const RequestHandler::ResolvedBlock& b = resident_->blocks[static_cast<size_t>(next_)];
        builder_.AddReferenced(request_.clusters(next_), b.num_tokens, b.bytes,
                               std::shared_ptr<const void>(held_, b.bytes.data()));
        if (++next_ == request_.clusters_size()) held_.reset();  // only the slices hold them now
        continue;
      }
      // Valid only until the sink returns (an SSD read, or a block another node served).
      absl::Status s = handler_->FetchOne(
          *plan_, request_.clusters(next_),
          [&](const v1::ClusterRef& ref, int32_t tokens, absl::Span<const uint8_t> data) {
            builder_.AddCopied(ref, tokens, data);
            return absl::OkStatus();
          });
      if (!s.ok()) {
        Finish(rpc::ToGrpcStatus(s));
        return;
      }
      ++next_;
    }
    message_ = builder_.Take();
    StartWrite(&message_);
  }

  // Records the call's status, then finishes it (hides the base's).
  void Finish(grpc::Status status) {
    scope_.End(FromGrpc(status));
    grpc::ServerWriteReactor<grpc::ByteBuffer>::Finish(std::move(status));
  }

  RequestHandler* handler_;
  WorkerPool* pool_;
  v1::FetchClustersRequest request_;
  std::optional<RequestHandler::FetchPlan> plan_;
  // Set when every block was host-resident at the call's start: the pinned blocks, whose pins
  // `held_` keeps until every block is in a message (then the messages' slices keep them).
  std::optional<RequestHandler::ResolvedFetch> resident_;
  std::shared_ptr<const void> held_;
  int next_ = 0;
  wire::FetchResponseBuilder builder_;
  grpc::ByteBuffer message_;  // the write in flight
  RpcScope scope_;
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

KvCacheService::KvCacheService(RequestHandler* handler, WorkerPool* pool, TenantResolver resolver,
                               DataPlaneConnector data_plane, Instrumentation instrumentation,
                               PeerResolver peer_resolver, WorkerPool* hint_pool)
    : handler_(handler),
      pool_(pool),
      resolver_(std::move(resolver)),
      data_plane_(std::move(data_plane)),
      instrumentation_(instrumentation),
      peer_resolver_(std::move(peer_resolver)),
      hint_pool_(hint_pool != nullptr ? hint_pool : pool),
      pins_(PinLedger::Create()) {}

void KvCacheService::ReleaseHeldPins() { pins_->Close(); }

template <typename Response>
grpc::ServerUnaryReactor* KvCacheService::Unary(
    grpc::CallbackServerContext* context, Response* response,
    std::function<absl::StatusOr<Response>(const CallContext&)> body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // What the task needs, shared so that a task the pool refuses can still be finished here.
  struct Call {
    RpcScope scope;
    CallContext call;
    std::function<absl::StatusOr<Response>(const CallContext&)> body;
  };
  auto state = std::make_shared<Call>();
  state->scope = RpcScope(instrumentation_, RpcOf<Response>(), Traceparent(*context));
  absl::StatusOr<CallContext> call = Resolve(resolver_, peer_resolver_, *context);
  if (!call.ok()) {
    state->scope.End(call.status());
    reactor->Finish(rpc::ToGrpcStatus(call.status()));
    return reactor;
  }
  state->call = *std::move(call);
  state->call.trace = state->scope.context();
  state->body = std::move(body);
  const absl::Status queued = RunOn(pool_, [state, reactor, response] {
    absl::StatusOr<Response> result = state->body(state->call);
    if (result.ok()) *response = *std::move(result);
    state->scope.End(result.status());
    reactor->Finish(rpc::ToGrpcStatus(result.status()));
  });
  if (!queued.ok()) {
    state->scope.End(queued);
    reactor->Finish(rpc::ToGrpcStatus(queued));
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvCacheService::OpenSequence(grpc::CallbackServerContext* context,
                                                       const v1::OpenSequenceRequest* request,
                                                       v1::OpenSequenceResponse* response) {
  return Unary<v1::OpenSequenceResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->OpenSequence(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::CloseSequence(grpc::CallbackServerContext* context,
                                                        const v1::CloseSequenceRequest* request,
                                                        v1::CloseSequenceResponse* response) {
  return Unary<v1::CloseSequenceResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->CloseSequence(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::ListSequences(grpc::CallbackServerContext* context,
                                                        const v1::ListSequencesRequest* request,
                                                        v1::ListSequencesResponse* response) {
  return Unary<v1::ListSequencesResponse>(context, response, [this, request](const CallContext& call) {
    return handler_->ListSequences(call, *request);
  });
}

grpc::ServerReadReactor<v1::PutClustersRequest>* KvCacheService::PutClusters(
    grpc::CallbackServerContext* context, v1::PutClustersResponse* response) {
  return new PutClustersReactor(
      handler_, pool_, Resolve(resolver_, peer_resolver_, *context), response,
      RpcScope(instrumentation_, metrics::Rpc::kPutClusters, Traceparent(*context)));
}

grpc::ServerUnaryReactor* KvCacheService::AppendClusters(grpc::CallbackServerContext* context,
                                                         const v1::AppendClustersRequest* request,
                                                         v1::AppendClustersResponse* response) {
  return Unary<v1::AppendClustersResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->AppendClusters(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::GetIndex(grpc::CallbackServerContext* context,
                                                   const v1::GetIndexRequest* request,
                                                   v1::GetIndexResponse* response) {
  return Unary<v1::GetIndexResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->GetIndex(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::PutState(grpc::CallbackServerContext* context,
                                                   const v1::PutStateRequest* request,
                                                   v1::PutStateResponse* response) {
  return Unary<v1::PutStateResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->PutState(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::GetState(grpc::CallbackServerContext* context,
                                                   const v1::GetStateRequest* request,
                                                   v1::GetStateResponse* response) {
  return Unary<v1::GetStateResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->GetState(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::SealDocument(grpc::CallbackServerContext* context,
                                                       const v1::SealDocumentRequest* request,
                                                       v1::SealDocumentResponse* response) {
  return Unary<v1::SealDocumentResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->SealDocument(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::FindPrefix(grpc::CallbackServerContext* context,
                                                     const v1::FindPrefixRequest* request,
                                                     v1::FindPrefixResponse* response) {
  return Unary<v1::FindPrefixResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->FindPrefix(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::GrantDocument(grpc::CallbackServerContext* context,
                                                        const v1::GrantDocumentRequest* request,
                                                        v1::GrantDocumentResponse* response) {
  return Unary<v1::GrantDocumentResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->GrantDocument(call, *request); });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* KvCacheService::FetchClusters(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new FetchClustersReactor(
      handler_, pool_, pins_.get(), Resolve(resolver_, peer_resolver_, *context), request,
      RpcScope(instrumentation_, metrics::Rpc::kFetchClusters, Traceparent(*context)));
}

grpc::ServerUnaryReactor* KvCacheService::Select(grpc::CallbackServerContext* context,
                                                 const v1::SelectRequest* request,
                                                 v1::SelectResponse* response) {
  return Unary<v1::SelectResponse>(
      context, response, [this, request](const CallContext& call) { return handler_->Select(call, *request); });
}

grpc::ServerUnaryReactor* KvCacheService::Stats(grpc::CallbackServerContext* context,
                                                const v1::StatsRequest*,
                                                v1::StatsResponse* response) {
  return Unary<v1::StatsResponse>(
      context, response, [this](const CallContext& call) { return handler_->Stats(call); });
}

grpc::ServerUnaryReactor* KvCacheService::ConnectDataPlane(
    grpc::CallbackServerContext* context, const v1::ConnectDataPlaneRequest* request,
    v1::ConnectDataPlaneResponse* response) {
  return Unary<v1::ConnectDataPlaneResponse>(
      context, response,
      [this, request](const CallContext& call) -> absl::StatusOr<v1::ConnectDataPlaneResponse> {
        if (!data_plane_) {
          return absl::UnimplementedError("this daemon serves no UCX data plane");
        }
        return data_plane_(call, *request);
      });
}

grpc::ServerUnaryReactor* KvCacheService::HintClusters(grpc::CallbackServerContext* context,
                                                       const v1::HintClustersRequest* request,
                                                       v1::HintClustersResponse* response) {
  (void)response;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  RpcScope scope(instrumentation_, metrics::Rpc::kHintClusters, Traceparent(*context));
  absl::StatusOr<CallContext> call = Resolve(resolver_, peer_resolver_, *context);
  absl::Status status = call.status();
  if (status.ok()) status = handler_->CheckHint(*call, *request);
  if (status.ok()) {
    // The call is answered before the task runs: the task owns copies of what it reads.
    status = RunOn(hint_pool_, [handler = handler_, who = *std::move(call), hint = *request] {
      // Best effort: a hint naming an unknown sequence, or one whose promotion fails, only
      // promotes less; the fetch that follows reports any real problem.
      handler->PromoteHinted(who, hint).IgnoreError();
    });
  }
  scope.End(status);
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

// ---- observability ----
grpc::ServerUnaryReactor* KvCacheService::ReportClientStats(
    grpc::CallbackServerContext* context, const v1::ReportClientStatsRequest* request,
    v1::ReportClientStatsResponse* response) {
  return Unary<v1::ReportClientStatsResponse>(
      context, response,
      [this, request](const CallContext& call) -> absl::StatusOr<v1::ReportClientStatsResponse> {
        // Counts are deltas since the client's previous report; 2^48 tokens in one report
        // is not a real client, so it is refused rather than allowed to swamp the counters.
        constexpr uint64_t kMaxTokens = uint64_t{1} << 48;
        if (request->device_cache_hit_tokens() > kMaxTokens ||
            request->device_cache_miss_tokens() > kMaxTokens) {
          return absl::InvalidArgumentError("device-cache token counts above 2^48 per report");
        }
        const auto& recall = request->estimated_recall_counts();
        if (!recall.empty() &&
            recall.size() != static_cast<int>(kEstimatedRecallBounds.size())) {
          return absl::InvalidArgumentError(
              absl::StrCat("estimated_recall_counts has ", recall.size(), " buckets, expected ",
                           kEstimatedRecallBounds.size(), " or none"));
        }
        uint64_t estimates = 0;
        for (uint64_t n : recall) {
          if (n > kMaxTokens) {
            return absl::InvalidArgumentError("estimated-recall counts above 2^48 per report");
          }
          estimates += n;
        }
        const double sum = request->estimated_recall_sum();
        if (!std::isfinite(sum) || sum < 0 || sum > static_cast<double>(estimates)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "estimated_recall_sum ", sum, " is not in [0, ", estimates,
              "] (each estimate is in [0, 1])"));
        }
        RETURN_IF_ERROR(ValidateSequenceReport(*request));
        const SequenceKey key{call.tenant, request->sequence_id()};
        if (!key.sequence.empty()) RETURN_IF_ERROR(key.Validate());
        // A sequence's history is kept only while the caller has it open here: its entries are
        // bounded by the open sequences, and a report cannot invent sequences.
        if (instrumentation_.metrics != nullptr && !key.sequence.empty() &&
            handler_->HasOpenSession(key)) {
          metrics::SequenceReport point;
          point.at = instrumentation_.metrics->Now();
          point.step = request->step();
          point.hit_tokens = request->device_cache_hit_tokens();
          point.miss_tokens = request->device_cache_miss_tokens();
          point.recall_estimates = estimates;
          point.recall_sum = sum;
          point.selected_tokens = request->selected_tokens();
          point.selected_heads = request->selected_heads();
          instrumentation_.metrics->ReportSequence(key.tenant, key.sequence, point);
        }
        // A traced report carries the client's estimated recall on a child span, so a trace of
        // a decode shows how much attention mass the steps between two reports kept.
        if (instrumentation_.tracer != nullptr && call.trace.sampled()) {
          tracing::Span span =
              instrumentation_.tracer->StartSpan("client.estimated_recall", call.trace);
          span.SetAttribute("clusterkv.sequence", request->sequence_id());
          span.SetAttribute("clusterkv.step", static_cast<int64_t>(request->step()));
          span.SetAttribute("clusterkv.estimated_recall.count", static_cast<int64_t>(estimates));
          if (estimates > 0) {
            span.SetAttribute("clusterkv.estimated_recall.mean",
                              sum / static_cast<double>(estimates));
          }
          if (request->selected_heads() > 0) {
            span.SetAttribute("clusterkv.budget.mean_tokens",
                              static_cast<double>(request->selected_tokens()) /
                                  static_cast<double>(request->selected_heads()));
          }
        }
        if (instrumentation_.metrics != nullptr) {
          instrumentation_.metrics->ReportClientStats(call.tenant,
                                                      request->device_cache_hit_tokens(),
                                                      request->device_cache_miss_tokens());
          if (estimates > 0) {
            instrumentation_.metrics->ReportEstimatedRecall(
                call.tenant, std::vector<uint64_t>(recall.begin(), recall.end()), sum);
          }
        }
        return v1::ReportClientStatsResponse();
      });
}
// ---- end observability ----

}  // namespace clusterkv::server
