#include "storage/tiered_store.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/status_macros.h"
#include "storage/internal/tiered_store_state.h"

namespace clusterkv::storage {
namespace {

using internal::BlockState;
using internal::NoBlockError;

absl::Status CheckOptions(const TieredStoreOptions& o) {
  if (o.path.empty()) return absl::InvalidArgumentError("store path is empty");
  if (o.host_capacity_bytes < SlabAllocator::kSlabBytes) {
    return absl::InvalidArgumentError(absl::StrCat("host capacity must be at least ",
                                                   SlabAllocator::kSlabBytes, " bytes, got ",
                                                   o.host_capacity_bytes));
  }
  if (!(o.low_watermark > 0.0 && o.low_watermark <= o.high_watermark &&
        o.high_watermark <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("need 0 < low_watermark (", o.low_watermark,
                                                   ") <= high_watermark (", o.high_watermark,
                                                   ") <= 1"));
  }
  const ClusterHeatOptions& h = o.heat;
  if (!(h.half_life_fetches > 0.0) || !(h.put_score >= 0.0) || h.max_clusters < 1 || h.map_fetches_per_bucket < 1 ||
      h.map_buckets < 1 || h.map_sequences < 1 || h.map_bucket_clusters < 1) {
    return absl::InvalidArgumentError(
        "heat options: half_life_fetches > 0 and every bound >= 1 needed");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(absl::string_view name) {
  if (name == "lru") return EvictionPolicy::kLru;
  if (name == "heat") return EvictionPolicy::kHeat;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown eviction policy '", name, "' (lru, heat)"));
}

const char* EvictionPolicyName(EvictionPolicy policy) {
  return policy == EvictionPolicy::kHeat ? "heat" : "lru";
}

// ---- Open / Close ----------------------------------------------------------------------------

TieredStore::TieredStore(std::unique_ptr<HostArena> arena, std::unique_ptr<SsdTier> ssd,
                         const TieredStoreOptions& options)
    : arena_(std::move(arena)),
      ssd_(std::move(ssd)),
      heat_(std::make_unique<ClusterHeat>(options.heat)),
      state_(std::make_unique<State>(options)) {}

absl::StatusOr<std::unique_ptr<TieredStore>> TieredStore::Open(const TieredStoreOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  SsdTierOptions ssd_options;
  ssd_options.path = options.path;
  ssd_options.file_system = options.file_system;
  ssd_options.min_blob_bytes = options.min_blob_bytes;
  ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> ssd, SsdTier::Open(ssd_options));
  HostArenaOptions arena_options;
  arena_options.capacity_bytes = options.host_capacity_bytes;
  arena_options.huge_pages = options.huge_pages;
  arena_options.prefault = options.prefault;
  arena_options.registrar = options.registrar;
  ASSIGN_OR_RETURN(std::unique_ptr<HostArena> arena, HostArena::Create(arena_options));
  std::unique_ptr<TieredStore> store(new TieredStore(std::move(arena), std::move(ssd), options));

  // Rebuild the tables from the durable records: the sequences from their metadata, every
  // block (and its size) from the block directory. No block is read.
  ASSIGN_OR_RETURN(std::vector<SequenceKey> sequences, store->ssd_->ListSequences());
  State& s = *store->state_;
  {
    absl::MutexLock lock(&s.mu);
    for (const SequenceKey& seq : sequences) {
      s.sequences.insert(seq);
      ++s.tenants[seq.tenant].sequences;
    }
  }
  RETURN_IF_ERROR(store->ssd_->ForEachBlock([&](const BlockKey& key, uint64_t size) {
    absl::MutexLock lock(&s.mu);
    BlockState& st = s.blocks[key];
    st.size = size;
    st.on_ssd = true;
    s.AddSsd(key.sequence.tenant, static_cast<int64_t>(size));
    ++s.tenants[key.sequence.tenant].blocks;
    s.by_sequence[key.sequence].insert(key.cluster);
    return absl::OkStatus();
  }));
  {
    absl::MutexLock lock(&s.mu);
    s.stats.host_capacity_bytes = options.host_capacity_bytes;
  }
  if (options.background_eviction) {
    TieredStore* raw = store.get();
    s.evictor = std::thread([raw] { raw->EvictorLoop(); });
  }
  return store;
}

void TieredStore::EvictorLoop() {
  State& s = *state_;
  uint64_t failed_generation = ~uint64_t{0};
  while (true) {
    {
      absl::MutexLock lock(&s.mu);
      // Sleep until usage passes the high watermark; after a failed pass (disk full, every
      // block pinned) also until something has changed, rather than spin on the same error.
      auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return s.stopping || (s.AboveHigh() && s.generation != failed_generation);
      };
      s.mu.Await(absl::Condition(&ready));
      if (s.stopping) return;
    }
    if (!EvictToLowWatermark().ok()) {
      absl::MutexLock lock(&s.mu);
      failed_generation = s.generation;
    }
  }
}

TieredStore::~TieredStore() {
  absl::Status s = Close();
  (void)s;  // a destructor has no caller to report to; Close() callers see the error
}

absl::Status TieredStore::Close() {
  State& s = *state_;
  {
    absl::MutexLock lock(&s.mu);
    if (s.closed) return absl::OkStatus();
    s.stopping = true;
  }
  if (s.evictor.joinable()) s.evictor.join();
  // Every block settles (no fill, promotion or eviction in flight) before the final flush.
  std::vector<std::pair<BlockKey, SlabAllocation>> dirty;
  {
    absl::MutexLock lock(&s.mu);
    auto settled = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      for (const auto& [key, st] : s.blocks) {
        if (st.busy) return false;
      }
      return true;
    };
    s.mu.Await(absl::Condition(&settled));
    s.closed = true;
    for (const auto& [key, st] : s.blocks) {
      if (st.dirty && st.host) dirty.emplace_back(key, *st.host);
    }
  }
  absl::Status first_error;
  for (const auto& [key, alloc] : dirty) {
    absl::Status w = ssd_->PutBlock(
        key, absl::MakeConstSpan(arena_->base() + alloc.offset, alloc.requested), /*sync=*/false);
    if (!w.ok() && first_error.ok()) {
      first_error = absl::Status(w.code(), absl::StrCat("flushing ", ToString(key.cluster), " of ",
                                                        key.sequence.sequence, ": ", w.message()));
    }
  }
  absl::Status f = ssd_->Flush();
  if (first_error.ok()) first_error = f;
  return first_error;
}

// ---- Sequences and indexes -------------------------------------------------------------------

#define CLUSTERKV_RETURN_IF_CLOSED(s)                                      \
  do {                                                                     \
    absl::MutexLock closed_lock(&(s).mu);                                  \
    if ((s).closed) return absl::FailedPreconditionError("store is closed"); \
  } while (0)

absl::Status TieredStore::PutSequence(const SequenceKey& sequence, const SequenceMeta& meta) {
  RETURN_IF_ERROR(sequence.Validate());
  RETURN_IF_ERROR(meta.layout.Validate());
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  RETURN_IF_ERROR(ssd_->PutMetadata(sequence, EncodeSequenceMeta(meta), /*sync=*/true));
  absl::MutexLock lock(&state_->mu);
  if (state_->sequences.insert(sequence).second) ++state_->tenants[sequence.tenant].sequences;
  return absl::OkStatus();
}

absl::StatusOr<SequenceMeta> TieredStore::GetSequence(const SequenceKey& sequence) {
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  ASSIGN_OR_RETURN(std::string bytes, ssd_->GetMetadata(sequence));
  return DecodeSequenceMeta(bytes);
}

absl::StatusOr<std::vector<SequenceKey>> TieredStore::ListSequences(const std::string& tenant) {
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  ASSIGN_OR_RETURN(std::vector<SequenceKey> all, ssd_->ListSequences());
  if (tenant.empty()) return all;
  std::vector<SequenceKey> mine;
  for (SequenceKey& k : all) {
    if (k.tenant == tenant) mine.push_back(std::move(k));
  }
  return mine;
}

absl::Status TieredStore::PutIndex(const SequenceKey& sequence, const HeadId& head,
                                   const HeadIndexRecord& index) {
  RETURN_IF_ERROR(sequence.Validate());
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  ASSIGN_OR_RETURN(std::string bytes, EncodeHeadIndex(index));
  return ssd_->PutIndexRecord(sequence, head, bytes, /*sync=*/true);
}

absl::StatusOr<HeadIndexRecord> TieredStore::GetIndex(const SequenceKey& sequence,
                                                      const HeadId& head) {
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  ASSIGN_OR_RETURN(std::string bytes, ssd_->GetIndexRecord(sequence, head));
  return DecodeHeadIndex(bytes);
}

absl::Status TieredStore::PutStateRecord(const SequenceKey& sequence, absl::string_view record) {
  RETURN_IF_ERROR(sequence.Validate());
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  return ssd_->PutStateRecord(sequence, record, /*sync=*/true);
}

absl::StatusOr<std::string> TieredStore::GetStateRecord(const SequenceKey& sequence) {
  CLUSTERKV_RETURN_IF_CLOSED(*state_);
  return ssd_->GetStateRecord(sequence);
}

std::vector<ClusterId> TieredStore::ListBlocks(const SequenceKey& sequence) const {
  std::vector<ClusterId> out;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->by_sequence.find(sequence);
    if (it == state_->by_sequence.end()) return out;
    out.assign(it->second.begin(), it->second.end());
  }
  std::sort(out.begin(), out.end(), [](const ClusterId& a, const ClusterId& b) {
    return std::tie(a.head.layer, a.head.kv_head, a.cluster) <
           std::tie(b.head.layer, b.head.kv_head, b.cluster);
  });
  return out;
}

