#include "client/device_memory.h"

#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "gpu/backend.h"

#if defined(CLUSTERKV_WITH_CUDA)
#include "client/internal/cuda_device_memory.h"
#endif

namespace clusterkv::client {

absl::Status CheckRegionRange(size_t size, size_t offset, size_t bytes) {
  if (offset > size || bytes > size - offset) {
    return absl::OutOfRangeError(absl::StrCat("bytes [", offset, ", ", offset + bytes,
                                              ") leave the ", size, "-byte region"));
  }
  return absl::OkStatus();
}

absl::Status HostDeviceMemory::Allocate(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("cannot allocate an empty region");
  if (!buffer_.empty()) return absl::FailedPreconditionError("region already allocated");
  try {
    buffer_.assign(bytes, 0);
  } catch (const std::bad_alloc&) {  // the one allocation here a caller can ask too much of
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " host bytes"));
  }
  return absl::OkStatus();
}

absl::Status HostDeviceMemory::CopyIn(size_t offset, const void* host, size_t bytes) {
  if (buffer_.empty()) return absl::FailedPreconditionError("region not allocated");
  if (absl::Status s = CheckRegionRange(buffer_.size(), offset, bytes); !s.ok()) return s;
  if (bytes > 0) std::memcpy(buffer_.data() + offset, host, bytes);
  return absl::OkStatus();
}

const void* HostDeviceMemory::HostView(size_t offset) const {
  if (offset >= buffer_.size()) return nullptr;
  return buffer_.data() + offset;
}

bool CudaDeviceMemoryCompiledIn() {
#if defined(CLUSTERKV_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<DeviceMemory>> MakeDeviceMemory(absl::string_view kind) {
  if (kind == "host") return std::unique_ptr<DeviceMemory>(new HostDeviceMemory());
  if (kind != "cuda" && kind != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("device memory kind must be host, cuda or auto, got '", kind, "'"));
  }
  absl::Status usable = gpu::CudaDeviceStatus();
  if (usable.ok() && !CudaDeviceMemoryCompiledIn()) {
    usable = absl::FailedPreconditionError("client built without CUDA");
  }
  if (!usable.ok()) {
    if (kind == "auto") return std::unique_ptr<DeviceMemory>(new HostDeviceMemory());
    return usable;
  }
#if defined(CLUSTERKV_WITH_CUDA)
  return internal::MakeCudaDeviceMemory(/*device=*/0);
#else
  return absl::FailedPreconditionError("client built without CUDA");
#endif
}

}  // namespace clusterkv::client
