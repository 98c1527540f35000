// RequestHandler's fetch path: planning a FetchClusters request (PrepareFetch), reading each
// block from the tiers (FetchOne, FetchOneRetained, DeliverBlock, FetchManyRetained), and
// resolving a whole request off or on the network thread (ResolveFetch, TryResolveResident).
// The rest of the handler (sessions, puts, appends, indexes, Select, Stats) is in
// request_handler.cc.
#include "server/request_handler.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/rpc_support.h"
#include "server/fetch_trace.h"
#include "server/metrics/daemon_metrics.h"  // observability
#include "server/request_validation.h"
#include "server/tracing/tracer.h"  // observability
#include "storage/cluster_block.h"

namespace clusterkv::server {

absl::StatusOr<RequestHandler::FetchPlan> RequestHandler::PrepareFetch(
    const CallContext& call, const v1::FetchClustersRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  RETURN_IF_ERROR(ValidateFetchRefs(layout, request.clusters(), options_.max_fetch_clusters));
  std::vector<ClusterId> clusters;
  clusters.reserve(static_cast<size_t>(request.clusters_size()));
  for (const v1::ClusterRef& ref : request.clusters()) clusters.push_back(rpc::FromProto(ref));
  FetchPlan plan{std::move(key), layout, call.trace, call.transport, session->base};
  RecordFetch(plan, clusters);
  return plan;
}

void RequestHandler::RecordFetch(const FetchPlan& plan, absl::Span<const ClusterId> clusters) {
  if (plan.base == nullptr) {
    store_->RecordFetch(plan.key, clusters);
    if (options_.fetch_trace != nullptr) options_.fetch_trace->Record(plan.key, clusters, *store_);
    return;
  }
  // A fork's shared clusters warm (and are traced as) the document's blocks.
  std::vector<ClusterId> own, shared;
  for (const ClusterId& c : clusters) {
    (plan.BlockOf(c).sequence == plan.key ? own : shared).push_back(c);
  }
  for (const auto& [key, part] : {std::pair{&plan.key, &own}, {&plan.base->document, &shared}}) {
    if (part->empty()) continue;
    store_->RecordFetch(*key, *part);
    if (options_.fetch_trace != nullptr) options_.fetch_trace->Record(*key, *part, *store_);
  }
}

// Host-resident blocks of one fetch, pinned per owner (a fork's own sequence and its document).
struct RequestHandler::PinnedBatch {
  storage::PinnedBlockSet own;
  storage::PinnedBlockSet shared;
  // Per requested cluster: which set holds it and where.
  std::vector<std::pair<bool, size_t>> where;

