#include "server/tracing/exporters.h"

#include <httplib.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace clusterkv::server::tracing {
namespace {

using nlohmann::json;

std::string UnixNanos(absl::Time t) { return absl::StrCat(absl::ToUnixNanos(t)); }

json AttributeJson(const std::string& key, const AttributeValue& value) {
  json v;
  if (const auto* s = std::get_if<std::string>(&value)) {
    v["stringValue"] = *s;
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    v["intValue"] = absl::StrCat(*i);  // int64 is a string in the JSON mapping
  } else if (const auto* d = std::get_if<double>(&value)) {
    v["doubleValue"] = *d;
  } else {
    v["boolValue"] = std::get<bool>(value);
  }
  return json{{"key", key}, {"value", v}};
}

json SpanJson(const SpanData& span) {
  json out = {
      {"traceId", ToHex(span.context.trace_id)},
      {"spanId", ToHex(span.context.span_id)},
      {"name", span.name},
      {"kind", static_cast<int>(span.kind)},
      {"startTimeUnixNano", UnixNanos(span.start)},
      {"endTimeUnixNano", UnixNanos(span.end)},
  };
  const SpanId zero{};
  if (span.parent_span_id != zero) out["parentSpanId"] = ToHex(span.parent_span_id);
  json attributes = json::array();
  for (const auto& [key, value] : span.attributes) attributes.push_back(AttributeJson(key, value));
  out["attributes"] = std::move(attributes);
  if (span.status_code == absl::StatusCode::kOk) {
    out["status"] = json::object();  // STATUS_CODE_UNSET
  } else {
    out["status"] = {{"code", 2},  // STATUS_CODE_ERROR
                     {"message", absl::StrCat(absl::StatusCodeToString(span.status_code), ": ",
                                              span.status_message)}};
  }
  return out;
}

}  // namespace

std::string SpanToOtlpJson(const SpanData& span) { return SpanJson(span).dump(); }

std::string ToOtlpExportRequest(const std::vector<SpanData>& batch,
                                const std::string& service_name) {
  json spans = json::array();
  for (const SpanData& span : batch) spans.push_back(SpanJson(span));
  json resource = {
      {"attributes", json::array({AttributeJson("service.name", service_name)})}};
  json scope_spans = {{"scope", {{"name", "clusterkv"}}}, {"spans", std::move(spans)}};
  json request = {{"resourceSpans", json::array({{{"resource", std::move(resource)},
                                                  {"scopeSpans", json::array({scope_spans})}}})}};
  return request.dump();
}

// ---- OTLP/HTTP --------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> OtlpHttpExporter::Create(
    const std::string& endpoint, std::string service_name, absl::Duration timeout) {
  const bool http = absl::StartsWith(endpoint, "http://");
  if (!http && !absl::StartsWith(endpoint, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("OTLP endpoint '", endpoint, "' is not an http:// or https:// URL"));
  }
  const size_t authority = endpoint.find("://") + 3;
  const size_t slash = endpoint.find('/', authority);
  const std::string base = endpoint.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/v1/traces" : endpoint.substr(slash);
  if (base.size() <= authority) {
    return absl::InvalidArgumentError(absl::StrCat("OTLP endpoint '", endpoint, "' has no host"));
  }
  auto client = std::make_unique<httplib::Client>(base);
  if (!client->is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat("OTLP endpoint '", endpoint, "' is invalid"));
  }
  const auto micros = absl::ToInt64Microseconds(timeout);
  client->set_connection_timeout(micros / 1000000, micros % 1000000);
  client->set_read_timeout(micros / 1000000, micros % 1000000);
  client->set_write_timeout(micros / 1000000, micros % 1000000);
  return std::unique_ptr<OtlpHttpExporter>(
      new OtlpHttpExporter(std::move(client), path, std::move(service_name)));
}

OtlpHttpExporter::OtlpHttpExporter(std::unique_ptr<httplib::Client> client, std::string path,
                                   std::string service_name)
    : client_(std::move(client)), path_(std::move(path)), service_name_(std::move(service_name)) {}

OtlpHttpExporter::~OtlpHttpExporter() = default;

absl::Status OtlpHttpExporter::Export(const std::vector<SpanData>& batch) {
  const std::string body = ToOtlpExportRequest(batch, service_name_);
  httplib::Result result = client_->Post(path_.c_str(), body, "application/json");
  if (!result) {
    return absl::UnavailableError(
        absl::StrCat("OTLP export: ", httplib::to_string(result.error())));
  }
  if (result->status < 200 || result->status >= 300) {
    return absl::UnavailableError(absl::StrCat("OTLP export: HTTP ", result->status));
  }
  return absl::OkStatus();
}

// ---- JSON lines -----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<JsonLinesFileExporter>> JsonLinesFileExporter::Create(
    const std::string& path, std::string service_name) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  if (!out) return absl::InvalidArgumentError(absl::StrCat("cannot open trace file ", path));
  return std::unique_ptr<JsonLinesFileExporter>(
      new JsonLinesFileExporter(std::move(out), std::move(service_name)));
}

absl::Status JsonLinesFileExporter::Export(const std::vector<SpanData>& batch) {
  for (const SpanData& span : batch) {
    json line = SpanJson(span);
    line["serviceName"] = service_name_;
    out_ << line.dump() << '\n';
  }
  out_.flush();
  if (!out_) return absl::InternalError("writing the trace file failed");
  return absl::OkStatus();
}

}  // namespace clusterkv::server::tracing
