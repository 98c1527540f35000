// Span exporters of the Tracer (server/tracing/tracer.h), both in the OTLP JSON encoding
// (opentelemetry-proto's JSON mapping: hex trace/span ids, 64-bit integers as strings, enum
// values as integers):
//   - OtlpHttpExporter POSTs an ExportTraceServiceRequest to an OTLP/HTTP collector endpoint
//     such as http://127.0.0.1:4318/v1/traces (cpp-httplib client);
//   - JsonLinesFileExporter appends one OTLP span object per line to a file (with the
//     resource's service.name as an extra "serviceName" field), for tests and offline use.
// Both run on the tracer's export thread; neither is called concurrently.
#ifndef CLUSTERKV_SERVER_TRACING_EXPORTERS_H_
#define CLUSTERKV_SERVER_TRACING_EXPORTERS_H_

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/tracing/tracer.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace clusterkv::server::tracing {

// The OTLP JSON of one span / of a whole export request.
std::string SpanToOtlpJson(const SpanData& span);
std::string ToOtlpExportRequest(const std::vector<SpanData>& batch,
                                const std::string& service_name);

class OtlpHttpExporter final : public SpanExporter {
 public:
  // `endpoint`: "http://host:port/path" (https too). InvalidArgument when it is not such a URL.
  static absl::StatusOr<std::unique_ptr<OtlpHttpExporter>> Create(
      const std::string& endpoint, std::string service_name,
      absl::Duration timeout = absl::Seconds(5));
  ~OtlpHttpExporter() override;

  // Unavailable when the collector cannot be reached or answers other than 2xx.
  absl::Status Export(const std::vector<SpanData>& batch) override;

 private:
  OtlpHttpExporter(std::unique_ptr<httplib::Client> client, std::string path,
                   std::string service_name);
  std::unique_ptr<httplib::Client> client_;
  std::string path_;
  std::string service_name_;
};

class JsonLinesFileExporter final : public SpanExporter {
 public:
  // Opens `path` for appending. InvalidArgument when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<JsonLinesFileExporter>> Create(
      const std::string& path, std::string service_name);

  // Internal when the write fails.
  absl::Status Export(const std::vector<SpanData>& batch) override;

 private:
  JsonLinesFileExporter(std::ofstream out, std::string service_name)
      : out_(std::move(out)), service_name_(std::move(service_name)) {}
  std::ofstream out_;
  std::string service_name_;
};

}  // namespace clusterkv::server::tracing

#endif  // CLUSTERKV_SERVER_TRACING_EXPORTERS_H_
