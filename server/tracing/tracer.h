// Tracer: OTLP-compatible spans for the daemon's requests (a span per RPC, with children for
// tier lookups, SSD reads and transfers), sampled, and exported off the request path.
//
// - Sampling is parent-based: a request whose traceparent says "sampled" is traced, one that
//   says "not sampled" is not, and a request without one starts a new trace that is sampled
//   with probability `sample_ratio` (decided from the trace id, so every service that sees the
//   same id decides the same way).
// - A finished span is queued (bounded) for a background thread that hands batches to the
//   exporters (server/tracing/exporters.h). A full queue drops the span and counts it; nothing
//   on the request path waits for an exporter.
//
// Ownership: the Tracer owns its exporters and its thread; Shutdown() (or the destructor)
// exports what is queued and joins. A Span holds a pointer to its Tracer and must end before
// the Tracer goes. Thread-safe; a Span is used by one thread at a time.
//
// Example:
//   Span rpc = tracer.StartSpan("clusterkv.v1.KvCache/FetchClusters", remote_parent,
//                               SpanKind::kServer);
//   { Span lookup = tracer.StartSpan("tier.pin", rpc.context()); lookup.SetAttribute(...); }
//   rpc.SetStatus(status);   // ends when `rpc` goes out of scope
#ifndef CLUSTERKV_SERVER_TRACING_TRACER_H_
#define CLUSTERKV_SERVER_TRACING_TRACER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/tracing/trace_context.h"

namespace clusterkv::server::tracing {

enum class SpanKind { kInternal = 1, kServer = 2, kClient = 3 };

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

// A finished span, as exporters see it.
struct SpanData {
  SpanContext context;
  SpanId parent_span_id{};  // all zero for a root span
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  absl::Time start;
  absl::Time end;
  std::vector<std::pair<std::string, AttributeValue>> attributes;
  absl::StatusCode status_code = absl::StatusCode::kOk;
  std::string status_message;
};

// Receives batches on the tracer's thread. A non-OK status is counted as an export failure
// (the batch is not retried).
class SpanExporter {
 public:
  virtual ~SpanExporter() = default;
  virtual absl::Status Export(const std::vector<SpanData>& batch) = 0;
};

struct TracerOptions {
  // Probability that a request without a traceparent starts a sampled trace, in [0, 1].
  double sample_ratio = 0.01;
  // Seed of the id generator; 0 draws one from std::random_device (once per process).
  uint64_t seed = 0;
  size_t max_queue = 4096;   // spans waiting for export; beyond: dropped and counted
  size_t max_batch = 512;    // spans per Export call
  absl::Duration flush_interval = absl::Seconds(1);
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  std::string service_name = "clusterkvd";
};

class Tracer;

// A span in progress; ends (and is queued for export) when destroyed or End() is called.
// A Span that is not recording (unsampled, or default-constructed) costs nothing and still
// carries its context, so children and outgoing traceparents stay consistent. Move-only.
class Span {
 public:
  Span() = default;
  Span(Span&& other) noexcept { *this = std::move(other); }
  Span& operator=(Span&& other) noexcept;
  ~Span() { End(); }

  bool recording() const { return data_ != nullptr; }
  // Invalid (all zero) for a default-constructed span.
  const SpanContext& context() const { return context_; }

  void SetAttribute(std::string key, AttributeValue value);
  // OK leaves the span's status unset (OTLP STATUS_CODE_UNSET); anything else marks an error.
  void SetStatus(const absl::Status& status);
  void End();

 private:
  friend class Tracer;
  Tracer* tracer_ = nullptr;
  SpanContext context_;
  std::unique_ptr<SpanData> data_;  // null when not recording
};

class Tracer {
 public:
  Tracer(TracerOptions options, std::vector<std::unique_ptr<SpanExporter>> exporters);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // A child of `parent` when it is valid (same trace; sampled as the parent says), otherwise
  // the root of a new trace (sampled with sample_ratio).
  Span StartSpan(std::string name, const SpanContext& parent = {},
                 SpanKind kind = SpanKind::kInternal);

  // Exports everything queued so far and waits for it (tests, shutdown).
  void Flush();
  // Flush, then stop the thread. Idempotent; spans ended afterwards are dropped.
  void Shutdown();

  absl::Time Now() const { return options_.clock(); }
  const TracerOptions& options() const { return options_; }
  uint64_t exported() const { return exported_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t export_failures() const { return failures_.load(std::memory_order_relaxed); }

  // The sampling decision for a new trace (exposed for tests): the trace id's last 8 bytes,
  // as a fraction of 2^64, below the ratio.
  static bool SampleTraceId(const TraceId& id, double ratio);

 private:
  friend class Span;
  void Enqueue(std::unique_ptr<SpanData> span);
  void Loop();

  TracerOptions options_;
  std::vector<std::unique_ptr<SpanExporter>> exporters_;
  IdGenerator ids_;

  absl::Mutex mu_;
  std::deque<std::unique_ptr<SpanData>> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;  // spans ever queued
  uint64_t handled_ ABSL_GUARDED_BY(mu_) = 0;   // spans the thread has finished with
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;

  std::atomic<uint64_t> exported_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> failures_{0};
};

}  // namespace clusterkv::server::tracing

#endif  // CLUSTERKV_SERVER_TRACING_TRACER_H_
