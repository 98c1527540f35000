#include "server/daemon.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
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

// ---- the UCX data plane: the one part of the daemon that differs in builds without UCX ----
#if defined(CLUSTERKV_WITH_UCX)
// The data plane of `o` (null when --ucx=false); *plane points to it.
absl::StatusOr<std::unique_ptr<storage::ArenaRegistrar>> MakeDataPlane(const DaemonOptions& o,
                                                                       UcxDataPlane** plane) {
  *plane = nullptr;
  if (!o.ucx) return nullptr;
  UcxDataPlaneOptions ucx_options;
  ucx_options.transports = o.ucx_transports;
  ucx_options.peer_errors = o.ucx_peer_errors;
  ucx_options.busy_poll = o.ucx_busy_poll;
  ucx_options.direct_shm = o.ucx_direct_shm;
  ASSIGN_OR_RETURN(std::unique_ptr<UcxDataPlane> created, UcxDataPlane::Create(ucx_options));
  *plane = created.get();
  return std::unique_ptr<storage::ArenaRegistrar>(std::move(created));
}

// Starts `plane` (if any) and returns what serves ConnectDataPlane.
absl::StatusOr<DataPlaneConnector> StartDataPlane(const DaemonOptions& /*o*/,
                                                  UcxDataPlane* plane, RequestHandler* handler,
                                                  WorkerPool* pool) {
  if (plane == nullptr) {
    return DataPlaneConnector([](const CallContext&, const v1::ConnectDataPlaneRequest&)
                                  -> absl::StatusOr<v1::ConnectDataPlaneResponse> {
      return absl::FailedPreconditionError("the UCX data plane is disabled (--ucx=false)");
    });
  }
  RETURN_IF_ERROR(plane->Start(handler, pool));
  return DataPlaneConnector(
      [plane](const CallContext& call, const v1::ConnectDataPlaneRequest& request) {
        CallContext session_call = call;  // the session's fetches move over UCX, untraced
        session_call.transport = metrics::Transport::kUcx;
        session_call.trace = {};
        return plane->Connect(session_call, request);
      });
}
#else
absl::StatusOr<std::unique_ptr<storage::ArenaRegistrar>> MakeDataPlane(const DaemonOptions&,
                                                                       UcxDataPlane** plane) {
  *plane = nullptr;
  return nullptr;
}

// Null: ConnectDataPlane answers UNIMPLEMENTED.
absl::StatusOr<DataPlaneConnector> StartDataPlane(const DaemonOptions&, UcxDataPlane*,
                                                  RequestHandler*, WorkerPool*) {
  return DataPlaneConnector();
}
#endif
// ---- end UCX data plane ----

}  // namespace

Daemon::Daemon(const DaemonOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<Daemon> d(new Daemon(options));
  RETURN_IF_ERROR(d->PrepareOptions());
  RETURN_IF_ERROR(d->TakeSocket());
  RETURN_IF_ERROR(d->StartObservability());
  RETURN_IF_ERROR(d->OpenStore());
  RETURN_IF_ERROR(d->MakeHandler());
  RETURN_IF_ERROR(d->MakeService());
  RETURN_IF_ERROR(d->ServeGrpc());
  RETURN_IF_ERROR(d->StartServing());
  return d;
}

absl::Status Daemon::ValidateOptions(const DaemonOptions& options) {
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
  if (options.hint_queue < 1 || options.hint_queue > (size_t{1} << 20)) {
    return absl::InvalidArgumentError("the hint queue needs 1 to 2^20 entries");
  }
  if (options.handler.max_hint_clusters < 1 || options.handler.max_hint_clusters > (1 << 20)) {
    return absl::InvalidArgumentError("a hint's cluster limit must be in [1, 2^20]");
  }
  if (options.sequence_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the sequence TTL is negative");
  }
  return ValidateClusterOptions(options);
}

