#include "server/metrics/daemon_metrics.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "storage/tiered_store.h"

namespace clusterkv::server::metrics {
namespace {

// Every family, once: name, help. Order = exposition order. FamilyNames() reads this table,
// and the constructor registers exactly these names (a DCHECK-style RAW_CHECK holds them equal).
constexpr const char* kNames[] = {
    // storage tiers (pull)
    "clusterkv_tier_bytes",
    "clusterkv_tier_blocks",
    "clusterkv_tier_capacity_bytes",
    "clusterkv_tier_hits_total",
    "clusterkv_tier_misses_total",
    "clusterkv_store_evictions_total",
    "clusterkv_store_evicted_bytes_total",
    "clusterkv_store_eviction_failures_total",
    "clusterkv_store_promotions_total",
    "clusterkv_store_heat_evictions_total",
    "clusterkv_store_hint_promotions_total",
    "clusterkv_heat_tracked_clusters",
    "clusterkv_store_write_through_puts_total",
    "clusterkv_store_spilled_puts_total",
    "clusterkv_store_write_through_seconds",
    "clusterkv_host_slab_fragmentation_ratio",
    "clusterkv_ssd_written_bytes_total",
    "clusterkv_ssd_read_bytes_total",
    "clusterkv_ssd_write_errors_total",
    "clusterkv_ssd_read_errors_total",
    "clusterkv_ssd_checksum_failures_total",
    "clusterkv_ssd_available_bytes",
    // tenants (pull)
    "clusterkv_tenant_sequences",
    "clusterkv_tenant_bytes",
    // requests (push)
    "clusterkv_rpc_requests_total",
    "clusterkv_rpc_duration_seconds",
    "clusterkv_fetch_block_duration_seconds",
    "clusterkv_transport_sent_bytes_total",
    "clusterkv_transport_received_bytes_total",
    "clusterkv_ucx_requests_total",
    "clusterkv_ucx_request_sequences_total",
    // clients' device caches (push, ReportClientStats)
    "clusterkv_client_device_cache_hit_tokens_total",
    "clusterkv_client_device_cache_miss_tokens_total",
    "clusterkv_client_estimated_recall",
    "clusterkv_client_device_cache_hit_ratio",
    // open sequences' client reports (push, ReportClientStats with a sequence_id)
    "clusterkv_sequence_estimated_recall",
    "clusterkv_sequence_budget_tokens",
    "clusterkv_sequence_device_cache_hit_ratio",
    "clusterkv_sequence_steps",
    // cluster mode (push)
    "clusterkv_cluster_remote_hits_total",
    "clusterkv_cluster_remote_misses_total",
    "clusterkv_cluster_remote_bytes_total",
    "clusterkv_cluster_remote_ucx_bytes_total",
    "clusterkv_cluster_forwarded_bytes_total",
    "clusterkv_cluster_nodes",
    "clusterkv_cluster_takeovers_total",
    "clusterkv_worker_pool_rejections_total",
    // tracing (pull)
    "clusterkv_trace_spans_exported_total",
    "clusterkv_trace_spans_dropped_total",
    "clusterkv_trace_export_failures_total",
};

// Request latency: 50 us (a unary call on the Unix socket is ~100 us) to 10 s.
const std::vector<double> kRpcBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                        0.5,     1,      2.5,     5,      10};
// One block on the data path: 10 us (a 64 KiB put from the arena) to 1 s (an SSD promotion
// under load).
const std::vector<double> kBlockBounds = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                                          0.0005,  0.001,    0.0025,  0.005,  0.01,
                                          0.025,   0.05,     0.1,     0.25,   1};
// A synced RocksDB put: 100 us to 1 s.
const std::vector<double> kWriteThroughBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                 0.005,  0.01,    0.025,  0.05,  0.1,
                                                 0.25,   0.5,     1};

