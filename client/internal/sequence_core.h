// SequenceCore: the ClusterKV algorithm of one sequence (DESIGN.md sections 3-4), behind the
// public client::Sequence (client/sequence.h), which forwards its calls here; the file comment
// and the method comments there say what each call does. This side adds what the installed API
// keeps out of view: the KvTransport (clusterkv.v1 messages) it talks to the daemon through,
// the compute context and data plane in SequenceOptions, and the centroid indexes.
//
// State per (layer, kv head): the centroid index, the sinks (or every token on a dense layer)
// in the sequence dtype, the recent window (fp32). Per layer: one gpu::ClusterCache and the
// DeviceMemory region behind it (client/slot_layout.h), created at the layer's first Attend.
//
// Tests and in-tree tools (the demo, the Python module's selection helpers) open a SequenceCore
// over any KvTransport directly; engines go through Client::OpenSequence.
#ifndef CLUSTERKV_CLIENT_INTERNAL_SEQUENCE_CORE_H_
#define CLUSTERKV_CLIENT_INTERNAL_SEQUENCE_CORE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/clock.h"
#include "client/device_memory.h"
#include "client/internal/background_worker.h"
#include "client/sequence.h"
#include "client/slot_layout.h"
#include "client/transport.h"
#include "client/ucx_data_plane.h"
#include "core/config.h"
#include "core/kv_layout.h"
#include "core/recall_buckets.h"
#include "core/tensor_view.h"
#include "gpu/backend.h"
#include "gpu/cluster_index.h"
#include "gpu/device_cache.h"
#include "gpu/incremental.h"
#include "gpu/recall_estimate.h"
#include "gpu/selection.h"

