// clusterkvd: the per-node KV-cache daemon. Flags are grouped by subsystem; --flagfile=FILE
// reads them from a config file (one --flag=value per line); --help lists them.
#include <malloc.h>  // mallopt
#include <signal.h>
#include <unistd.h>  // gethostname (cluster mode's default node id)

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "core/cli_help.h"
#include "gpu/backend.h"
#include "server/daemon.h"

ABSL_FLAG(std::string, socket, "/run/clusterkv/clusterkvd.sock",
          "Unix domain socket to serve on (the sidecar default).");
ABSL_FLAG(std::string, tcp_address, "", "Also serve TCP on host:port (needs --tls_cert/--tls_key).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for TCP.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for TCP.");
ABSL_FLAG(bool, allow_insecure_tcp, false, "Serve plaintext TCP (loopback tests only).");
ABSL_FLAG(int64_t, max_message_mib, 64, "Largest gRPC message either way, MiB (gRPC's default 4 "
          "is too small for large blocks); blocks above half of it are refused.");
ABSL_FLAG(int32_t, worker_threads, 8,
          "Threads of the worker pool that runs every request's blocking work (RocksDB, SSD "
          "promotions, peer pulls); gRPC and UCX network threads never block.");
ABSL_FLAG(int32_t, worker_queue, 4096,
          "Requests queued for the worker pool before new ones are refused with "
          "RESOURCE_EXHAUSTED (clusterkv_worker_pool_rejections_total).");
ABSL_FLAG(int32_t, max_fetch_clusters, 65536,
          "Most clusters one FetchClusters (gRPC or UCX) or AppendClusters may name.");
ABSL_FLAG(int32_t, hint_queue, 64,
          "Promotion hints (HintClusters) queued for their one-thread pool before new ones are "
          "dropped with RESOURCE_EXHAUSTED (clusterkv_worker_pool_rejections_total{pool=\"hints\"}).");
ABSL_FLAG(int32_t, max_hint_clusters, 4096, "Most clusters one promotion hint may name.");
ABSL_FLAG(int64_t, max_response_mib, 32,
          "Largest unary answer (GetIndex), MiB; a larger one is RESOURCE_EXHAUSTED before it is "
          "built. Kept under --max_message_mib.");
ABSL_FLAG(int32_t, max_list_sequences, 1024, "Most sequences one ListSequences page returns.");
ABSL_FLAG(std::string, data_dir, "/var/lib/clusterkv", "Directory of the SSD tier (RocksDB).");
ABSL_FLAG(int64_t, host_capacity_mib, 1024, "Host tier (arena) size, MiB.");
ABSL_FLAG(double, high_watermark, 0.90, "Host usage fraction that starts eviction to the SSD.");
ABSL_FLAG(double, low_watermark, 0.75, "Host usage fraction eviction stops at.");
ABSL_FLAG(bool, write_through, false, "Make every put durable before acknowledging it.");
ABSL_FLAG(bool, huge_pages, true, "Back the host arena with huge pages where possible.");
ABSL_FLAG(std::string, eviction_policy, "lru",
          "Which host-tier blocks go to the SSD first: lru (least recently recalled) or heat "
          "(least often recalled, by a decayed count of the fetches that named them; never "
          "recalled first, ties least recent first).");
ABSL_FLAG(double, heat_half_life_fetches, 32,
          "heat: fetches (daemon-wide) after which a recall counts half.");
ABSL_FLAG(std::string, fetch_trace_file, "",
          "Record every fetch (cluster ids and block sizes, no data) and write them to this file "
          "at shutdown: the input of `clusterkv_bench heat`.");
ABSL_FLAG(bool, prefault_host_tier, false,
          "Fault in the whole host tier at start (its memory is resident from then on): puts "
          "into fresh memory, e.g. a read-only copy of another node's sequence, then take no "
          "page fault per page. Costs startup time.");
