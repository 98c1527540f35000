// Daemon: clusterkvd's lifecycle. Start() takes the socket's lock file, opens the tiered
// store, and serves the KvCache service (plus grpc.health.v1 and reflection) on a Unix domain
// socket (the sidecar default) and optionally on TCP with TLS. Shutdown() stops accepting
// calls, drains the ones in flight (up to a grace period), flushes write-back blocks to the SSD
// and closes RocksDB cleanly.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<Daemon> d, Daemon::Start(options));
//   WaitForSignal();           // e.g. SIGTERM
//   return d->Shutdown();
#ifndef CLUSTERKV_SERVER_DAEMON_H_
#define CLUSTERKV_SERVER_DAEMON_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/auth/authenticator.h"  // tenants and security
#include "server/auth/tenant_quota.h"   // tenants and security
#include "server/auth/unix_listener.h"  // tenants and security
#include "server/cluster/cluster_node.h"  // cluster mode
#include "server/http/observability.h"  // observability
#include "server/data_plane_options.h"
#include "server/fetch_trace.h"
#include "server/logger.h"
#include "server/request_handler.h"
#include "server/worker_pool.h"
#include "storage/tiered_store.h"

namespace grpc {
class Server;
class ServerCredentials;
}  // namespace grpc

namespace clusterkv::server {

class KvCacheService;
class LockFile;
class UcxDataPlane;

struct DaemonOptions {
  std::string socket_path = "/run/clusterkv/clusterkvd.sock";
  // "host:port" to also serve TCP ("" = Unix socket only). Port 0 picks a free port.
  std::string tcp_address;
  std::string tls_cert_file;  // PEM; required for TCP unless allow_insecure_tcp
  std::string tls_key_file;
  bool allow_insecure_tcp = false;  // plaintext TCP: tests on loopback only
  storage::TieredStoreOptions store;
  HandlerOptions handler;
  uint64_t max_message_bytes = uint64_t{64} << 20;
  // The worker pool that runs every request's blocking work (server/worker_pool.h): threads,
  // and tasks queued before new requests are refused with RESOURCE_EXHAUSTED.
  int worker_threads = 8;
  size_t worker_queue = 4096;
  // Promotion hints (HintClusters) run on their own one-thread pool, so SSD promotions ahead
  // of need never delay a request: hint requests queued before new ones are dropped.
  size_t hint_queue = 64;
  absl::Duration shutdown_grace = absl::Seconds(10);
  // UCX data plane (server/ucx_endpoint.h): on by default in builds with UCX; ignored (and
  // ConnectDataPlane answers UNIMPLEMENTED) in builds without. Off: FAILED_PRECONDITION.
  bool ucx = true;
  // UCX_TLS-like transport list for the data plane; empty: UCX's default.
  std::string ucx_transports;
  // See server/data_plane_options.h.
  UcxPeerErrors ucx_peer_errors = UcxPeerErrors::kRemoteOnly;
  absl::Duration ucx_busy_poll = absl::Microseconds(50);  // UcxDataPlaneOptions::busy_poll
  bool ucx_direct_shm = true;                             // UcxDataPlaneOptions::direct_shm
  // Observability: metrics/health/dashboard HTTP address ("" = off), trace exporters and
  // sampling.
  http::ObservabilityOptions observability;
  // Records every fetch and writes the trace here at shutdown (server/fetch_trace.h); "": off.
  std::string fetch_trace_file;
  // ---- tenants and security (server/auth/authenticator.h) ----
  // How calls are authenticated. kPeerCred: the Unix socket maps the peer's uid to a tenant
  // (peer_tenants_file, or "uid-<uid>"); TCP needs a bearer token. kToken: every call needs a
  // token. kNone: the clusterkv-tenant metadata is trusted (tests only).
  auth::AuthMode auth = auth::AuthMode::kPeerCred;
  // `tenant:<hex sha256 of the token>` lines. Required for kToken and for TCP (unless kNone).
  std::string tokens_file;
  // `uid:tenant` lines; empty: every uid is admitted as tenant "uid-<uid>".
  std::string peer_tenants_file;
  auth::TenantQuotas quotas;
  // Sequences not accessed for this long are dropped (zero: never).
  absl::Duration sequence_ttl = absl::ZeroDuration();
  // ---- end tenants and security ----
  // Operational messages (sweeps, cluster events, listener errors); null: the default,
  // stderr rate-limited per site (server/logger.h).
  std::shared_ptr<Logger> logger;
  // Cluster mode (server/cluster/): off unless cluster.etcd_endpoint is set; needs
  // tcp_address (other daemons call this one there).
  cluster::ClusterOptions cluster;
};

class Daemon {
 public:
  // FailedPrecondition when another daemon holds the socket; InvalidArgument for bad options
  // (TCP without TLS files, unreadable certificates, token auth or authenticated TCP without a
  // tokens file, unreadable or malformed credential files); errors of the store; Unavailable
  // when the sockets cannot be bound.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonOptions& options);
  ~Daemon();

