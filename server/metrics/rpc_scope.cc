#include "server/metrics/rpc_scope.h"

#include <string>

#include "server/tracing/trace_context.h"

namespace clusterkv::server {

RpcScope::RpcScope(const Instrumentation& instrumentation, metrics::Rpc rpc,
                   std::string_view traceparent)
    : metrics_(instrumentation.metrics), rpc_(rpc) {
  ended_ = false;
  if (metrics_ != nullptr) start_ = metrics_->Now();
  if (instrumentation.tracer != nullptr) {
    const std::optional<tracing::SpanContext> parent = tracing::ParseTraceparent(traceparent);
    const std::string method(metrics::RpcName(rpc));
    span_ = instrumentation.tracer->StartSpan("clusterkv.v1.KvCache/" + method,
                                              parent.value_or(tracing::SpanContext()),
                                              tracing::SpanKind::kServer);
    span_.SetAttribute("rpc.system", std::string("grpc"));
    span_.SetAttribute("rpc.service", std::string("clusterkv.v1.KvCache"));
    span_.SetAttribute("rpc.method", method);
  }
}

RpcScope& RpcScope::operator=(RpcScope&& other) noexcept {
  if (this != &other) {
    End(absl::CancelledError("the call ended without a status"));
    metrics_ = other.metrics_;
    rpc_ = other.rpc_;
    start_ = other.start_;
    span_ = std::move(other.span_);
    ended_ = other.ended_;
    other.ended_ = true;  // the moved-from scope records nothing
  }
  return *this;
}

void RpcScope::End(const absl::Status& status) {
  if (ended_) return;
  ended_ = true;
  if (metrics_ != nullptr) metrics_->ObserveRpc(rpc_, status.code(), metrics_->Now() - start_);
  if (span_.recording()) {
    span_.SetAttribute("rpc.grpc.status_code", static_cast<int64_t>(status.code()));
    span_.SetStatus(status);
    span_.End();
  }
}

}  // namespace clusterkv::server
