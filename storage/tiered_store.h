// TieredStore: every cluster block of every sequence, in a host tier (one arena carved by a slab
// allocator) backed by an SSD tier (RocksDB), plus the durable sequence metadata and centroid
// indexes (DESIGN.md section 6).
//
// - Put is write-back by default: the block lands in host memory and reaches the SSD when it is
//   evicted or the store closes. In write-through mode (option or per put) the block is durable
//   (fsync'd WAL) before Put returns. When the host tier has no room even after eviction, a put
//   goes straight to the SSD (durably), so a full host tier never loses or rejects data.
// - Above the high watermark a background thread moves blocks to the SSD until usage is below
//   the low watermark: the least recently recalled first (EvictionPolicy::kLru), or the coldest
//   by recall frequency first (kHeat: the decayed recall counts the fetch path records through
//   RecordFetch, a new block counting as one recall at its put; ties in LRU order).
// - A read of an SSD-only block promotes it back into the host tier.
// - Close() (and the destructor) flushes write-back blocks to the SSD, so a clean shutdown keeps
//   everything; after a crash, write-through blocks and flushed blocks survive.
// - Reopening rebuilds the block table from the SSD tier's block directory: every block that
//   reached the SSD is recallable again, with or without an index record.
//
// Thread-safe. No lock is held across RocksDB I/O or block copies.
//
// Example:
//   ASSIGN_OR_RETURN(auto store, TieredStore::Open({.path = "/var/lib/clusterkv"}));
//   RETURN_IF_ERROR(store->PutSequence(seq, meta));
//   RETURN_IF_ERROR(store->PutBlock(key, block));
//   ASSIGN_OR_RETURN(std::vector<uint8_t> back, store->GetBlock(key));
#ifndef CLUSTERKV_STORAGE_TIERED_STORE_H_
#define CLUSTERKV_STORAGE_TIERED_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "storage/cluster_heat.h"
#include "storage/host_arena.h"
#include "storage/index_record.h"
#include "storage/key_codec.h"
#include "storage/pinned_block.h"
#include "storage/slab_allocator.h"
#include "storage/ssd_tier.h"