ABSL_FLAG(std::string, backend, "auto", "Compute backend for server-side Select: cpu, cuda, auto.");
ABSL_FLAG(int32_t, threads, 0, "CPU threads for server-side compute (0 = all cores).");
#if defined(CLUSTERKV_WITH_UCX)
ABSL_FLAG(bool, ucx, true, "Serve the UCX data plane (fetches written straight into clients' "
          "cache memory); clients fall back to gRPC streaming without it.");
#else
ABSL_FLAG(bool, ucx, false, "Serve the UCX data plane (this build has no UCX: ignored).");
#endif
ABSL_FLAG(std::string, ucx_transports, "",
          "UCX transports of the data plane, UCX_TLS-like (e.g. tcp,self); empty: UCX's default.");
ABSL_FLAG(std::string, ucx_peer_errors, "auto",
          "UCX peer error handling (detects vanished clients; UCX 1.13 then writes over tcp only): "
          "true, false, or auto = only for clients connected over TCP, so same-host clients get "
          "shared memory at memcpy speed.");
ABSL_FLAG(int32_t, ucx_busy_poll_us, 50,
          "Microseconds the data plane's progress thread keeps polling after its last event "
          "before sleeping on the event fd: requests arriving in that window skip a wakeup "
          "(tens of microseconds on a VM). 0: sleep at once, no CPU spent while idle.");
ABSL_FLAG(bool, ucx_direct_shm, true,
          "Same-host clients on shared memory: map their cache region into the daemon and write "
          "recalled blocks with memcpy (false: one ucp_put_nbx per block).");
ABSL_FLAG(double, shutdown_grace_s, 10.0, "On SIGTERM, seconds to let calls in flight finish.");
// ---- observability ----
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "HTTP host:port of /metrics (Prometheus), /healthz, /readyz and /dashboard; \"\" "
          "disables it; port 0 picks a free one. A port already taken is reported and skipped.");
ABSL_FLAG(std::string, otlp_endpoint, "",
          "Export trace spans as OTLP/HTTP JSON to this URL, e.g. http://127.0.0.1:4318/v1/traces.");
ABSL_FLAG(std::string, trace_file, "", "Append trace spans as JSON lines (OTLP span objects) here.");
ABSL_FLAG(double, trace_sample_ratio, 0.01,
          "Fraction of new traces sampled (requests whose traceparent says sampled always are).");
// ---- end observability ----
// ---- tenants and security ----
ABSL_FLAG(std::string, auth, "peercred",
          "How callers are authenticated: peercred = the Unix socket peer's uid names the tenant "
          "(--peer_tenants_file, or \"uid-<uid>\"), TCP callers need a bearer token; token = "
          "every call needs `authorization: Bearer <token>`; none = trust the clusterkv-tenant "
          "metadata (INSECURE, tests only).");
ABSL_FLAG(std::string, tokens_file, "",
          "Bearer tokens, hashed: one `tenant:<hex sha256 of the token>` per line. Needed by "
          "--auth=token and by TCP.");
ABSL_FLAG(std::string, peer_tenants_file, "",
          "`uid:tenant` lines mapping Unix-socket peers to tenants; uids not listed are refused. "
          "Empty: every uid is tenant \"uid-<uid>\".");
ABSL_FLAG(int64_t, quota_host_mib, 0, "Per-tenant host-tier quota, MiB (0 = unlimited).");
ABSL_FLAG(int64_t, quota_ssd_mib, 0,
          "Per-tenant SSD quota, MiB: bounds host + SSD bytes of the tenant (0 = unlimited).");
ABSL_FLAG(int64_t, quota_sequences, 0, "Per-tenant number of sequences (0 = unlimited).");
ABSL_FLAG(double, sequence_ttl_s, 0,
          "Drop sequences not accessed for this many seconds (0 = never).");
