// SequenceCore::Prefetch: a speculative recall of a layer, selected, reserved and fetched on
// the sequence's background worker while the engine computes; the layer's next Attend takes it
// up (CompletePrefetch). See internal/sequence_core.h and docs/decisions.md D81.
#include <memory>
#include <utility>
#include <vector>

#include "client/internal/sequence_core.h"
#include "client/internal/sequence_state.h"
#include "core/status_macros.h"

namespace clusterkv::client {

int64_t SequenceCore::NextAttendStep(const LayerState& state) const {
  return state.last_step == step_ ? step_ + 1 : step_;
}

absl::Status SequenceCore::Prefetch(int32_t layer, const ConstMatrixView& predicted_queries) {
  RETURN_IF_ERROR(CheckLayer(layer));
  RETURN_IF_ERROR(CheckQueries(predicted_queries, "predicted queries"));
  LayerState& state = *layers_[layer];
  if (state.dense) return absl::OkStatus();  // attends local tokens only: nothing to recall
  // One speculation per layer at a time: an earlier one is taken up first (its clusters stay
  // resident for the step).
  if (state.prefetch != nullptr) {
    StepStats superseded;  // its bytes still count in the sequence's totals
    // A failed one only emptied the cache.
    CompletePrefetch(state, &superseded, nullptr).IgnoreError();
  }
  // Everything else runs on the worker: the selection, the reservation and the fetch. The
  // engine thread only copies the queries.
  auto prefetch = std::make_unique<PendingPrefetch>();
  PendingPrefetch* job = prefetch.get();
  job->queries.resize(static_cast<size_t>(layout_.num_q_heads) * layout_.head_dim);
  for (int32_t r = 0; r < layout_.num_q_heads; ++r) {
    predicted_queries.LoadRow(r, &job->queries[static_cast<size_t>(r) * layout_.head_dim]);
  }
  job->step = NextAttendStep(state);
  state.prefetch = std::move(prefetch);
  if (worker_ == nullptr) worker_ = std::make_unique<BackgroundWorker>();
  worker_->Post([this, layer, &state, job] {
    job->status = PlanPrefetch(layer, state, job);
    job->planned.Notify();
    if (job->status.ok()) {
      job->status = FetchMisses(layer, state, job->misses, &job->fetched, &job->direct);
    }
    job->done.Notify();
  });
  return absl::OkStatus();
}

absl::Status SequenceCore::PlanPrefetch(int32_t layer, LayerState& state,
                                        PendingPrefetch* job) {
  ASSIGN_OR_RETURN(
      std::vector<gpu::ClusterSelection> selections,
      PreviewSelection(layer, ConstMatrixView(job->queries.data(), layout_.num_q_heads,
                                              layout_.head_dim)));
  const std::vector<gpu::CacheRequest> wanted = CacheRequests(layer, state, selections);
  if (wanted.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(EnsureCache(state));
  absl::StatusOr<gpu::CachePlan> plan = state.cache->Reserve(job->step, wanted);
  // A speculation that does not fit (or would fragment) is dropped, never forced: the step's
  // own selection decides what the cache must hold.
  if (absl::IsResourceExhausted(plan.status())) return absl::OkStatus();
  RETURN_IF_ERROR(plan.status());
  job->misses = std::move(plan->misses);
  return absl::OkStatus();
}

void SequenceCore::WaitForPrefetchPlan(const LayerState& state) const {
  if (state.prefetch != nullptr) state.prefetch->planned.Wait();
}

absl::Status SequenceCore::WaitForPrefetch(int32_t layer) {
  RETURN_IF_ERROR(CheckLayer(layer));
  LayerState& state = *layers_[layer];
  if (state.prefetch == nullptr) return absl::OkStatus();
  state.prefetch->done.Wait();
  return state.prefetch->status;
}

void SequenceCore::CompletePrefetches() {
  for (auto& state : layers_) {
    StepStats ignored;
    // A failure emptied the layer's cache.
    CompletePrefetch(*state, &ignored, nullptr).IgnoreError();
  }
}

absl::Status SequenceCore::CompletePrefetch(LayerState& state, StepStats* stats,
                                            absl::flat_hash_set<ClusterId>* placed) {
  if (state.prefetch == nullptr) return absl::OkStatus();
  const absl::Time start = options_.clock->Now();
  state.prefetch->done.Wait();
  stats->prefetch_wait_us += Micros(start);
  std::unique_ptr<PendingPrefetch> prefetch = std::move(state.prefetch);
  if (!prefetch->status.ok()) {
    ++stats->prefetch_failures;
    ResetCache(state);  // the reserved slots were promised but not (fully) filled
    return prefetch->status;
  }
  CountFetched(prefetch->fetched, prefetch->direct);
  stats->bytes_fetched += prefetch->fetched.bytes_fetched;
  stats->blocks_fetched += prefetch->fetched.blocks_fetched;
  stats->prefetched_clusters += static_cast<int64_t>(prefetch->misses.size());
  for (const gpu::CacheEntry& miss : prefetch->misses) {
    stats->prefetched_tokens += miss.slot.size();
    if (placed != nullptr) placed->insert(miss.id);
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::client