  const uint8_t* data(size_t i) const {
    const auto [in_shared, at] = where[i];
    return (in_shared ? shared : own).data(at);
  }
  uint64_t bytes(size_t i) const {
    const auto [in_shared, at] = where[i];
    return (in_shared ? shared : own).bytes(at);
  }
};

std::shared_ptr<RequestHandler::PinnedBatch> RequestHandler::PinResidentBlocks(
    const FetchPlan& plan, const std::vector<ClusterId>& clusters) {
  auto batch = std::make_shared<PinnedBatch>();
  batch->where.reserve(clusters.size());
  std::vector<ClusterId> own, shared;
  for (const ClusterId& c : clusters) {
    const bool in_shared = plan.base != nullptr && !(plan.BlockOf(c).sequence == plan.key);
    std::vector<ClusterId>& part = in_shared ? shared : own;
    batch->where.emplace_back(in_shared, part.size());
    part.push_back(c);
  }
  batch->own = store_->PinResident(plan.key, std::move(own));
  if (!shared.empty()) batch->shared = store_->PinResident(plan.base->document, std::move(shared));
  return batch;
}

absl::Status RequestHandler::FetchOne(const FetchPlan& plan, const v1::ClusterRef& ref,
                                      const BlockSink& sink) {
  return FetchOneRetained(
      plan, ref,
      [&](const v1::ClusterRef& r, int32_t tokens, absl::Span<const uint8_t> block,
          std::shared_ptr<const void>) { return sink(r, tokens, block); });
}

namespace {

// What keeps a fetched block's bytes alive: its pin in the host tier, or a copy.
struct HeldBlock {
  storage::PinnedBlock pin;
  std::vector<uint8_t> copy;
};

}  // namespace

absl::Status RequestHandler::FetchOneRetained(const FetchPlan& plan, const v1::ClusterRef& ref,
                                              const RetainingBlockSink& sink) {
  const storage::BlockKey block_key = plan.BlockOf(rpc::FromProto(ref));
  // ---- observability: data path latency, bytes per transport, spans ----
  metrics::DaemonMetrics* const metrics = options_.instrumentation.metrics;
  tracing::Tracer* const tracer =
      plan.trace.sampled() ? options_.instrumentation.tracer : nullptr;
  const absl::Time start = metrics != nullptr ? metrics->Now() : absl::Time();
  tracing::Span lookup;
  if (tracer != nullptr) {
    lookup = tracer->StartSpan("tier.lookup", plan.trace);
    lookup.SetAttribute("clusterkv.cluster", ToString(block_key.cluster));
  }
  // ---- end observability ----
  absl::StatusOr<storage::PinnedBlock> pinned = store_->Pin(block_key);
  lookup.SetAttribute("clusterkv.pinned", pinned.ok());
  if (!pinned.ok() && !absl::IsResourceExhausted(pinned.status())) lookup.SetStatus(pinned.status());
  lookup.End();
  auto held = std::make_shared<HeldBlock>();
  std::vector<uint8_t>& copy = held->copy;
  absl::Span<const uint8_t> bytes;
  if (pinned.ok()) {
    held->pin = *std::move(pinned);
    bytes = absl::MakeConstSpan(held->pin.data(), held->pin.size());
  } else if (absl::IsResourceExhausted(pinned.status())) {
    // No host room to promote into: serve a copy straight from the SSD.
    tracing::Span ssd_read;  // observability
    if (tracer != nullptr) ssd_read = tracer->StartSpan("ssd.read", plan.trace);
    absl::StatusOr<std::vector<uint8_t>> read = store_->GetBlock(block_key);
    ssd_read.SetStatus(read.status());
    ssd_read.End();
    ASSIGN_OR_RETURN(copy, std::move(read));
    bytes = copy;
  } else if (absl::IsNotFound(pinned.status())) {
    return absl::NotFoundError(absl::StrCat("sequence '", plan.key.sequence,
                                            "' has no cluster ", ToString(block_key.cluster)));
  } else {
    return pinned.status();
  }
  return DeliverBlock(plan, ref, bytes, std::move(held), start, sink);
}

absl::Status RequestHandler::DeliverBlock(const FetchPlan& plan, const v1::ClusterRef& ref,
                                          absl::Span<const uint8_t> bytes,
                                          std::shared_ptr<const void> holder, absl::Time start,
                                          const RetainingBlockSink& sink) {
  const uint64_t token_bytes =
      storage::ClusterBlockBytes(1, plan.layout.head_dim, plan.layout.dtype);
  if (bytes.size() % token_bytes != 0) {
    return absl::DataLossError(absl::StrCat("stored block ", ToString(rpc::FromProto(ref)),
                                            " has ", bytes.size(),
                                            " bytes, not a whole number of tokens"));
  }
  // ---- observability ----
  metrics::DaemonMetrics* const metrics = options_.instrumentation.metrics;
  tracing::Tracer* const tracer =
      plan.trace.sampled() ? options_.instrumentation.tracer : nullptr;
  tracing::Span transfer;
  if (tracer != nullptr) {
    transfer = tracer->StartSpan("transfer", plan.trace);
    transfer.SetAttribute("clusterkv.transport", std::string(metrics::TransportName(plan.transport)));
    transfer.SetAttribute("clusterkv.bytes", static_cast<int64_t>(bytes.size()));
  }
  absl::Status sent =
      sink(ref, static_cast<int32_t>(bytes.size() / token_bytes), bytes, std::move(holder));
  transfer.SetStatus(sent);
  transfer.End();
  if (metrics != nullptr && sent.ok()) {
    metrics->ObserveFetchBlock(plan.transport, bytes.size(), metrics->Now() - start);
  }
  return sent;
  // ---- end observability ----
}

std::vector<absl::Status> RequestHandler::FetchManyRetained(
    const FetchPlan& plan, const google::protobuf::RepeatedPtrField<v1::ClusterRef>& refs,
    const IndexedBlockSink& indexed_sink, const std::function<bool()>& stop) {
  int current = 0;
  const RetainingBlockSink sink = [&](const v1::ClusterRef&, int32_t tokens,
                                      absl::Span<const uint8_t> block,
                                      std::shared_ptr<const void> holder) {
    return indexed_sink(current, tokens, block, std::move(holder));
  };
  std::vector<absl::Status> statuses(static_cast<size_t>(refs.size()),
                                     absl::CancelledError("fetch stopped before this block"));
  if (plan.trace.sampled() && options_.instrumentation.tracer != nullptr) {
    // A traced request keeps its per-block tier.lookup spans: serve it block by block.
    for (int i = 0; i < refs.size(); ++i) {
      current = i;
      statuses[static_cast<size_t>(i)] = FetchOneRetained(plan, refs.Get(i), sink);
      if (stop()) break;
    }
    return statuses;
  }
  metrics::DaemonMetrics* const metrics = options_.instrumentation.metrics;
  const absl::Time start = metrics != nullptr ? metrics->Now() : absl::Time();
  std::vector<ClusterId> clusters;
  clusters.reserve(statuses.size());
  for (const v1::ClusterRef& ref : refs) clusters.push_back(rpc::FromProto(ref));
  // One holder for the batch: each block's sink gets an aliasing reference to it.
  std::shared_ptr<PinnedBatch> batch = PinResidentBlocks(plan, clusters);
  for (int i = 0; i < refs.size(); ++i) {
    const size_t k = static_cast<size_t>(i);
    current = i;
    if (batch->data(k) != nullptr) {
      statuses[k] = DeliverBlock(
          plan, refs.Get(i), absl::MakeConstSpan(batch->data(k), batch->bytes(k)),
          std::shared_ptr<const void>(batch, batch->data(k)), start, sink);
    } else {
      statuses[k] = FetchOneRetained(plan, refs.Get(i), sink);  // SSD, absent or being moved
    }
    if (stop()) break;
  }
  return statuses;
}

RequestHandler::ResolvedFetch RequestHandler::ResolveFetch(
    const CallContext& call, const v1::FetchClustersRequest& request) {
  ResolvedFetch out;
  absl::StatusOr<FetchPlan> plan = PrepareFetch(call, request);
  if (!plan.ok()) {
    out.status = plan.status();
    return out;
  }
  out.plan = *std::move(plan);
  out.blocks.resize(static_cast<size_t>(request.clusters_size()));
  const std::vector<absl::Status> statuses = FetchManyRetained(
      out.plan, request.clusters(),
      [&](int index, int32_t tokens, absl::Span<const uint8_t> block,
          std::shared_ptr<const void> holder) {
        ResolvedBlock& b = out.blocks[static_cast<size_t>(index)];
        b.num_tokens = tokens;
        b.bytes = block;
        b.holder = std::move(holder);
        return absl::OkStatus();
      },
      [] { return false; });
  for (size_t i = 0; i < statuses.size(); ++i) {
    out.blocks[i].status = statuses[i];
    if (!statuses[i].ok()) {
      out.blocks[i].holder.reset();
      out.blocks[i].bytes = {};
    }
  }
  return out;
}

std::optional<RequestHandler::ResolvedFetch> RequestHandler::TryResolveResident(
    const CallContext& call, const v1::FetchClustersRequest& request) {
  if (!ServesLocally(call)) return std::nullopt;
  if (call.trace.sampled() && options_.instrumentation.tracer != nullptr) return std::nullopt;
  ResolvedFetch out;
  absl::StatusOr<SequenceKey> key = Key(call, request.sequence_id());
  if (!key.ok()) {
    out.status = key.status();
    return out;
  }
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(*key);
    if (it == sessions_.end()) return std::nullopt;  // loading it reads the store
    session = it->second;
    last_access_[*key] = clock_->Now();
  }
  const KvLayout layout = session->layout;
  if (absl::Status s =
          ValidateFetchRefs(layout, request.clusters(), options_.max_fetch_clusters);
      !s.ok()) {
    out.status = s;
    return out;
  }
  std::vector<ClusterId> clusters;
  clusters.reserve(static_cast<size_t>(request.clusters_size()));
  for (const v1::ClusterRef& ref : request.clusters()) clusters.push_back(rpc::FromProto(ref));
  metrics::DaemonMetrics* const metrics = options_.instrumentation.metrics;
  const absl::Time start = metrics != nullptr ? metrics->Now() : absl::Time();
  FetchPlan plan{*std::move(key), layout, call.trace, call.transport, session->base};
  std::shared_ptr<PinnedBatch> batch = PinResidentBlocks(plan, clusters);
  const uint64_t token_bytes = storage::ClusterBlockBytes(1, layout.head_dim, layout.dtype);
  out.blocks.resize(static_cast<size_t>(request.clusters_size()));
  for (size_t k = 0; k < out.blocks.size(); ++k) {
    // One block on the SSD (or absent, or being moved): the whole fetch goes the slow way.
    if (batch->data(k) == nullptr || batch->bytes(k) % token_bytes != 0) return std::nullopt;
    ResolvedBlock& b = out.blocks[k];
    b.status = absl::OkStatus();
    b.num_tokens = static_cast<int32_t>(batch->bytes(k) / token_bytes);
    b.bytes = absl::MakeConstSpan(batch->data(k), batch->bytes(k));
    b.holder = std::shared_ptr<const void>(batch, batch->data(k));
  }
  if (metrics != nullptr) {
    const absl::Duration latency = metrics->Now() - start;
    for (const ResolvedBlock& b : out.blocks) {
      metrics->ObserveFetchBlock(call.transport, b.bytes.size(), latency);
    }
  }
  RecordFetch(plan, clusters);
  out.plan = std::move(plan);
  return out;
}

