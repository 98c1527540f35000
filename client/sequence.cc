// Sequence: the installed face of a SequenceCore; every call forwards to it.
#include "client/sequence.h"

#include <utility>
#include <vector>

#include "client/internal/sequence_core.h"

namespace clusterkv::client {

Sequence::Sequence(std::unique_ptr<SequenceCore> core) : core_(std::move(core)) {}

Sequence::~Sequence() = default;

absl::Status Sequence::OffloadPrefill(int32_t layer, const Tensor3View& keys,
                                      const Tensor3View& values,
                                      const PrefillProgress& progress) {
  return core_->OffloadPrefill(layer, keys, values, progress);
}

void Sequence::BeginStep() { core_->BeginStep(); }

absl::Status Sequence::Attend(int32_t layer, const ConstMatrixView& queries, MatrixView out,
                              StepStats* stats) {
  return core_->Attend(layer, queries, out, stats);
}

absl::Status Sequence::AttendBatch(int32_t layer, absl::Span<BatchAttendItem> items) {
  std::vector<SequenceCore*> cores;
  cores.reserve(items.size());
  for (const BatchAttendItem& item : items) {
    cores.push_back(item.sequence != nullptr ? item.sequence->core_.get() : nullptr);
  }
  return SequenceCore::AttendBatch(layer, cores, items);
}

absl::Status Sequence::Prefetch(int32_t layer, const ConstMatrixView& predicted_queries) {
  return core_->Prefetch(layer, predicted_queries);
}

absl::Status Sequence::WaitForPrefetch(int32_t layer) { return core_->WaitForPrefetch(layer); }

absl::Status Sequence::AppendToken(int32_t layer, const ConstMatrixView& keys,
                                   const ConstMatrixView& values) {
  return core_->AppendToken(layer, keys, values);
}

absl::Status Sequence::Flush(int32_t layer) { return core_->Flush(layer); }

absl::Status Sequence::Reattach() { return core_->Reattach(); }

absl::Status Sequence::Checkpoint(absl::string_view engine_state) {
  return core_->Checkpoint(engine_state);
}

absl::Status Sequence::Publish(absl::Span<const int32_t> tokens, absl::string_view model,
                               absl::string_view engine_state) {
  return core_->Publish(tokens, model, engine_state);
}

const std::string& Sequence::engine_state() const { return core_->engine_state(); }

absl::Status Sequence::Grant(absl::string_view tenant) { return core_->Grant(tenant, false); }

absl::Status Sequence::Revoke(absl::string_view tenant) { return core_->Grant(tenant, true); }

absl::Status Sequence::ReadTokens(int32_t layer, int64_t begin, int64_t end, float* keys,
                                  float* values) {
  return core_->ReadTokens(layer, begin, end, keys, values);
}

const std::string& Sequence::base_document() const { return core_->base_document(); }

int64_t Sequence::base_tokens() const { return core_->base_tokens(); }

absl::Status Sequence::Close(bool drop) { return core_->Close(drop); }

const std::string& Sequence::id() const { return core_->id(); }

const KvLayout& Sequence::layout() const { return core_->layout(); }

const ClusterKvConfig& Sequence::config() const { return core_->config(); }

int64_t Sequence::num_tokens() const { return core_->num_tokens(); }

int64_t Sequence::num_tokens(int32_t layer) const { return core_->num_tokens(layer); }

int64_t Sequence::step() const { return core_->step(); }

int32_t Sequence::num_clusters(int32_t layer, int32_t kv_head) const {
  const gpu::ClusterIndex* index = core_->index(layer, kv_head);
  return index == nullptr ? 0 : index->num_clusters();
}

CacheStats Sequence::cache_stats() const {
  const gpu::CacheStats stats = core_->cache_stats();
  CacheStats out;
  out.hit_clusters = stats.hit_clusters;
  out.miss_clusters = stats.miss_clusters;
  out.hit_tokens = stats.hit_tokens;
  out.miss_tokens = stats.miss_tokens;
  out.evictions = stats.evictions;
  return out;
}

int64_t Sequence::bytes_fetched() const { return core_->bytes_fetched(); }

int64_t Sequence::bytes_offloaded() const { return core_->bytes_offloaded(); }

int64_t Sequence::blocks_fetched_direct() const { return core_->blocks_fetched_direct(); }

int64_t Sequence::blocks_fetched_grpc() const { return core_->blocks_fetched_grpc(); }

bool Sequence::has_pending_offload(int32_t layer) const {
  return core_->has_pending_offload(layer);
}

}  // namespace clusterkv::client
