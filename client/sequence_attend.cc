// SequenceCore::Attend: one decode step of one layer (selection -> cache plan -> one fetch of the
// misses -> sparse attention). See internal/sequence_core.h and slot_layout.h.
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "client/internal/sequence_core.h"
#include "client/internal/sequence_state.h"
#include "core/status_macros.h"
#include "gpu/adaptive_budget.h"
#include "gpu/attention.h"
#include "gpu/recall_estimate.h"
#include "gpu/selection.h"
#include "proto/rpc_support.h"
#include "storage/cluster_block.h"

namespace clusterkv::client {

void SequenceCore::BeginStep() { ++step_; }

int64_t SequenceCore::Micros(absl::Time since) const {
  return absl::ToInt64Microseconds(options_.clock->Now() - since);
}

absl::Status SequenceCore::Attend(int32_t layer, const ConstMatrixView& queries, MatrixView out,
                                  StepStats* stats) {
  StepPlan plan;
  RETURN_IF_ERROR(BeginAttend(layer, queries, out, stats, &plan));
  if (plan.done) return absl::OkStatus();
  StepStats fetched;
  bool direct = false;
  const absl::Time t = options_.clock->Now();
  if (absl::Status status = FetchMisses(layer, *plan.state, plan.cache.misses, &fetched, &direct);
      !status.ok()) {
    ResetCache(*plan.state);  // the planned slots were promised but not (fully) filled
    return status;
  }
  return FinishAttend(plan, fetched, direct, Micros(t));
}

absl::Status SequenceCore::BeginAttend(int32_t layer, const ConstMatrixView& queries,
                                       MatrixView out, StepStats* stats, StepPlan* plan) {
  RETURN_IF_ERROR(CheckLayer(layer));
  RETURN_IF_ERROR(CheckQueries(queries, "queries"));
  if (out.data == nullptr || out.rows != layout_.num_q_heads || out.cols != layout_.head_dim ||
      out.row_stride < out.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("out must be [", layout_.num_q_heads, ", ", layout_.head_dim, "]"));
  }
  LayerState& state = *layers_[layer];
  // A layer attended twice in one step means the engine moved on to the next token.
  if (state.last_step == step_) ++step_;
  state.last_step = step_;
  plan->layer = layer;
  plan->state = &state;
  plan->queries = queries;
  plan->out = out;
  plan->stats = stats != nullptr ? stats : &plan->local_stats;
  *plan->stats = StepStats();
  if (state.dense) {
    plan->done = true;
    return AttendDense(state, queries, out, plan->stats);
  }
  // A failed prefetch only costs its fetch: the cache was emptied and this step fetches
  // everything it selects.
  CompletePrefetch(state, plan->stats, &plan->prefetched).IgnoreError();
  return PlanClustered(*plan);
}

absl::Status SequenceCore::AttendDense(LayerState& state, const ConstMatrixView& queries,
                                   MatrixView out, StepStats* stats) {
  if (state.local_rows == 0) {
    return absl::FailedPreconditionError(
        "dense layer holds no tokens (offload its prefill first; dense K/V live in the client)");
  }
  const absl::Time start = options_.clock->Now();
  const int32_t group = layout_.GroupSize();
  const int32_t d = layout_.head_dim;
  std::vector<gpu::AttentionTask> tasks(layout_.num_kv_heads);
  for (int32_t h = 0; h < layout_.num_kv_heads; ++h) {
    const HeadState& head = state.heads[h];
    gpu::AttentionTask& task = tasks[h];
    task.queries = queries.Rows(h * group, (h + 1) * group);
    task.spans.push_back(
        gpu::KvSpan{ConstMatrixView(head.local_keys.data(), layout_.dtype, state.local_rows, d),
                    ConstMatrixView(head.local_values.data(), layout_.dtype, state.local_rows, d)});
    task.scale = 1.0f / std::sqrt(static_cast<float>(d));
    task.out = MatrixView(out.Row(h * group), group, d, out.row_stride);
  }
  RETURN_IF_ERROR(gpu::AttentionBatch(tasks, options_.exec));
  stats->attend_us = Micros(start);
  stats->attended_tokens = state.local_rows * layout_.num_kv_heads;
  return absl::OkStatus();
}

