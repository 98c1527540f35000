// Promotion hints: TieredStore::Promote copies an SSD-only block into the host tier ahead of its
// recall, into free room only, and the hint admission decides from the outcomes of recent
// promotions whether hints are worth following. The tiering itself (put, read, pin, spill,
// evict, delete) is in tiered_store.cc; both halves share TieredStore::State
// (storage/internal/tiered_store_state.h).
#include "storage/tiered_store.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/status_macros.h"
#include "storage/internal/tiered_store_state.h"
#include "storage/slab_allocator.h"

namespace clusterkv::storage {
namespace {

using internal::BlockState;
using internal::NoBlockError;

// Hint admission. The outcomes of recent promotions (recalled, or evicted unread; a block
// dropped with its sequence says nothing about the host tier and is not counted), halved
// whenever they pass kHintOutcomeWindow, say whether hints pay: once kHintMinOutcomes are
// known and fewer than half were recalled, only one promotion in kHintProbeEvery goes ahead,
// and those probes keep the measure current.
constexpr double kHintOutcomeWindow = 512;
constexpr double kHintMinOutcomes = 64;
constexpr uint64_t kHintProbeEvery = 8;

}  // namespace

// ---- Hint admission --------------------------------------------------------------------------

void TieredStore::State::NoteWasted(BlockState& st) {
  st.hinted = false;
  ++stats.hint_promotions_wasted;
  NoteHintOutcome(/*recalled=*/false);
}

void TieredStore::State::NoteHintOutcome(bool recalled) {
  (recalled ? hint_recalled : hint_wasted) += 1;
  if (hint_recalled + hint_wasted > kHintOutcomeWindow) {
    hint_recalled /= 2;
    hint_wasted /= 2;
  }
}

bool TieredStore::State::AdmitHint() {
  if (hint_recalled + hint_wasted < kHintMinOutcomes || hint_recalled >= hint_wasted) {
    return true;
  }
  return ++hint_probes % kHintProbeEvery == 0;
}

// ---- Promotion -------------------------------------------------------------------------------

absl::StatusOr<PromoteResult> TieredStore::Promote(const BlockKey& key) {
  State& s = *state_;
  const double ceiling =
      s.options.high_watermark * static_cast<double>(s.options.host_capacity_bytes);
  uint64_t size = 0;
  {
    absl::MutexLock lock(&s.mu);
    if (s.closed) return absl::FailedPreconditionError("store is closed");
    BlockState* found = s.AwaitSettled(key);
    if (found == nullptr) return NoBlockError(key);
    BlockState& st = *found;
    if (st.host) {
      ++s.stats.hint_already_resident;
      return PromoteResult::kAlreadyResident;
    }
    if (!s.AdmitHint()) {
      ++s.stats.hint_throttled;
      return PromoteResult::kThrottled;
    }
    // Free room only: what the evictor would leave alone.
    if (static_cast<double>(s.stats.host.bytes + st.size) > ceiling) {
      ++s.stats.hint_no_room;
      return PromoteResult::kNoRoom;
    }
    size = st.size;
    st.busy = true;  // promotion in flight: readers wait, eviction skips it
  }
  // Not a read: the tiers' hit and miss counts stay those of recalls.
  std::vector<uint8_t> scratch(size);
  const absl::Status read = ssd_->GetBlockInto(key, absl::MakeSpan(scratch));
  std::optional<SlabAllocation> promoted;
  if (read.ok()) {
    absl::StatusOr<SlabAllocation> a = s.slabs.Allocate(size);  // never evicts
    if (a.ok()) {
      promoted = *a;
      std::memcpy(arena_->base() + promoted->offset, scratch.data(), size);
    }
  }
  absl::MutexLock lock(&s.mu);
  BlockState& st = s.blocks.at(key);
  st.busy = false;
  RETURN_IF_ERROR(read);
  if (!promoted) {
    ++s.stats.hint_no_room;
    return PromoteResult::kNoRoom;
  }
  s.InstallHostCopy(key, st, *promoted);
  st.hinted = true;
  ++s.stats.hint_promotions;
  s.LruTouch(key, st);
  return PromoteResult::kPromoted;
}

}  // namespace clusterkv::storage
