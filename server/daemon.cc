#include "server/daemon.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_posix.h"
#include "server/cluster/cluster_handler.h"  // cluster mode
#include "proto/rpc_support.h"
#include "server/kv_service.h"
#include "server/lock_file.h"
#if defined(CLUSTERKV_WITH_UCX)
#include "server/ucx_endpoint.h"
#endif

namespace clusterkv::server {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpCredentials(const DaemonOptions& o) {
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    if (o.allow_insecure_tcp) return grpc::InsecureServerCredentials();
    return absl::InvalidArgumentError(
        "TCP needs --tls_cert and --tls_key (or --allow_insecure_tcp for loopback tests)");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadFile(o.tls_cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFile(o.tls_key_file));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(ssl);
}

// The authenticator of `o`: reads and parses its credential files.
absl::StatusOr<std::unique_ptr<auth::Authenticator>> MakeAuthenticator(const DaemonOptions& o) {
  if (o.tokens_file.empty() && o.auth == auth::AuthMode::kToken) {
    return absl::InvalidArgumentError("--auth=token needs --tokens_file");
  }
  if (o.tokens_file.empty() && o.auth != auth::AuthMode::kNone && !o.tcp_address.empty()) {
    return absl::InvalidArgumentError(
        "TCP callers authenticate with bearer tokens: --tcp_address needs --tokens_file "
        "(or --auth=none for tests)");
  }
  auth::TokenTable tokens;
  if (!o.tokens_file.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(o.tokens_file));
    ASSIGN_OR_RETURN(tokens, auth::TokenTable::Parse(text));
  }
  auth::PeerTenantMap peers;
  if (!o.peer_tenants_file.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(o.peer_tenants_file));
    ASSIGN_OR_RETURN(peers, auth::PeerTenantMap::Parse(text));
  }
  return std::make_unique<auth::Authenticator>(o.auth, std::move(tokens), std::move(peers));
}

// ---- cluster mode ----
absl::Status ValidateClusterOptions(const DaemonOptions& o) {
  if (!o.cluster.enabled()) return absl::OkStatus();
  if (o.tcp_address.empty()) {
    return absl::InvalidArgumentError(
        "cluster mode needs --tcp_address: the other daemons call this one over TCP");
  }
  if (o.sequence_ttl > absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--sequence_ttl_s is not supported in cluster mode yet");
  }
  return absl::OkStatus();
}

// The address other daemons call: --advertise_grpc, or the TCP listener's host and bound port.
absl::StatusOr<std::string> AdvertisedAddress(const DaemonOptions& o, int tcp_port) {
  if (!o.cluster.advertise_grpc.empty()) return o.cluster.advertise_grpc;
  const std::string host = o.tcp_address.substr(0, o.tcp_address.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tcp_address=", o.tcp_address, " names no host other daemons can call: set "
        "--advertise_grpc=host:port"));
  }
  return absl::StrCat(host, ":", tcp_port);
}

// Calls carrying the cluster peer token: another daemon acting for the tenant it names.
PeerResolver ClusterPeerResolver(const cluster::ClusterNode* node) {
  return [node](const grpc::CallbackServerContext& context)
             -> std::optional<absl::StatusOr<std::string>> {
    const auto& metadata = context.client_metadata();
    auto value = [&](const char* key) -> std::optional<absl::string_view> {
      auto it = metadata.find(key);
      if (it == metadata.end()) return std::nullopt;
      return absl::string_view(it->second.data(), it->second.size());
    };
    return node->token().Resolve(value("authorization"), value(rpc::kTenantMetadataKey));
  };
}
// ---- end cluster mode ----

}  // namespace

