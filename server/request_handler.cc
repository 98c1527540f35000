#include "server/request_handler.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "gpu/selection.h"
#include "proto/rpc_support.h"
#include "server/metrics/daemon_metrics.h"  // observability
#include "server/internal/document_directory.h"
#include "server/request_validation.h"
#include "server/tracing/tracer.h"  // observability
#include "storage/cluster_block.h"

namespace clusterkv::server {
namespace {

storage::HeadIndexRecord FromProto(const v1::HeadIndex& index, int32_t head_dim) {
  storage::HeadIndexRecord record;
  record.head_dim = head_dim;
  record.centroids.assign(index.centroids().begin(), index.centroids().end());
  record.sizes.assign(index.sizes().begin(), index.sizes().end());
  record.key_norms.assign(index.key_norms().begin(), index.key_norms().end());
  record.key_spreads.assign(index.key_spreads().begin(), index.key_spreads().end());
  return record;
}

void ToProto(const HeadId& head, const storage::HeadIndexRecord& record, v1::HeadIndex* out) {
  out->set_layer(head.layer);
  out->set_kv_head(head.kv_head);
  out->mutable_centroids()->Add(record.centroids.begin(), record.centroids.end());
  out->mutable_sizes()->Add(record.sizes.begin(), record.sizes.end());
  out->mutable_key_norms()->Add(record.key_norms.begin(), record.key_norms.end());
  out->mutable_key_spreads()->Add(record.key_spreads.begin(), record.key_spreads.end());
}

}  // namespace

RequestHandler::RequestHandler(storage::TieredStore* store, const HandlerOptions& options)
    : store_(store),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : std::make_shared<SystemClock>()),
      documents_(std::make_unique<DocumentDirectory>()) {}

RequestHandler::~RequestHandler() = default;

absl::StatusOr<SequenceKey> RequestHandler::Key(const CallContext& call,
                                                const std::string& sequence_id) const {
  SequenceKey key{call.tenant, sequence_id};
  RETURN_IF_ERROR(key.Validate());
  return key;
}

absl::StatusOr<std::shared_ptr<RequestHandler::Session>> RequestHandler::FindSession(
    const SequenceKey& key) {
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(key);
    if (it != sessions_.end()) {
      last_access_[key] = clock_->Now();
      return it->second;
    }
  }
  absl::StatusOr<storage::SequenceMeta> meta = store_->GetSequence(key);
  if (absl::IsNotFound(meta.status())) {
    return absl::NotFoundError(absl::StrCat("no sequence '", key.sequence, "'"));
  }
  RETURN_IF_ERROR(meta.status());
  auto session = std::make_shared<Session>();
  session->layout = meta->layout;
  session->num_tokens = meta->num_tokens;
  absl::StatusOr<v1::SequenceState> state = LoadState(key);
  if (state.ok()) {
    session->sealed = state->sealed();
    if (state->has_base()) {
      auto base = std::make_shared<BaseAlias>();
      base->document = BaseKey(key, state->base());
      base->segments = state->base().segments();
      base->tokens = state->base().tokens();
      base->clusters.assign(state->base().clusters().begin(), state->base().clusters().end());
      session->base = std::move(base);
    }
  } else if (!absl::IsNotFound(state.status())) {
    return state.status();
  }
  absl::MutexLock lock(&mu_);
  last_access_[key] = clock_->Now();
  auto [it, inserted] = sessions_.emplace(key, session);
  return it->second;  // a concurrent loader may have won; both loaded the same record
}

absl::StatusOr<std::shared_ptr<const storage::HeadIndexRecord>> RequestHandler::FindIndex(
    const SequenceKey& key, Session& session, const HeadId& head) {
  {
    absl::MutexLock lock(&mu_);
    auto it = session.indexes.find(head);
    if (it != session.indexes.end()) return it->second;
  }
  absl::StatusOr<storage::HeadIndexRecord> record = store_->GetIndex(key, head);
  if (absl::IsNotFound(record.status())) {
    return absl::NotFoundError(absl::StrCat("sequence '", key.sequence, "' has no index for layer ",
                                            head.layer, " kv_head ", head.kv_head));
  }
  RETURN_IF_ERROR(record.status());
  auto shared = std::make_shared<const storage::HeadIndexRecord>(*std::move(record));
  absl::MutexLock lock(&mu_);
  return session.indexes.emplace(head, shared).first->second;
}

