// The production EtcdTransport: HTTP/1.1 POSTs to etcd's JSON gateway through cpp-httplib.
// httplib::Client is not safe for concurrent requests, so each caller borrows one from a small
// pool (a keep-alive connection each) and gives it back; a client whose request failed, or
// whose answer was chunked (see Post), is dropped, so a broken connection is never reused.
#include <httplib.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "server/cluster/etcd_client.h"

namespace clusterkv::server::cluster {
namespace {

// etcd's error body {"error": ..., "message": ..., "code": <gRPC code>} as a status.
absl::Status ErrorOf(int http_status, const std::string& body) {
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    auto code = parsed.find("code");
    auto message = parsed.find("message");
    if (code != parsed.end() && code->is_number_integer()) {
      int64_t c = code->get<int64_t>();
      if (c <= 0 || c > 16) c = static_cast<int64_t>(absl::StatusCode::kUnknown);
      return absl::Status(static_cast<absl::StatusCode>(c),
                          absl::StrCat("etcd: ", message != parsed.end() && message->is_string()
                                                     ? message->get<std::string>()
                                                     : body.substr(0, 200)));
    }
  }
  const std::string text = absl::StrCat("etcd answered HTTP ", http_status, ": ", body.substr(0, 200));
  return http_status >= 500 ? absl::UnavailableError(text) : absl::InternalError(text);
}

class HttpEtcdTransport final : public EtcdTransport {
 public:
  explicit HttpEtcdTransport(HttpEtcdOptions options) : options_(std::move(options)) {}

  absl::StatusOr<std::string> Post(absl::string_view path, absl::string_view body) override {
    std::unique_ptr<httplib::Client> client = Borrow();
    httplib::Request request;
    request.method = "POST";
    request.path = std::string(path);
    request.set_header("Content-Type", "application/json");
    request.body = std::string(body);
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    const bool sent = client->send(request, response, error);
    // The gateway answers errors (and streaming calls) chunked, followed by gRPC trailers that
    // cpp-httplib 0.11 cannot parse: it reports a read error after the whole body arrived. A
    // status line and a complete JSON body are then the answer; the connection, left with
    // unread bytes, is dropped. Only a Content-Length answer leaves it reusable.
    const bool answered =
        sent || (error == httplib::Error::Read && response.status > 0 &&
                 nlohmann::json::accept(response.body));
    if (!answered) {
      return absl::UnavailableError(absl::StrCat("etcd at ", options_.endpoint,
                                                 " is unreachable: ", httplib::to_string(error)));
    }
    if (sent && response.has_header("Content-Length")) Return(std::move(client));
    if (response.status < 200 || response.status >= 300) {
      return ErrorOf(response.status, response.body);
    }
    return std::move(response.body);
  }

 private:
  std::unique_ptr<httplib::Client> Borrow() {
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        std::unique_ptr<httplib::Client> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<httplib::Client>(options_.endpoint);
    const auto micros = [](absl::Duration d) { return absl::ToInt64Microseconds(d); };
    c->set_connection_timeout(micros(options_.connect_timeout) / 1000000,
                              micros(options_.connect_timeout) % 1000000);
    c->set_read_timeout(micros(options_.request_timeout) / 1000000,
                        micros(options_.request_timeout) % 1000000);
    c->set_write_timeout(micros(options_.request_timeout) / 1000000,
                         micros(options_.request_timeout) % 1000000);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);  // headers and body go in separate writes: no Nagle delay
    return c;
  }

  void Return(std::unique_ptr<httplib::Client> client) {
    constexpr size_t kMaxIdle = 8;
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(client));
  }

  const HttpEtcdOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdTransport>> MakeHttpEtcdTransport(
    const HttpEtcdOptions& options) {
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(options.endpoint, kScheme)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd endpoint '", options.endpoint, "' must be http://host:port (TLS to etcd is not "
        "supported yet)"));
  }
  const absl::string_view host_port = absl::string_view(options.endpoint).substr(kScheme.size());
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint '", options.endpoint, "' must be http://host:port"));
  }
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd timeouts must be positive");
  }
  return std::unique_ptr<EtcdTransport>(new HttpEtcdTransport(options));
}

}  // namespace clusterkv::server::cluster