  // Idempotent; returns the store's close status.
  absl::Status Shutdown();

  // "unix:<path>"; and the bound TCP port (0 without TCP).
  std::string unix_target() const { return "unix:" + options_.socket_path; }
  int tcp_port() const { return tcp_port_; }
  // The metrics/dashboard HTTP port (0 when off).
  int metrics_port() const { return observability_ != nullptr ? observability_->metrics_port() : 0; }
  http::Observability& observability() { return *observability_; }
  storage::TieredStore& store() { return *store_; }
  // The UCX data plane, or null when the daemon serves none.
  UcxDataPlane* data_plane() { return data_plane_; }
  // Sequences the TTL sweeper has dropped.
  uint64_t expired_sequences() const;
  // This daemon's cluster node, or null in single-node mode.
  cluster::ClusterNode* cluster() { return cluster_.get(); }

 private:
  explicit Daemon(const DaemonOptions& options);
  // Start(), one part at a time, in this order; each fails with the reason the daemon cannot
  // start, leaving what it built for the destructor.
  static absl::Status ValidateOptions(const DaemonOptions& options);
  absl::Status PrepareOptions();      // logger, derived limits, TLS credentials, authenticator
  absl::Status TakeSocket();          // the lock file; a stale socket file removed
  absl::Status StartObservability();  // /healthz, metrics, tracing
  absl::Status OpenStore();           // the UCX data plane (arena registrar), then the store
  absl::Status MakeHandler();         // single-node, or routing in cluster mode
  absl::Status MakeService();         // worker pool, data plane start, the KvCache service
  absl::Status ServeGrpc();           // listening ports and the gRPC server
  absl::Status StartServing();        // cluster join, peer-credential listener, TTL sweeper

  DaemonOptions options_;
  std::unique_ptr<LockFile> lock_;
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials_;  // null: no TCP
  // Observability: outlives the handler, service and store that report to it.
  std::unique_ptr<http::Observability> observability_;
  // The UCX data plane registers the arena, so it is created before and destroyed after the
  // store. Owned through its ArenaRegistrar base (builds without UCX never define it).
  std::unique_ptr<storage::ArenaRegistrar> data_plane_owner_;
  UcxDataPlane* data_plane_ = nullptr;
  std::unique_ptr<storage::TieredStore> store_;
  // Cluster mode: uses the store; used by the handler (a ClusterRequestHandler).
  std::unique_ptr<cluster::ClusterNode> cluster_;
  std::unique_ptr<FetchTrace> fetch_trace_;  // before the handler, which records into it
  std::unique_ptr<RequestHandler> handler_;
  // Runs the requests' blocking work for the gRPC service and the UCX data plane; stopped
  // after both (their last tasks still run) and before the handler and store go.
  std::unique_ptr<WorkerPool> pool_;
  // Promotion hints' pool; stopped with pool_.
  std::unique_ptr<WorkerPool> hint_pool_;
  std::unique_ptr<KvCacheService> service_;
  std::unique_ptr<grpc::Server> server_;
  // ---- tenants and security ----
  void SweepLoop();
  std::unique_ptr<auth::Authenticator> authenticator_;
  std::unique_ptr<auth::UnixListener> listener_;  // kPeerCred only; before server_ is shut down
  std::thread sweeper_;
  absl::Mutex sweep_mu_;
  bool stopping_ ABSL_GUARDED_BY(sweep_mu_) = false;
  // ---- end tenants and security ----
  int tcp_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_DAEMON_H_