absl::Status Daemon::PrepareOptions() {
  if (options_.logger == nullptr) options_.logger = MakeDefaultLogger(nullptr);
  options_.handler.max_block_bytes =
      std::min<uint64_t>(options_.handler.max_block_bytes, options_.max_message_bytes / 2);
  // A unary answer must fit one message, with room for its framing.
  options_.handler.max_response_bytes = std::min<uint64_t>(
      options_.handler.max_response_bytes, options_.max_message_bytes - (uint64_t{1} << 19));
  options_.handler.quotas = options_.quotas;
  if (!options_.tcp_address.empty()) {
    ASSIGN_OR_RETURN(tcp_credentials_, TcpCredentials(options_));
  }
  ASSIGN_OR_RETURN(authenticator_, MakeAuthenticator(options_));
  return absl::OkStatus();
}

absl::Status Daemon::TakeSocket() {
  const std::filesystem::path socket(options_.socket_path);
  std::error_code ec;
  if (socket.has_parent_path()) std::filesystem::create_directories(socket.parent_path(), ec);
  ASSIGN_OR_RETURN(lock_, LockFile::Acquire(options_.socket_path + ".lock"));
  // We hold the lock: a socket file left behind is stale (a crashed daemon's).
  std::filesystem::remove(socket, ec);
  return absl::OkStatus();
}

absl::Status Daemon::StartObservability() {
  // /healthz answers from here on; /readyz once serving.
  ASSIGN_OR_RETURN(observability_, http::Observability::Start(options_.observability));
  options_.handler.instrumentation = observability_->instrumentation();
  return absl::OkStatus();
}

absl::Status Daemon::OpenStore() {
  storage::TieredStoreOptions store_options = options_.store;
  // The UCX data plane maps the arena once, as the store's registrar: created first.
  ASSIGN_OR_RETURN(data_plane_owner_, MakeDataPlane(options_, &data_plane_));
  if (data_plane_owner_ != nullptr) store_options.registrar = data_plane_owner_.get();
  ASSIGN_OR_RETURN(store_, storage::TieredStore::Open(store_options));
  if (options_.quotas.limits_bytes()) {  // per-tenant byte quotas
    store_->SetQuotaHook(auth::MakeQuotaHook(options_.quotas));
  }
  return absl::OkStatus();
}

absl::Status Daemon::MakeHandler() {
  if (!options_.fetch_trace_file.empty()) {
    fetch_trace_ = std::make_unique<FetchTrace>();
    options_.handler.fetch_trace = fetch_trace_.get();
  }
  if (!options_.cluster.enabled()) {
    handler_ = std::make_unique<RequestHandler>(store_.get(), options_.handler);
    return absl::OkStatus();
  }
  // Cluster mode: requests are routed to the nodes that hold their sequence.
  cluster::ClusterNode::Deps deps;
  deps.store = store_.get();
  deps.metrics = &observability_->metrics();
  deps.logger = options_.logger;
  deps.plaintext_peers = options_.tls_cert_file.empty();  // --allow_insecure_tcp
  deps.default_tls_root_file = options_.tls_cert_file;
  deps.max_message_bytes = static_cast<int>(options_.max_message_bytes);
  ASSIGN_OR_RETURN(cluster_, cluster::ClusterNode::Create(options_.cluster, std::move(deps)));
  handler_ = std::make_unique<cluster::ClusterRequestHandler>(store_.get(), options_.handler,
                                                              cluster_.get());
  return absl::OkStatus();
}

absl::Status Daemon::MakeService() {
  WorkerPoolOptions pool_options;
  pool_options.name = "requests";
  pool_options.threads = options_.worker_threads;
  pool_options.max_queued = options_.worker_queue;
  pool_options.on_rejected = [metrics = &observability_->metrics()](const std::string& pool) {
    metrics->AddPoolRejection(pool);
  };
  WorkerPoolOptions hint_options;
  hint_options.name = "hints";
  hint_options.threads = 1;
  hint_options.max_queued = options_.hint_queue;
  hint_options.on_rejected = pool_options.on_rejected;
  pool_ = std::make_unique<WorkerPool>(std::move(pool_options));
  hint_pool_ = std::make_unique<WorkerPool>(std::move(hint_options));
  ASSIGN_OR_RETURN(DataPlaneConnector connector,
                   StartDataPlane(options_, data_plane_, handler_.get(), pool_.get()));
  service_ = std::make_unique<KvCacheService>(
      handler_.get(), pool_.get(), AuthenticatedTenantResolver(authenticator_.get()),
      std::move(connector), observability_->instrumentation(),
      cluster_ != nullptr ? ClusterPeerResolver(cluster_.get()) : nullptr, hint_pool_.get());
  return absl::OkStatus();
}