namespace clusterkv::client {

struct SequenceOptions {
  ClusterKvConfig config;
  gpu::ExecContext exec;
  // MakeDeviceMemory kind of the device cache: "host", "cuda" or "auto".
  std::string device_memory = "host";
  // PutClusters message size target.
  size_t put_message_bytes = 4 << 20;
  // Ask the daemon to make every block durable before acknowledging it.
  bool write_through = false;
  // Null means the system clock.
  std::shared_ptr<Clock> clock;
  // Direct (UCX) recalls: when set (and device_memory is not "cuda"), the device cache is
  // carved from the plane's registered region and misses are fetched with FetchInto, the
  // daemon writing the slots itself; when the plane is unavailable a fetch falls back to
  // KvTransport::FetchClusters. Not owned; must outlive the sequence. Null: gRPC only.
  DataPlane* data_plane = nullptr;
};

class SequenceCore {
 public:
  // Opens `sequence_id` with `layout`, creating it when missing. When it existed, its centroid
  // indexes are restored from the daemon. InvalidArgument: bad id, layout or options;
  // FailedPrecondition: the sequence exists with another layout; DataLoss: a malformed index;
  // otherwise the transport's status.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SequenceCore>> Open(
      KvTransport* transport, std::string sequence_id, const KvLayout& layout,
      SequenceOptions options);
  // Opens an existing sequence (must_exist) with the daemon's layout. NotFound when missing.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SequenceCore>> Reopen(
      KvTransport* transport, std::string sequence_id, SequenceOptions options);

  SequenceCore(const SequenceCore&) = delete;
  SequenceCore& operator=(const SequenceCore&) = delete;
  ~SequenceCore();

  // The calls of client::Sequence, with the same contracts.
  [[nodiscard]] absl::Status OffloadPrefill(int32_t layer, const Tensor3View& keys,
                                            const Tensor3View& values,
                                            const PrefillProgress& progress = nullptr);

  void BeginStep();

  [[nodiscard]] absl::Status Attend(int32_t layer, const ConstMatrixView& queries, MatrixView out,
                                    StepStats* stats = nullptr);

  // client::Sequence::AttendBatch over cores: items[i] is attended by cores[i] (its
  // `sequence` is not read).
  [[nodiscard]] static absl::Status AttendBatch(int32_t layer,
                                                absl::Span<SequenceCore* const> cores,
                                                absl::Span<BatchAttendItem> items);

  [[nodiscard]] absl::Status Prefetch(int32_t layer, const ConstMatrixView& predicted_queries);
  [[nodiscard]] absl::Status WaitForPrefetch(int32_t layer);

  [[nodiscard]] absl::Status AppendToken(int32_t layer, const ConstMatrixView& keys,
                                         const ConstMatrixView& values);
  [[nodiscard]] absl::Status Flush(int32_t layer);

  [[nodiscard]] absl::Status Reattach();

  // Resumable sessions and shared documents (sequence_session.cc): client::Sequence's and
  // client::Client's calls of the same names.
  [[nodiscard]] absl::Status Checkpoint(absl::string_view engine_state = {});
  [[nodiscard]] absl::Status Publish(absl::Span<const int32_t> tokens, absl::string_view model,
                                     absl::string_view engine_state = {});
  // Sequence::Grant (revoke false) and Sequence::Revoke.
  [[nodiscard]] absl::Status Grant(absl::string_view tenant, bool revoke);
  [[nodiscard]] absl::Status ReadTokens(int32_t layer, int64_t begin, int64_t end, float* keys,
                                        float* values);
  // Rebuilds `sequence_id` from its last checkpoint (and its base document, for a fork).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SequenceCore>> Resume(
      KvTransport* transport, std::string sequence_id, SequenceOptions options);
  // Creates `sequence_id` as a fork of the first `segments` segments of `document`.
  // `owner`: the document's tenant when another tenant granted it (empty: the caller's).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SequenceCore>> OpenFork(
      KvTransport* transport, std::string sequence_id, const KvLayout& layout,
      const std::string& document, const std::string& owner, int32_t segments,
      SequenceOptions options);
  const std::string& base_document() const { return base_document_; }
  int64_t base_tokens() const { return base_tokens_; }
  const std::string& engine_state() const { return engine_state_; }

  [[nodiscard]] absl::Status Close(bool drop);

  const std::string& id() const { return id_; }
  const KvLayout& layout() const { return layout_; }
  const ClusterKvConfig& config() const { return options_.config; }
  // Tokens of the sequence (the most any layer holds).
  int64_t num_tokens() const;
  int64_t num_tokens(int32_t layer) const;
  int64_t step() const { return step_; }
  // The centroid index of (layer, kv_head), or null when out of range.
  const gpu::ClusterIndex* index(int32_t layer, int32_t kv_head) const;
  // What Attend would select on `layer` for `queries` [num_q_heads, head_dim] with the fixed
  // budget (min(B, clustered tokens) per kv head), from the local centroid index: no fetch, no
  // cache or step change. A head without clustered tokens selects nothing. `scores`, when not
  // null, receives every head's centroid scores. InvalidArgument: bad layer or query shape;
  // FailedPrecondition: a dense layer.
  absl::StatusOr<std::vector<gpu::ClusterSelection>> PreviewSelection(
      int32_t layer, const ConstMatrixView& queries,
      std::vector<std::vector<float>>* scores = nullptr) const;
  // Device cache statistics over every layer (and every cache reset).
  gpu::CacheStats cache_stats() const;
  double cache_hit_rate() const { return cache_stats().HitRate(); }
  int64_t bytes_fetched() const { return bytes_fetched_; }
  int64_t bytes_offloaded() const { return bytes_offloaded_; }
  // Blocks recalled by the data plane (written by the daemon) / by FetchClusters.
  int64_t blocks_fetched_direct() const { return blocks_fetched_direct_; }
  int64_t blocks_fetched_grpc() const { return blocks_fetched_grpc_; }
  bool has_pending_offload(int32_t layer) const;
  // Sends what the daemon's client metrics have not seen yet (device-cache hits and misses,
  // the per-head estimated recall histogram) with ReportClientStats; Attend does it every
  // kReportEverySteps steps and Close before closing. Best effort: OK when nothing is pending,
  // else the transport's status (the deltas are kept for the next report on failure).
  absl::Status ReportStats();
  static constexpr int64_t kReportEverySteps = 64;
  static constexpr int64_t kHintRepeatSteps = 8;
  // Most clusters one hint names (the daemon's default --max_hint_clusters).
  static constexpr int kMaxHintClusters = 4096;

 private:
  struct HeadState;
  struct LayerState;
  struct PendingAppend;
  struct PendingPrefetch;
  struct StepPlan;

  SequenceCore(KvTransport* transport, std::string id, const KvLayout& layout,
               SequenceOptions options);

  absl::Status CheckLayer(int32_t layer) const;
  // InvalidArgument naming `what` unless `queries` is a valid, finite [num_q_heads, head_dim]
  // view.
  absl::Status CheckQueries(const ConstMatrixView& queries, absl::string_view what) const;
  // The cache requests of `selections` (per kv head) on `layer`: whole clusters, each at its
  // size in the index.
  std::vector<gpu::CacheRequest> CacheRequests(
      int32_t layer, const LayerState& state,
      const std::vector<gpu::ClusterSelection>& selections) const;
  // Every head's fixed-budget selection (min(B, clustered tokens) tokens) on `scores`; a head
  // without clustered tokens selects nothing.
  absl::StatusOr<std::vector<gpu::ClusterSelection>> FixedSelections(
      const LayerState& state, const std::vector<std::vector<float>>& scores) const;
  // Re-reads every head's index from the daemon. With `caps` (per layer, -1: all), a head keeps
  // only its first caps[layer] clusters (a resume drops clusters appended after its
  // checkpoint: the replayed decode appends them again).
  absl::Status RestoreIndexes(bool strict, const std::vector<int32_t>* caps = nullptr);
  // Resume's second half: the rows of every layer from the state (and the base document's).
  absl::Status RestoreState(const v1::SequenceState& state);
  absl::Status EnsureCache(LayerState& state);
  void ResetCache(LayerState& state);
  absl::Status AttendDense(LayerState& state, const ConstMatrixView& queries, MatrixView out,
                           StepStats* stats);
  // Attend in three parts, so that a batch of sequences can share the middle one (one fetch
  // for every sequence's misses): BeginAttend validates, advances the step, takes up the
  // layer's prefetch and plans the step (PlanClustered: scores, estimated masses, selection,
  // cache plan), or attends a dense layer at once (plan->done); the caller then fills the
  // plan's misses (FetchMisses, or a batched fetch); FinishAttend counts that fetch and
  // attends. A failed fetch must empty the layer's cache (ResetCache) instead.
  absl::Status BeginAttend(int32_t layer, const ConstMatrixView& queries, MatrixView out,
                           StepStats* stats, StepPlan* plan);
  absl::Status PlanClustered(StepPlan& plan);
  absl::Status FinishAttend(StepPlan& plan, const StepStats& fetched, bool direct,
                            int64_t fetch_us);
  // The selection of every head: B tokens each, or the adaptive budgets (config D75) planned
  // from `masses`. Draws on and refills the step's budget bank.
  absl::StatusOr<std::vector<gpu::ClusterSelection>> SelectForStep(
      const LayerState& state, const std::vector<std::vector<float>>& scores,
      const std::vector<gpu::ClusterMasses>& masses);
  // Fills the slots of `misses` (over the data plane, else FetchClusters) and counts the
  // blocks and bytes in `stats`; `*direct` tells which path served them. Touches no member
  // but the layer's memory, so it may run on the background worker (Prefetch) while the
  // engine thread attends other layers; the caller then counts it (CountFetched).
  absl::Status FetchMisses(int32_t layer, const LayerState& state,
                           const std::vector<gpu::CacheEntry>& misses, StepStats* stats,
                           bool* direct) const;
  // FetchMisses over the data plane. Sets `*fell_back` (and returns OK) when the plane is
  // unavailable and the gRPC path must serve the fetch instead.
  absl::Status FetchMissesDirect(const LayerState& state,
                                 const std::vector<gpu::CacheEntry>& misses, StepStats* stats,
                                 bool* fell_back) const;
  // The requests of a direct recall of `misses` into the layer's region slots.
  std::vector<DirectFetch> DirectRequests(const LayerState& state,
                                          const std::vector<gpu::CacheEntry>& misses) const;
  // Checks the daemon's per-block results of a direct recall of `misses` against the index
  // and the slots (DataLoss on a mismatch, else the first block's error) and counts them.
  absl::Status CheckDirectResults(const std::vector<gpu::CacheEntry>& misses,
                                  const std::vector<DirectFetchResult>& results,
                                  StepStats* stats) const;
  void CountFetched(const StepStats& fetched, bool direct);
  // Completes the layer's pending prefetch, if any: waits for its fetch, counts it into
  // `stats` (and the sequence's totals), hands the clusters it placed to `placed` (when not
  // null), and on a failure empties the layer's cache, whose reserved slots may hold partial
  // data. Returns the prefetch's status (OK when none).
  absl::Status CompletePrefetch(LayerState& state, StepStats* stats,
                                absl::flat_hash_set<ClusterId>* placed);
  // CompletePrefetch on every layer (before a close or a reattach).
  void CompletePrefetches();
  // The step the next Attend of `state`'s layer will run in.
  int64_t NextAttendStep(const LayerState& state) const;
  // The worker's first half of a prefetch: the selection for job->queries and its
  // reservation in the layer's cache (job->placed, job->misses). A speculation that does not
  // fit is dropped (OK, nothing placed).
  absl::Status PlanPrefetch(int32_t layer, LayerState& state, PendingPrefetch* job);
  // Waits until the layer's pending prefetch, if any, no longer reads the layer's index or
  // changes its cache (before AppendToken, Flush or a cache statistic touch them).
  void WaitForPrefetchPlan(const LayerState& state) const;
  absl::Status FlushPending(int32_t layer, LayerState& state);
  // Every kv head's centroid scores for `queries` (scale 1/sqrt(head_dim), summed over the
  // head's query group); empty for a head without clustered tokens.
  absl::StatusOr<std::vector<std::vector<float>>> ScoreHeads(const LayerState& state,
                                                             const ConstMatrixView& queries) const;
  // Promotion hints after a step's fetch: per head, the clusters ranked just past its
  // selection (up to config.promotion_hint_tokens tokens), not in the device cache and not
  // hinted in the last kHintRepeatSteps steps, in one HintClusters. Returns how many it named.
  int64_t SendPromotionHints(int32_t layer, LayerState& state,
                             const std::vector<std::vector<float>>& scores,
                             const std::vector<gpu::ClusterSelection>& selections);
  int64_t Micros(absl::Time since) const;

  KvTransport* transport_;
  std::string id_;
  KvLayout layout_;
  SequenceOptions options_;
  SlotLayout slots_;
  std::vector<std::unique_ptr<LayerState>> layers_;
  int64_t step_ = 0;
  // A fork's base document and the tokens it shares (empty / 0 otherwise).
  std::string base_document_;
  int64_t base_tokens_ = 0;
  // The next state chunk number a checkpoint uses.
  int32_t next_chunk_ = 0;
  // The engine's state handed back by a resume or a fork of a whole document.
  std::string engine_state_;
  // Adaptive budget: the tokens of this step's cap (num_kv_heads * B per sparse layer) that the
  // layers attended so far left unspent; later layers of the same step may use them.
  int64_t budget_bank_ = 0;
  int64_t budget_bank_step_ = -1;
  int64_t bytes_fetched_ = 0;
  int64_t bytes_offloaded_ = 0;
  int64_t blocks_fetched_direct_ = 0;
  int64_t blocks_fetched_grpc_ = 0;
  bool closed_ = false;
  // Not yet reported (ReportStats): device-cache tokens and the estimated recall of each
  // (layer, kv head, step), in the buckets ReportClientStatsRequest documents.
  struct Unreported {
    uint64_t hit_tokens = 0;
    uint64_t miss_tokens = 0;
    std::array<uint64_t, kEstimatedRecallBounds.size()> recall_counts{};
    double recall_sum = 0.0;
    // The budget spent: StepStats::selected_tokens and selected_heads, summed.
    uint64_t selected_tokens = 0;
    uint64_t selected_heads = 0;
  };
  Unreported unreported_;
  int64_t last_report_step_ = 0;
  // Runs the prefetches' fetches. Declared last: destroyed first, so no fetch outlives the
  // layer state it writes.
  std::unique_ptr<BackgroundWorker> worker_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_INTERNAL_SEQUENCE_CORE_H_
