// HttpEndpoint: the daemon's observability HTTP server (cpp-httplib, the project's only HTTP
// implementation):
//   GET /metrics    Prometheus text exposition 0.0.4 (text/plain; version=0.0.4)
//   GET /healthz    200 "ok" while the process serves HTTP at all (liveness)
//   GET /readyz     200 "ready" only when the readiness callback says so, else 503 (readiness:
//                   RocksDB open and the gRPC socket served)
//   GET /dashboard  a self-contained live dashboard (server/http/dashboard_page.h)
//   GET /api/sequences, /api/sequence?tenant=T&sequence=S
//                   the per-sequence view's JSON (server/http/sequence_api.h); 404 when unset
//                   or the sequence is unknown
//   GET /           a redirect to /dashboard
// The listener runs on its own small thread pool; Stop() (or the destructor) closes it and
// joins. The callbacks run on those threads and must be thread-safe.
#ifndef CLUSTERKV_SERVER_HTTP_HTTP_ENDPOINT_H_
#define CLUSTERKV_SERVER_HTTP_HTTP_ENDPOINT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace clusterkv::server::http {

struct HttpEndpointOptions {
  // "host:port" ("[::1]:9464" for IPv6); port 0 picks a free port (see port()).
  std::string address = "127.0.0.1:9464";
  int threads = 2;
  std::function<std::string()> metrics;  // the exposition text
  std::function<bool()> ready;           // null: always ready
  std::function<std::string()> sequences_json;
  // nullopt: 404.
  std::function<std::optional<std::string>(const std::string& tenant, const std::string& sequence)>
      sequence_json;
};

class HttpEndpoint {
 public:
  // InvalidArgument for a malformed address; Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(HttpEndpointOptions options);
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  // Idempotent.
  void Stop();

 private:
  HttpEndpoint() = default;
  HttpEndpointOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string host_;
  int port_ = 0;
};

// Splits "host:port" / "[v6]:port". InvalidArgument when malformed or the port is not 0..65535.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address);

}  // namespace clusterkv::server::http

#endif  // CLUSTERKV_SERVER_HTTP_HTTP_ENDPOINT_H_
