// Sequence: the engine-facing object for one sequence of one model (DESIGN.md sections 3-4).
// It runs the ClusterKV algorithm on the client side and uses the daemon as the store:
//
//   OffloadPrefill(layer, K, V)  sinks stay local; the remaining keys of every kv head are
//                                clustered (spherical K-means, C0 clusters), each cluster is
//                                encoded as a block and streamed to the daemon with the head's
//                                index (PutClusters); centroids and sizes stay local.
//   Attend(layer, q, out)        per kv head: score centroids, select whole clusters up to the
//                                budget B, look them up in the device cluster cache, fetch ALL
//                                misses of the layer in one FetchClusters call into their
//                                slots, then attend over sinks + selected clusters + recent
//                                window. Dense layers attend over every token, locally.
//   Prefetch(layer, q_guess)     optional: starts the fetch of what a guessed query selects,
//                                in the background; the layer's Attend then fetches only what
//                                the real query adds.
//   AppendToken(layer, k, v)     decode tokens enter the recent window; every m tokens the
//                                window is clustered into C+ clusters and appended
//                                (AppendClusters).
//
// State kept on the client per (layer, kv head): the centroid index, the sinks (or every token
// on a dense layer) and the recent window; per layer, the device cluster cache.
//
// Steps: the device cache's residency R counts decode steps. A step begins explicitly with
// BeginStep(), or implicitly when Attend() is called for a layer already attended in the
// current step; an engine that attends every layer once per token needs no BeginStep() call.
//
// Reopening: opening an existing sequence restores the centroid indexes from the daemon
// (GetIndex), which is all the sparse path needs. Sinks, dense layers and the recent window are
// engine-side state that the daemon never held: after a reopen in a NEW process they are empty
// (dense layers answer FailedPrecondition until re-filled with OffloadPrefill).
// Reattach() is the daemon-restart path for a live Sequence: it re-opens (must_exist) and
// re-reads the indexes, keeping the local state.
//
// Resuming: Checkpoint() writes that engine-side state (sinks, dense layers, recent window,
// position) to the daemon too; Client::ResumeSequence() then rebuilds the sequence in any
// process exactly as it was at the checkpoint, with no prefill.
//
// Shared documents: Publish() seals a prefilled sequence as a document; another sequence
// whose prompt starts with the same tokens finds it (Client::FindPrefix), opens as a fork of
// it (Client::OpenSequenceFrom), shares its clusters and prefills only the rest. With
// ClusterKvConfig::prefill_segment_tokens the prompt is clustered in segments, so any
// segment-aligned prefix of a document is reusable.
//
// Thread-compatible: one engine thread drives a Sequence; distinct Sequences of one Client may
// run concurrently. The Client must outlive its Sequences.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<Sequence> seq, client->OpenSequence("req-42", layout));
//   for (int l = 0; l < layout.num_layers; ++l)
//     RETURN_IF_ERROR(seq->OffloadPrefill(l, keys[l], values[l]));
//   // decode step, per layer:
//   RETURN_IF_ERROR(seq->Attend(l, q, out, &stats));
//   RETURN_IF_ERROR(seq->AppendToken(l, k_new, v_new));

//
// This header is part of the installed API: it includes only the standard library, Abseil and
// the project's core value types (no protobuf, gRPC or compute-backend headers).
#ifndef CLUSTERKV_CLIENT_SEQUENCE_H_
#define CLUSTERKV_CLIENT_SEQUENCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/config.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"