absl::Status TieredStore::DropSequence(const SequenceKey& sequence) {
  State& s = *state_;
  {
    absl::MutexLock lock(&s.mu);
    if (s.closed) return absl::FailedPreconditionError("store is closed");
    // Wait until no block of the sequence is in flight or pinned (pins are short-lived reads).
    auto idle = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = s.by_sequence.find(sequence);
      if (it == s.by_sequence.end()) return true;
      for (const ClusterId& c : it->second) {
        const BlockState& st = s.blocks.at(BlockKey{sequence, c});
        if (st.busy || st.pins > 0) return false;
      }
      return true;
    };
    s.mu.Await(absl::Condition(&idle));
    if (auto it = s.by_sequence.find(sequence); it != s.by_sequence.end()) {
      for (const ClusterId& c : it->second) {
        BlockKey key{sequence, c};
        s.Forget(key, s.blocks.at(key));
        s.blocks.erase(key);
      }
      s.by_sequence.erase(it);
    }
    if (s.sequences.erase(sequence) > 0) --s.tenants[sequence.tenant].sequences;
  }
  heat_->DropSequence(sequence);
  return ssd_->DropSequence(sequence, /*sync=*/true);
}

absl::Status TieredStore::DeleteBlock(const BlockKey& key) {
  State& s = *state_;
  {
    absl::MutexLock lock(&s.mu);
    if (s.closed) return absl::FailedPreconditionError("store is closed");
    auto idle = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = s.blocks.find(key);
      return it == s.blocks.end() || (!it->second.busy && it->second.pins == 0);
    };
    s.mu.Await(absl::Condition(&idle));
    auto it = s.blocks.find(key);
    if (it == s.blocks.end()) {
      return absl::NotFoundError(absl::StrCat("no block ", ToString(key.cluster)));
    }
    s.Forget(key, it->second);
    s.blocks.erase(it);
    if (auto seq = s.by_sequence.find(key.sequence); seq != s.by_sequence.end()) {
      seq->second.erase(key.cluster);
    }
  }
  // Deleting keys a host-only block never wrote is harmless.
  return ssd_->DeleteBlock(key);
}

