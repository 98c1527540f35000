// Factory of CudaDeviceMemory (client/cuda_device_memory.cc, built only with
// CLUSTERKV_HAVE_CUDA). Internal: callers go through MakeDeviceMemory("cuda").
#ifndef CLUSTERKV_CLIENT_INTERNAL_CUDA_DEVICE_MEMORY_H_
#define CLUSTERKV_CLIENT_INTERNAL_CUDA_DEVICE_MEMORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "client/device_memory.h"

namespace clusterkv::client::internal {

// A CudaDeviceMemory bound to `device` (nothing allocated yet). FailedPrecondition when the
// device cannot be selected.
absl::StatusOr<std::unique_ptr<DeviceMemory>> MakeCudaDeviceMemory(int device);

}  // namespace clusterkv::client::internal

#endif  // CLUSTERKV_CLIENT_INTERNAL_CUDA_DEVICE_MEMORY_H_