namespace clusterkv::storage {

// Which host-resident blocks eviction moves to the SSD first.
enum class EvictionPolicy {
  kLru,   // least recently recalled (or put) first
  kHeat,  // lowest decayed score first (recalls, plus ClusterHeatOptions::put_score at the
          // put), ties least recent first
};
// "lru" / "heat". InvalidArgument for any other name.
absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(absl::string_view name);
const char* EvictionPolicyName(EvictionPolicy policy);

struct TieredStoreOptions {
  std::string path;  // RocksDB directory of the SSD tier
  uint64_t host_capacity_bytes = uint64_t{1} << 30;
  double high_watermark = 0.90;  // fraction of host capacity that wakes the evictor
  double low_watermark = 0.75;   // the evictor stops below this
  bool write_through = false;
  bool huge_pages = true;
  // Fault in the whole host arena at open (HostArenaOptions::prefault): startup pays for it,
  // and later puts (a read-only copy filling, a promotion) do not take a page fault per page.
  bool prefault = false;
  bool background_eviction = true;  // false: eviction only through EvictToLowWatermark()
  ArenaRegistrar* registrar = nullptr;  // not owned
  std::shared_ptr<rocksdb::FileSystem> file_system;  // null: the real filesystem
  uint64_t min_blob_bytes = 4096;
  EvictionPolicy eviction_policy = EvictionPolicy::kLru;
  // The recall-frequency tracker fed by RecordFetch (kept under either policy: the dashboard
  // shows its heat map).
  ClusterHeatOptions heat;
};

struct TierStats {
  uint64_t bytes = 0;
  uint64_t blocks = 0;
  uint64_t hits = 0;    // reads served by this tier
  uint64_t misses = 0;  // reads this tier could not serve
};

struct StoreStats {
  TierStats host;
  TierStats ssd;
  uint64_t host_capacity_bytes = 0;
  uint64_t evictions = 0;
  uint64_t evicted_bytes = 0;
  uint64_t promotions = 0;
  uint64_t write_through_puts = 0;
  uint64_t spilled_puts = 0;  // puts that went straight to the SSD (host tier full)
  uint64_t eviction_failures = 0;
  // Evictions ordered by recall heat (EvictionPolicy::kHeat), and among them the blocks that
  // had never been recalled (at most their put score).
  uint64_t heat_evictions = 0;
  uint64_t heat_evictions_never_recalled = 0;
  // Promote() (promotion hints): SSD-only blocks copied into the host tier; of those, the ones
  // a read then served from the host tier (recalled) and the ones evicted or dropped before any
  // read (wasted); hinted blocks found in the host tier already; hinted blocks left on the SSD
  // because promoting them would have taken the host tier past its high watermark.
  uint64_t hint_promotions = 0;
  uint64_t hint_promotions_recalled = 0;
  uint64_t hint_promotions_wasted = 0;
  uint64_t hint_already_resident = 0;
  uint64_t hint_no_room = 0;
  // Hinted blocks left on the SSD because most recent promotions were wasted (Promote).
  uint64_t hint_throttled = 0;
  SlabStats slab;
  SsdStats ssd_io;
};

struct TenantUsage {
  uint64_t host_bytes = 0;
  uint64_t ssd_bytes = 0;
  uint64_t blocks = 0;
  uint64_t sequences = 0;
};

// Consulted before a put adds `add_bytes` for `tenant`; a non-OK status (ResourceExhausted for a
// quota) rejects the put. Called with the store's lock held: must be quick and must not call
// back into the store.
using QuotaHook = std::function<absl::Status(const std::string& tenant, const TenantUsage& usage,
                                             uint64_t add_bytes)>;

// What Promote() did with a block.
enum class PromoteResult {
  kPromoted,         // copied from the SSD into the host tier
  kAlreadyResident,  // in the host tier already (nothing to do)
  kNoRoom,           // SSD-only, and the host tier has no room below its high watermark
  kThrottled,        // SSD-only, and recent hints were mostly wasted (see Promote)
};

class TieredStore {
 public:
  // Opens (or creates) the SSD tier at options.path, maps the host arena and rebuilds the block
  // table from the block directory. InvalidArgument for bad options; errors of the tiers.
  static absl::StatusOr<std::unique_ptr<TieredStore>> Open(const TieredStoreOptions& options);
  ~TieredStore();
  TieredStore(const TieredStore&) = delete;
  TieredStore& operator=(const TieredStore&) = delete;

  // Stops the evictor and writes every write-back block to the SSD (synced). Idempotent; after
  // it, every other call returns FailedPrecondition. Returns the first flush error, if any
  // (blocks that could not be flushed are reported, never silently dropped).
  absl::Status Close();

  // Sequence metadata and indexes (always written durably).
  absl::Status PutSequence(const SequenceKey& sequence, const SequenceMeta& meta);
  absl::StatusOr<SequenceMeta> GetSequence(const SequenceKey& sequence);
  // Sequences of `tenant` (all tenants when empty), in key order.
  absl::StatusOr<std::vector<SequenceKey>> ListSequences(const std::string& tenant);
  absl::Status PutIndex(const SequenceKey& sequence, const HeadId& head,
                        const HeadIndexRecord& index);
  absl::StatusOr<HeadIndexRecord> GetIndex(const SequenceKey& sequence, const HeadId& head);
  // The sequence's session state record (a client checkpoint, opaque here): always written
  // durably, dropped with the sequence. NotFound when none was written.
  absl::Status PutStateRecord(const SequenceKey& sequence, absl::string_view record);
  absl::StatusOr<std::string> GetStateRecord(const SequenceKey& sequence);
  // The clusters of `sequence` that have a block (either tier), sorted.
  std::vector<ClusterId> ListBlocks(const SequenceKey& sequence) const;
  // Removes the sequence's metadata, indexes and blocks from both tiers.
  absl::Status DropSequence(const SequenceKey& sequence);