absl::StatusOr<v1::OpenSequenceResponse> RequestHandler::OpenSequence(
    const CallContext& call, const v1::OpenSequenceRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  v1::OpenSequenceResponse response;
  absl::StatusOr<std::shared_ptr<Session>> existing = FindSession(key);
  if (existing.ok()) {
    if (request.has_layout()) {
      ASSIGN_OR_RETURN(KvLayout asked, rpc::FromProto(request.layout()));
      if (asked != (*existing)->layout) {
        return absl::FailedPreconditionError(
            absl::StrCat("sequence '", key.sequence, "' exists with layout ",
                         (*existing)->layout.DebugString(), ", not ", asked.DebugString()));
      }
    }
    *response.mutable_layout() = rpc::ToProto((*existing)->layout);
    absl::MutexLock lock(&mu_);
    response.set_num_tokens((*existing)->num_tokens);
    return response;
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();
  if (request.must_exist()) return existing.status();
  if (!request.has_layout()) {
    return absl::InvalidArgumentError("creating a sequence needs its layout");
  }
  ASSIGN_OR_RETURN(KvLayout layout, rpc::FromProto(request.layout()));
  // Sequence quota: creations in flight count, so concurrent opens cannot overshoot.
  {
    const uint64_t existing_count = store_->Usage(key.tenant).sequences;
    absl::MutexLock lock(&mu_);
    uint64_t& creating = creating_[key.tenant];
    RETURN_IF_ERROR(
        auth::CheckSequenceQuota(options_.quotas, key.tenant, existing_count + creating));
    ++creating;
  }
  const absl::Status stored = request.base_document().empty()
                                  ? store_->PutSequence(key, storage::SequenceMeta{layout, 0})
                                  : CreateFork(key, layout, request);
  {
    absl::MutexLock lock(&mu_);
    if (--creating_[key.tenant] == 0) creating_.erase(key.tenant);
  }
  if (!stored.ok()) {
    // A fork that failed half way leaves nothing behind.
    if (!request.base_document().empty()) store_->DropSequence(key).IgnoreError();
    return stored;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  *response.mutable_layout() = request.layout();
  response.set_num_tokens(session->num_tokens);
  response.set_created(true);
  return response;
}

absl::StatusOr<v1::CloseSequenceResponse> RequestHandler::CloseSequence(
    const CallContext& call, const v1::CloseSequenceRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  if (request.drop()) {
    if (session->sealed) {
      RETURN_IF_ERROR(EnsureDirectory());
      if (const int64_t forks = documents_->Forks(key); forks > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "document '", key.sequence, "' is shared by ", forks, " forks; drop them first"));
      }
    }
    RETURN_IF_ERROR(store_->DropSequence(key));
    if (session->base != nullptr) documents_->RemoveFork(key);
    if (session->sealed) documents_->RemoveDocument(key);
  }
  ForgetSequenceStats(key);  // its per-sequence gauges leave /metrics with it
  absl::MutexLock lock(&mu_);
  sessions_.erase(key);
  if (request.drop()) last_access_.erase(key);
  return v1::CloseSequenceResponse();
}

bool RequestHandler::HasOpenSession(const SequenceKey& key) const {
  absl::MutexLock lock(&mu_);
  return sessions_.contains(key);
}

void RequestHandler::ForgetSequenceStats(const SequenceKey& key) {
  if (metrics::DaemonMetrics* m = options_.instrumentation.metrics; m != nullptr) {
    m->DropSequence(key.tenant, key.sequence);
  }
}

