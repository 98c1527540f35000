#include "server/tracing/trace_context.h"

namespace clusterkv::server::tracing {
namespace {

constexpr size_t kLength = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2

// Lower-case hex only (the spec's HEXDIGLC).
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool ParseHex(std::string_view text, uint8_t* out) {
  for (size_t i = 0; i < text.size() / 2; ++i) {
    const int hi = HexValue(text[2 * i]);
    const int lo = HexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& id) {
  for (uint8_t b : id) {
    if (b != 0) return false;
  }
  return true;
}

}  // namespace

bool SpanContext::valid() const { return !AllZero(trace_id) && !AllZero(span_id); }

std::optional<SpanContext> ParseTraceparent(std::string_view value) {
  if (value.size() < kLength) return std::nullopt;
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') return std::nullopt;
  uint8_t version = 0;
  if (!ParseHex(value.substr(0, 2), &version) || version == 0xff) return std::nullopt;
  if (version == 0 && value.size() != kLength) return std::nullopt;
  if (value.size() > kLength && value[kLength] != '-') return std::nullopt;
  SpanContext context;
  if (!ParseHex(value.substr(3, 32), context.trace_id.data()) ||
      !ParseHex(value.substr(36, 16), context.span_id.data()) ||
      !ParseHex(value.substr(53, 2), &context.flags)) {
    return std::nullopt;
  }
  if (!context.valid()) return std::nullopt;
  return context;
}

std::string ToHex(const uint8_t* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0x0f];
  }
  return out;
}

std::string FormatTraceparent(const SpanContext& context) {
  return "00-" + ToHex(context.trace_id) + "-" + ToHex(context.span_id) + "-" +
         ToHex(&context.flags, 1);
}

IdGenerator::IdGenerator(uint64_t seed) : rng_(seed) {}

TraceId IdGenerator::NewTraceId() {
  TraceId id{};
  absl::MutexLock lock(&mu_);
  while (AllZero(id)) {
    for (size_t i = 0; i < id.size(); i += 8) {
      const uint64_t r = rng_();
      for (size_t j = 0; j < 8; ++j) id[i + j] = static_cast<uint8_t>(r >> (8 * j));
    }
  }
  return id;
}

SpanId IdGenerator::NewSpanId() {
  SpanId id{};
  absl::MutexLock lock(&mu_);
  while (AllZero(id)) {
    const uint64_t r = rng_();
    for (size_t j = 0; j < 8; ++j) id[j] = static_cast<uint8_t>(r >> (8 * j));
  }
  return id;
}

}  // namespace clusterkv::server::tracing
