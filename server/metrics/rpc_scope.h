// RpcScope: the observability of one KvCache call, from its arrival to its status: the
// latency histogram and status-code counter of server/metrics/daemon_metrics.h, and a server
// span that continues the client's trace (W3C traceparent from the call's metadata).
// A default-constructed or disabled scope (no metrics, no tracer) does nothing.
//
// Example (a unary call):
//   RpcScope scope(instrumentation, metrics::Rpc::kStats, traceparent_header);
//   call.trace = scope.context();        // handler spans become children of the RPC's span
//   ...
//   scope.End(status);
//
// Move-only; used by one thread at a time. End() is idempotent; a scope destroyed without
// End() records CANCELLED.
#ifndef CLUSTERKV_SERVER_METRICS_RPC_SCOPE_H_
#define CLUSTERKV_SERVER_METRICS_RPC_SCOPE_H_

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/metrics/daemon_metrics.h"
#include "server/metrics/instrumentation.h"
#include "server/tracing/tracer.h"

namespace clusterkv::server {

class RpcScope {
 public:
  RpcScope() = default;
  // `traceparent`: the call's traceparent metadata value ("" when absent).
  RpcScope(const Instrumentation& instrumentation, metrics::Rpc rpc, std::string_view traceparent);
  RpcScope(RpcScope&& other) noexcept { *this = std::move(other); }
  RpcScope& operator=(RpcScope&& other) noexcept;
  ~RpcScope() { End(absl::CancelledError("the call ended without a status")); }

  // The RPC span's context (invalid when tracing is off).
  const tracing::SpanContext& context() const { return span_.context(); }
  tracing::Span& span() { return span_; }

  void End(const absl::Status& status);

 private:
  metrics::DaemonMetrics* metrics_ = nullptr;
  metrics::Rpc rpc_ = metrics::Rpc::kStats;
  absl::Time start_;
  tracing::Span span_;
  bool ended_ = true;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_METRICS_RPC_SCOPE_H_