// ---- end tenants and security ----
// ---- cluster mode ----
ABSL_FLAG(std::string, cluster_etcd, "",
          "etcd client URL (http://host:port) of the cluster's shared state; empty: single-node "
          "mode. Needs --tcp_address, --cluster_token_file and TLS (or --allow_insecure_tcp).");
ABSL_FLAG(std::string, cluster_name, "clusterkv",
          "Name of the cluster: its keys live under /clusterkv/<name>/ in etcd.");
ABSL_FLAG(std::string, node_id, "",
          "This daemon's id in the cluster ([A-Za-z0-9._-], unique); empty: the host name.");
ABSL_FLAG(std::string, advertise_grpc, "",
          "host:port other daemons call this one on; empty: --tcp_address's host and bound port.");
ABSL_FLAG(double, lease_ttl_s, 10,
          "Membership lease TTL, seconds: a node that stops renewing it is gone this long after "
          "(and its replicas take its sequences over).");
ABSL_FLAG(int32_t, replication, 1,
          "Copies of each new sequence: 1, or 2 (owner + a replica on another node, written "
          "before every put is acknowledged; the replica takes over if the owner dies).");
ABSL_FLAG(std::string, cluster_token_file, "",
          "File whose first line is the cluster's shared peer token (16+ printable characters): "
          "daemons present it to each other to act for a tenant. Keep it mode 0600.");
ABSL_FLAG(std::string, cluster_tls_root_cert, "",
          "PEM roots the other daemons' certificates must chain to; empty: --tls_cert (a cluster "
          "sharing one self-signed certificate).");
ABSL_FLAG(std::string, cluster_tls_target_name, "",
          "Name checked in the other daemons' certificates instead of their address's host.");
ABSL_FLAG(double, cluster_peer_timeout_s, 30, "Deadline of each daemon-to-daemon call, seconds.");
ABSL_FLAG(bool, cluster_peer_ucx, true,
          "Pull other nodes' blocks over their UCX data plane (whole blocks into a registered "
          "region; gRPC streaming for what UCX does not deliver). false: gRPC streaming only.");
ABSL_FLAG(std::string, cluster_peer_ucx_transports, "",
          "UCX transports for pulls from other nodes (UCX_TLS syntax, e.g. \"tcp\"); empty: "
          "UCX's default (tcp between hosts).");
ABSL_FLAG(int32_t, cluster_peer_ucx_sessions, 8,
          "UCX pull sessions kept open, one per (peer node, tenant); each holds a UCX context, "
          "a thread and its region. Opening one more closes the least recently used.");
ABSL_FLAG(int64_t, cluster_peer_ucx_region_mib, 64,
          "Registered receive region per (peer node, tenant) for UCX pulls, MiB; blocks over "
          "1 MiB are pulled over gRPC.");
// ---- end cluster mode ----