constexpr std::array<absl::StatusCode, 17> kCodes = {
    absl::StatusCode::kOk,
    absl::StatusCode::kCancelled,
    absl::StatusCode::kUnknown,
    absl::StatusCode::kInvalidArgument,
    absl::StatusCode::kDeadlineExceeded,
    absl::StatusCode::kNotFound,
    absl::StatusCode::kAlreadyExists,
    absl::StatusCode::kPermissionDenied,
    absl::StatusCode::kResourceExhausted,
    absl::StatusCode::kFailedPrecondition,
    absl::StatusCode::kAborted,
    absl::StatusCode::kOutOfRange,
    absl::StatusCode::kUnimplemented,
    absl::StatusCode::kInternal,
    absl::StatusCode::kUnavailable,
    absl::StatusCode::kDataLoss,
    absl::StatusCode::kUnauthenticated,
};

// The gRPC name of a code ("NOT_FOUND"); unknown values collapse to "UNKNOWN" so the label
// stays bounded.
std::string CodeName(absl::StatusCode code) {
  for (absl::StatusCode c : kCodes) {
    if (c == code) return absl::StatusCodeToString(code);
  }
  return "UNKNOWN";
}

}  // namespace

std::string_view RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kOpenSequence: return "OpenSequence";
    case Rpc::kCloseSequence: return "CloseSequence";
    case Rpc::kListSequences: return "ListSequences";
    case Rpc::kPutClusters: return "PutClusters";
    case Rpc::kAppendClusters: return "AppendClusters";
    case Rpc::kGetIndex: return "GetIndex";
    case Rpc::kFetchClusters: return "FetchClusters";
    case Rpc::kSelect: return "Select";
    case Rpc::kStats: return "Stats";
    case Rpc::kConnectDataPlane: return "ConnectDataPlane";
    case Rpc::kReportClientStats: return "ReportClientStats";
    case Rpc::kHintClusters: return "HintClusters";
    case Rpc::kPutState: return "PutState";
    case Rpc::kGetState: return "GetState";
    case Rpc::kSealDocument: return "SealDocument";
    case Rpc::kFindPrefix: return "FindPrefix";
    case Rpc::kGrantDocument: return "GrantDocument";
  }
  return "unknown";
}

std::string_view TransportName(Transport transport) {
  return transport == Transport::kUcx ? "ucx" : "grpc";
}

std::vector<std::string> DaemonMetrics::FamilyNames() {
  return std::vector<std::string>(std::begin(kNames), std::end(kNames));
}