void SequenceCore::ResetCache(LayerState& state) {
  if (state.cache == nullptr) return;
  const gpu::CacheStats& s = state.cache->stats();
  state.retired.hit_clusters += s.hit_clusters;
  state.retired.miss_clusters += s.miss_clusters;
  state.retired.hit_tokens += s.hit_tokens;
  state.retired.miss_tokens += s.miss_tokens;
  state.retired.evictions += s.evictions;
  state.cache.reset();
}

absl::Status SequenceCore::EnsureCache(LayerState& state) {
  if (state.cache != nullptr) return absl::OkStatus();
  // Per kv head a step wants at most B tokens plus the untaken rest of its last cluster; twice
  // the budget leaves room for the previous R steps' clusters and for fragmentation.
  int64_t largest = options_.config.recluster_interval;  // bound of decode-window clusters
  for (const HeadState& head : state.heads) {
    for (int32_t size : head.index.sizes()) largest = std::max<int64_t>(largest, size);
  }
  // An adaptive head may take up to B_max tokens (D75).
  const int64_t per_head = options_.config.adaptive_budget()
                               ? options_.config.MaxTokenBudget() + options_.config.token_budget
                               : 2 * int64_t{options_.config.token_budget};
  const int64_t capacity = layout_.num_kv_heads * (per_head + largest);
  if (state.memory == nullptr || state.capacity_tokens < capacity) {
    state.memory.reset();
    state.direct = nullptr;
    const size_t bytes = slots_.RegionBytes(capacity);
    if (options_.data_plane != nullptr && options_.device_memory != "cuda") {
      // Inside the registered region, so the daemon can write the slots; a full region
      // leaves this layer on ordinary memory and the gRPC path.
      std::unique_ptr<DirectMemory> direct = options_.data_plane->NewMemory();
      if (direct->Allocate(bytes).ok()) {
        state.direct = direct.get();
        state.memory = std::move(direct);
      }
    }
    if (state.memory == nullptr) {
      ASSIGN_OR_RETURN(std::unique_ptr<DeviceMemory> memory,
                       MakeDeviceMemory(options_.device_memory));
      RETURN_IF_ERROR(memory->Allocate(bytes));
      state.memory = std::move(memory);
    }
    state.capacity_tokens = capacity;
  }
  state.cache = std::make_unique<gpu::ClusterCache>(state.capacity_tokens,
                                                    options_.config.cache_residency_steps);
  return absl::OkStatus();
}

std::vector<DirectFetch> SequenceCore::DirectRequests(
    const LayerState& state, const std::vector<gpu::CacheEntry>& misses) const {
  std::vector<DirectFetch> blocks;
  blocks.reserve(misses.size());
  for (const gpu::CacheEntry& miss : misses) {
    blocks.push_back(DirectFetch{miss.id,
                                 state.direct->region_offset() + slots_.SlotOffset(miss.slot),
                                 static_cast<int32_t>(miss.slot.size())});
  }
  return blocks;
}

absl::Status SequenceCore::CheckDirectResults(const std::vector<gpu::CacheEntry>& misses,
                                              const std::vector<DirectFetchResult>& results,
                                              StepStats* stats) const {
  if (results.size() != misses.size()) {
    return absl::DataLossError(absl::StrCat("daemon answered ", results.size(),
                                            " blocks for a request of ", misses.size()));
  }
  for (size_t i = 0; i < misses.size(); ++i) {
    const DirectFetchResult& r = results[i];
    const TokenRange& slot = misses[i].slot;
    if (absl::IsFailedPrecondition(r.status) || (r.status.ok() && r.num_tokens != slot.size())) {
      return absl::DataLossError(absl::StrCat("block ", ToString(misses[i].id), " holds ",
                                              r.num_tokens, " tokens; the index says ",
                                              slot.size(), " tokens"));
    }
    RETURN_IF_ERROR(r.status);
    if (r.bytes != slots_.SlotBytes(slot)) {
      return absl::DataLossError(absl::StrCat("daemon wrote ", r.bytes, " bytes of block ",
                                              ToString(misses[i].id), ", the slot holds ",
                                              slots_.SlotBytes(slot)));
    }
    stats->bytes_fetched +=
        static_cast<int64_t>(SlotLayout::PayloadOffset(r.num_tokens) + r.bytes);
    ++stats->blocks_fetched;
  }
  return absl::OkStatus();
}

