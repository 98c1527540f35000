// Handles that keep host-tier blocks in place for reads without a copy (e.g. a UCX put or a
// memcpy straight from the arena): a pinned block cannot be evicted or freed until its handle
// is destroyed. Both are issued by TieredStore (Pin, PinResident) and release through it.
#ifndef CLUSTERKV_STORAGE_PINNED_BLOCK_H_
#define CLUSTERKV_STORAGE_PINNED_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/ids.h"
#include "storage/key_codec.h"

namespace clusterkv::storage {

class TieredStore;

// A block held in the host tier for in-place reads (e.g. a UCX put from the arena); it cannot be
// evicted or freed until the handle is destroyed. Move-only.
class PinnedBlock {
 public:
  PinnedBlock() = default;
  PinnedBlock(PinnedBlock&& other) noexcept;
  PinnedBlock& operator=(PinnedBlock&& other) noexcept;
  ~PinnedBlock();

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  uint64_t arena_offset() const { return offset_; }

 private:
  friend class TieredStore;
  void Release();
  TieredStore* store_ = nullptr;
  BlockKey key_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
};

// Pins on several host-resident blocks of one sequence, taken together by
// TieredStore::PinResident and released together (one store lock) when destroyed. Entry i is
// the i-th requested cluster; an entry that was not pinned has data() == nullptr. Move-only.
class PinnedBlockSet {
 public:
  PinnedBlockSet() = default;
  PinnedBlockSet(PinnedBlockSet&& other) noexcept;
  PinnedBlockSet& operator=(PinnedBlockSet&& other) noexcept;
  ~PinnedBlockSet();

  size_t size() const { return entries_.size(); }
  const uint8_t* data(size_t i) const { return entries_[i].data; }
  uint64_t bytes(size_t i) const { return entries_[i].bytes; }
  size_t num_pinned() const { return num_pinned_; }
  const std::vector<ClusterId>& clusters() const { return clusters_; }  // as requested

 private:
  friend class TieredStore;
  struct Entry {
    const uint8_t* data = nullptr;
    uint64_t bytes = 0;
  };
  void Release();
  TieredStore* store_ = nullptr;
  SequenceKey sequence_;
  std::vector<ClusterId> clusters_;
  std::vector<Entry> entries_;
  size_t num_pinned_ = 0;
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_PINNED_BLOCK_H_