DaemonMetrics::DaemonMetrics(DaemonMetricsOptions options)
    : options_(std::move(options)), sequences_(options_.sequences) {
  Registry& r = registry_;
  // storage tiers
  tier_bytes_ = r.AddGauge("clusterkv_tier_bytes", "Bytes of cluster blocks held per tier.",
                           {"tier"});
  tier_blocks_ = r.AddGauge("clusterkv_tier_blocks", "Cluster blocks held per tier.", {"tier"});
  tier_capacity_bytes_ = r.AddGauge(
      "clusterkv_tier_capacity_bytes",
      "Capacity per tier: the host arena; for ssd, the SSD filesystem's size.", {"tier"});
  tier_hits_ = r.AddCounter("clusterkv_tier_hits_total", "Block reads a tier served.", {"tier"});
  tier_misses_ =
      r.AddCounter("clusterkv_tier_misses_total", "Block reads a tier could not serve.", {"tier"});
  evictions_ = r.AddCounter("clusterkv_store_evictions_total",
                            "Blocks moved from the host tier to the SSD tier.")
                   ->WithLabels({});
  evicted_bytes_ = r.AddCounter("clusterkv_store_evicted_bytes_total",
                                "Bytes moved from the host tier to the SSD tier.")
                       ->WithLabels({});
  eviction_failures_ = r.AddCounter("clusterkv_store_eviction_failures_total",
                                    "Evictions that failed (the block stayed in host memory).")
                           ->WithLabels({});
  promotions_ = r.AddCounter("clusterkv_store_promotions_total",
                             "SSD-only blocks copied back into the host tier by a read.")
                    ->WithLabels({});
  heat_evictions_ = r.AddCounter(
      "clusterkv_store_heat_evictions_total",
      "Evictions ordered by recall heat (--eviction_policy=heat), by whether the block had "
      "been recalled (recalled=\"never\": never fetched, or cooled out of the tracker).",
      {"recalled"});
  hint_promotions_ = r.AddCounter(
      "clusterkv_store_hint_promotions_total",
      "Blocks named by promotion hints (HintClusters), by outcome: promoted (copied from the "
      "SSD into the host tier), recalled (promoted, then fetched from the host tier: in time), "
      "wasted (promoted, then evicted or dropped unread), resident (in the host tier already), "
      "no_room (left on the SSD: no room below the high watermark; a promotion never evicts), "
      "throttled (left on the SSD: most recent promotions were wasted).",
      {"outcome"});
  heat_tracked_clusters_ = r.AddGauge("clusterkv_heat_tracked_clusters",
                                      "Clusters with a recall-heat score (bounded).")
                               ->WithLabels({});
  write_through_puts_ = r.AddCounter("clusterkv_store_write_through_puts_total",
                                     "Block puts made durable before acknowledgement.")
                            ->WithLabels({});
  spilled_puts_ = r.AddCounter("clusterkv_store_spilled_puts_total",
                               "Block puts that went straight to the SSD (host tier full).")
                      ->WithLabels({});
  write_through_seconds_ =
      r.AddHistogram("clusterkv_store_write_through_seconds",
                     "Latency of write-through block puts, as the request handler saw them.", {},
                     kWriteThroughBounds)
          ->WithLabels({});
  slab_fragmentation_ = r.AddGauge("clusterkv_host_slab_fragmentation_ratio",
                                   "Host arena space lost to slab rounding (0..1).")
                            ->WithLabels({});
  ssd_written_bytes_ =
      r.AddCounter("clusterkv_ssd_written_bytes_total", "Bytes written to the SSD tier.")
          ->WithLabels({});
  ssd_read_bytes_ =
      r.AddCounter("clusterkv_ssd_read_bytes_total", "Bytes read from the SSD tier.")
          ->WithLabels({});
  ssd_write_errors_ = r.AddCounter("clusterkv_ssd_write_errors_total",
                                   "Failed writes to the SSD tier (RocksDB errors).")
                          ->WithLabels({});
  ssd_read_errors_ = r.AddCounter("clusterkv_ssd_read_errors_total",
                                  "Failed reads from the SSD tier (RocksDB errors).")
                         ->WithLabels({});
  ssd_checksum_failures_ = r.AddCounter("clusterkv_ssd_checksum_failures_total",
                                        "SSD blocks whose checksum did not match (DATA_LOSS).")
                               ->WithLabels({});
  ssd_available_bytes_ = r.AddGauge("clusterkv_ssd_available_bytes",
                                    "Free bytes on the SSD tier's filesystem.")
                             ->WithLabels({});
  // tenants
  tenant_sequences_ = r.AddGauge("clusterkv_tenant_sequences", "Durable sequences per tenant.",
                                 {"tenant"});
  tenant_bytes_ =
      r.AddGauge("clusterkv_tenant_bytes", "Block bytes per tenant and tier.", {"tenant", "tier"});
  // requests
  rpc_requests_ = r.AddCounter("clusterkv_rpc_requests_total",
                               "KvCache RPCs finished, by method and gRPC status code.",
                               {"rpc", "code"});
  Family<Histogram>* rpc_seconds =
      r.AddHistogram("clusterkv_rpc_duration_seconds",
                     "KvCache RPC latency, from the call's arrival to its status.", {"rpc"},
                     kRpcBounds);
  for (int i = 0; i < kNumRpcs; ++i) {
    rpc_seconds_[i] = rpc_seconds->WithLabels({std::string(RpcName(static_cast<Rpc>(i)))});
  }
  Family<Histogram>* block_seconds = r.AddHistogram(
      "clusterkv_fetch_block_duration_seconds",
      "Data path latency of one fetched block: tier lookup (and SSD promotion) to transfer done.",
      {"transport"}, kBlockBounds);
  Family<Counter>* sent = r.AddCounter("clusterkv_transport_sent_bytes_total",
                                       "Block bytes sent to clients, per transport.",
                                       {"transport"});
  Family<Counter>* received = r.AddCounter("clusterkv_transport_received_bytes_total",
                                           "Block bytes received from clients, per transport.",
                                           {"transport"});
  for (int i = 0; i < kNumTransports; ++i) {
    const std::string name(TransportName(static_cast<Transport>(i)));
    fetch_block_seconds_[i] = block_seconds->WithLabels({name});
    sent_bytes_[i] = sent->WithLabels({name});
    received_bytes_[i] = received->WithLabels({name});
  }
  ucx_requests_ = r.AddCounter("clusterkv_ucx_requests_total",
                               "UCX data-plane fetch requests answered (a batch of sequences is "
                               "one request).")
                      ->WithLabels({});
  ucx_request_sequences_ = r.AddCounter("clusterkv_ucx_request_sequences_total",
                                        "Sequences named by the answered UCX fetch requests "
                                        "(one per single-sequence request, N per batch).")
                               ->WithLabels({});
  // clients' device caches
  client_hit_tokens_ = r.AddCounter("clusterkv_client_device_cache_hit_tokens_total",
                                    "Recalled tokens clients found in their device cache "
                                    "(ReportClientStats).",
                                    {"tenant"});
  client_miss_tokens_ = r.AddCounter("clusterkv_client_device_cache_miss_tokens_total",
                                     "Recalled tokens clients had to fetch (ReportClientStats).",
                                     {"tenant"});
  client_estimated_recall_ = r.AddHistogram(
      "clusterkv_client_estimated_recall",
      "Estimated share of attention mass clients attended, per (layer, kv head, step) "
      "(ReportClientStats).",
      {"tenant"},
      std::vector<double>(kEstimatedRecallBounds.begin(), kEstimatedRecallBounds.end()));
  client_hit_ratio_ = r.AddGauge("clusterkv_client_device_cache_hit_ratio",
                                 "Device-cache hit ratio of the tenant's latest client report.",
                                 {"tenant"});
  // open sequences (labels bounded by SequenceStatsOptions::max_sequences; rebuilt at scrape
  // time from the report history, so a closed sequence leaves)
  sequence_recall_ = r.AddGauge("clusterkv_sequence_estimated_recall",
                                "Mean estimated recall of the sequence's latest client report.",
                                {"tenant", "sequence"});
  sequence_budget_ = r.AddGauge(
      "clusterkv_sequence_budget_tokens",
      "Mean tokens selected per (layer, kv head, step) in the sequence's latest client report: "
      "the budget it spent.",
      {"tenant", "sequence"});
  sequence_hit_ratio_ = r.AddGauge(
      "clusterkv_sequence_device_cache_hit_ratio",
      "Device-cache hit ratio of the recalled tokens in the sequence's latest client report.",
      {"tenant", "sequence"});
  sequence_steps_ = r.AddGauge("clusterkv_sequence_steps",
                               "Decode step of the sequence at its latest client report.",
                               {"tenant", "sequence"});
  // cluster mode
  remote_hits_ = r.AddCounter("clusterkv_cluster_remote_hits_total",
                              "Blocks of sequences owned by other nodes served from this node's "
                              "read-only copy.")
                     ->WithLabels({});
  remote_misses_ = r.AddCounter("clusterkv_cluster_remote_misses_total",
                                "Blocks of sequences owned by other nodes fetched from their "
                                "owner (or a replica) for a recall through this node.")
                       ->WithLabels({});
  remote_bytes_ = r.AddCounter("clusterkv_cluster_remote_bytes_total",
                               "Block bytes fetched from other nodes (remote recalls).")
                      ->WithLabels({});
  remote_ucx_bytes_ = r.AddCounter("clusterkv_cluster_remote_ucx_bytes_total",
                                   "Of clusterkv_cluster_remote_bytes_total, the bytes pulled over "
                                   "the owner's UCX data plane (the rest came over gRPC).")
                          ->WithLabels({});
  forwarded_bytes_ = r.AddCounter("clusterkv_cluster_forwarded_bytes_total",
                                  "Block bytes sent to other nodes for clients of this node "
                                  "(puts to remote owners and to replicas).")
                         ->WithLabels({});
  cluster_nodes_ = r.AddGauge("clusterkv_cluster_nodes",
                              "Live nodes at the last membership round (0: single-node mode).")
                       ->WithLabels({});
  takeovers_ = r.AddCounter("clusterkv_cluster_takeovers_total",
                            "Sequences this node took over as a replica after their owner's "
                            "lease expired.")
                   ->WithLabels({});
  pool_rejections_ = r.AddCounter("clusterkv_worker_pool_rejections_total",
                                  "Requests refused with RESOURCE_EXHAUSTED because a worker "
                                  "pool's queue was full (the daemon is saturated).",
                                  {"pool"});
  // tracing
  spans_exported_ = r.AddCounter("clusterkv_trace_spans_exported_total",
                                 "Trace spans handed to the exporters.")
                        ->WithLabels({});
  spans_dropped_ = r.AddCounter("clusterkv_trace_spans_dropped_total",
                                "Trace spans dropped because the export queue was full.")
                       ->WithLabels({});
  span_export_failures_ = r.AddCounter("clusterkv_trace_export_failures_total",
                                       "Span batches an exporter failed to deliver.")
                              ->WithLabels({});

  ABSL_RAW_CHECK(registry_.FamilyNames() == FamilyNames(), "kNames and the registry disagree");
  registry_.AddCollector([this] { Collect(); });
}