absl::Status SequenceCore::FetchMissesDirect(const LayerState& state,
                                             const std::vector<gpu::CacheEntry>& misses,
                                             StepStats* stats, bool* fell_back) const {
  const std::vector<DirectFetch> blocks = DirectRequests(state, misses);
  absl::StatusOr<std::vector<DirectFetchResult>> results =
      options_.data_plane->FetchInto(id_, blocks);
  if (!results.ok() && IsDataPlaneUnavailable(results.status())) {
    *fell_back = true;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(results.status());
  return CheckDirectResults(misses, *results, stats);
}

void SequenceCore::CountFetched(const StepStats& fetched, bool direct) {
  bytes_fetched_ += fetched.bytes_fetched;
  (direct ? blocks_fetched_direct_ : blocks_fetched_grpc_) += fetched.blocks_fetched;
}

absl::Status SequenceCore::FetchMisses(int32_t layer, const LayerState& state,
                                       const std::vector<gpu::CacheEntry>& misses,
                                       StepStats* stats, bool* direct) const {
  *direct = false;
  if (misses.empty()) return absl::OkStatus();
  if (state.direct != nullptr) {
    bool fell_back = false;
    RETURN_IF_ERROR(FetchMissesDirect(state, misses, stats, &fell_back));
    if (!fell_back) {
      *direct = true;
      return absl::OkStatus();
    }
  }
  struct Target {
    TokenRange slot;
    bool delivered = false;
  };
  absl::flat_hash_map<ClusterId, Target> targets;
  v1::FetchClustersRequest request;
  request.set_sequence_id(id_);
  for (const gpu::CacheEntry& miss : misses) {
    targets[miss.id] = Target{miss.slot, false};
    *request.add_clusters() = rpc::ToProto(miss.id);
  }
  DeviceMemory& memory = *state.memory;
  auto on_block = [&](const v1::ClusterBlock& block) -> absl::Status {
    const ClusterId id = rpc::FromProto(block.id());
    auto it = targets.find(id);
    if (it == targets.end()) {
      return absl::DataLossError(absl::StrCat("daemon sent unrequested block ", ToString(id)));
    }
    const TokenRange& slot = it->second.slot;
    const int64_t n = block.num_tokens();
    if (n != slot.size() ||
        block.data().size() != storage::ClusterBlockBytes(n, layout_.head_dim, layout_.dtype)) {
      return absl::DataLossError(absl::StrCat("block ", ToString(id), " holds ", n, " tokens in ",
                                              block.data().size(), " bytes; the index says ",
                                              slot.size(), " tokens"));
    }
    // Keys then values: one contiguous copy into the slot (slot_layout.h).
    RETURN_IF_ERROR(memory.CopyIn(slots_.SlotOffset(slot),
                                  block.data().data() + SlotLayout::PayloadOffset(n),
                                  slots_.SlotBytes(slot)));
    if (!it->second.delivered) {
      it->second.delivered = true;
      stats->bytes_fetched += static_cast<int64_t>(block.data().size());
      ++stats->blocks_fetched;
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(transport_->FetchClusters(request, on_block));
  for (const auto& [id, target] : targets) {
    if (!target.delivered) {
      return absl::DataLossError(
          absl::StrCat("daemon did not return block ", ToString(id), " of layer ", layer));
    }
  }
  return memory.Synchronize();
}

absl::Status SequenceCore::PlanClustered(StepPlan& step) {
  const int32_t layer = step.layer;
  LayerState& state = *step.state;
  const ConstMatrixView& queries = step.queries;
  StepStats* stats = step.stats;
  const int32_t heads = layout_.num_kv_heads;
  const int32_t group = layout_.GroupSize();
  const int32_t d = layout_.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // 1. Score every head's centroids.
  absl::Time t = options_.clock->Now();
  ASSIGN_OR_RETURN(step.scores, ScoreHeads(state, queries));
  const std::vector<std::vector<float>>& scores = step.scores;
  const int64_t score_us = Micros(t);
  t = options_.clock->Now();

  // 2. The estimated masses of every cluster against the exactly attended keys (sinks, the
  //    pending and the recent window), then the selection up to each head's budget. The
  //    estimate is counted in score_us.
  std::vector<gpu::ClusterMasses>& masses = step.masses;
  masses.assign(heads, gpu::ClusterMasses());
  for (int32_t h = 0; h < heads; ++h) {
    const HeadState& head = state.heads[h];
    const gpu::ClusterIndex& index = head.index;
    if (index.num_tokens() == 0) continue;
    gpu::RecallEstimateInput in;
    in.queries = queries.Rows(h * group, (h + 1) * group);
    in.scale = scale;
    in.centroids = index.centroids();
    in.sizes = index.sizes();
    in.key_norms = index.key_norms();
    in.key_spreads = index.key_spreads();
    if (state.local_rows > 0) {
      in.exact_keys.emplace_back(head.local_keys.data(), layout_.dtype, state.local_rows, d);
    }
    if (state.pending.has_value()) {
      const gpu::WindowClusters& w = state.pending->windows[h];
      in.exact_keys.emplace_back(w.keys.data(), static_cast<int64_t>(w.positions.size()), d);
    }
    if (head.window.window_size() > 0) in.exact_keys.push_back(head.window.window_keys());
    ASSIGN_OR_RETURN(masses[h], gpu::EstimateClusterMasses(in));
  }
  stats->score_us = score_us + Micros(t);

  // 3. Select clusters up to the budget and plan the cache. The cache holds whole clusters
  //    (so a slot's value rows sit at a fixed offset and a truncated cluster can be a hit later
  //    with more rows); attention reads the selected prefix.
  t = options_.clock->Now();
  ASSIGN_OR_RETURN(step.selections, SelectForStep(state, scores, masses));
  const std::vector<gpu::ClusterSelection>& selections = step.selections;
  for (int32_t h = 0; h < heads; ++h) {
    if (state.heads[h].index.num_tokens() == 0) continue;
    stats->selected_tokens += selections[h].total_tokens;
    ++stats->selected_heads;
  }
  const std::vector<gpu::CacheRequest> wanted = CacheRequests(layer, state, selections);
  gpu::CachePlan& plan = step.cache;
  if (!wanted.empty()) {
    RETURN_IF_ERROR(EnsureCache(state));
    absl::StatusOr<gpu::CachePlan> planned = state.cache->Access(step_, wanted);
    if (absl::IsResourceExhausted(planned.status())) {
      // Fragmented (or the index grew past the sizing): start over with an empty cache.
      ResetCache(state);
      RETURN_IF_ERROR(EnsureCache(state));
      planned = state.cache->Access(step_, wanted);
    }
    if (!planned.ok()) return planned.status();
    plan = *std::move(planned);
  }
  stats->select_us = Micros(t);
  return absl::OkStatus();
}

absl::Status SequenceCore::FinishAttend(StepPlan& step, const StepStats& fetched, bool direct,
                                        int64_t fetch_us) {
  const int32_t layer = step.layer;
  LayerState& state = *step.state;
  const ConstMatrixView& queries = step.queries;
  const MatrixView& out = step.out;
  StepStats* stats = step.stats;
  const gpu::CachePlan& plan = step.cache;
  const std::vector<gpu::ClusterSelection>& selections = step.selections;
  const absl::flat_hash_set<ClusterId>& prefetched = step.prefetched;
  const int32_t heads = layout_.num_kv_heads;
  const int32_t group = layout_.GroupSize();
  const int32_t d = layout_.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // 4. The fetch of the misses (done by the caller: one per layer, or one per batch).
  CountFetched(fetched, direct);
  stats->bytes_fetched += fetched.bytes_fetched;
  stats->blocks_fetched += fetched.blocks_fetched;
  stats->fetch_us = fetch_us;
  if (options_.config.promotion_hint_tokens > 0) {
    stats->hinted_clusters = SendPromotionHints(layer, state, step.scores, selections);
  }
  absl::flat_hash_map<ClusterId, TokenRange> slot_of;
  for (const gpu::CacheEntry& e : plan.hits) {
    slot_of[e.id] = e.slot;
    ++stats->hit_clusters;
    stats->hit_tokens += e.slot.size();
    if (prefetched.contains(e.id)) stats->prefetch_used_tokens += e.slot.size();
  }
  for (const gpu::CacheEntry& e : plan.misses) {
    slot_of[e.id] = e.slot;
    ++stats->miss_clusters;
    stats->miss_tokens += e.slot.size();
  }

  // 5. Attention over sinks + selected clusters + pending window + recent window.
  const absl::Time t = options_.clock->Now();
  const void* base = state.memory != nullptr ? state.memory->HostView(0) : nullptr;
  std::vector<gpu::AttentionTask> tasks(heads);
  int64_t attended = 0;
  for (int32_t h = 0; h < heads; ++h) {
    const HeadState& head = state.heads[h];
    gpu::AttentionTask& task = tasks[h];
    if (state.local_rows > 0) {
      task.spans.push_back(gpu::KvSpan{
          ConstMatrixView(head.local_keys.data(), layout_.dtype, state.local_rows, d),
          ConstMatrixView(head.local_values.data(), layout_.dtype, state.local_rows, d)});
    }
    const gpu::ClusterSelection& sel = selections[h];
    for (size_t i = 0; i < sel.clusters.size(); ++i) {
      const TokenRange& slot = slot_of.at(ClusterId{HeadId{layer, h}, sel.clusters[i]});
      task.spans.push_back(gpu::KvSpan{slots_.Keys(base, slot, sel.tokens[i]),
                                       slots_.Values(base, slot, sel.tokens[i])});
    }
    if (state.pending.has_value()) {
      const gpu::WindowClusters& w = state.pending->windows[h];
      const int64_t rows = static_cast<int64_t>(w.positions.size());
      task.spans.push_back(gpu::KvSpan{ConstMatrixView(w.keys.data(), rows, d),
                                       ConstMatrixView(w.values.data(), rows, d)});
    }
    if (head.window.window_size() > 0) {
      task.spans.push_back(gpu::KvSpan{head.window.window_keys(), head.window.window_values()});
    }
    for (const gpu::KvSpan& span : task.spans) attended += span.keys.rows;
    if (task.spans.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", layer, " holds no tokens (offload its prefill first)"));
    }
    task.queries = queries.Rows(h * group, (h + 1) * group);
    task.scale = scale;
    task.out = MatrixView(out.Row(h * group), group, d, out.row_stride);
  }
  RETURN_IF_ERROR(gpu::AttentionBatch(tasks, options_.exec));
  stats->attend_us = Micros(t);
  stats->attended_tokens = attended;

  // 6. Estimated recall per kv head of what was attended.
  double recall_sum = 0.0, recall_min = 1.0;
  int32_t estimated = 0;
  for (int32_t h = 0; h < heads; ++h) {
    const gpu::ClusterIndex& index = state.heads[h].index;
    if (index.num_tokens() == 0) continue;
    const float recall = step.masses[h].RecallOf(&selections[h], index.sizes());
    ++unreported_.recall_counts[EstimatedRecallBucket(recall)];
    unreported_.recall_sum += std::clamp(recall, 0.0f, 1.0f);
    recall_sum += recall;
    recall_min = std::min(recall_min, static_cast<double>(recall));
    ++estimated;
  }
  if (estimated > 0) {
    stats->estimated_recall = recall_sum / estimated;
    stats->estimated_recall_min = recall_min;
  }
  unreported_.hit_tokens += static_cast<uint64_t>(stats->hit_tokens);
  unreported_.miss_tokens += static_cast<uint64_t>(stats->miss_tokens);
  unreported_.selected_tokens += static_cast<uint64_t>(stats->selected_tokens);
  unreported_.selected_heads += static_cast<uint64_t>(stats->selected_heads);
  if (step_ - last_report_step_ >= kReportEverySteps) {
    ReportStats().IgnoreError();  // best effort: kept for the next report on failure
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<float>>> SequenceCore::ScoreHeads(
    const LayerState& state, const ConstMatrixView& queries) const {
  const int32_t heads = layout_.num_kv_heads;
  const int32_t group = layout_.GroupSize();
  const float scale = 1.0f / std::sqrt(static_cast<float>(layout_.head_dim));
  std::vector<std::vector<float>> scores(heads);
  for (int32_t h = 0; h < heads; ++h) {
    const gpu::ClusterIndex& index = state.heads[h].index;
    if (index.num_tokens() == 0) continue;
    scores[h].resize(index.num_clusters());
    const CentroidScoring scoring = options_.config.centroid_scoring;
    const ConstMatrixView centroids = scoring == CentroidScoring::kKeyNorm
                                          ? index.norm_scaled_centroids()
                                          : index.centroids();
    const float head_scale =
        scoring == CentroidScoring::kHeadNorm ? scale * index.mean_key_norm() : scale;
    RETURN_IF_ERROR(gpu::ScoreCentroids(queries.Rows(h * group, (h + 1) * group), centroids,
                                        head_scale, absl::MakeSpan(scores[h]), options_.exec));
  }
  return scores;
}

absl::StatusOr<std::vector<gpu::ClusterSelection>> SequenceCore::PreviewSelection(
    int32_t layer, const ConstMatrixView& queries,
    std::vector<std::vector<float>>* scores) const {
  RETURN_IF_ERROR(CheckLayer(layer));
  if (queries.rows != layout_.num_q_heads || queries.cols != layout_.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("queries must be [", layout_.num_q_heads,
                                                   ", ", layout_.head_dim, "]"));
  }
  if (options_.config.IsDenseLayer(layer)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "layer ", layer, " is dense (full attention over local tokens): nothing to select"));
  }
  const LayerState& state = *layers_[layer];
  ASSIGN_OR_RETURN(std::vector<std::vector<float>> head_scores, ScoreHeads(state, queries));
  ASSIGN_OR_RETURN(std::vector<gpu::ClusterSelection> out, FixedSelections(state, head_scores));
  if (scores != nullptr) *scores = std::move(head_scores);
  return out;
}

absl::StatusOr<std::vector<gpu::ClusterSelection>> SequenceCore::FixedSelections(
    const LayerState& state, const std::vector<std::vector<float>>& scores) const {
  std::vector<gpu::ClusterSelection> selections(layout_.num_kv_heads);
  for (int32_t h = 0; h < layout_.num_kv_heads; ++h) {
    const gpu::ClusterIndex& index = state.heads[h].index;
    if (index.num_tokens() == 0) continue;
    const int64_t budget = std::min<int64_t>(options_.config.token_budget, index.num_tokens());
    ASSIGN_OR_RETURN(selections[h], gpu::SelectClusters(scores[h], index.sizes(), budget));
  }
  return selections;
}

std::vector<gpu::CacheRequest> SequenceCore::CacheRequests(
    int32_t layer, const LayerState& state,
    const std::vector<gpu::ClusterSelection>& selections) const {
  std::vector<gpu::CacheRequest> wanted;
  for (int32_t h = 0; h < layout_.num_kv_heads; ++h) {
    const gpu::ClusterIndex& index = state.heads[h].index;
    for (int32_t c : selections[h].clusters) {
      wanted.push_back(gpu::CacheRequest{ClusterId{HeadId{layer, h}, c}, index.sizes()[c]});
    }
  }
  return wanted;
}

int64_t SequenceCore::SendPromotionHints(int32_t layer, LayerState& state,
                                        const std::vector<std::vector<float>>& scores,
                                        const std::vector<gpu::ClusterSelection>& selections) {
  // Forget hints older than the repeat window once per step, so the map stays bounded by the
  // clusters hinted in the window.
  for (auto it = state.hinted_at.begin(); it != state.hinted_at.end();) {
    if (step_ - it->second >= kHintRepeatSteps) {
      state.hinted_at.erase(it++);
    } else {
      ++it;
    }
  }
  v1::HintClustersRequest request;
  request.set_sequence_id(id_);
  for (int32_t h = 0; h < layout_.num_kv_heads && request.clusters_size() < kMaxHintClusters;
       ++h) {
    const gpu::ClusterIndex& index = state.heads[h].index;
    if (index.num_tokens() == 0) continue;
    const gpu::ClusterSelection& selected = selections[h];
    const int64_t reach = std::min<int64_t>(
        index.num_tokens(), selected.total_tokens + options_.config.promotion_hint_tokens);
    absl::StatusOr<gpu::ClusterSelection> ranked =
        gpu::SelectClusters(scores[h], index.sizes(), reach);
    if (!ranked.ok()) continue;  // the selection above succeeded on the same scores
    // The selection is a prefix of the score order; the hint is what follows it.
    for (size_t i = selected.clusters.size();
         i < ranked->clusters.size() && request.clusters_size() < kMaxHintClusters; ++i) {
      const ClusterId id{HeadId{layer, h}, ranked->clusters[i]};
      if (state.cache != nullptr && state.cache->Contains(id)) continue;
      auto [it, inserted] = state.hinted_at.try_emplace(id, step_);
      if (!inserted) continue;  // hinted within the window
      *request.add_clusters() = rpc::ToProto(id);
    }
  }
  if (request.clusters_size() == 0) return 0;
  return transport_->HintClusters(request) ? request.clusters_size() : 0;
}

absl::StatusOr<std::vector<gpu::ClusterSelection>> SequenceCore::SelectForStep(
    const LayerState& state, const std::vector<std::vector<float>>& scores,
    const std::vector<gpu::ClusterMasses>& masses) {
  const int32_t heads = layout_.num_kv_heads;
  const ClusterKvConfig& config = options_.config;
  if (!config.adaptive_budget()) return FixedSelections(state, scores);
  std::vector<gpu::ClusterSelection> selections(heads);
  // Every head's clusters in score order and its recall curve along that order.
  std::vector<int32_t> active;
  std::vector<gpu::ClusterSelection> orders;
  std::vector<gpu::RecallCurve> curves;
  for (int32_t h = 0; h < heads; ++h) {
    const gpu::ClusterIndex& index = state.heads[h].index;
    if (index.num_tokens() == 0) continue;
    ASSIGN_OR_RETURN(gpu::ClusterSelection order,
                     gpu::SelectClusters(scores[h], index.sizes(), index.num_tokens()));
    curves.push_back(gpu::MakeRecallCurve(masses[h], order, index.sizes()));
    orders.push_back(std::move(order));
    active.push_back(h);
  }
  if (budget_bank_step_ != step_) {
    budget_bank_step_ = step_;
    budget_bank_ = 0;
  }
  gpu::BudgetLimits limits;
  limits.target = config.recall_target;
  limits.min_tokens = config.MinTokenBudget();
  limits.max_tokens = config.MaxTokenBudget();
  limits.total_tokens =
      static_cast<int64_t>(active.size()) * config.token_budget + budget_bank_;
  const std::vector<int64_t> budgets = gpu::PlanBudgets(curves, limits);
  int64_t used = 0;
  for (size_t i = 0; i < active.size(); ++i) {
    selections[active[i]] = gpu::TruncateSelection(orders[i], budgets[i]);
    used += budgets[i];
  }
  budget_bank_ = std::max<int64_t>(0, limits.total_tokens - used);
  return selections;
}

}  // namespace clusterkv::client