namespace clusterkv::client {

class SequenceCore;
class ClientInternals;

// What one Attend() call did, for the engine's metrics. Times are wall microseconds on the
// Sequence's clock; token counts are summed over the layer's kv heads.
struct StepStats {
  int64_t score_us = 0;
  int64_t select_us = 0;  // selection + cache lookup
  int64_t fetch_us = 0;   // FetchClusters and the copies into device memory
  int64_t attend_us = 0;
  int64_t bytes_fetched = 0;  // block bytes received
  int64_t blocks_fetched = 0;
  int64_t hit_clusters = 0;
  int64_t miss_clusters = 0;
  int64_t hit_tokens = 0;  // cache hits / misses, in tokens of whole clusters
  int64_t miss_tokens = 0;
  int64_t attended_tokens = 0;  // sinks + selected cluster tokens + recent window
  // Tokens taken from clusters (the budget actually spent), summed over the kv heads that
  // selected, and the number of those heads; selected_tokens / selected_heads is the step's
  // mean per-head budget.
  int64_t selected_tokens = 0;
  int32_t selected_heads = 0;
  // Estimated share of the attention mass this step attended, per kv head, from the centroids,
  // cluster sizes and per-cluster key statistics (no recalled key is read; the estimator is in
  // docs/decisions.md D74): the mean and the minimum over the layer's kv heads. 1 on a dense
  // layer, which attends every token.
  double estimated_recall = 1.0;
  double estimated_recall_min = 1.0;
  // Clusters named in this step's promotion hint (config promotion_hint_tokens; 0 when off or
  // when the hint was dropped without being sent).
  int64_t hinted_clusters = 0;
  // Speculative recall (Prefetch of this layer earlier in the step): the clusters and tokens
  // it fetched (their blocks and bytes are in blocks_fetched / bytes_fetched), the tokens of
  // this step's selection it had already brought in (hits on clusters it placed), how long this
  // Attend waited for its fetch to finish, and 1 when that fetch failed (the step then fetched
  // what it selected itself).
  int64_t prefetched_clusters = 0;
  int64_t prefetched_tokens = 0;
  int64_t prefetch_used_tokens = 0;
  int64_t prefetch_wait_us = 0;
  int64_t prefetch_failures = 0;
};

// The device cluster cache over a sequence's life (every layer, every cache reset).
struct CacheStats {
  int64_t hit_clusters = 0;
  int64_t miss_clusters = 0;
  int64_t hit_tokens = 0;
  int64_t miss_tokens = 0;
  int64_t evictions = 0;
  // Fraction of the selected tokens already resident (0 before any selection).
  double HitRate() const {
    const int64_t total = hit_tokens + miss_tokens;
    return total == 0 ? 0.0 : static_cast<double>(hit_tokens) / static_cast<double>(total);
  }
};

class Sequence;

// One sequence's part of a batched decode step (Sequence::AttendBatch): its queries
// [num_q_heads, head_dim], its output [num_q_heads, head_dim] fp32, optional statistics, and
// the outcome, written by AttendBatch.
struct BatchAttendItem {
  Sequence* sequence = nullptr;
  ConstMatrixView queries;
  MatrixView out;
  StepStats* stats = nullptr;
  absl::Status status;
};

// Called during OffloadPrefill after each kv head's blocks are built and before the stream is
// sent: (heads_done, heads_total).
using PrefillProgress = std::function<void(int32_t heads_done, int32_t heads_total)>;

// Opened by Client::OpenSequence / Client::ReopenSequence.
class Sequence {
 public:
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;
  ~Sequence();

  // Offloads the prompt of `layer`: keys and values [num_kv_heads, tokens, head_dim], any
  // dtype (blocks are stored in the sequence dtype), head-major or token-major strides (an
  // engine's [tokens, kv_heads, head_dim] cache is viewed without a copy). A later call
  // continues the prompt (a chunked prefill, or the rest of a prompt after a shared prefix):
  // its tokens follow the layer's, are cut at segment boundaries
  // (ClusterKvConfig::prefill_segment_tokens) and each piece is clustered on its own.
  // InvalidArgument: bad layer or shapes, NaN/Inf keys; FailedPrecondition: the layer decodes
  // already (AppendToken was called); otherwise the daemon's status, in which case nothing of
  // the layer is kept locally.
  [[nodiscard]] absl::Status OffloadPrefill(int32_t layer, const Tensor3View& keys,
                                            const Tensor3View& values,
                                            const PrefillProgress& progress = nullptr);

  // Starts a new decode step (see the file comment).
  void BeginStep();