void DaemonMetrics::ObserveRpc(Rpc rpc, absl::StatusCode code, absl::Duration latency) {
  rpc_seconds_[static_cast<int>(rpc)]->Observe(absl::ToDoubleSeconds(latency));
  rpc_requests_->WithLabels({std::string(RpcName(rpc)), CodeName(code)})->Increment();
}

void DaemonMetrics::ObserveFetchBlock(Transport transport, uint64_t bytes,
                                      absl::Duration latency) {
  const int t = static_cast<int>(transport);
  fetch_block_seconds_[t]->Observe(absl::ToDoubleSeconds(latency));
  sent_bytes_[t]->Increment(bytes);
}

void DaemonMetrics::ObserveUcxRequest(uint64_t sequences) {
  ucx_requests_->Increment(1);
  ucx_request_sequences_->Increment(sequences);
}

void DaemonMetrics::AddReceivedBytes(Transport transport, uint64_t bytes) {
  received_bytes_[static_cast<int>(transport)]->Increment(bytes);
}

void DaemonMetrics::ObserveWriteThroughPut(absl::Duration latency) {
  write_through_seconds_->Observe(absl::ToDoubleSeconds(latency));
}

void DaemonMetrics::ReportEstimatedRecall(const std::string& tenant,
                                          const std::vector<uint64_t>& counts, double sum) {
  client_estimated_recall_->WithLabels({tenant})->Add(counts, sum);
}