// ---- Blocks ----------------------------------------------------------------------------------

std::optional<SlabAllocation> TieredStore::AllocateHost(uint64_t bytes) {
  State& s = *state_;
  constexpr int kAttempts = 4;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    absl::StatusOr<SlabAllocation> a = s.slabs.Allocate(bytes);
    if (a.ok()) return *a;
    if (attempt + 1 == kAttempts) break;
    uint64_t target;
    if (attempt == 0) {
      // Make room for this block plus the usual headroom.
      const uint64_t low =
          static_cast<uint64_t>(s.options.low_watermark * s.options.host_capacity_bytes);
      target = bytes >= low ? 0 : low - bytes;
    } else {
      // Below the watermark yet no slab fits (size classes fill unevenly): evict a few more
      // slabs' worth of the coldest blocks.
      absl::MutexLock lock(&s.mu);
      const uint64_t step = std::max<uint64_t>(bytes, 4 * SlabAllocator::kSlabBytes);
      target = s.stats.host.bytes > step ? s.stats.host.bytes - step : 0;
    }
    if (!EvictDownTo(target).ok()) break;
  }
  return std::nullopt;
}

absl::Status TieredStore::PutBlock(const BlockKey& key, absl::Span<const uint8_t> block,
                                   std::optional<bool> write_through) {
  RETURN_IF_ERROR(key.sequence.Validate());
  if (block.empty()) return absl::InvalidArgumentError("empty block");
  State& s = *state_;
  const bool durable = write_through.value_or(s.options.write_through);
  {
    absl::MutexLock lock(&s.mu);
    if (s.closed) return absl::FailedPreconditionError("store is closed");
    if (s.blocks.contains(key)) {
      return absl::AlreadyExistsError(absl::StrCat("block ", ToString(key.cluster), " of ",
                                                   key.sequence.sequence, " exists"));
    }
    if (s.quota) {
      RETURN_IF_ERROR(s.quota(key.sequence.tenant, s.tenants[key.sequence.tenant], block.size()));
    }
    BlockState& st = s.blocks[key];
    st.size = block.size();
    st.busy = true;  // invisible to readers until filled
    s.by_sequence[key.sequence].insert(key.cluster);
    ++s.tenants[key.sequence.tenant].blocks;
  }
  const std::optional<SlabAllocation> host = AllocateHost(block.size());
  if (host) std::memcpy(arena_->base() + host->offset, block.data(), block.size());
  // Without host room the block spills to the SSD; it is made durable like a write-through.
  const bool to_ssd = durable || !host;
  absl::Status written =
      to_ssd ? ssd_->PutBlock(key, block, /*sync=*/true) : absl::OkStatus();

  absl::MutexLock lock(&s.mu);
  BlockState& st = s.blocks.at(key);
  st.busy = false;
  if (!written.ok()) {
    if (host) s.slabs.Free(*host);
    --s.tenants[key.sequence.tenant].blocks;
    s.by_sequence[key.sequence].erase(key.cluster);
    s.blocks.erase(key);
    return written;
  }
  st.host = host;
  st.on_ssd = to_ssd;
  st.dirty = host.has_value() && !to_ssd;
  st.last_recall = ++s.tick;
  if (host) s.AddHost(key.sequence.tenant, static_cast<int64_t>(st.size));
  if (to_ssd) s.AddSsd(key.sequence.tenant, static_cast<int64_t>(st.size));
  if (durable) ++s.stats.write_through_puts;
  if (!host) ++s.stats.spilled_puts;
  s.LruTouch(key, st);
  heat_->RecordPut(key.sequence, key.cluster);  // the heat's own lock, inside the store's
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> TieredStore::ReadBlock(const BlockKey& key, absl::Span<uint8_t> dst) {
  State& s = *state_;
  uint64_t size = 0;
  SlabAllocation host;
  {
    absl::MutexLock lock(&s.mu);
    if (s.closed) return absl::FailedPreconditionError("store is closed");
    BlockState* found = s.AwaitSettled(key);
    if (found == nullptr) {
      ++s.stats.host.misses;
      ++s.stats.ssd.misses;
      return NoBlockError(key);
    }
    BlockState& st = *found;
    size = st.size;
    if (dst.size() < size) {
      return absl::InvalidArgumentError(
          absl::StrCat("destination holds ", dst.size(), " bytes; the block is ", size));
    }
    if (st.host) {
      ++s.stats.host.hits;
      ++st.pins;
      s.NoteRecall(st);
      host = *st.host;
    } else {
      ++s.stats.host.misses;
      st.busy = true;  // promotion in flight
    }
  }
  if (host.capacity > 0) {
    std::memcpy(dst.data(), arena_->base() + host.offset, size);
    Unpin(key);
    return size;
  }
  // SSD-only: read, then promote into the host tier when there is room.
  absl::Status read = ssd_->GetBlockInto(key, dst.subspan(0, size));
  std::optional<SlabAllocation> promoted;
  if (read.ok()) {
    promoted = AllocateHost(size);
    if (promoted) std::memcpy(arena_->base() + promoted->offset, dst.data(), size);
  }
  absl::MutexLock lock(&s.mu);
  BlockState& st = s.blocks.at(key);
  st.busy = false;
  if (!read.ok()) {
    ++s.stats.ssd.misses;
    return read;
  }
  ++s.stats.ssd.hits;
  st.last_recall = ++s.tick;
  if (promoted) {
    s.InstallHostCopy(key, st, *promoted);
    ++s.stats.promotions;
  }
  s.LruTouch(key, st);
  return size;
}

absl::StatusOr<std::vector<uint8_t>> TieredStore::GetBlock(const BlockKey& key) {
  uint64_t size = 0;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->blocks.find(key);
    if (it != state_->blocks.end()) size = it->second.size;
  }
  std::vector<uint8_t> out(size);
  ASSIGN_OR_RETURN(uint64_t n, ReadBlock(key, absl::MakeSpan(out)));
  out.resize(n);
  return out;
}

