#include "storage/pinned_block.h"

#include <utility>

#include "storage/tiered_store.h"

namespace clusterkv::storage {

// ---- PinnedBlock -----------------------------------------------------------------------------

PinnedBlock::PinnedBlock(PinnedBlock&& other) noexcept { *this = std::move(other); }

PinnedBlock& PinnedBlock::operator=(PinnedBlock&& other) noexcept {
  if (this != &other) {
    Release();
    store_ = std::exchange(other.store_, nullptr);
    key_ = std::move(other.key_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    offset_ = std::exchange(other.offset_, 0);
  }
  return *this;
}

PinnedBlock::~PinnedBlock() { Release(); }

void PinnedBlock::Release() {
  if (store_ != nullptr) store_->Unpin(key_);
  store_ = nullptr;
  data_ = nullptr;
}

PinnedBlockSet::PinnedBlockSet(PinnedBlockSet&& other) noexcept { *this = std::move(other); }

PinnedBlockSet& PinnedBlockSet::operator=(PinnedBlockSet&& other) noexcept {
  if (this != &other) {
    Release();
    store_ = std::exchange(other.store_, nullptr);
    sequence_ = std::move(other.sequence_);
    clusters_ = std::move(other.clusters_);
    entries_ = std::move(other.entries_);
    num_pinned_ = std::exchange(other.num_pinned_, 0);
  }
  return *this;
}

PinnedBlockSet::~PinnedBlockSet() { Release(); }

void PinnedBlockSet::Release() {
  if (store_ != nullptr && num_pinned_ > 0) store_->UnpinAll(sequence_, clusters_, entries_);
  store_ = nullptr;
  num_pinned_ = 0;
  for (Entry& e : entries_) e = Entry{};
}

}  // namespace clusterkv::storage