  // One decode step of `layer`: queries [num_q_heads, head_dim], out [num_q_heads, head_dim]
  // fp32. InvalidArgument: bad layer or shapes, NaN/Inf queries; FailedPrecondition: the layer
  // holds no tokens; DataLoss: the daemon returned a block of the wrong size or omitted one;
  // otherwise the daemon's status. On failure `out` is unspecified and the layer's device
  // cache is emptied (its slots may hold partial data).
  [[nodiscard]] absl::Status Attend(int32_t layer, const ConstMatrixView& queries, MatrixView out,
                                    StepStats* stats = nullptr);

  // One decode step of `layer` for a batch of distinct sequences (continuous batching): each
  // sequence selects and plans its device cache as Attend does, then the misses of every
  // sequence on the same data plane are recalled in ONE request (DataPlane::FetchBatchInto),
  // then each attends. Each item's output, statistics and status are those Attend would give
  // (fetch_us is the shared fetch's time); a sequence whose step fails (bad queries, a
  // verdict of the daemon on it) does not fail the others. Sequences without a data plane, or
  // when the plane is unavailable, fetch one by one over gRPC. Returns OK when every item
  // succeeded, else the first failed item's status; InvalidArgument (and nothing done) for a
  // null or repeated sequence. Thread-compatible as Attend: no other call on these sequences
  // meanwhile.
  [[nodiscard]] static absl::Status AttendBatch(int32_t layer,
                                                absl::Span<BatchAttendItem> items);

  // Starts recalling, in the background, what Attend(layer, ...) would select for
  // `predicted_queries` [num_q_heads, head_dim] (a guess at the layer's queries, e.g. the
  // layer's Wq applied to an earlier layer's input, or the previous step's queries), so that
  // the fetch overlaps the engine's compute. The selection runs on this thread (the fixed
  // budget, as PreviewSelection); its device-cache misses are reserved and fetched on the
  // sequence's background thread. The layer's next Attend waits for that fetch, finds the
  // prefetched clusters resident and fetches only what its real queries add. A speculation
  // that does not fit the device cache is dropped. OK on a dense layer (nothing to recall).
  // Call from the engine thread, like every other call; Attend on other layers may run while
  // the fetch is in flight. InvalidArgument: bad layer or shapes, NaN/Inf queries. A layer
  // without clustered tokens has nothing to prefetch (OK). A failed fetch is not an error: the
  // next Attend counts it (StepStats::prefetch_failures) and fetches what it selects.
  [[nodiscard]] absl::Status Prefetch(int32_t layer, const ConstMatrixView& predicted_queries);
  // Waits for the layer's prefetch to finish and returns its fetch's status (OK when none is
  // pending); Attend does this by itself.
  [[nodiscard]] absl::Status WaitForPrefetch(int32_t layer);

  // Appends one decode token of `layer`: keys and values [num_kv_heads, head_dim], any dtype.
  // When it completes a window of m tokens, the window's C+ clusters per kv head are offloaded
  // (AppendClusters) and join the index. InvalidArgument: bad layer or shapes, NaN/Inf.
  // If the offload fails (e.g. UNAVAILABLE), the token IS kept (num_tokens(layer) grew), the
  // window's clusters stay pending and are attended from local memory, and the next
  // AppendToken or Flush of the layer retries; while one is pending, AppendToken first retries
  // it and, if that fails again, returns its status without taking the token.
  [[nodiscard]] absl::Status AppendToken(int32_t layer, const ConstMatrixView& keys,
                                         const ConstMatrixView& values);
  // Retries a pending offload of `layer` (OK when none is pending).
  [[nodiscard]] absl::Status Flush(int32_t layer);

  // After a daemon restart: re-opens the sequence (must_exist) and re-reads every index.
  // NotFound: the daemon lost the sequence; DataLoss: the daemon holds fewer clusters of some
  // head than this client knows (appends were lost); the daemon's index is adopted either way.
  [[nodiscard]] absl::Status Reattach();

