// DaemonMetrics: every Prometheus metric clusterkvd exports, defined in this one place
// (STYLE.md "Metrics and logs"; the list is in daemon_metrics.cc and the README). Two kinds:
//   - push: updated on the request path through the methods below (RPC latency and codes, data
//     path latency, bytes per transport, write-through latency, client-reported device-cache
//     hits);
//   - pull: copied at scrape time from the attached sources (storage::TieredStore::Stats() and
//     Usage(), the SSD's filesystem, the tracer's counters).
//
// Ownership: owned by the daemon (server/http/observability.h); the store and the trace-count
// source are not owned and must be detached (DetachSources) before they go away.
// Thread-safe; the push methods are lock-free except the first use of a new label tuple.
#ifndef CLUSTERKV_SERVER_METRICS_DAEMON_METRICS_H_
#define CLUSTERKV_SERVER_METRICS_DAEMON_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/recall_buckets.h"
#include "server/metrics/instrumentation.h"
#include "server/metrics/registry.h"
#include "server/metrics/sequence_stats.h"
#include "storage/cluster_heat.h"

namespace clusterkv::storage {
class TieredStore;
}  // namespace clusterkv::storage

namespace clusterkv::server::metrics {

// The RPCs of clusterkv.v1.KvCache (the `rpc` label).
enum class Rpc {
  kOpenSequence,
  kCloseSequence,
  kListSequences,
  kPutClusters,
  kAppendClusters,
  kGetIndex,
  kFetchClusters,
  kSelect,
  kStats,
  kConnectDataPlane,
  kReportClientStats,
  kHintClusters,
  kPutState,
  kGetState,
  kSealDocument,
  kFindPrefix,
  kGrantDocument,
};
inline constexpr int kNumRpcs = 17;
std::string_view RpcName(Rpc rpc);

std::string_view TransportName(Transport transport);

// The tracer's counters, pulled at scrape time.
struct TraceCounts {
  uint64_t exported = 0;
  uint64_t dropped = 0;  // queue full
  uint64_t export_failures = 0;
};

struct DaemonMetricsOptions {
  // Monotonic time source for latencies (injectable for tests).
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Tenants beyond this many (largest usage first) are summed into tenant="_other", so the
  // tenant label stays bounded.
  int max_tenants = 64;
  // Bounds of the per-sequence report history (and of the sequence label).
  SequenceStatsOptions sequences;
};

class DaemonMetrics {
 public:
  explicit DaemonMetrics(DaemonMetricsOptions options = {});
  DaemonMetrics(const DaemonMetrics&) = delete;
  DaemonMetrics& operator=(const DaemonMetrics&) = delete;

  absl::Time Now() const { return options_.clock(); }

  // ---- push (request path) ----
  void ObserveRpc(Rpc rpc, absl::StatusCode code, absl::Duration latency);
  // One block served to a client over `transport` (the data path): its latency from the tier
  // lookup to the end of the transfer, and its bytes.
  void ObserveFetchBlock(Transport transport, uint64_t bytes, absl::Duration latency);
  // One UCX data-plane fetch request answered, naming `sequences` sequences (1, or a batch's
  // count); its blocks are counted by ObserveFetchBlock.
  void ObserveUcxRequest(uint64_t sequences);
  // Bytes a client sent the daemon over `transport` (puts and appends).
  void AddReceivedBytes(Transport transport, uint64_t bytes);
  // One durable (write-through) block put, as the request handler saw it.
  void ObserveWriteThroughPut(absl::Duration latency);
  // A client's device-cache report (deltas since its previous report).
  void ReportClientStats(const std::string& tenant, uint64_t hit_tokens, uint64_t miss_tokens);
  // ReportClientStatsRequest.estimated_recall_counts (one per core/recall_buckets.h bound)
  // and their sum, into clusterkv_client_estimated_recall{tenant}.
  void ReportEstimatedRecall(const std::string& tenant, const std::vector<uint64_t>& counts,
                             double sum);
  // ---- per sequence ----
  // A client report of one open sequence (ReportClientStats with a sequence_id): kept in
  // sequences() and exported as clusterkv_sequence_*{tenant, sequence}.
  void ReportSequence(const std::string& tenant, const std::string& sequence,
                      const SequenceReport& report);
  // The sequence closed: its history and gauges go.
  void DropSequence(const std::string& tenant, const std::string& sequence);
  const SequenceStatsBook& sequences() const { return sequences_; }
  // The heat map of a sequence's recalls (the attached store's ClusterHeat::Map); nullopt when
  // no store is attached or none is kept.
  std::optional<storage::HeatMap> SequenceHeatMap(const std::string& tenant,
                                                  const std::string& sequence, int max_rows);
  // ---- cluster mode ----
  // A recall of a sequence owned by another node: `hits` blocks served from this node's
  // read-only copy, `misses` blocks fetched from the owner (or a replica), `bytes` of them,
  // `ucx_bytes` of those over UCX (the rest over gRPC).
  void ObserveRemoteRecall(uint64_t hits, uint64_t misses, uint64_t bytes, uint64_t ucx_bytes);
  // Block bytes sent to other nodes on behalf of clients (puts to remote owners and replicas).
  void AddForwardedBytes(uint64_t bytes);
  void SetClusterNodes(int64_t live_nodes);
  void AddTakeovers(uint64_t sequences);
  // ---- end cluster mode ----
  // A task the named worker pool refused because its queue was full (server/worker_pool.h).
  void AddPoolRejection(const std::string& pool);