absl::Status RequestHandler::FetchClusters(const CallContext& call,
                                           const v1::FetchClustersRequest& request,
                                           const BlockSink& sink) {
  ASSIGN_OR_RETURN(FetchPlan plan, PrepareFetch(call, request));
  for (const v1::ClusterRef& ref : request.clusters()) {
    RETURN_IF_ERROR(FetchOne(plan, ref, sink));
  }
  return absl::OkStatus();
}

absl::Status RequestHandler::CheckHint(const CallContext& call,
                                      const v1::HintClustersRequest& request) const {
  RETURN_IF_ERROR(Key(call, request.sequence_id()).status());
  if (request.clusters_size() > options_.max_hint_clusters) {
    return absl::InvalidArgumentError(absl::StrCat("a hint names at most ",
                                                   options_.max_hint_clusters, " clusters, got ",
                                                   request.clusters_size()));
  }
  return absl::OkStatus();
}

absl::Status RequestHandler::PromoteHinted(const CallContext& call,
                                           const v1::HintClustersRequest& request) {
  RETURN_IF_ERROR(CheckHint(call, request));
  if (!ServesLocally(call)) return absl::OkStatus();
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  RETURN_IF_ERROR(ValidateFetchRefs(session->layout, request.clusters(),
                                    options_.max_hint_clusters));
  const FetchPlan plan{key, session->layout, {}, metrics::Transport::kGrpc, session->base};
  for (const v1::ClusterRef& ref : request.clusters()) {
    absl::StatusOr<storage::PromoteResult> promoted =
        store_->Promote(plan.BlockOf(rpc::FromProto(ref)));
    if (!promoted.ok() && !absl::IsNotFound(promoted.status())) return promoted.status();
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::server
