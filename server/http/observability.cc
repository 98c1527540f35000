#include "server/http/observability.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/http/http_endpoint.h"
#include "server/http/sequence_api.h"
#include "server/tracing/exporters.h"

namespace clusterkv::server::http {

absl::StatusOr<std::unique_ptr<Observability>> Observability::Start(
    const ObservabilityOptions& options) {
  if (!(options.trace_sample_ratio >= 0.0 && options.trace_sample_ratio <= 1.0)) {
    return absl::InvalidArgumentError("the trace sample ratio must be in [0, 1]");
  }
  std::unique_ptr<Observability> o(new Observability());
  o->metrics_ = std::make_unique<metrics::DaemonMetrics>();

  std::vector<std::unique_ptr<tracing::SpanExporter>> exporters;
  if (!options.otlp_endpoint.empty()) {
    auto otlp = tracing::OtlpHttpExporter::Create(options.otlp_endpoint, "clusterkvd");
    if (!otlp.ok()) return otlp.status();
    exporters.push_back(*std::move(otlp));
  }
  if (!options.trace_file.empty()) {
    auto file = tracing::JsonLinesFileExporter::Create(options.trace_file, "clusterkvd");
    if (!file.ok()) return file.status();
    exporters.push_back(*std::move(file));
  }
  if (!exporters.empty()) {
    tracing::TracerOptions tracer_options;
    tracer_options.sample_ratio = options.trace_sample_ratio;
    tracer_options.seed = options.trace_seed;
    o->tracer_ = std::make_unique<tracing::Tracer>(tracer_options, std::move(exporters));
    tracing::Tracer* tracer = o->tracer_.get();
    o->metrics_->AttachTraceCounts([tracer] {
      return metrics::TraceCounts{tracer->exported(), tracer->dropped(),
                                  tracer->export_failures()};
    });
  }

  if (!options.metrics_address.empty()) {
    HttpEndpointOptions http_options;
    http_options.address = options.metrics_address;
    Observability* self = o.get();
    http_options.metrics = [self] { return self->metrics_->Render(); };
    http_options.ready = [self] { return self->ready(); };
    http_options.sequences_json = [self] { return SequencesJson(*self->metrics_); };
    http_options.sequence_json = [self](const std::string& tenant, const std::string& sequence) {
      return SequenceJson(*self->metrics_, tenant, sequence);
    };
    auto endpoint = HttpEndpoint::Start(std::move(http_options));
    if (absl::IsUnavailable(endpoint.status())) {
      // The port is taken (e.g. a second daemon on a shared host network): the KV cache
      // matters more than its metrics, so serve without HTTP and say so (http_status()).
      o->http_status_ = endpoint.status();
    } else if (!endpoint.ok()) {
      return endpoint.status();
    } else {
      o->http_ = *std::move(endpoint);
    }
  }
  return o;
}

Observability::~Observability() {
  MarkStopping();
  Shutdown();
}

Instrumentation Observability::instrumentation() {
  return Instrumentation{metrics_.get(), tracer_.get()};
}

void Observability::MarkServing(storage::TieredStore* store, const std::string& ssd_path) {
  metrics_->AttachStore(store, ssd_path);
  absl::MutexLock lock(&mu_);
  ready_ = true;
}

void Observability::MarkStopping() {
  {
    absl::MutexLock lock(&mu_);
    ready_ = false;
  }
  metrics_->AttachStore(nullptr, "");  // waits for a scrape that still reads the store
}

void Observability::Shutdown() {
  if (http_ != nullptr) http_->Stop();
  if (tracer_ != nullptr) tracer_->Shutdown();
}

bool Observability::ready() const {
  absl::MutexLock lock(&mu_);
  return ready_;
}

int Observability::metrics_port() const { return http_ != nullptr ? http_->port() : 0; }

}  // namespace clusterkv::server::http
