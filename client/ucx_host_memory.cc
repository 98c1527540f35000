#include "client/ucx_host_memory.h"

#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace clusterkv::client {
namespace {

size_t RoundUp(size_t bytes) {
  return (bytes + UcxRegion::kAlignment - 1) / UcxRegion::kAlignment * UcxRegion::kAlignment;
}

}  // namespace

absl::StatusOr<std::shared_ptr<UcxRegion>> UcxRegion::Create(std::shared_ptr<ucx::Context> context,
                                                             size_t bytes) {
  if (bytes < kAlignment) return absl::InvalidArgumentError("UCX region too small");
  ASSIGN_OR_RETURN(std::unique_ptr<ucx::MemMap> map,
                   ucx::MemMap::Allocate(std::move(context), RoundUp(bytes)));
  return std::shared_ptr<UcxRegion>(new UcxRegion(std::move(map)));
}

UcxRegion::UcxRegion(std::unique_ptr<ucx::MemMap> map) : map_(std::move(map)) {
  // The mapping may start unaligned to kAlignment; carve from the first aligned byte.
  const auto base = reinterpret_cast<uintptr_t>(map_->address());
  const size_t skip = (kAlignment - base % kAlignment) % kAlignment;
  if (map_->size() > skip) {
    free_[skip] = (map_->size() - skip) / kAlignment * kAlignment;
  }
}

absl::StatusOr<uint64_t> UcxRegion::Carve(size_t bytes) {
  const size_t want = RoundUp(bytes);
  absl::MutexLock lock(&mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < want) continue;
    const uint64_t offset = it->first;
    const size_t rest = it->second - want;
    free_.erase(it);
    if (rest > 0) free_[offset + want] = rest;
    return offset;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("the UCX cache region has no free range of ", want, " bytes"));
}

void UcxRegion::Release(uint64_t offset, size_t bytes) {
  size_t size = RoundUp(bytes);
  absl::MutexLock lock(&mu_);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + size == next->first) {  // merge with the following range
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {  // merge into the preceding range
      prev->second += size;
      return;
    }
  }
  free_[offset] = size;
}

size_t UcxRegion::free_bytes() const {
  absl::MutexLock lock(&mu_);
  size_t total = 0;
  for (const auto& [offset, bytes] : free_) total += bytes;
  return total;
}

UcxHostMemory::~UcxHostMemory() {
  if (carved_ > 0) region_->Release(offset_, carved_);
}

absl::Status UcxHostMemory::Allocate(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("cannot allocate an empty region");
  if (size_ > 0) return absl::FailedPreconditionError("region already allocated");
  ASSIGN_OR_RETURN(offset_, region_->Carve(bytes));
  carved_ = bytes;
  size_ = bytes;
  std::memset(region_->base() + offset_, 0, bytes);
  return absl::OkStatus();
}

absl::Status UcxHostMemory::CopyIn(size_t offset, const void* host, size_t bytes) {
  if (size_ == 0) return absl::FailedPreconditionError("region not allocated");
  RETURN_IF_ERROR(CheckRegionRange(size_, offset, bytes));
  if (bytes > 0) std::memcpy(region_->base() + offset_ + offset, host, bytes);
  return absl::OkStatus();
}

const void* UcxHostMemory::HostView(size_t offset) const {
  if (offset >= size_) return nullptr;
  return region_->base() + offset_ + offset;
}

}  // namespace clusterkv::client