absl::StatusOr<PinnedBlock> TieredStore::Pin(const BlockKey& key) {
  State& s = *state_;
  for (;;) {
    uint64_t size = 0;
    {
      absl::MutexLock lock(&s.mu);
      if (s.closed) return absl::FailedPreconditionError("store is closed");
      BlockState* found = s.AwaitSettled(key);
      if (found == nullptr) return NoBlockError(key);
      BlockState& st = *found;
      if (st.host) {
        s.TakePin(st);
        PinnedBlock pin;
        pin.store_ = this;
        pin.key_ = key;
        pin.data_ = arena_->base() + st.host->offset;
        pin.size_ = st.size;
        pin.offset_ = st.host->offset;
        return pin;
      }
      size = st.size;
    }
    // Promote through ReadBlock, then pin the host copy on the next pass.
    std::vector<uint8_t> scratch(size);
    RETURN_IF_ERROR(ReadBlock(key, absl::MakeSpan(scratch)).status());
    absl::MutexLock lock(&s.mu);
    auto it = s.blocks.find(key);
    if (it != s.blocks.end() && !it->second.host && !it->second.busy) {
      return absl::ResourceExhaustedError("host tier has no room to pin the block");
    }
  }
}

PinnedBlockSet TieredStore::PinResident(const SequenceKey& sequence,
                                       std::vector<ClusterId> clusters) {
  PinnedBlockSet set;
  set.sequence_ = sequence;
  set.clusters_ = std::move(clusters);
  const std::vector<ClusterId>& wanted = set.clusters_;
  set.entries_.resize(wanted.size());
  State& s = *state_;
  BlockKey key{sequence, ClusterId{}};  // one key, its cluster rewritten: no string copies
  absl::MutexLock lock(&s.mu);
  if (s.closed) return set;
  for (size_t i = 0; i < wanted.size(); ++i) {
    key.cluster = wanted[i];
    auto it = s.blocks.find(key);
    if (it == s.blocks.end() || it->second.busy || !it->second.host) continue;
    BlockState& st = it->second;
    s.TakePin(st);
    set.entries_[i] = PinnedBlockSet::Entry{arena_->base() + st.host->offset, st.size};
    ++set.num_pinned_;
  }
  if (set.num_pinned_ > 0) set.store_ = this;
  return set;
}