  // Stores a block. write_through overrides the store's default for this put.
  // AlreadyExists: the block was stored before (blocks are immutable). ResourceExhausted: the
  // quota hook refused, or both tiers are full. Errors of the SSD tier for write-through puts
  // (the block is then not stored).
  absl::Status PutBlock(const BlockKey& key, absl::Span<const uint8_t> block,
                        std::optional<bool> write_through = std::nullopt);
  // Removes one block from both tiers (waiting for its pins and moves to finish). Blocks are
  // otherwise immutable: this serves records that are superseded as a whole (a session's
  // state chunks no longer named by its checkpoint). NotFound when absent.
  absl::Status DeleteBlock(const BlockKey& key);
  // Copies the block into dst (dst.size() >= block size) and returns its size; promotes an
  // SSD-only block into the host tier. NotFound, DataLoss (checksum), InvalidArgument (dst too
  // small).
  absl::StatusOr<uint64_t> ReadBlock(const BlockKey& key, absl::Span<uint8_t> dst);
  absl::StatusOr<std::vector<uint8_t>> GetBlock(const BlockKey& key);
  // Holds the block in the host tier (promoting it first if needed). ResourceExhausted when the
  // host tier has no room for the promotion.
  absl::StatusOr<PinnedBlock> Pin(const BlockKey& key);
  // Pins, under one lock, every block among `clusters` of `sequence` that is settled on the
  // host tier; the others (absent, SSD-only, being moved) are left for Pin(), which promotes
  // or waits. The recall path's batch form: one lock to take and one to release N pins.
  PinnedBlockSet PinResident(const SequenceKey& sequence, std::vector<ClusterId> clusters);
  // Copies an SSD-only block into the host tier ahead of its recall (a promotion hint), as the
  // most recently used block, into free room only: a promotion that would take the host tier
  // past its high watermark evicts nothing and is kNoRoom, so a hint can never push out
  // blocks that recalls are using. Admission: once 64 recent promotions have an outcome and
  // fewer than half of them were recalled before being evicted, only one hint in 8 is promoted
  // (the probes that keep the outcome count current) and the rest are kThrottled. Unlike a
  // read it counts no tier hit or miss; the block is marked hinted until a read serves it from
  // the host tier (hint_promotions_recalled) or it leaves the host tier unread
  // (hint_promotions_wasted).
  // NotFound when absent; errors of the SSD read (the block stays on the SSD).
  absl::StatusOr<PromoteResult> Promote(const BlockKey& key);

  // One fetch of `sequence` recalled `clusters`: feeds the heat that EvictionPolicy::kHeat
  // evicts by (the daemon's fetch paths call it once per fetch request).
  void RecordFetch(const SequenceKey& sequence, absl::Span<const ClusterId> clusters);
  const ClusterHeat& heat() const { return *heat_; }
  // The stored size of a block, nullopt when absent.
  std::optional<uint64_t> BlockBytes(const BlockKey& key) const;

  // One eviction pass down to the low watermark (the background thread runs the same).
  absl::Status EvictToLowWatermark();
  // Flushes the SSD tier's memtables to its files, so that reads of evicted blocks go to the
  // file system (tests of a slow or failing SSD; benchmarks of cold reads).
  absl::Status FlushSsd();

  void SetQuotaHook(QuotaHook hook);
  StoreStats Stats() const;
  TenantUsage Usage(const std::string& tenant) const;
  const HostArena& arena() const { return *arena_; }

 private:
  class State;
  TieredStore(std::unique_ptr<HostArena> arena, std::unique_ptr<SsdTier> ssd,
              const TieredStoreOptions& options);
  void Unpin(const BlockKey& key);
  void EvictorLoop();
  // Moves blocks to the SSD, in the order of the eviction policy, until host usage <=
  // target_bytes.
  absl::Status EvictDownTo(uint64_t target_bytes);
  // Allocates host memory for `bytes`, evicting synchronously if needed; nullopt when even
  // eviction cannot make room.
  std::optional<SlabAllocation> AllocateHost(uint64_t bytes);
  friend class PinnedBlock;
  friend class PinnedBlockSet;
  void UnpinAll(const SequenceKey& sequence, absl::Span<const ClusterId> clusters,
                absl::Span<const PinnedBlockSet::Entry> entries);

  std::unique_ptr<HostArena> arena_;
  std::unique_ptr<SsdTier> ssd_;
  std::unique_ptr<ClusterHeat> heat_;
  std::unique_ptr<State> state_;
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_TIERED_STORE_H_