absl::Status Daemon::ServeGrpc() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (options_.auth == auth::AuthMode::kPeerCred) {
    // The daemon accepts Unix-socket connections itself to read SO_PEERCRED (StartServing).
    ASSIGN_OR_RETURN(listener_, auth::UnixListener::Bind(options_.socket_path, options_.logger));
  } else {
    builder.AddListeningPort(unix_target(), grpc::InsecureServerCredentials());
  }
  if (tcp_credentials_) {
    builder.AddListeningPort(options_.tcp_address, tcp_credentials_, &tcp_port_);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("gRPC could not serve on ", unix_target(),
                                               options_.tcp_address.empty() ? "" : " and ",
                                               options_.tcp_address));
  }
  if (!options_.tcp_address.empty() && tcp_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind TCP ", options_.tcp_address));
  }
  return absl::OkStatus();
}

absl::Status Daemon::StartServing() {
  if (cluster_ != nullptr) {  // cluster mode: register once reachable
    ASSIGN_OR_RETURN(std::string advertise, AdvertisedAddress(options_, tcp_port_));
    RETURN_IF_ERROR(cluster_->Join(
        advertise, data_plane_ != nullptr ? data_plane_->worker_address() : std::string(),
        options_.store.high_watermark));
  }
  if (listener_ != nullptr) {
    listener_->Start([server = server_.get(), authenticator = authenticator_.get()](
                         auth::UniqueFd connection, const auth::PeerCredentials& peer) {
      // A uid that maps to no tenant is refused: the connection closes here.
      if (!authenticator->AdmitPeer(connection.get(), peer.uid)) return;
      grpc::AddInsecureChannelFromFd(server, connection.release());
    });
  }
  if (options_.sequence_ttl > absl::ZeroDuration()) {
    sweeper_ = std::thread(&Daemon::SweepLoop, this);
  }
  observability_->MarkServing(store_.get(), options_.store.path);  // /readyz: ready
  return absl::OkStatus();
}

absl::Status Daemon::Shutdown() {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  if (observability_ != nullptr) observability_->MarkStopping();  // /readyz 503
  if (cluster_ != nullptr) {  // leave the cluster at once (revokes the lease)
    const absl::Status left = cluster_->Leave();
    if (!left.ok()) {
      options_.logger->Log(LogSeverity::kWarning, "leave",
                           absl::StrCat("leaving the cluster: ", left.ToString()));
    }
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
  // Every call is over; pins that FetchClusters messages gRPC has not dropped yet (a cancelled
  // stream's) go now, while the store is open.
  if (service_ != nullptr) service_->ReleaseHeldPins();
#if defined(CLUSTERKV_WITH_UCX)
  // Sessions and the progress thread go before the handler and store they use; the arena
  // registration itself is released with the store.
  if (data_plane_ != nullptr) data_plane_->Stop();
#endif
  // The last tasks of both front ends run (a UCX task whose reply can no longer be posted
  // just releases its blocks); then nothing uses the handler or the store.
  if (pool_ != nullptr) pool_->Stop();
  if (hint_pool_ != nullptr) hint_pool_->Stop();
  if (observability_ != nullptr) observability_->Shutdown();  // HTTP off, spans out
  if (fetch_trace_ != nullptr) {
    const absl::Status written = fetch_trace_->WriteTo(options_.fetch_trace_file);
    if (!written.ok()) options_.logger->Log(LogSeverity::kWarning, "fetch_trace", written.ToString());
  }
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
      options_.logger->Log(LogSeverity::kWarning, "ttl_sweep",
                           absl::StrCat("TTL sweep: ", dropped.status().ToString()));
    } else if (*dropped > 0) {
      options_.logger->Log(LogSeverity::kInfo, "ttl_sweep",
                           absl::StrCat("dropped ", *dropped, " sequence(s) idle for ",
                                        absl::FormatDuration(options_.sequence_ttl)));
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
