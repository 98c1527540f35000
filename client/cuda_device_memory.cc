// CudaDeviceMemory: a cudaMalloc region fed through a pinned host mirror (cudaHostAlloc) with
// cudaMemcpyAsync on a stream owned by the object. Built only with CLUSTERKV_HAVE_CUDA.
//
// Why a full-size mirror rather than a small staging ring: the gpu/ ops take host views
// (docs/decisions.md D7), so the CPU-visible copy is what attention reads today, and a pinned
// source is what makes the host-to-device copy truly asynchronous.
#include "client/internal/cuda_device_memory.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/device_memory.h"

namespace clusterkv::client::internal {
namespace {

// The one cudaError_t -> absl::Status conversion of client/.
absl::Status CudaStatus(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

// Move-only owners, one per handle kind.
struct DeviceFree {
  void operator()(void* p) const { (void)cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { (void)cudaFreeHost(p); }
};
using DeviceBuffer = std::unique_ptr<void, DeviceFree>;
using PinnedBuffer = std::unique_ptr<void, HostFree>;

class Stream {
 public:
  Stream() = default;
  explicit Stream(cudaStream_t s) : stream_(s) {}
  Stream(Stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    if (this != &o) {
      Reset();
      stream_ = std::exchange(o.stream_, nullptr);
    }
    return *this;
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { Reset(); }
  cudaStream_t get() const { return stream_; }

 private:
  void Reset() {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;
};

class CudaDeviceMemory final : public DeviceMemory {
 public:
  explicit CudaDeviceMemory(int device) : device_(device) {}
  // Members die in reverse order: the stream is synchronised first so no copy outlives its
  // buffers.
  ~CudaDeviceMemory() override {
    if (stream_.get() != nullptr) (void)cudaStreamSynchronize(stream_.get());
  }

  absl::string_view name() const override { return "cuda"; }

  absl::Status Allocate(size_t bytes) override {
    if (bytes == 0) return absl::InvalidArgumentError("cannot allocate an empty region");
    if (size_ != 0) return absl::FailedPreconditionError("region already allocated");
    if (absl::Status s = CudaStatus(cudaSetDevice(device_), "cudaSetDevice"); !s.ok()) return s;
    void* device = nullptr;
    if (absl::Status s = CudaStatus(cudaMalloc(&device, bytes), "cudaMalloc"); !s.ok()) return s;
    DeviceBuffer device_owner(device);
    void* pinned = nullptr;
    if (absl::Status s =
            CudaStatus(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault), "cudaHostAlloc");
        !s.ok()) {
      return s;
    }
    PinnedBuffer pinned_owner(pinned);
    cudaStream_t stream = nullptr;
    if (absl::Status s = CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                    "cudaStreamCreate");
        !s.ok()) {
      return s;
    }
    std::memset(pinned, 0, bytes);
    device_buffer_ = std::move(device_owner);
    mirror_ = std::move(pinned_owner);
    stream_ = Stream(stream);
    size_ = bytes;
    return CudaStatus(cudaMemsetAsync(device_buffer_.get(), 0, bytes, stream_.get()),
                      "cudaMemsetAsync");
  }

  size_t size() const override { return size_; }

  absl::Status CopyIn(size_t offset, const void* host, size_t bytes) override {
    if (size_ == 0) return absl::FailedPreconditionError("region not allocated");
    if (absl::Status s = CheckRegionRange(size_, offset, bytes); !s.ok()) return s;
    if (bytes == 0) return absl::OkStatus();
    uint8_t* mirror = static_cast<uint8_t*>(mirror_.get()) + offset;
    std::memcpy(mirror, host, bytes);
    return CudaStatus(cudaMemcpyAsync(static_cast<uint8_t*>(device_buffer_.get()) + offset, mirror,
                                      bytes, cudaMemcpyHostToDevice, stream_.get()),
                      "cudaMemcpyAsync");
  }

  absl::Status Synchronize() override {
    if (size_ == 0) return absl::OkStatus();
    return CudaStatus(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
  }

  const void* HostView(size_t offset) const override {
    if (offset >= size_) return nullptr;
    return static_cast<const uint8_t*>(mirror_.get()) + offset;
  }

 private:
  int device_;
  size_t size_ = 0;
  DeviceBuffer device_buffer_;
  PinnedBuffer mirror_;
  Stream stream_;  // declared last: destroyed first
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceMemory>> MakeCudaDeviceMemory(int device) {
  int count = 0;
  // With no driver the count is left unwritten (DESIGN.md section 10): check the code first.
  if (absl::Status s = CudaStatus(cudaGetDeviceCount(&count), "cudaGetDeviceCount"); !s.ok()) {
    return absl::FailedPreconditionError(s.message());
  }
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " requested, ", count, " present"));
  }
  return std::unique_ptr<DeviceMemory>(new CudaDeviceMemory(device));
}

}  // namespace clusterkv::client::internal