  // ---- Resumable sessions and shared documents ----
  // Writes to the daemon what a resume needs beyond the clusters: the layers' sink rows (every
  // row of a dense layer) and recent windows added since the last checkpoint, and the decode
  // position. Pending window offloads are flushed first (their error is returned). After it
  // returns OK, Client::ResumeSequence in any process continues this sequence exactly as it
  // stands now, without a prefill. Call it at a step boundary (after every layer's
  // AppendToken of a token), e.g. every few steps. `engine_state` is saved with it, opaque:
  // what the engine keeps beside the sequence (e.g. the windows of sliding-window layers,
  // which never reach the daemon), handed back by engine_state() after a resume. Each
  // checkpoint replaces the previous one's (empty: none).
  [[nodiscard]] absl::Status Checkpoint(absl::string_view engine_state = {});
  // Seals this sequence as a stored document whose token ids are `tokens` (its whole length,
  // prefilled and not decoded) for `model` (any name that identifies the weights): its
  // clustering segments become findable with Client::FindPrefix by a prompt that starts with
  // the same tokens, and from then on the sequence is read-only (Close(drop) fails while
  // forks use it). Checkpoints first, with `engine_state`, which a fork of the WHOLE document
  // receives as its engine_state() (a fork of fewer segments receives none). FailedPrecondition:
  // decode tokens, a fork, a layer prefilled in pieces that do not end on segment boundaries,
  // or tokens.size() != num_tokens().
  [[nodiscard]] absl::Status Publish(absl::Span<const int32_t> tokens, absl::string_view model,
                                     absl::string_view engine_state = {});
  // Lets `tenant` find and fork this published document (Client::FindPrefix answers it with
  // StoredPrefix::owner set to this tenant); its blocks stay accounted to this tenant. Revoke
  // stops new finds and forks; forks made before keep working. Without a grant another tenant
  // sees nothing of a document (NOT_FOUND, as for one that does not exist). FailedPrecondition:
  // not published; InvalidArgument: a bad tenant name, or this sequence's own tenant.
  [[nodiscard]] absl::Status Grant(absl::string_view tenant);
  [[nodiscard]] absl::Status Revoke(absl::string_view tenant);
  // The stored keys and values of positions [begin, end) of `layer`, as fp32 in token-major
  // order [end - begin, num_kv_heads, head_dim] (an engine's KV cache): what an engine needs to
  // prefill the rest of a prompt after a shared prefix. Reads every cluster of the layer from
  // the daemon (FetchClusters). InvalidArgument: bad range; DataLoss: a position is missing.
  [[nodiscard]] absl::Status ReadTokens(int32_t layer, int64_t begin, int64_t end,
                                        float* keys, float* values);
  // A fork's base: the document and the tokens it shares (empty / 0 for a sequence of its
  // own).
  const std::string& base_document() const;
  int64_t base_tokens() const;
  // The engine state of the checkpoint this sequence was resumed from, or of the document
  // this fork shares whole; empty otherwise.
  const std::string& engine_state() const;

  // Closes the sequence on the daemon; `drop` deletes it. The object stays usable only for
  // accessors.
  [[nodiscard]] absl::Status Close(bool drop);

  const std::string& id() const;
  const KvLayout& layout() const;
  const ClusterKvConfig& config() const;
  // Tokens of the sequence (the most any layer holds).
  int64_t num_tokens() const;
  int64_t num_tokens(int32_t layer) const;
  int64_t step() const;
  // Clusters in the centroid index of (layer, kv_head); 0 when out of range or dense.
  int32_t num_clusters(int32_t layer, int32_t kv_head) const;
  // Device cache statistics over every layer (and every cache reset).
  CacheStats cache_stats() const;
  double cache_hit_rate() const { return cache_stats().HitRate(); }
  int64_t bytes_fetched() const;
  int64_t bytes_offloaded() const;
  // Blocks recalled by the data plane (written by the daemon) / by FetchClusters.
  int64_t blocks_fetched_direct() const;
  int64_t blocks_fetched_grpc() const;
  bool has_pending_offload(int32_t layer) const;

 private:
  friend class ClientInternals;
  explicit Sequence(std::unique_ptr<SequenceCore> core);

  std::unique_ptr<SequenceCore> core_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_SEQUENCE_H_