Daemon::Daemon(const DaemonOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonOptions& options) {
  if (options.socket_path.empty()) return absl::InvalidArgumentError("socket path is empty");
  if (options.max_message_bytes < (uint64_t{1} << 20) ||
      options.max_message_bytes > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError("max message size must be in [1 MiB, 1 GiB]");
  }
  if (options.worker_threads < 1 || options.worker_threads > 1024 || options.worker_queue < 1 ||
      options.worker_queue > (size_t{1} << 20)) {
    return absl::InvalidArgumentError(
        "the worker pool needs 1 to 1024 threads and a queue of 1 to 2^20 tasks");
  }
  std::unique_ptr<Daemon> d(new Daemon(options));
  d->options_.handler.max_block_bytes =
      std::min<uint64_t>(options.handler.max_block_bytes, options.max_message_bytes / 2);
  // A unary answer must fit one message, with room for its framing.
  d->options_.handler.max_response_bytes = std::min<uint64_t>(
      options.handler.max_response_bytes, options.max_message_bytes - (uint64_t{1} << 19));
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials;
  if (!options.tcp_address.empty()) {
    ASSIGN_OR_RETURN(tcp_credentials, TcpCredentials(options));
  }
  ASSIGN_OR_RETURN(d->authenticator_, MakeAuthenticator(options));
  if (options.sequence_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the sequence TTL is negative");
  }
  RETURN_IF_ERROR(ValidateClusterOptions(options));

  const std::filesystem::path socket(options.socket_path);
  std::error_code ec;
  if (socket.has_parent_path()) std::filesystem::create_directories(socket.parent_path(), ec);
  ASSIGN_OR_RETURN(d->lock_, LockFile::Acquire(options.socket_path + ".lock"));
  // We hold the lock: a socket file left behind is stale (a crashed daemon's).
  std::filesystem::remove(socket, ec);

  // ---- observability: /healthz answers from here on; /readyz once serving ----
  ASSIGN_OR_RETURN(d->observability_, http::Observability::Start(options.observability));
  d->options_.handler.instrumentation = d->observability_->instrumentation();
  // ---- end observability ----

  storage::TieredStoreOptions store_options = options.store;
#if defined(CLUSTERKV_WITH_UCX)
  if (options.ucx) {
    UcxDataPlaneOptions ucx_options;
    ucx_options.transports = options.ucx_transports;
    ucx_options.peer_errors = options.ucx_peer_errors;
    ucx_options.busy_poll = options.ucx_busy_poll;
    ucx_options.direct_shm = options.ucx_direct_shm;
    ASSIGN_OR_RETURN(std::unique_ptr<UcxDataPlane> plane, UcxDataPlane::Create(ucx_options));
    d->data_plane_ = plane.get();
    d->data_plane_owner_ = std::move(plane);
    store_options.registrar = d->data_plane_;  // the arena is mapped with UCX once, here
  }
#endif
  ASSIGN_OR_RETURN(d->store_, storage::TieredStore::Open(store_options));
  if (options.quotas.limits_bytes()) {  // per-tenant byte quotas
    d->store_->SetQuotaHook(auth::MakeQuotaHook(options.quotas));
  }
  d->options_.handler.quotas = options.quotas;
  if (options.cluster.enabled()) {  // cluster mode: requests are routed
    cluster::ClusterNode::Deps deps;
    deps.store = d->store_.get();
    deps.metrics = &d->observability_->metrics();
    deps.plaintext_peers = options.tls_cert_file.empty();  // --allow_insecure_tcp
    deps.default_tls_root_file = options.tls_cert_file;
    deps.max_message_bytes = static_cast<int>(options.max_message_bytes);
    ASSIGN_OR_RETURN(d->cluster_, cluster::ClusterNode::Create(options.cluster, std::move(deps)));
    d->handler_ = std::make_unique<cluster::ClusterRequestHandler>(
        d->store_.get(), d->options_.handler, d->cluster_.get());
  } else {
    d->handler_ = std::make_unique<RequestHandler>(d->store_.get(), d->options_.handler);
  }
  WorkerPoolOptions pool_options;
  pool_options.name = "requests";
  pool_options.threads = options.worker_threads;
  pool_options.max_queued = options.worker_queue;
  pool_options.on_rejected = [metrics = &d->observability_->metrics()](const std::string& pool) {
    metrics->AddPoolRejection(pool);
  };
  d->pool_ = std::make_unique<WorkerPool>(std::move(pool_options));
  DataPlaneConnector connector;
#if defined(CLUSTERKV_WITH_UCX)
  if (d->data_plane_ != nullptr) {
    RETURN_IF_ERROR(d->data_plane_->Start(d->handler_.get(), d->pool_.get()));
    connector = [plane = d->data_plane_](const CallContext& call,
                                                const v1::ConnectDataPlaneRequest& request) {
      CallContext session_call = call;  // observability: fetches move over UCX
      session_call.transport = metrics::Transport::kUcx;
      session_call.trace = {};
      return plane->Connect(session_call, request);
    };
  } else {
    connector = [](const CallContext&, const v1::ConnectDataPlaneRequest&)
        -> absl::StatusOr<v1::ConnectDataPlaneResponse> {
      return absl::FailedPreconditionError("the UCX data plane is disabled (--ucx=false)");
    };
  }
#endif
  d->service_ = std::make_unique<KvCacheService>(
      d->handler_.get(), d->pool_.get(), AuthenticatedTenantResolver(d->authenticator_.get()),
      std::move(connector), d->observability_->instrumentation(),
      d->cluster_ != nullptr ? ClusterPeerResolver(d->cluster_.get()) : nullptr);  // cluster peers

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const bool peer_credentials = options.auth == auth::AuthMode::kPeerCred;
  if (peer_credentials) {
    // Peer credentials: the daemon accepts Unix-socket connections itself to read SO_PEERCRED.
    ASSIGN_OR_RETURN(d->listener_, auth::UnixListener::Bind(options.socket_path));
  } else {
    builder.AddListeningPort(d->unix_target(), grpc::InsecureServerCredentials());
  }
  if (tcp_credentials) {
    builder.AddListeningPort(options.tcp_address, tcp_credentials, &d->tcp_port_);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.RegisterService(d->service_.get());
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("gRPC could not serve on ", d->unix_target(),
                                               options.tcp_address.empty() ? "" : " and ",
                                               options.tcp_address));
  }
  if (!options.tcp_address.empty() && d->tcp_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind TCP ", options.tcp_address));
  }
  if (d->cluster_ != nullptr) {  // cluster mode: register once reachable
    ASSIGN_OR_RETURN(std::string advertise, AdvertisedAddress(options, d->tcp_port_));
    RETURN_IF_ERROR(d->cluster_->Join(
        advertise, d->data_plane_ != nullptr ? d->data_plane_->worker_address() : std::string(),
        options.store.high_watermark));
  }
  // ---- tenants and security ----
  if (peer_credentials) {
    d->listener_->Start([server = d->server_.get(), authenticator = d->authenticator_.get()](
                            auth::UniqueFd connection, const auth::PeerCredentials& peer) {
      // A uid that maps to no tenant is refused: the connection closes here.
      if (!authenticator->AdmitPeer(connection.get(), peer.uid)) return;
      grpc::AddInsecureChannelFromFd(server, connection.release());
    });
  }
  if (options.sequence_ttl > absl::ZeroDuration()) {
    d->sweeper_ = std::thread(&Daemon::SweepLoop, d.get());
  }
  // ---- end tenants and security ----
  d->observability_->MarkServing(d->store_.get(), options.store.path);  // /readyz: ready
  return d;
}