void DaemonMetrics::ReportClientStats(const std::string& tenant, uint64_t hit_tokens,
                                      uint64_t miss_tokens) {
  client_hit_tokens_->WithLabels({tenant})->Increment(hit_tokens);
  client_miss_tokens_->WithLabels({tenant})->Increment(miss_tokens);
  if (hit_tokens + miss_tokens > 0) {
    client_hit_ratio_->WithLabels({tenant})->Set(static_cast<double>(hit_tokens) /
                                                 static_cast<double>(hit_tokens + miss_tokens));
  }
}

void DaemonMetrics::ReportSequence(const std::string& tenant, const std::string& sequence,
                                   const SequenceReport& report) {
  sequences_.Add(tenant, sequence, report);
}

void DaemonMetrics::DropSequence(const std::string& tenant, const std::string& sequence) {
  sequences_.Drop(tenant, sequence);
}

std::optional<storage::HeatMap> DaemonMetrics::SequenceHeatMap(const std::string& tenant,
                                                               const std::string& sequence,
                                                               int max_rows) {
  absl::MutexLock lock(&sources_mu_);
  if (store_ == nullptr) return std::nullopt;
  return store_->heat().Map(SequenceKey{tenant, sequence}, max_rows);
}

void DaemonMetrics::CollectSequences() {
  sequence_recall_->Clear();
  sequence_budget_->Clear();
  sequence_hit_ratio_->Clear();
  sequence_steps_->Clear();
  for (const SequenceHistory& h : sequences_.Snapshot()) {
    if (h.points.empty()) continue;
    const SequenceReport& last = h.points.back();
    const std::vector<std::string> labels = {h.tenant, h.sequence};
    sequence_recall_->WithLabels(labels)->Set(last.EstimatedRecall());
    sequence_budget_->WithLabels(labels)->Set(last.BudgetTokens());
    sequence_hit_ratio_->WithLabels(labels)->Set(last.HitRatio());
    sequence_steps_->WithLabels(labels)->Set(static_cast<double>(last.step));
  }
}

