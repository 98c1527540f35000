#include "server/tracing/tracer.h"

#include <random>

namespace clusterkv::server::tracing {
namespace {

uint64_t SeedOrRandom(uint64_t seed) {
  if (seed != 0) return seed;
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

}  // namespace

// ---- Span -----------------------------------------------------------------------------------

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    End();
    tracer_ = other.tracer_;
    context_ = other.context_;
    data_ = std::move(other.data_);
    other.tracer_ = nullptr;
  }
  return *this;
}

void Span::SetAttribute(std::string key, AttributeValue value) {
  if (data_ == nullptr) return;
  data_->attributes.emplace_back(std::move(key), std::move(value));
}

void Span::SetStatus(const absl::Status& status) {
  if (data_ == nullptr) return;
  data_->status_code = status.code();
  data_->status_message = std::string(status.message());
}

void Span::End() {
  if (data_ == nullptr || tracer_ == nullptr) return;
  data_->end = tracer_->Now();
  tracer_->Enqueue(std::move(data_));
}

// ---- Tracer ---------------------------------------------------------------------------------

Tracer::Tracer(TracerOptions options, std::vector<std::unique_ptr<SpanExporter>> exporters)
    : options_(std::move(options)),
      exporters_(std::move(exporters)),
      ids_(SeedOrRandom(options_.seed)) {
  if (options_.max_batch == 0) options_.max_batch = 1;
  thread_ = std::thread([this] { Loop(); });
}

Tracer::~Tracer() { Shutdown(); }

bool Tracer::SampleTraceId(const TraceId& id, double ratio) {
  if (ratio >= 1.0) return true;
  if (!(ratio > 0.0)) return false;
  uint64_t low = 0;
  for (size_t i = 8; i < 16; ++i) low = (low << 8) | id[i];
  // low / 2^64 < ratio, without overflow at ratio close to 1.
  return static_cast<double>(low) < ratio * 18446744073709551616.0;
}

Span Tracer::StartSpan(std::string name, const SpanContext& parent, SpanKind kind) {
  Span span;
  span.tracer_ = this;
  bool sampled;
  if (parent.valid()) {
    span.context_.trace_id = parent.trace_id;
    sampled = parent.sampled();
  } else {
    span.context_.trace_id = ids_.NewTraceId();
    sampled = SampleTraceId(span.context_.trace_id, options_.sample_ratio);
  }
  span.context_.span_id = ids_.NewSpanId();
  span.context_.flags = sampled ? 0x01 : 0x00;
  if (!sampled || exporters_.empty()) return span;
  span.data_ = std::make_unique<SpanData>();
  span.data_->context = span.context_;
  if (parent.valid()) span.data_->parent_span_id = parent.span_id;
  span.data_->name = std::move(name);
  span.data_->kind = kind;
  span.data_->start = Now();
  return span;
}

void Tracer::Enqueue(std::unique_ptr<SpanData> span) {
  absl::MutexLock lock(&mu_);
  if (stop_ || queue_.size() >= options_.max_queue) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queue_.push_back(std::move(span));
  ++enqueued_;
}

void Tracer::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = enqueued_;
  flush_requested_ = true;
  auto handled = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return handled_ >= target;
  };
  mu_.Await(absl::Condition(&handled));
}

void Tracer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;  // the loop drains the queue before it exits
  }
  if (thread_.joinable()) thread_.join();
}

void Tracer::Loop() {
  std::vector<SpanData> batch;
  while (true) {
    bool done = false;
    batch.clear();
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || flush_requested_ || queue_.size() >= options_.max_batch;
      };
      // Waits for a full batch, a flush or stop, or the flush interval: a condition wait, so
      // spans leave at least every flush_interval and never wait on a request thread.
      mu_.AwaitWithTimeout(absl::Condition(&ready), options_.flush_interval);
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(*queue_.front()));
        queue_.pop_front();
      }
      if (queue_.empty()) flush_requested_ = false;
      done = stop_ && queue_.empty();
    }
    if (!batch.empty()) {
      for (const auto& exporter : exporters_) {
        if (!exporter->Export(batch).ok()) failures_.fetch_add(1, std::memory_order_relaxed);
      }
      exported_.fetch_add(batch.size(), std::memory_order_relaxed);
      absl::MutexLock lock(&mu_);
      handled_ += batch.size();
    }
    if (done) return;
  }
}

}  // namespace clusterkv::server::tracing