void TieredStore::UnpinAll(const SequenceKey& sequence, absl::Span<const ClusterId> clusters,
                           absl::Span<const PinnedBlockSet::Entry> entries) {
  State& s = *state_;
  BlockKey key{sequence, ClusterId{}};
  absl::MutexLock lock(&s.mu);
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (entries[i].data == nullptr) continue;
    key.cluster = clusters[i];
    s.ReleasePin(key);
  }
}

void TieredStore::Unpin(const BlockKey& key) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  s.ReleasePin(key);
}

// ---- Eviction --------------------------------------------------------------------------------

absl::Status TieredStore::FlushSsd() { return ssd_->Flush(); }

absl::Status TieredStore::EvictToLowWatermark() {
  return EvictDownTo(
      static_cast<uint64_t>(state_->options.low_watermark * state_->options.host_capacity_bytes));
}

void TieredStore::RecordFetch(const SequenceKey& sequence, absl::Span<const ClusterId> clusters) {
  heat_->RecordFetch(sequence, clusters);
}

std::optional<uint64_t> TieredStore::BlockBytes(const BlockKey& key) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->blocks.find(key);
  if (it == state_->blocks.end()) return std::nullopt;
  return it->second.size;
}

absl::Status TieredStore::EvictDownTo(uint64_t target_bytes) {
  State& s = *state_;
  struct Victim {
    BlockKey key;
    SlabAllocation host;
    bool dirty;
    bool by_heat = false;         // chosen by EvictionPolicy::kHeat
    bool never_recalled = false;  // ... with a heat score of 0
  };
  std::vector<Victim> victims;
  {
    absl::MutexLock lock(&s.mu);
    uint64_t planned = s.stats.host.bytes;
    if (s.options.eviction_policy == EvictionPolicy::kHeat) {
      // Every evictable host block, least recently recalled first; a stable sort by heat then
      // keeps that order among equal scores (the never-recalled ones above all).
      std::vector<const BlockKey*> candidates;
      for (auto it = s.lru.rbegin(); it != s.lru.rend(); ++it) {
        const BlockState& st = s.blocks.at(*it);
        if (st.pins == 0 && !st.busy) candidates.push_back(&*it);
      }
      const std::vector<ClusterHeat::Heat> scores = heat_->Scores(candidates);
      std::vector<size_t> order(candidates.size());
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return scores[a].score < scores[b].score; });
      for (size_t i = 0; i < order.size() && planned > target_bytes; ++i) {
        const BlockKey& key = *candidates[order[i]];
        const BlockState& st = s.blocks.at(key);
        victims.push_back(Victim{key, *st.host, st.dirty, true, !scores[order[i]].recalled});
        planned -= st.size;
      }
    } else {
      for (auto it = s.lru.rbegin(); it != s.lru.rend() && planned > target_bytes; ++it) {
        BlockState& st = s.blocks.at(*it);
        if (st.pins > 0 || st.busy) continue;  // in use: not evictable now
        victims.push_back(Victim{*it, *st.host, st.dirty});
        planned -= st.size;
      }
    }
    for (const Victim& v : victims) s.blocks.at(v.key).busy = true;
    if (victims.empty() && planned > target_bytes) {
      return absl::ResourceExhaustedError("host tier above target and nothing is evictable");
    }
  }
  absl::Status first_error;
  for (const Victim& v : victims) {
    absl::Status w;
    if (v.dirty) {
      w = ssd_->PutBlock(v.key,
                         absl::MakeConstSpan(arena_->base() + v.host.offset, v.host.requested),
                         /*sync=*/false);
    }
    absl::MutexLock lock(&s.mu);
    BlockState& st = s.blocks.at(v.key);
    st.busy = false;
    if (!w.ok()) {
      ++s.stats.eviction_failures;
      if (first_error.ok()) first_error = w;
      s.LruTouch(v.key, st);
      continue;
    }
    s.slabs.Free(v.host);
    st.host.reset();
    s.LruRemove(st);
    if (st.hinted) s.NoteWasted(st);
    s.AddHost(v.key.sequence.tenant, -static_cast<int64_t>(st.size));
    if (!st.on_ssd) s.AddSsd(v.key.sequence.tenant, static_cast<int64_t>(st.size));
    st.on_ssd = true;
    st.dirty = false;
    ++s.stats.evictions;
    s.stats.evicted_bytes += st.size;
    if (v.by_heat) ++s.stats.heat_evictions;
    if (v.never_recalled) ++s.stats.heat_evictions_never_recalled;
    ++s.generation;
  }
  return first_error;
}

// ---- Introspection ---------------------------------------------------------------------------

void TieredStore::SetQuotaHook(QuotaHook hook) {
  absl::MutexLock lock(&state_->mu);
  state_->quota = std::move(hook);
}

StoreStats TieredStore::Stats() const {
  StoreStats out;
  {
    absl::MutexLock lock(&state_->mu);
    out = state_->stats;
  }
  out.slab = state_->slabs.Stats();
  out.ssd_io = ssd_->Stats();
  return out;
}

TenantUsage TieredStore::Usage(const std::string& tenant) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->tenants.find(tenant);
  return it == state_->tenants.end() ? TenantUsage() : it->second;
}

}  // namespace clusterkv::storage