absl::StatusOr<int64_t> RequestHandler::ExpireIdle(absl::Duration ttl) {
  ASSIGN_OR_RETURN(std::vector<SequenceKey> keys, store_->ListSequences(""));
  const absl::Time now = clock_->Now();
  std::vector<SequenceKey> expired;
  // A document that forks still share never expires before them.
  absl::flat_hash_set<SequenceKey> shared;
  RETURN_IF_ERROR(EnsureDirectory());
  for (const SequenceKey& key : keys) {
    if (documents_->Forks(key) > 0) shared.insert(key);
  }
  {
    absl::MutexLock lock(&mu_);
    for (SequenceKey& key : keys) {
      auto [it, inserted] = last_access_.try_emplace(key, now);
      if (inserted || now - it->second < ttl || shared.contains(key)) continue;
      // Forget it before dropping, so a call racing the drop reloads (and misses) the sequence.
      last_access_.erase(it);
      sessions_.erase(key);
      expired.push_back(std::move(key));
    }
  }
  int64_t dropped = 0;
  for (const SequenceKey& key : expired) {
    ForgetSequenceStats(key);
    const absl::Status s = store_->DropSequence(key);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    documents_->RemoveFork(key);
    documents_->RemoveDocument(key);
    ++dropped;
    absl::MutexLock lock(&mu_);
    ++expired_;
  }
  return dropped;
}

uint64_t RequestHandler::expired_sequences() const {
  absl::MutexLock lock(&mu_);
  return expired_;
}

absl::StatusOr<v1::ListSequencesResponse> RequestHandler::ListSequences(
    const CallContext& call, const v1::ListSequencesRequest& request) {
  if (call.tenant.empty()) return absl::InvalidArgumentError("tenant is empty");
  ASSIGN_OR_RETURN(const int32_t cap, ListPageSize(request, options_.max_list_sequences));
  ASSIGN_OR_RETURN(std::vector<SequenceKey> keys, store_->ListSequences(call.tenant));
  std::sort(keys.begin(), keys.end(), [](const SequenceKey& a, const SequenceKey& b) {
    return a.sequence < b.sequence;
  });
  auto it = std::upper_bound(keys.begin(), keys.end(), request.start_after(),
                             [](const std::string& after, const SequenceKey& key) {
                               return after < key.sequence;
                             });
  v1::ListSequencesResponse response;
  for (; it != keys.end(); ++it) {
    if (response.sequences_size() == cap) {
      response.set_next_start_after(response.sequences(cap - 1).sequence_id());
      break;
    }
    absl::StatusOr<storage::SequenceMeta> meta = store_->GetSequence(*it);
    if (absl::IsNotFound(meta.status())) continue;  // dropped meanwhile
    RETURN_IF_ERROR(meta.status());
    v1::SequenceInfo* info = response.add_sequences();
    info->set_sequence_id(it->sequence);
    *info->mutable_layout() = rpc::ToProto(meta->layout);
    info->set_num_tokens(meta->num_tokens);
  }
  return response;
}

absl::Status RequestHandler::StoreBlock(const SequenceKey& key, const KvLayout& layout,
                                        const v1::ClusterBlock& block, bool write_through) {
  RETURN_IF_ERROR(ValidateBlock(layout, block, options_.max_block_bytes));
  const storage::BlockKey block_key{key, rpc::FromProto(block.id())};
  const auto* data = reinterpret_cast<const uint8_t*>(block.data().data());
  // ---- observability: write-through latency, bytes received ----
  metrics::DaemonMetrics* const metrics = options_.instrumentation.metrics;
  const absl::Time start = metrics != nullptr ? metrics->Now() : absl::Time();
  // A request may ask for durability; it never turns off the daemon's --write_through.
  const std::optional<bool> durable =
      write_through ? std::optional<bool>(true) : std::optional<bool>();
  absl::Status stored =
      store_->PutBlock(block_key, absl::MakeConstSpan(data, block.data().size()), durable);
  if (metrics != nullptr && stored.ok()) {
    if (write_through) metrics->ObserveWriteThroughPut(metrics->Now() - start);
    metrics->AddReceivedBytes(metrics::Transport::kGrpc, block.data().size());
  }
  // ---- end observability ----
  // Blocks are immutable: a retried stream re-sends blocks already stored, which is success.
  if (absl::IsAlreadyExists(stored)) return absl::OkStatus();
  return stored;
}

absl::Status RequestHandler::UpdateTokens(const SequenceKey& key, Session& session,
                                          int64_t num_tokens, bool grow_only) {
  if (num_tokens <= 0) return absl::OkStatus();
  KvLayout layout;
  {
    absl::MutexLock lock(&mu_);
    if (num_tokens == session.num_tokens) return absl::OkStatus();
    if (grow_only && num_tokens < session.num_tokens) return absl::OkStatus();
    layout = session.layout;
  }
  RETURN_IF_ERROR(store_->PutSequence(key, storage::SequenceMeta{layout, num_tokens}));
  absl::MutexLock lock(&mu_);
  session.num_tokens = num_tokens;
  return absl::OkStatus();
}

