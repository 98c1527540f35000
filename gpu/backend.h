// Backend selection for the compute ops. Every op in gpu/ takes an ExecContext and runs on the
// CPU twin or the CUDA kernel; both compute the same results within fp32 rounding.
#ifndef CLUSTERKV_GPU_BACKEND_H_
#define CLUSTERKV_GPU_BACKEND_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv::gpu {

enum class Backend { kCpu, kCuda };

absl::string_view BackendName(Backend backend);

// Where and how an op runs. Cheap to copy; thread-compatible.
struct ExecContext {
  Backend backend = Backend::kCpu;
  // CPU threads; 0 means all cores.
  int threads = 0;
  // CUDA device ordinal when backend == kCuda.
  int cuda_device = 0;

  int CpuThreads() const;
};

// True when this build contains the CUDA kernels (CLUSTERKV_CUDA found nvcc).
bool CudaCompiledIn();

// OK when a CUDA device can run the kernels; FailedPrecondition saying why not (not compiled
// in, no driver, no device) otherwise.
absl::Status CudaDeviceStatus();

// "cpu", "cuda" or "auto" (CUDA when CudaDeviceStatus() is OK, else CPU). A "cuda" request on a
// machine without a usable device is FailedPrecondition; an unknown name InvalidArgument.
absl::StatusOr<ExecContext> MakeExecContext(absl::string_view backend, int threads);

}  // namespace clusterkv::gpu

#endif  // CLUSTERKV_GPU_BACKEND_H_
