// Instrumentation: the observability objects the request path reports to, injected into
// RequestHandler (HandlerOptions) and KvCacheService. Each pointer may be null (that part is
// disabled), so code and tests that build a handler without observability keep working.
// Not owned; the daemon keeps them alive longer than the handler and the service.
#ifndef CLUSTERKV_SERVER_METRICS_INSTRUMENTATION_H_
#define CLUSTERKV_SERVER_METRICS_INSTRUMENTATION_H_

namespace clusterkv::server {
namespace metrics {
class DaemonMetrics;

// How bytes move between the daemon and a client (the `transport` label).
enum class Transport { kGrpc, kUcx };
inline constexpr int kNumTransports = 2;
}  // namespace metrics
namespace tracing {
class Tracer;
}  // namespace tracing

struct Instrumentation {
  metrics::DaemonMetrics* metrics = nullptr;
  tracing::Tracer* tracer = nullptr;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_METRICS_INSTRUMENTATION_H_