absl::Status RequestHandler::PutClusters(const CallContext& call,
                                         const v1::PutClustersRequest& request,
                                         v1::PutClustersResponse* response) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  if (request.num_tokens() < 0) return absl::InvalidArgumentError("num_tokens is negative");
  RETURN_IF_ERROR(CheckWritable(key, *session));
  // Validate the whole message before storing any of it.
  for (const v1::ClusterBlock& block : request.blocks()) {
    RETURN_IF_ERROR(ValidateBlock(layout, block, options_.max_block_bytes));
  }
  RETURN_IF_ERROR(ValidateIndexCount(layout, request.indexes_size(), "message"));
  for (const v1::HeadIndex& index : request.indexes()) {
    RETURN_IF_ERROR(ValidateHeadIndex(layout, index));
  }
  for (const v1::ClusterBlock& block : request.blocks()) {
    RETURN_IF_ERROR(StoreBlock(key, layout, block, request.write_through()));
    response->set_blocks_stored(response->blocks_stored() + 1);
    response->set_bytes_stored(response->bytes_stored() + block.data().size());
  }
  // Index replacements are ordered with the sequence's appends.
  absl::MutexLock write(&session->write_mu);
  for (const v1::HeadIndex& index : request.indexes()) {
    const HeadId head{index.layer(), index.kv_head()};
    auto record = std::make_shared<const storage::HeadIndexRecord>(FromProto(index, layout.head_dim));
    RETURN_IF_ERROR(store_->PutIndex(key, head, *record));
    absl::MutexLock lock(&mu_);
    session->indexes[head] = std::move(record);
  }
  return UpdateTokens(key, *session, request.num_tokens(), /*grow_only=*/false);
}