void DaemonMetrics::ObserveRemoteRecall(uint64_t hits, uint64_t misses, uint64_t bytes,
                                        uint64_t ucx_bytes) {
  remote_ucx_bytes_->Increment(ucx_bytes);
  remote_hits_->Increment(hits);
  remote_misses_->Increment(misses);
  remote_bytes_->Increment(bytes);
}

void DaemonMetrics::AddForwardedBytes(uint64_t bytes) { forwarded_bytes_->Increment(bytes); }

void DaemonMetrics::SetClusterNodes(int64_t live_nodes) {
  cluster_nodes_->Set(static_cast<double>(live_nodes));
}

void DaemonMetrics::AddTakeovers(uint64_t sequences) { takeovers_->Increment(sequences); }

void DaemonMetrics::AddPoolRejection(const std::string& pool) {
  pool_rejections_->WithLabels({pool})->Increment(1);
}

void DaemonMetrics::AttachStore(storage::TieredStore* store, std::string ssd_path) {
  absl::MutexLock lock(&sources_mu_);
  store_ = store;
  ssd_path_ = std::move(ssd_path);
}

void DaemonMetrics::AttachTraceCounts(std::function<TraceCounts()> source) {
  absl::MutexLock lock(&sources_mu_);
  trace_counts_ = std::move(source);
}

void DaemonMetrics::DetachSources() {
  absl::MutexLock lock(&sources_mu_);  // waits for a Collect() in progress
  store_ = nullptr;
  trace_counts_ = nullptr;
}