namespace {

constexpr char kUsage[] =
    "clusterkvd: the clusterkv memory daemon. Holds every cluster's K/V in a host-memory tier\n"
    "backed by an SSD tier (RocksDB), and serves the clusterkv.v1.KvCache gRPC service (with\n"
    "grpc.health.v1 and reflection) on a Unix socket, optionally TCP with TLS.\n\n"
    "Usage:\n"
    "  clusterkvd --socket=/run/clusterkv/clusterkvd.sock --data_dir=/var/lib/clusterkv\n"
    "  clusterkvd --flagfile=/etc/clusterkv/clusterkvd.flags\n\n"
    "SIGTERM or SIGINT: stop accepting calls, drain those in flight, flush write-back blocks to\n"
    "the SSD, close RocksDB, exit 0. A second daemon on the same socket exits with an error.\n";

const std::vector<clusterkv::FlagGroup>& Groups() {
  static const auto* groups = new std::vector<clusterkv::FlagGroup>{
      {"Serving", {"socket", "tcp_address", "tls_cert", "tls_key", "allow_insecure_tcp",
                   "max_message_mib", "shutdown_grace_s"}},
      {"Request limits", {"worker_threads", "worker_queue", "max_fetch_clusters",
                          "hint_queue", "max_hint_clusters",
                          "max_response_mib", "max_list_sequences"}},
      {"Data plane", {"ucx", "ucx_transports", "ucx_peer_errors", "ucx_busy_poll_us", "ucx_direct_shm"}},
      {"Storage", {"data_dir", "host_capacity_mib", "high_watermark", "low_watermark",
                   "write_through", "huge_pages", "prefault_host_tier", "eviction_policy",
                   "heat_half_life_fetches"}},
      {"Compute", {"backend", "threads"}},
      {"Observability", {"metrics_address", "otlp_endpoint", "trace_file", "trace_sample_ratio",
                         "fetch_trace_file"}},
      {"Tenants and security", {"auth", "tokens_file", "peer_tenants_file", "quota_host_mib",
                                "quota_ssd_mib", "quota_sequences", "sequence_ttl_s"}},
      {"Cluster", {"cluster_etcd", "cluster_name", "node_id", "advertise_grpc",
                              "lease_ttl_s", "replication", "cluster_token_file",
                              "cluster_tls_root_cert", "cluster_tls_target_name",
                              "cluster_peer_timeout_s", "cluster_peer_ucx",
                              "cluster_peer_ucx_transports", "cluster_peer_ucx_region_mib",
                              "cluster_peer_ucx_sessions"}},
      {"Config file", {"flagfile"}},
  };
  return *groups;
}

absl::StatusOr<clusterkv::server::DaemonOptions> OptionsFromFlags() {
  clusterkv::server::DaemonOptions o;
  o.socket_path = absl::GetFlag(FLAGS_socket);
  o.tcp_address = absl::GetFlag(FLAGS_tcp_address);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.allow_insecure_tcp = absl::GetFlag(FLAGS_allow_insecure_tcp);
  const int64_t max_mib = absl::GetFlag(FLAGS_max_message_mib);
  const int64_t capacity_mib = absl::GetFlag(FLAGS_host_capacity_mib);
  if (max_mib < 1 || max_mib > 1024) {
    return absl::InvalidArgumentError("--max_message_mib must be in [1, 1024]");
  }
  if (capacity_mib < 2 || capacity_mib > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError("--host_capacity_mib must be in [2, 2^24]");
  }
  o.max_message_bytes = static_cast<uint64_t>(max_mib) << 20;
  o.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  const int32_t worker_queue = absl::GetFlag(FLAGS_worker_queue);
  if (worker_queue < 1) return absl::InvalidArgumentError("--worker_queue must be >= 1");
  o.worker_queue = static_cast<size_t>(worker_queue);
  const int32_t hint_queue = absl::GetFlag(FLAGS_hint_queue);
  if (hint_queue < 1 || hint_queue > (1 << 20)) {
    return absl::InvalidArgumentError("--hint_queue must be in [1, 2^20]");
  }
  o.hint_queue = static_cast<size_t>(hint_queue);
  o.handler.max_hint_clusters = absl::GetFlag(FLAGS_max_hint_clusters);
  if (o.handler.max_hint_clusters < 1 || o.handler.max_hint_clusters > (1 << 20)) {
    return absl::InvalidArgumentError("--max_hint_clusters must be in [1, 2^20]");
  }
  o.handler.max_fetch_clusters = absl::GetFlag(FLAGS_max_fetch_clusters);
  if (o.handler.max_fetch_clusters < 1 || o.handler.max_fetch_clusters > (1 << 20)) {
    return absl::InvalidArgumentError("--max_fetch_clusters must be in [1, 2^20]");
  }
  const int64_t response_mib = absl::GetFlag(FLAGS_max_response_mib);
  if (response_mib < 1 || response_mib > max_mib) {
    return absl::InvalidArgumentError("--max_response_mib must be in [1, --max_message_mib]");
  }
  o.handler.max_response_bytes = static_cast<uint64_t>(response_mib) << 20;
  o.handler.max_list_sequences = absl::GetFlag(FLAGS_max_list_sequences);
  if (o.handler.max_list_sequences < 1 || o.handler.max_list_sequences > (1 << 20)) {
    return absl::InvalidArgumentError("--max_list_sequences must be in [1, 2^20]");
  }
  o.store.path = absl::GetFlag(FLAGS_data_dir);
  o.store.host_capacity_bytes = static_cast<uint64_t>(capacity_mib) << 20;
  o.store.high_watermark = absl::GetFlag(FLAGS_high_watermark);
  o.store.low_watermark = absl::GetFlag(FLAGS_low_watermark);
  o.store.write_through = absl::GetFlag(FLAGS_write_through);
  o.store.huge_pages = absl::GetFlag(FLAGS_huge_pages);
  o.store.prefault = absl::GetFlag(FLAGS_prefault_host_tier);
  auto policy = clusterkv::storage::ParseEvictionPolicy(absl::GetFlag(FLAGS_eviction_policy));
  if (!policy.ok()) return policy.status();
  o.store.eviction_policy = *policy;
  o.store.heat.half_life_fetches = absl::GetFlag(FLAGS_heat_half_life_fetches);
  if (!(o.store.heat.half_life_fetches >= 1 && o.store.heat.half_life_fetches <= 1e12)) {
    return absl::InvalidArgumentError("--heat_half_life_fetches must be in [1, 1e12]");
  }
  o.fetch_trace_file = absl::GetFlag(FLAGS_fetch_trace_file);
  auto exec = clusterkv::gpu::MakeExecContext(absl::GetFlag(FLAGS_backend),
                                              absl::GetFlag(FLAGS_threads));
  if (!exec.ok()) return exec.status();
  o.handler.exec = *exec;
  const double grace = absl::GetFlag(FLAGS_shutdown_grace_s);
  if (!(grace >= 0 && grace <= 3600)) {
    return absl::InvalidArgumentError("--shutdown_grace_s must be in [0, 3600]");
  }
  o.shutdown_grace = absl::Seconds(grace);
  o.ucx = absl::GetFlag(FLAGS_ucx);
  o.ucx_transports = absl::GetFlag(FLAGS_ucx_transports);
  const std::string peer_errors = absl::GetFlag(FLAGS_ucx_peer_errors);
  if (peer_errors == "auto") {
    o.ucx_peer_errors = clusterkv::server::UcxPeerErrors::kRemoteOnly;
  } else if (peer_errors == "true") {
    o.ucx_peer_errors = clusterkv::server::UcxPeerErrors::kAlways;
  } else if (peer_errors == "false") {
    o.ucx_peer_errors = clusterkv::server::UcxPeerErrors::kNever;
  } else {
    return absl::InvalidArgumentError("--ucx_peer_errors must be auto, true or false");
  }
  const int32_t busy_poll_us = absl::GetFlag(FLAGS_ucx_busy_poll_us);
  if (busy_poll_us < 0 || busy_poll_us > 100000) {
    return absl::InvalidArgumentError("--ucx_busy_poll_us must be in [0, 100000]");
  }
  o.ucx_busy_poll = absl::Microseconds(busy_poll_us);
  o.ucx_direct_shm = absl::GetFlag(FLAGS_ucx_direct_shm);
  // ---- observability ----
  o.observability.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  o.observability.otlp_endpoint = absl::GetFlag(FLAGS_otlp_endpoint);
  o.observability.trace_file = absl::GetFlag(FLAGS_trace_file);
  o.observability.trace_sample_ratio = absl::GetFlag(FLAGS_trace_sample_ratio);
  if (!(o.observability.trace_sample_ratio >= 0 && o.observability.trace_sample_ratio <= 1)) {
    return absl::InvalidArgumentError("--trace_sample_ratio must be in [0, 1]");
  }
  // ---- end observability ----
  // ---- tenants and security ----
  auto auth = clusterkv::server::auth::ParseAuthMode(absl::GetFlag(FLAGS_auth));
  if (!auth.ok()) return auth.status();
  o.auth = *auth;
  o.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  o.peer_tenants_file = absl::GetFlag(FLAGS_peer_tenants_file);
  const int64_t quota_host = absl::GetFlag(FLAGS_quota_host_mib);
  const int64_t quota_ssd = absl::GetFlag(FLAGS_quota_ssd_mib);
  const int64_t quota_sequences = absl::GetFlag(FLAGS_quota_sequences);
  constexpr int64_t kMaxMib = int64_t{1} << 30;
  if (quota_host < 0 || quota_host > kMaxMib || quota_ssd < 0 || quota_ssd > kMaxMib ||
      quota_sequences < 0) {
    return absl::InvalidArgumentError("quotas must be >= 0 (and MiB below 2^30)");
  }
  o.quotas.host_bytes = static_cast<uint64_t>(quota_host) << 20;
  o.quotas.ssd_bytes = static_cast<uint64_t>(quota_ssd) << 20;
  o.quotas.sequences = static_cast<uint64_t>(quota_sequences);
  const double ttl = absl::GetFlag(FLAGS_sequence_ttl_s);
  if (!(ttl >= 0 && ttl <= 10 * 365 * 86400.0)) {
    return absl::InvalidArgumentError("--sequence_ttl_s must be in [0, 10 years]");
  }
  o.sequence_ttl = absl::Seconds(ttl);
  // ---- end tenants and security ----
  // ---- cluster mode ----
  o.cluster.etcd_endpoint = absl::GetFlag(FLAGS_cluster_etcd);
  o.cluster.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  o.cluster.node_id = absl::GetFlag(FLAGS_node_id);
  if (o.cluster.enabled() && o.cluster.node_id.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0) o.cluster.node_id = host;
  }
  o.cluster.advertise_grpc = absl::GetFlag(FLAGS_advertise_grpc);
  const double lease_ttl = absl::GetFlag(FLAGS_lease_ttl_s);
  const double peer_timeout = absl::GetFlag(FLAGS_cluster_peer_timeout_s);
  if (!(lease_ttl >= 2 && lease_ttl <= 3600) || !(peer_timeout > 0 && peer_timeout <= 3600)) {
    return absl::InvalidArgumentError(
        "--lease_ttl_s must be in [2, 3600] and --cluster_peer_timeout_s in (0, 3600]");
  }
  o.cluster.lease_ttl = absl::Seconds(lease_ttl);
  o.cluster.peer_timeout = absl::Seconds(peer_timeout);
  o.cluster.replication = absl::GetFlag(FLAGS_replication);
  o.cluster.token_file = absl::GetFlag(FLAGS_cluster_token_file);
  o.cluster.tls_root_cert_file = absl::GetFlag(FLAGS_cluster_tls_root_cert);
  o.cluster.tls_target_name = absl::GetFlag(FLAGS_cluster_tls_target_name);
  o.cluster.peer_ucx = absl::GetFlag(FLAGS_cluster_peer_ucx) && o.ucx;  // --ucx=false: no UCX at all
  o.cluster.peer_ucx_transports = absl::GetFlag(FLAGS_cluster_peer_ucx_transports);
  const int64_t region_mib = absl::GetFlag(FLAGS_cluster_peer_ucx_region_mib);
  if (region_mib < 1 || region_mib > 16384) {
    return absl::InvalidArgumentError("--cluster_peer_ucx_region_mib must be in [1, 16384]");
  }
  o.cluster.peer_ucx_region_bytes = static_cast<size_t>(region_mib) << 20;
  const int32_t sessions = absl::GetFlag(FLAGS_cluster_peer_ucx_sessions);
  if (sessions < 1 || sessions > 4096) {
    return absl::InvalidArgumentError("--cluster_peer_ucx_sessions must be in [1, 4096]");
  }
  o.cluster.peer_ucx_sessions = static_cast<size_t>(sessions);
  // ---- end cluster mode ----
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  if (clusterkv::WantsHelp(argc, argv)) {
    clusterkv::PrintHelp(kUsage, Groups(), std::cout);
    return 0;
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with mutex deadlock detection on, which records every lock
  // acquisition in a global graph: measurable on the per-block recall path (decision D22).
  // The daemon's locking is tested under ASan/UBSan in CI; detection stays on in tests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Recall and put messages are megabytes each. glibc mmaps every allocation at or above its
  // dynamic threshold, so a daemon that has not yet freed a larger buffer maps (and page
  // faults) each 2 MiB reply afresh: ~500 faults, most of a warm recall's cost (decision D55).
  // A fixed 32 MiB threshold (glibc's maximum) keeps them in the malloc arenas, and a high trim
  // threshold keeps freed arena memory for the next message.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  if (rest.size() > 1) {
    std::cerr << "clusterkvd: unexpected argument '" << rest[1] << "' (see --help)\n";
    return 2;
  }
  absl::StatusOr<clusterkv::server::DaemonOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "clusterkvd: " << options.status().message() << "\n";
    return 2;
  }
  if (options->auth == clusterkv::server::auth::AuthMode::kNone) {
    std::cerr << "clusterkvd: warning: --auth=none is INSECURE: any process that can reach the "
                 "socket can act as any tenant (clusterkv-tenant metadata is trusted)"
              << std::endl;
  }
  // Block the shutdown signals in every thread; the main thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<clusterkv::server::Daemon>> daemon =
      clusterkv::server::Daemon::Start(*options);
  if (!daemon.ok()) {
    std::cerr << "clusterkvd: " << daemon.status() << "\n";
    return 1;
  }
  // ---- observability: printed before the "serving on" line (the readiness signal
  // launchers wait for), so the metrics port is known once that line is seen ----
  if ((*daemon)->metrics_port() != 0) {
    std::cout << "clusterkvd: metrics on http://" << options->observability.metrics_address.substr(
                     0, options->observability.metrics_address.rfind(':'))
              << ":" << (*daemon)->metrics_port() << "/metrics (dashboard: /dashboard)"
              << std::endl;
  } else if (!(*daemon)->observability().http_status().ok()) {
    std::cerr << "clusterkvd: warning: no metrics endpoint: "
              << (*daemon)->observability().http_status() << std::endl;
  }
  // ---- end observability ----
  std::cout << "clusterkvd: serving on " << (*daemon)->unix_target();
  if ((*daemon)->tcp_port() != 0) std::cout << " and tcp port " << (*daemon)->tcp_port();
  std::cout << " (data " << options->store.path << ", host tier "
            << (options->store.host_capacity_bytes >> 20) << " MiB, "
            << (*daemon)->store().arena().page_kind() << " pages"
            << ((*daemon)->data_plane() != nullptr ? ", UCX data plane" : "") << ", auth "
            << clusterkv::server::auth::AuthModeName(options->auth);
  if ((*daemon)->cluster() != nullptr) {
    std::cout << ", cluster " << options->cluster.cluster_name << " as node "
              << (*daemon)->cluster()->node_id();
  }
  std::cout << ")" << std::endl;

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::cout << "clusterkvd: signal " << signal_number << ", draining and flushing" << std::endl;
  const absl::Status closed = (*daemon)->Shutdown();
  if (!closed.ok()) {
    std::cerr << "clusterkvd: shutdown: " << closed << "\n";
    return 1;
  }
  std::cout << "clusterkvd: stopped cleanly" << std::endl;
  // Everything durable is closed. Returning would run gRPC 1.51's global shutdown, which can
  // wait ~10 s for an executor thread's poll timeout; nothing is left to clean up, so exit now.
  std::_Exit(0);
}
