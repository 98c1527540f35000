// UcxRegion and UcxHostMemory: the client's device-cache memory when the UCX data plane is
// active. UcxRegion is ONE ucp_mem_map(UCP_MEM_MAP_ALLOCATE) mapping -- the memory the daemon's
// ucp_put writes into at memcpy speed over shared memory (DESIGN.md section 10) -- registered
// with the daemon once per connection (ConnectDataPlane). UcxHostMemory is a DeviceMemory (the
// host kind: HostView is the memory itself) carved out of that region by a first-fit allocator,
// so every Sequence layer's cache lives inside the registered region and its slots can be named
// by offset.
//
// Thread-safe: the region's allocator has a mutex. A UcxHostMemory is thread-compatible (one
// Sequence owns it) and keeps its region alive.
#ifndef CLUSTERKV_CLIENT_UCX_HOST_MEMORY_H_
#define CLUSTERKV_CLIENT_UCX_HOST_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/ucx_data_plane.h"
#include "core/ucx/ucx_handles.h"

namespace clusterkv::client {

class UcxRegion {
 public:
  // Allocation granularity (and alignment) of the carved ranges.
  static constexpr size_t kAlignment = 256;

  // UCP_MEM_MAP_ALLOCATE of `bytes` on `context`.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<UcxRegion>> Create(
      std::shared_ptr<ucx::Context> context, size_t bytes);

  uint8_t* base() const { return map_->address(); }
  size_t size() const { return map_->size(); }
  const ucx::MemMap& map() const { return *map_; }

  // Offset of a free range of at least `bytes`; ResourceExhausted when none is large enough.
  [[nodiscard]] absl::StatusOr<uint64_t> Carve(size_t bytes);
  // Returns a range from Carve (with the size passed to it).
  void Release(uint64_t offset, size_t bytes);
  size_t free_bytes() const;

 private:
  explicit UcxRegion(std::unique_ptr<ucx::MemMap> map);
  std::unique_ptr<ucx::MemMap> map_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, size_t> free_ ABSL_GUARDED_BY(mu_);  // offset -> bytes, coalesced
};

class UcxHostMemory final : public DirectMemory {
 public:
  explicit UcxHostMemory(std::shared_ptr<UcxRegion> region) : region_(std::move(region)) {}
  ~UcxHostMemory() override;
  UcxHostMemory(const UcxHostMemory&) = delete;
  UcxHostMemory& operator=(const UcxHostMemory&) = delete;

  absl::string_view name() const override { return "ucx-host"; }
  // Carves `bytes` (zero-filled) from the region; ResourceExhausted when it is full.
  absl::Status Allocate(size_t bytes) override;
  size_t size() const override { return size_; }
  absl::Status CopyIn(size_t offset, const void* host, size_t bytes) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }
  const void* HostView(size_t offset) const override;
  uint64_t region_offset() const override { return offset_; }

 private:
  std::shared_ptr<UcxRegion> region_;
  uint64_t offset_ = 0;
  size_t size_ = 0;
  size_t carved_ = 0;  // rounded size handed back on destruction
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_UCX_HOST_MEMORY_H_