void DaemonMetrics::Collect() {
  CollectSequences();
  absl::MutexLock lock(&sources_mu_);
  if (trace_counts_) {
    const TraceCounts t = trace_counts_();
    spans_exported_->Set(t.exported);
    spans_dropped_->Set(t.dropped);
    span_export_failures_->Set(t.export_failures);
  }
  if (store_ == nullptr) return;
  const storage::StoreStats s = store_->Stats();
  tier_bytes_->WithLabels({"host"})->Set(static_cast<double>(s.host.bytes));
  tier_bytes_->WithLabels({"ssd"})->Set(static_cast<double>(s.ssd.bytes));
  tier_blocks_->WithLabels({"host"})->Set(static_cast<double>(s.host.blocks));
  tier_blocks_->WithLabels({"ssd"})->Set(static_cast<double>(s.ssd.blocks));
  tier_capacity_bytes_->WithLabels({"host"})->Set(static_cast<double>(s.host_capacity_bytes));
  tier_hits_->WithLabels({"host"})->Set(s.host.hits);
  tier_hits_->WithLabels({"ssd"})->Set(s.ssd.hits);
  tier_misses_->WithLabels({"host"})->Set(s.host.misses);
  tier_misses_->WithLabels({"ssd"})->Set(s.ssd.misses);
  evictions_->Set(s.evictions);
  evicted_bytes_->Set(s.evicted_bytes);
  eviction_failures_->Set(s.eviction_failures);
  promotions_->Set(s.promotions);
  heat_evictions_->WithLabels({"never"})->Set(s.heat_evictions_never_recalled);
  heat_evictions_->WithLabels({"before"})->Set(s.heat_evictions -
                                               s.heat_evictions_never_recalled);
  heat_tracked_clusters_->Set(static_cast<double>(store_->heat().Stats().tracked_clusters));
  hint_promotions_->WithLabels({"promoted"})->Set(s.hint_promotions);
  hint_promotions_->WithLabels({"recalled"})->Set(s.hint_promotions_recalled);
  hint_promotions_->WithLabels({"wasted"})->Set(s.hint_promotions_wasted);
  hint_promotions_->WithLabels({"resident"})->Set(s.hint_already_resident);
  hint_promotions_->WithLabels({"no_room"})->Set(s.hint_no_room);
  hint_promotions_->WithLabels({"throttled"})->Set(s.hint_throttled);
  write_through_puts_->Set(s.write_through_puts);
  spilled_puts_->Set(s.spilled_puts);
  slab_fragmentation_->Set(s.slab.Fragmentation());
  ssd_written_bytes_->Set(s.ssd_io.bytes_written);
  ssd_read_bytes_->Set(s.ssd_io.bytes_read);
  ssd_write_errors_->Set(s.ssd_io.write_errors);
  ssd_read_errors_->Set(s.ssd_io.read_errors);
  ssd_checksum_failures_->Set(s.ssd_io.checksum_failures);
  if (!ssd_path_.empty()) {
    std::error_code ec;
    const std::filesystem::space_info space = std::filesystem::space(ssd_path_, ec);
    if (!ec) {
      ssd_available_bytes_->Set(static_cast<double>(space.available));
      tier_capacity_bytes_->WithLabels({"ssd"})->Set(static_cast<double>(space.capacity));
    }
  }

  // Tenants: from the durable sequence list (a metadata scan; tenants are few), largest usage
  // first, the tail summed into "_other".
  absl::StatusOr<std::vector<SequenceKey>> sequences = store_->ListSequences("");
  if (!sequences.ok()) return;  // keep the previous values; the SSD error counters tell why
  std::map<std::string, storage::TenantUsage> tenants;
  for (const SequenceKey& key : *sequences) tenants.emplace(key.tenant, storage::TenantUsage());
  std::vector<std::pair<std::string, storage::TenantUsage>> usage;
  for (auto& [tenant, u] : tenants) {
    u = store_->Usage(tenant);
    usage.emplace_back(tenant, u);
  }
  std::stable_sort(usage.begin(), usage.end(), [](const auto& a, const auto& b) {
    return a.second.host_bytes + a.second.ssd_bytes > b.second.host_bytes + b.second.ssd_bytes;
  });
  std::map<std::string, std::pair<storage::TenantUsage, uint64_t>> rows;  // usage, sequences
  for (size_t i = 0; i < usage.size(); ++i) {
    const bool named = static_cast<int>(i) < options_.max_tenants;
    auto& row = rows[named ? usage[i].first : "_other"];
    row.first.host_bytes += usage[i].second.host_bytes;
    row.first.ssd_bytes += usage[i].second.ssd_bytes;
  }
  for (const SequenceKey& key : *sequences) {
    auto it = rows.find(key.tenant);
    ++(it != rows.end() ? it : rows.find("_other"))->second.second;
  }
  tenant_sequences_->Clear();
  tenant_bytes_->Clear();
  for (const auto& [tenant, row] : rows) {
    tenant_sequences_->WithLabels({tenant})->Set(static_cast<double>(row.second));
    tenant_bytes_->WithLabels({tenant, "host"})->Set(static_cast<double>(row.first.host_bytes));
    tenant_bytes_->WithLabels({tenant, "ssd"})->Set(static_cast<double>(row.first.ssd_bytes));
  }
}

}  // namespace clusterkv::server::metrics
