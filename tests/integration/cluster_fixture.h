// Cluster-mode test bench: a real etcd on free loopback ports (EtcdProcess), a
// self-signed certificate for 127.0.0.1 made with the openssl CLI, a peer token file, and N real
// clusterkvd processes (separate sockets, data dirs and TCP ports; TLS between them), each
// registered in its own cluster name. Clients talk to a node's Unix socket (--auth=none: the
// tenant comes from metadata) unless a test asks for token auth over TLS.
//
// Waiting is always a bounded poll of an observable state (etcd keys, a daemon's answer),
// never a fixed sleep.
#ifndef CLUSTERKV_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
#define CLUSTERKV_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_

#include <httplib.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/cluster/cluster_keys.h"
#include "server/cluster/directory.h"
#include "server/cluster/etcd_client.h"
#include "tests/integration/daemon_fixture.h"
#include "server/cluster/testing/etcd_process.h"

namespace clusterkv::testing {

inline constexpr char kOpenssl[] = "/usr/bin/openssl";
inline constexpr char kPeerToken[] = "cluster-peer-token-0123456789abcdef";

// A self-signed certificate (RSA 2048, one day) for CN=localhost, SAN localhost + 127.0.0.1.
inline absl::Status MakeSelfSignedCertificate(const std::string& cert, const std::string& key) {
  absl::StatusOr<ProcessResult> r = RunProcess(
      {kOpenssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
       "-days", "1", "-subj", "/CN=localhost", "-addext",
       "subjectAltName=DNS:localhost,IP:127.0.0.1"},
      absl::Seconds(60));
  if (!r.ok()) return r.status();
  if (r->exit_status != 0) {
    return absl::InternalError(absl::StrCat("openssl failed (", r->exit_status, "): ", r->output));
  }
  return absl::OkStatus();
}

// The number after `marker` in `text` (e.g. "tcp port "), or 0.
inline int NumberAfter(const std::string& text, const std::string& marker) {
  const size_t at = text.find(marker);
  if (at == std::string::npos) return 0;
  const size_t begin = at + marker.size();
  const size_t end = text.find_first_not_of("0123456789", begin);
  int n = 0;
  return absl::SimpleAtoi(text.substr(begin, end - begin), &n) ? n : 0;
}

// Polls `done` every 50 ms until it holds or `timeout` passes; true when it held.
inline bool PollUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));  // a poll interval, bounded by the deadline
  }
}

struct ClusterBenchOptions {
  int nodes = 3;
  int replication = 1;
  double lease_ttl_s = 2;
  // Extra flags per node (index 0 = node-1), appended after the cluster flags.
  std::vector<std::vector<std::string>> node_flags;
};

class ClusterBench {
 public:
  ClusterBench() : files_("clusterkv-cluster") {}

