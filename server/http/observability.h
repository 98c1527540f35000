// Observability: what clusterkvd runs for metrics, traces and its HTTP endpoint, in one object
// the Daemon owns (DESIGN.md section 7):
//   - DaemonMetrics (server/metrics/daemon_metrics.h), always on;
//   - a Tracer with the configured exporters (OTLP/HTTP JSON, JSON lines), only when one is
//     configured;
//   - the HTTP endpoint (/metrics, /healthz, /readyz, /dashboard) unless the address is "".
//
// Lifecycle (the Daemon's): Start() before the store opens (so /healthz answers and /readyz
// says 503 while RocksDB recovers); MarkServing(store) once the store is open and gRPC serves;
// MarkStopping() before the store closes; Shutdown() after the gRPC server drained (stops HTTP,
// exports the queued spans). Thread-safe.
#ifndef CLUSTERKV_SERVER_HTTP_OBSERVABILITY_H_
#define CLUSTERKV_SERVER_HTTP_OBSERVABILITY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/metrics/daemon_metrics.h"
#include "server/metrics/instrumentation.h"
#include "server/tracing/tracer.h"

namespace clusterkv::storage {
class TieredStore;
}  // namespace clusterkv::storage

namespace clusterkv::server::http {

class HttpEndpoint;

struct ObservabilityOptions {
  // HTTP endpoint "host:port"; "" disables it (metrics are still kept). Port 0: a free port.
  std::string metrics_address = "127.0.0.1:9464";
  // OTLP/HTTP JSON collector URL, e.g. http://127.0.0.1:4318/v1/traces ("" = none).
  std::string otlp_endpoint;
  // JSON-lines span file ("" = none).
  std::string trace_file;
  // Fraction of new traces (requests without a traceparent) that are sampled, in [0, 1].
  double trace_sample_ratio = 0.01;
  uint64_t trace_seed = 0;  // 0: random per process
};

class Observability {
 public:
  // InvalidArgument for a bad address, endpoint, ratio or unopenable trace file. A port that
  // cannot be bound is not fatal (see http_status()).
  static absl::StatusOr<std::unique_ptr<Observability>> Start(const ObservabilityOptions& options);
  ~Observability();
  Observability(const Observability&) = delete;
  Observability& operator=(const Observability&) = delete;

  // Pointers for RequestHandler and KvCacheService; valid until this object is destroyed.
  Instrumentation instrumentation();
  metrics::DaemonMetrics& metrics() { return *metrics_; }
  tracing::Tracer* tracer() { return tracer_.get(); }

  // `store` (not owned) is open and the gRPC socket is served: /readyz turns 200 and the tier
  // metrics are pulled from it. `ssd_path` is the store's directory.
  void MarkServing(storage::TieredStore* store, const std::string& ssd_path);
  // /readyz turns 503 and the store is no longer read (waits for a scrape in progress).
  void MarkStopping();
  // Stops HTTP and exports queued spans. Idempotent.
  void Shutdown();

  // The bound HTTP port (0 when HTTP is disabled or could not bind).
  int metrics_port() const;
  // OK, or why the HTTP endpoint is not served although an address was given (Unavailable:
  // the port could not be bound; the daemon serves on without it).
  const absl::Status& http_status() const { return http_status_; }

 private:
  Observability() = default;
  bool ready() const;

  std::unique_ptr<metrics::DaemonMetrics> metrics_;
  std::unique_ptr<tracing::Tracer> tracer_;
  std::unique_ptr<HttpEndpoint> http_;
  absl::Status http_status_;
  mutable absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace clusterkv::server::http

#endif  // CLUSTERKV_SERVER_HTTP_OBSERVABILITY_H_