  // ---- pull (scrape time) ----
  // `store` must stay valid until DetachSources(); `ssd_path` is the SSD tier's directory (its
  // filesystem's free space is exported).
  void AttachStore(storage::TieredStore* store, std::string ssd_path);
  void AttachTraceCounts(std::function<TraceCounts()> source);
  // Blocks until no scrape uses the sources, then forgets them.
  void DetachSources();

  // The exposition text (runs the pull collectors first).
  std::string Render() { return registry_.Render(); }
  Registry& registry() { return registry_; }

  // Every metric family name this class registers (the deploy/ consistency test uses it).
  static std::vector<std::string> FamilyNames();

 private:
  void Collect();
  void CollectSequences();

  DaemonMetricsOptions options_;
  Registry registry_;
  SequenceStatsBook sequences_;

  // push
  Family<Counter>* rpc_requests_;
  std::array<Histogram*, kNumRpcs> rpc_seconds_{};
  std::array<Histogram*, kNumTransports> fetch_block_seconds_{};
  std::array<Counter*, kNumTransports> sent_bytes_{};
  std::array<Counter*, kNumTransports> received_bytes_{};
  Counter* ucx_requests_;
  Counter* ucx_request_sequences_;
  Histogram* write_through_seconds_;
  Family<Histogram>* client_estimated_recall_;
  Family<Counter>* client_hit_tokens_;
  Family<Counter>* client_miss_tokens_;
  Family<Gauge>* client_hit_ratio_;
  Family<Gauge>* sequence_recall_;
  Family<Gauge>* sequence_budget_;
  Family<Gauge>* sequence_hit_ratio_;
  Family<Gauge>* sequence_steps_;
  // cluster mode
  Counter* remote_hits_;
  Counter* remote_misses_;
  Counter* remote_bytes_;
  Counter* remote_ucx_bytes_;
  Counter* forwarded_bytes_;
  Gauge* cluster_nodes_;
  Counter* takeovers_;
  Family<Counter>* pool_rejections_;

  // pull
  Family<Gauge>* tier_bytes_;
  Family<Gauge>* tier_blocks_;
  Family<Gauge>* tier_capacity_bytes_;
  Family<Counter>* tier_hits_;
  Family<Counter>* tier_misses_;
  Counter* evictions_;
  Counter* evicted_bytes_;
  Counter* eviction_failures_;
  Counter* promotions_;
  Family<Counter>* heat_evictions_;
  Family<Counter>* hint_promotions_;
  Gauge* heat_tracked_clusters_;
  Counter* write_through_puts_;
  Counter* spilled_puts_;
  Gauge* slab_fragmentation_;
  Counter* ssd_written_bytes_;
  Counter* ssd_read_bytes_;
  Counter* ssd_write_errors_;
  Counter* ssd_read_errors_;
  Counter* ssd_checksum_failures_;
  Gauge* ssd_available_bytes_;
  Family<Gauge>* tenant_sequences_;
  Family<Gauge>* tenant_bytes_;
  Counter* spans_exported_;
  Counter* spans_dropped_;
  Counter* span_export_failures_;

  absl::Mutex sources_mu_;
  storage::TieredStore* store_ ABSL_GUARDED_BY(sources_mu_) = nullptr;
  std::string ssd_path_ ABSL_GUARDED_BY(sources_mu_);
  std::function<TraceCounts()> trace_counts_ ABSL_GUARDED_BY(sources_mu_);
};

}  // namespace clusterkv::server::metrics

#endif  // CLUSTERKV_SERVER_METRICS_DAEMON_METRICS_H_