  // Starts etcd and the nodes; FailedPrecondition (callers skip) when etcd or openssl is
  // missing.
  absl::Status Start(const ClusterBenchOptions& options) {
    options_ = options;
    if (::access(kOpenssl, X_OK) != 0) return absl::FailedPreconditionError("no openssl");
    if (absl::Status s = etcd_.Start(); !s.ok()) return s;
    if (absl::Status s = MakeSelfSignedCertificate(cert(), key()); !s.ok()) return s;
    {
      std::ofstream out(files_.Sub("peer-token"));
      out << kPeerToken << "\n";
    }
    static int instance = 0;
    cluster_name_ = absl::StrCat("test-", ::getpid(), "-", instance++);
    keys_ = std::make_unique<server::cluster::ClusterKeys>(cluster_name_);
    absl::StatusOr<std::unique_ptr<server::cluster::EtcdTransport>> transport =
        server::cluster::MakeHttpEtcdTransport(
            {etcd_.endpoint(), absl::Seconds(2), absl::Seconds(5)});
    if (!transport.ok()) return transport.status();
    etcd_client_ = std::make_unique<server::cluster::EtcdClient>(*std::move(transport));
    directory_ = std::make_unique<server::cluster::Directory>(etcd_client_.get(), keys_.get());
    for (int i = 0; i < options.nodes; ++i) {
      DaemonProcessOptions d;
      d.flags = Flags(i);
      nodes_.push_back(std::make_unique<DaemonProcess>(d));
      if (absl::Status s = StartNode(i); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Starts (or restarts) node i, and records its TCP port.
  absl::Status StartNode(int i) {
    if (absl::Status s = nodes_[i]->Start(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(NodeId(i), ": ", s.message()));
    }
    if (static_cast<int>(ports_.size()) <= i) ports_.resize(i + 1);
    ports_[i] = NumberAfter(nodes_[i]->output(), "tcp port ");
    return absl::OkStatus();
  }

  std::vector<std::string> Flags(int i) const {
    std::vector<std::string> flags = {
        "--tcp_address=127.0.0.1:0", "--tls_cert=" + cert(), "--tls_key=" + key(),
        "--cluster_etcd=" + etcd_.endpoint(), "--cluster_name=" + cluster_name_,
        "--node_id=" + NodeId(i), absl::StrCat("--lease_ttl_s=", options_.lease_ttl_s),
        absl::StrCat("--replication=", options_.replication),
        "--cluster_token_file=" + files_.Sub("peer-token"), "--ucx=false",
        // Metrics on a free port: tests read the cluster counters.
        "--metrics_address=127.0.0.1:0"};
    if (i < static_cast<int>(options_.node_flags.size())) {
      flags.insert(flags.end(), options_.node_flags[i].begin(), options_.node_flags[i].end());
    }
    return flags;
  }

  static std::string NodeId(int i) { return absl::StrCat("node-", i + 1); }
  DaemonProcess& node(int i) { return *nodes_[i]; }
  int tcp_port(int i) const { return ports_[i]; }
  std::string tcp_target(int i) const { return absl::StrCat("127.0.0.1:", ports_[i]); }
  int metrics_port(int i) const { return NumberAfter(nodes_[i]->output(), "metrics on http://127.0.0.1:"); }
  KvCacheClient Client(int i, const std::string& tenant) const {
    return MakeKvCacheClient(nodes_[i]->target(), tenant);
  }
  std::string cert() const { return files_.Sub("cert.pem"); }
  std::string key() const { return files_.Sub("key.pem"); }
  const ScratchDir& files() const { return files_; }
  server::cluster::EtcdClient& etcd() { return *etcd_client_; }
  const server::cluster::ClusterKeys& keys() const { return *keys_; }

  // The directory entry of (tenant, id) as etcd has it now.
  std::optional<server::cluster::DirectoryEntry> Entry(const std::string& tenant,
                                                       const std::string& id) {
    absl::StatusOr<std::optional<server::cluster::DirectoryEntry>> e =
        directory_->Lookup(SequenceKey{tenant, id});
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : std::nullopt;
  }
  // Whether node i is registered (its lease alive).
  bool Registered(int i) {
    absl::StatusOr<std::optional<server::cluster::EtcdKeyValue>> kv =
        etcd_client_->Get(keys_->Node(NodeId(i)));
    return kv.ok() && kv->has_value();
  }

  // Kills etcd (SIGKILL): the cluster's shared state becomes unreachable.
  void KillEtcd() { etcd_.Kill(); }

  // Stops every running node cleanly; the exit statuses, for the caller to check.
  std::vector<int> StopAll() {
    std::vector<int> codes;
    for (auto& n : nodes_) {
      if (!n->running()) continue;
      absl::StatusOr<int> code = n->Stop();
      codes.push_back(code.ok() ? *code : -1);
    }
    return codes;
  }

 private:
  ScratchDir files_;
  ClusterBenchOptions options_;
  server::cluster::EtcdProcess etcd_;
  std::string cluster_name_;
  std::unique_ptr<server::cluster::ClusterKeys> keys_;
  std::unique_ptr<server::cluster::EtcdClient> etcd_client_;
  std::unique_ptr<server::cluster::Directory> directory_;
  std::vector<std::unique_ptr<DaemonProcess>> nodes_;
  std::vector<int> ports_;
};

// The /metrics page of a daemon's metrics port ("" when it cannot be read).
inline std::string Scrape(int port) {
  httplib::Client http("127.0.0.1", port);
  httplib::Result r = http.Get("/metrics");
  return r && r->status == 200 ? r->body : std::string();
}

// The value of an unlabelled counter or gauge in a Prometheus exposition, or -1.
inline double MetricValue(const std::string& exposition, const std::string& name) {
  size_t at = 0;
  while ((at = exposition.find(name, at)) != std::string::npos) {
    const bool line_start = at == 0 || exposition[at - 1] == '\n';
    const size_t after = at + name.size();
    if (line_start && after < exposition.size() && exposition[after] == ' ') {
      return std::strtod(exposition.c_str() + after + 1, nullptr);
    }
    at = after;
  }
  return -1;
}

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
