#include "gpu/backend.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/parallel.h"
#include "gpu/internal/cuda_backend.h"

namespace clusterkv::gpu {

absl::string_view BackendName(Backend backend) {
  return backend == Backend::kCuda ? "cuda" : "cpu";
}

int ExecContext::CpuThreads() const { return threads > 0 ? threads : DefaultThreads(); }

bool CudaCompiledIn() { return internal::CudaBuilt(); }

absl::Status CudaDeviceStatus() { return internal::CudaDeviceStatusImpl(); }

absl::StatusOr<ExecContext> MakeExecContext(absl::string_view backend, int threads) {
  if (threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be >= 0, got ", threads));
  }
  ExecContext ctx;
  ctx.threads = threads;
  const std::string name = absl::AsciiStrToLower(backend);
  if (name == "cpu") return ctx;
  if (name == "cuda" || name == "auto") {
    absl::Status device = CudaDeviceStatus();
    if (device.ok()) {
      ctx.backend = Backend::kCuda;
      return ctx;
    }
    if (name == "auto") return ctx;
    return device;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", backend, "' (expected cpu, cuda or auto)"));
}

}  // namespace clusterkv::gpu