absl::Status Daemon::Shutdown() {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  if (observability_ != nullptr) observability_->MarkStopping();  // /readyz 503
  if (cluster_ != nullptr) {  // leave the cluster at once (revokes the lease)
    const absl::Status left = cluster_->Leave();
    if (!left.ok()) std::cerr << "clusterkvd: leaving the cluster: " << left << std::endl;
  }
  // Tenants and security: no new connections, no more sweeps.
  if (listener_ != nullptr) listener_->Stop();
  {
    absl::MutexLock lock(&sweep_mu_);
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.shutdown_grace));
    server_->Wait();
  }
#if defined(CLUSTERKV_WITH_UCX)
  // Sessions and the progress thread go before the handler and store they use; the arena
  // registration itself is released with the store.
  if (data_plane_ != nullptr) data_plane_->Stop();
#endif
  // The last tasks of both front ends run (a UCX task whose reply can no longer be posted
  // just releases its blocks); then nothing uses the handler or the store.
  if (pool_ != nullptr) pool_->Stop();
  if (observability_ != nullptr) observability_->Shutdown();  // HTTP off, spans out
  absl::Status closed = store_ != nullptr ? store_->Close() : absl::OkStatus();
  std::error_code ec;
  if (lock_ != nullptr) std::filesystem::remove(options_.socket_path, ec);  // ours only
  return closed;
}

// Sequence TTL: drops idle sequences every quarter TTL (at least 1 s, at most 60 s apart).
void Daemon::SweepLoop() {
  const absl::Duration period =
      std::clamp(options_.sequence_ttl / 4, absl::Seconds(1), absl::Seconds(60));
  while (true) {
    {
      absl::MutexLock lock(&sweep_mu_);
      if (sweep_mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) return;
    }
    absl::StatusOr<int64_t> dropped = handler_->ExpireIdle(options_.sequence_ttl);
    if (!dropped.ok()) {
      std::cerr << "clusterkvd: TTL sweep: " << dropped.status() << std::endl;
    } else if (*dropped > 0) {
      std::cerr << "clusterkvd: dropped " << *dropped << " sequence(s) idle for "
                << options_.sequence_ttl << std::endl;
    }
  }
}

uint64_t Daemon::expired_sequences() const {
  return handler_ != nullptr ? handler_->expired_sequences() : 0;
}

Daemon::~Daemon() {
  absl::Status s = Shutdown();
  (void)s;  // reported by an explicit Shutdown()
}

}  // namespace clusterkv::server