absl::StatusOr<v1::AppendClustersResponse> RequestHandler::AppendClusters(
    const CallContext& call, const v1::AppendClustersRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  if (request.num_tokens() < 0) return absl::InvalidArgumentError("num_tokens is negative");
  RETURN_IF_ERROR(CheckWritable(key, *session));
  RETURN_IF_ERROR(ValidateIndexCount(layout, request.appended_size(), "append"));
  if (request.blocks_size() > options_.max_fetch_clusters) {
    return absl::InvalidArgumentError(absl::StrCat("append carries ", request.blocks_size(),
                                                   " blocks; the limit is ",
                                                   options_.max_fetch_clusters));
  }
  // Everything that needs no index is checked before the sequence's write lock is taken.
  for (const v1::HeadIndex& appended : request.appended()) {
    RETURN_IF_ERROR(ValidateHeadIndex(layout, appended));
    if (appended.has_first_cluster() &&
        (appended.first_cluster() < 0 || appended.first_cluster() > (1 << 30))) {
      return absl::InvalidArgumentError(
          absl::StrCat("first_cluster ", appended.first_cluster(), " is outside [0, 2^30]"));
    }
  }
  for (const v1::ClusterBlock& block : request.blocks()) {
    RETURN_IF_ERROR(ValidateBlock(layout, block, options_.max_block_bytes));
  }
  // One append (or put, or token update) of a sequence at a time: the index each head ends
  // with is the one read here plus exactly this request's clusters.
  absl::MutexLock write(&session->write_mu);
  struct HeadAppend {
    int32_t first = 0;  // id of the first appended cluster
    int32_t end = 0;
    // The merged index to store; null when the head already holds these clusters (a retry).
    std::shared_ptr<const storage::HeadIndexRecord> merged;
  };
  absl::flat_hash_map<HeadId, HeadAppend> heads;
  for (const v1::HeadIndex& appended : request.appended()) {
    const HeadId head{appended.layer(), appended.kv_head()};
    if (heads.contains(head)) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", head.layer, " kv_head ",
                                                     head.kv_head, " appended twice"));
    }
    absl::StatusOr<std::shared_ptr<const storage::HeadIndexRecord>> current =
        FindIndex(key, *session, head);
    if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
    storage::HeadIndexRecord empty;
    empty.head_dim = layout.head_dim;
    const storage::HeadIndexRecord& have = current.ok() ? **current : empty;
    const int32_t count = have.num_clusters();
    const int32_t added = appended.sizes_size();
    const int32_t first = appended.has_first_cluster() ? appended.first_cluster() : count;
    HeadAppend& entry = heads[head];
    entry.first = first;
    entry.end = first + added;
    if (first == count) {
      storage::HeadIndexRecord merged = have;
      merged.head_dim = layout.head_dim;
      storage::AppendHeadIndex(FromProto(appended, layout.head_dim), &merged);
      entry.merged = std::make_shared<const storage::HeadIndexRecord>(std::move(merged));
      continue;
    }
    const size_t d = static_cast<size_t>(layout.head_dim);
    const bool applied =
        first < count && added <= count - first &&
        std::equal(appended.sizes().begin(), appended.sizes().end(),
                   have.sizes.begin() + first) &&
        std::equal(appended.centroids().begin(), appended.centroids().end(),
                   have.centroids.begin() + static_cast<ptrdiff_t>(first * d));
    if (!applied) {
      return absl::FailedPreconditionError(absl::StrCat(
          "layer ", head.layer, " kv_head ", head.kv_head, " holds ", count,
          " clusters; the append starts at ", first,
          first < count ? " with clusters that differ from the stored ones" : ""));
    }
  }
  for (const v1::ClusterBlock& block : request.blocks()) {
    auto it = heads.find(HeadId{block.id().layer(), block.id().kv_head()});
    if (it == heads.end() || block.id().cluster() < it->second.first ||
        block.id().cluster() >= it->second.end) {
      return absl::InvalidArgumentError(absl::StrCat(
          "appended block ", ToString(rpc::FromProto(block.id())),
          " is not one of the clusters this request appends to its head"));
    }
  }
  // Blocks first (a retry re-sends stored blocks, which is success), then the indexes: an
  // index never names a block that is not stored.
  v1::AppendClustersResponse response;
  for (const v1::ClusterBlock& block : request.blocks()) {
    RETURN_IF_ERROR(StoreBlock(key, layout, block, request.write_through()));
    response.set_blocks_stored(response.blocks_stored() + 1);
  }
  for (const v1::HeadIndex& appended : request.appended()) {
    const HeadId head{appended.layer(), appended.kv_head()};
    std::shared_ptr<const storage::HeadIndexRecord>& merged = heads[head].merged;
    if (merged == nullptr) continue;
    RETURN_IF_ERROR(store_->PutIndex(key, head, *merged));
    absl::MutexLock lock(&mu_);
    session->indexes[head] = std::move(merged);
  }
  // A retry of an older append never moves the token count back.
  RETURN_IF_ERROR(UpdateTokens(key, *session, request.num_tokens(), /*grow_only=*/true));
  return response;
}

absl::StatusOr<v1::GetIndexResponse> RequestHandler::GetIndex(const CallContext& call,
                                                              const v1::GetIndexRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  // Each layer at most once: a repeated layer would repeat its indexes in the answer.
  if (request.layers_size() > layout.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("GetIndex names ", request.layers_size(),
                                                   " layers; the sequence has ",
                                                   layout.num_layers));
  }
  std::vector<int32_t> layers;
  std::vector<bool> named(static_cast<size_t>(layout.num_layers), false);
  for (int32_t layer : request.layers()) {
    if (layer < 0 || layer >= layout.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer, " is outside [0, ", layout.num_layers, ")"));
    }
    if (named[static_cast<size_t>(layer)]) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " is named twice"));
    }
    named[static_cast<size_t>(layer)] = true;
    layers.push_back(layer);
  }
  if (layers.empty()) {
    for (int32_t l = 0; l < layout.num_layers; ++l) layers.push_back(l);
  }
  // Every index the answer holds, and its size, before any of it is built.
  std::vector<std::pair<HeadId, std::shared_ptr<const storage::HeadIndexRecord>>> found;
  uint64_t bytes = 0;
  for (int32_t layer : layers) {
    for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
      absl::StatusOr<std::shared_ptr<const storage::HeadIndexRecord>> index =
          FindIndex(key, *session, HeadId{layer, h});
      if (absl::IsNotFound(index.status())) continue;  // e.g. a dense layer: no index
      RETURN_IF_ERROR(index.status());
      bytes += ((*index)->centroids.size() + (*index)->sizes.size()) * sizeof(float) + 32;
      if (bytes > options_.max_response_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the indexes of ", layers.size(), " layer(s) exceed the daemon's ",
            options_.max_response_bytes, "-byte response limit: ask for fewer layers per call"));
      }
      found.emplace_back(HeadId{layer, h}, *std::move(index));
    }
  }
  v1::GetIndexResponse response;
  *response.mutable_layout() = rpc::ToProto(layout);
  {
    absl::MutexLock lock(&mu_);
    response.set_num_tokens(session->num_tokens);
  }
  for (const auto& [head, index] : found) ToProto(head, *index, response.add_indexes());
  return response;
}

