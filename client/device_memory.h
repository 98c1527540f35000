// DeviceMemory: the backing memory of a sequence's device cluster cache. gpu::ClusterCache
// decides which token rows (slots) hold which cluster; a DeviceMemory holds the bytes. A
// region is allocated once, filled by CopyIn as recalled blocks arrive, and read by attention.
//
// Implementations:
//   HostDeviceMemory  plain host memory: the CPU path (and what the tests run).
//   CudaDeviceMemory  (builds with CLUSTERKV_HAVE_CUDA) a cudaMalloc region fed through a pinned
//                     host mirror with cudaMemcpyAsync on its own stream. The gpu/ ops take host
//                     views today (docs/decisions.md D7), so HostView() returns the mirror; the
//                     device copy is what device-pointer kernels will read.
//
// Thread-compatible: one Sequence (one engine thread) owns each instance.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<DeviceMemory> mem, MakeDeviceMemory("auto"));
//   RETURN_IF_ERROR(mem->Allocate(64 << 20));
//   RETURN_IF_ERROR(mem->CopyIn(offset, block_payload, bytes));
//   RETURN_IF_ERROR(mem->Synchronize());
//   const void* keys = mem->HostView(offset);
#ifndef CLUSTERKV_CLIENT_DEVICE_MEMORY_H_
#define CLUSTERKV_CLIENT_DEVICE_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::client {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;

  // "host" or "cuda".
  virtual absl::string_view name() const = 0;

  // Allocates the region of `bytes` bytes (once). InvalidArgument for 0 bytes,
  // FailedPrecondition when already allocated, ResourceExhausted when the memory is not there.
  [[nodiscard]] virtual absl::Status Allocate(size_t bytes) = 0;
  // Region size; 0 before Allocate.
  virtual size_t size() const = 0;

  // Copies `bytes` host bytes into the region at `offset`. The copy may complete
  // asynchronously on the device; `host` may be reused as soon as this returns.
  // FailedPrecondition before Allocate; OutOfRange when [offset, offset + bytes) leaves the
  // region; Internal for a device error.
  [[nodiscard]] virtual absl::Status CopyIn(size_t offset, const void* host, size_t bytes) = 0;

  // Waits until every CopyIn so far has landed on the device. Internal for a device error.
  [[nodiscard]] virtual absl::Status Synchronize() = 0;

  // Host-readable pointer to byte `offset` of the region (for the CPU attention path), valid
  // until the object dies; nullptr before Allocate or when offset >= size().
  virtual const void* HostView(size_t offset) const = 0;
};

// Plain host buffer (zero-initialised).
class HostDeviceMemory final : public DeviceMemory {
 public:
  absl::string_view name() const override { return "host"; }
  absl::Status Allocate(size_t bytes) override;
  size_t size() const override { return buffer_.size(); }
  absl::Status CopyIn(size_t offset, const void* host, size_t bytes) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }
  const void* HostView(size_t offset) const override;

 private:
  std::vector<uint8_t> buffer_;
};

// True when this build contains CudaDeviceMemory.
bool CudaDeviceMemoryCompiledIn();

// "host": HostDeviceMemory. "cuda": CudaDeviceMemory on device 0; FailedPrecondition when the
// build has no CUDA or no device is usable. "auto": cuda when usable, else host.
// InvalidArgument for any other kind.
[[nodiscard]] absl::StatusOr<std::unique_ptr<DeviceMemory>> MakeDeviceMemory(
    absl::string_view kind);

// Checks [offset, offset + bytes) against a region of `size` bytes: OutOfRange otherwise.
// Shared by the implementations.
absl::Status CheckRegionRange(size_t size, size_t offset, size_t bytes);

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_DEVICE_MEMORY_H_
