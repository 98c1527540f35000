#include "server/http/http_endpoint.h"

#include <httplib.h>
#include <sys/socket.h>

#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/http/dashboard_page.h"

namespace clusterkv::server::http {

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("address '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3) {
      return absl::InvalidArgumentError(absl::StrCat("address '", address, "' is malformed"));
    }
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("address '", address, "' has a bad port"));
  }
  return std::make_pair(host, port);
}

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(HttpEndpointOptions options) {
  auto host_port = SplitHostPort(options.address);
  if (!host_port.ok()) return host_port.status();
  std::unique_ptr<HttpEndpoint> e(new HttpEndpoint());
  e->options_ = std::move(options);
  e->host_ = host_port->first;
  e->server_ = std::make_unique<httplib::Server>();
  httplib::Server& s = *e->server_;
  const int threads = std::max(1, e->options_.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_keep_alive_max_count(100);
  // httplib's default sets SO_REUSEPORT too, which lets a second daemon bind the same port and
  // take half of the scrapes. SO_REUSEADDR alone (restart after TIME_WAIT) is what we want.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  HttpEndpoint* self = e.get();
  s.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    const std::string text = self->options_.metrics ? self->options_.metrics() : std::string();
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    const bool ready = !self->options_.ready || self->options_.ready();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
  });
  s.Get("/dashboard", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(std::string(DashboardHtml()), "text/html; charset=utf-8");
  });
  s.Get("/api/sequences", [self](const httplib::Request&, httplib::Response& res) {
    if (!self->options_.sequences_json) {
      res.status = 404;
      return;
    }
    res.set_header("Cache-Control", "no-store");
    res.set_content(self->options_.sequences_json(), "application/json");
  });
  s.Get("/api/sequence", [self](const httplib::Request& req, httplib::Response& res) {
    std::optional<std::string> body;
    if (self->options_.sequence_json && req.has_param("tenant") && req.has_param("sequence")) {
      body = self->options_.sequence_json(req.get_param_value("tenant"),
                                          req.get_param_value("sequence"));
    }
    if (!body.has_value()) {
      res.status = 404;
      res.set_content("{\"error\": \"no such sequence with client reports\"}\n",
                      "application/json");
      return;
    }
    res.set_header("Cache-Control", "no-store");
    res.set_content(*body, "application/json");
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/dashboard");
  });

  const int port = host_port->second;
  if (port == 0) {
    e->port_ = s.bind_to_any_port(e->host_);
    if (e->port_ <= 0) {
      return absl::UnavailableError(absl::StrCat("HTTP cannot bind ", e->options_.address));
    }
  } else {
    if (!s.bind_to_port(e->host_, port)) {
      return absl::UnavailableError(absl::StrCat("HTTP cannot bind ", e->options_.address));
    }
    e->port_ = port;
  }
  e->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  // httplib::Server::stop() is a no-op until the listen loop has marked itself running, and
  // this httplib (0.11) has no readiness notification: wait for the flag here (it is set at
  // once), so that Stop() can never miss the loop and hang in join().
  while (!s.is_running()) std::this_thread::yield();
  return e;
}

void HttpEndpoint::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpEndpoint::~HttpEndpoint() { Stop(); }

}  // namespace clusterkv::server::http