absl::StatusOr<v1::SelectResponse> RequestHandler::Select(const CallContext& call,
                                                          const v1::SelectRequest& request) {
  ASSIGN_OR_RETURN(SequenceKey key, Key(call, request.sequence_id()));
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(key));
  const KvLayout layout = session->layout;
  RETURN_IF_ERROR(ValidateSelect(layout, request));
  const int32_t group = layout.GroupSize();
  const int32_t d = layout.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  v1::SelectResponse response;
  for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
    ASSIGN_OR_RETURN(std::shared_ptr<const storage::HeadIndexRecord> index,
                     FindIndex(key, *session, HeadId{request.layer(), h}));
    if (index->num_clusters() == 0) continue;
    const float* queries = request.queries().data() + static_cast<size_t>(h) * group * d;
    std::vector<float> scores(static_cast<size_t>(index->num_clusters()));
    RETURN_IF_ERROR(gpu::ScoreCentroids(
        ConstMatrixView(queries, group, d),
        ConstMatrixView(index->centroids.data(), index->num_clusters(), d), scale,
        absl::MakeSpan(scores), options_.exec));
    int64_t total = 0;
    for (int32_t s : index->sizes) total += s;
    if (total == 0) continue;
    ASSIGN_OR_RETURN(gpu::ClusterSelection selection,
                     gpu::SelectClusters(scores, index->sizes,
                                         std::min<int64_t>(request.budget(), total)));
    v1::HeadSelection* out = response.add_heads();
    out->set_kv_head(h);
    out->mutable_clusters()->Add(selection.clusters.begin(), selection.clusters.end());
    out->mutable_tokens()->Add(selection.tokens.begin(), selection.tokens.end());
  }
  return response;
}

absl::StatusOr<v1::StatsResponse> RequestHandler::Stats(const CallContext& call) {
  const storage::StoreStats s = store_->Stats();
  const storage::TenantUsage usage = store_->Usage(call.tenant);
  v1::StatsResponse response;
  auto fill = [](const storage::TierStats& from, v1::TierStats* to) {
    to->set_bytes(from.bytes);
    to->set_blocks(from.blocks);
    to->set_hits(from.hits);
    to->set_misses(from.misses);
  };
  fill(s.host, response.mutable_host());
  fill(s.ssd, response.mutable_ssd());
  response.set_host_capacity_bytes(s.host_capacity_bytes);
  response.set_evictions(s.evictions);
  response.set_promotions(s.promotions);
  response.set_write_through_puts(s.write_through_puts);
  response.set_spilled_puts(s.spilled_puts);
  response.set_checksum_failures(s.ssd_io.checksum_failures);
  response.set_sequences(usage.sequences);
  response.set_tenant_host_bytes(usage.host_bytes);
  response.set_tenant_ssd_bytes(usage.ssd_bytes);
  response.set_slab_fragmentation(s.slab.Fragmentation());
  response.set_hint_promotions(s.hint_promotions);
  response.set_hint_promotions_recalled(s.hint_promotions_recalled);
  response.set_hint_promotions_wasted(s.hint_promotions_wasted);
  response.set_hint_already_resident(s.hint_already_resident);
  response.set_hint_no_room(s.hint_no_room);
  response.set_hint_throttled(s.hint_throttled);
  return response;
}

}  // namespace clusterkv::server
