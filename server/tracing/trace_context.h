// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header that
// carries a trace from the client to the daemon in gRPC metadata, and the random ids of new
// traces and spans.
//
//   traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//                version-trace_id(16 bytes hex)-parent_id(8 bytes hex)-flags(01 = sampled)
//
// Example:
//   std::optional<SpanContext> parent = ParseTraceparent(header);
//   if (parent && parent->sampled()) ...
//   std::string header = FormatTraceparent(span.context());
#ifndef CLUSTERKV_SERVER_TRACING_TRACE_CONTEXT_H_
#define CLUSTERKV_SERVER_TRACING_TRACE_CONTEXT_H_

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace clusterkv::server::tracing {

// gRPC metadata key of the header (metadata keys are lower case).
inline constexpr char kTraceparentKey[] = "traceparent";

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

struct SpanContext {
  TraceId trace_id{};
  SpanId span_id{};
  uint8_t flags = 0;

  bool sampled() const { return (flags & 0x01) != 0; }
  // Neither id is all zeros (the spec's invalid values).
  bool valid() const;
};

// Parses a traceparent value. nullopt for anything the spec says to ignore: wrong length or
// separators, upper-case or non-hex digits, version ff, all-zero ids, version 00 with trailing
// data. Future versions (01..fe) are accepted by their first four fields when followed by '-'.
std::optional<SpanContext> ParseTraceparent(std::string_view value);

// "00-<trace_id>-<span_id>-<flags>", lower-case hex.
std::string FormatTraceparent(const SpanContext& context);

std::string ToHex(const uint8_t* data, size_t size);
template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& id) {
  return ToHex(id.data(), N);
}

// Random non-zero trace and span ids from one generator seeded once per process (or by the
// caller, for reproducible tests). Thread-safe.
class IdGenerator {
 public:
  explicit IdGenerator(uint64_t seed);
  TraceId NewTraceId();
  SpanId NewSpanId();

 private:
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace clusterkv::server::tracing

#endif  // CLUSTERKV_SERVER_TRACING_TRACE_CONTEXT_H_
