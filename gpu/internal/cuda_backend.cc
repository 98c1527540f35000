// The CUDA side of each op's dispatch (cuda_backend.h) over the kernels of gpu/cuda/: stages
// host inputs into device buffers, launches, and copies the results back. Compiled by the host
// compiler; the kernels are reached through the plain launch interface of gpu/cuda/kernels.h.
//
// Every call runs on its own stream and synchronises before returning, so calls from different
// threads are independent. Device memory and streams are held by the move-only owners below;
// nothing outlives the call.
#include "gpu/internal/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/kv_layout.h"
#include "core/status_macros.h"
#include "gpu/cuda/kernels.h"
#include "gpu/internal/kernel_math.h"
#include "gpu/internal/kmeans_common.h"

namespace clusterkv::gpu::internal {
namespace {

static_assert(static_cast<int>(DType::kFloat16) == kDTypeF16 &&
                  static_cast<int>(DType::kBFloat16) == kDTypeBF16 &&
                  static_cast<int>(DType::kFloat32) == kDTypeF32,
              "kernels take core::DType's numbering as a plain int");

// The one conversion of cudaError_t into absl::Status. "No usable device" errors are
// FailedPrecondition (the machine is in the wrong state for a CUDA request), allocation failure
// is ResourceExhausted, a rejected launch argument InvalidArgument, anything else Internal.
absl::Status CudaToStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat(what, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInitializationError:
    case cudaErrorStubLibrary:
    case cudaErrorCallRequiresNewerDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
      return absl::FailedPreconditionError(message);
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorInvalidValue:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

// Owns one cudaMalloc'd allocation. Move-only; freeing happens in the destructor (cudaFree
// waits for work using the memory, so a buffer may die while its stream is still busy).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // ResourceExhausted when the device is out of memory. A zero-byte buffer holds nullptr.
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, const char* what) {
    DeviceBuffer buffer;
    if (bytes == 0) return buffer;
    RETURN_IF_ERROR(CudaToStatus(cudaMalloc(&buffer.ptr_, bytes), what));
    buffer.bytes_ = bytes;
    return buffer;
  }

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void Reset() {
    // A failure here (e.g. a sticky launch error) leaves nothing to do but forget the pointer.
    if (ptr_ != nullptr) static_cast<void>(cudaFree(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Owns one non-blocking stream. Move-only.
class CudaStream {
 public:
  CudaStream() = default;
  ~CudaStream() { Reset(); }
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept {
    if (this != &other) {
      Reset();
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  // Makes `device` current on this thread and creates a stream on it.
  static absl::StatusOr<CudaStream> Create(int device) {
    RETURN_IF_ERROR(CudaToStatus(cudaSetDevice(device), "cudaSetDevice"));
    CudaStream stream;
    RETURN_IF_ERROR(CudaToStatus(cudaStreamCreateWithFlags(&stream.stream_, cudaStreamNonBlocking),
                                 "cudaStreamCreate"));
    return stream;
  }

  cudaStream_t get() const { return stream_; }

  // Waits for all queued work; reports errors of the kernels that ran.
  absl::Status Synchronize() const {
    return CudaToStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

 private:
  void Reset() {
    if (stream_ != nullptr) {
      static_cast<void>(cudaStreamSynchronize(stream_));
      static_cast<void>(cudaStreamDestroy(stream_));
    }
    stream_ = nullptr;
  }

  cudaStream_t stream_ = nullptr;
};

int DTypeIndex(DType dtype) { return static_cast<int>(dtype); }

size_t Bytes(int64_t count, size_t element_size) {
  return static_cast<size_t>(count) * element_size;
}

// Copies the [rows, cols] matrix m into dst as contiguous rows of `dtype`, which is m.dtype or
// fp32 (then converted on the host first). Stream-ordered; a pageable source may be released
// as soon as this returns (the runtime has staged it).
absl::Status UploadMatrix(const ConstMatrixView& m, DType dtype, void* dst, cudaStream_t stream) {
  if (m.rows == 0 || m.cols == 0) return absl::OkStatus();
  if (m.dtype == dtype) {
    const size_t element = DTypeSize(dtype);
    return CudaToStatus(
        cudaMemcpy2DAsync(dst, Bytes(m.cols, element), m.data, Bytes(m.row_stride, element),
                          Bytes(m.cols, element), static_cast<size_t>(m.rows),
                          cudaMemcpyHostToDevice, stream),
        "upload matrix");
  }
  if (dtype != DType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot upload ", DTypeName(m.dtype), " data as ", DTypeName(dtype)));
  }
  std::vector<float> converted(static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) m.LoadRow(r, &converted[r * m.cols]);
  return CudaToStatus(cudaMemcpyAsync(dst, converted.data(), Bytes(m.rows * m.cols, sizeof(float)),
                                      cudaMemcpyHostToDevice, stream),
                      "upload converted matrix");
}

template <typename T>
absl::Status Upload(const std::vector<T>& src, const DeviceBuffer& dst, cudaStream_t stream,
                    const char* what) {
  if (src.empty()) return absl::OkStatus();
  return CudaToStatus(cudaMemcpyAsync(dst.get(), src.data(), sizeof(T) * src.size(),
                                      cudaMemcpyHostToDevice, stream),
                      what);
}

template <typename T>
absl::Status Download(const DeviceBuffer& src, T* dst, size_t count, cudaStream_t stream,
                      const char* what) {
  if (count == 0) return absl::OkStatus();
  return CudaToStatus(
      cudaMemcpyAsync(dst, src.get(), sizeof(T) * count, cudaMemcpyDeviceToHost, stream), what);
}

absl::Status ProbeDevice() {
  int count = 0;
  // With no driver this fails (cudaErrorInsufficientDriver) and leaves `count` unwritten.
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    const absl::Status status = CudaToStatus(err, "cudaGetDeviceCount");
    return absl::FailedPreconditionError(status.message());
  }
  if (count < 1) return absl::FailedPreconditionError("cudaGetDeviceCount: no CUDA device");
  RETURN_IF_ERROR(CudaToStatus(cudaSetDevice(0), "cudaSetDevice(0)"));
  // The kernels must have an image (SASS or PTX) this device can load.
  const absl::Status image = CudaToStatus(cuda::CheckKernelImage(), "loading the kernels");
  if (!image.ok()) return absl::FailedPreconditionError(image.message());
  return absl::OkStatus();
}

}  // namespace

bool CudaBuilt() { return true; }

absl::Status CudaDeviceStatusImpl() {
  // Probed once: creating a CUDA context is slow and the answer does not change.
  static const absl::Status* const status = new absl::Status(ProbeDevice());
  return *status;
}

absl::Status CudaKMeans(const ConstMatrixView& keys, const KMeansOptions& options, int device,
                        std::vector<float>& centroids, std::vector<int32_t>& labels,
                        std::vector<float>& best_sim) {
  const int64_t n = keys.rows;
  const int32_t d = static_cast<int32_t>(keys.cols);
  const int32_t k = options.num_clusters;
  if (static_cast<int64_t>(centroids.size()) != static_cast<int64_t>(k) * d) {
    return absl::InvalidArgumentError(absl::StrCat("initial centroids hold ", centroids.size(),
                                                   " floats, expected ", k, " x ", d));
  }
  ASSIGN_OR_RETURN(CudaStream stream, CudaStream::Create(device));
  const cudaStream_t s = stream.get();
  ASSIGN_OR_RETURN(DeviceBuffer raw,
                   DeviceBuffer::Allocate(Bytes(n * d, DTypeSize(keys.dtype)), "keys"));
  ASSIGN_OR_RETURN(DeviceBuffer rows, DeviceBuffer::Allocate(Bytes(n * d, sizeof(float)), "rows"));
  ASSIGN_OR_RETURN(DeviceBuffer mu,
                   DeviceBuffer::Allocate(Bytes(int64_t{k} * d, sizeof(float)), "centroids"));
  ASSIGN_OR_RETURN(DeviceBuffer sums,
                   DeviceBuffer::Allocate(Bytes(int64_t{k} * d, sizeof(float)), "sums"));
  ASSIGN_OR_RETURN(DeviceBuffer counts,
                   DeviceBuffer::Allocate(Bytes(k, sizeof(int32_t)), "counts"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_labels,
                   DeviceBuffer::Allocate(Bytes(n, sizeof(int32_t)), "labels"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_best, DeviceBuffer::Allocate(Bytes(n, sizeof(float)), "best"));

  RETURN_IF_ERROR(UploadMatrix(keys, keys.dtype, raw.get(), s));
  RETURN_IF_ERROR(CudaToStatus(
      cuda::LaunchNormalizeRows(raw.get(), DTypeIndex(keys.dtype), n, d, d, rows.as<float>(), s),
      "normalise keys"));
  RETURN_IF_ERROR(Upload(centroids, mu, s, "upload centroids"));

  labels.resize(static_cast<size_t>(n));
  best_sim.resize(static_cast<size_t>(n));
  std::vector<float> host_sums(static_cast<size_t>(k) * d);
  std::vector<int32_t> host_counts(static_cast<size_t>(k));
  // Re-seeding reads rows on the host; they are normalised exactly as the CPU twin does.
  const NormalizedRowFn row_fn = [&keys, d](int64_t row, float* out) {
    keys.LoadRow(row, out);
    const float inv = InverseNorm(Dot(out, out, d));
    for (int32_t i = 0; i < d; ++i) out[i] *= inv;
  };

  auto assign = [&]() -> absl::Status {
    RETURN_IF_ERROR(
        CudaToStatus(cuda::LaunchAssign(rows.as<float>(), n, d, mu.as<float>(), k,
                                        dev_labels.as<int32_t>(), dev_best.as<float>(), s),
                     "assign"));
    RETURN_IF_ERROR(Download(dev_labels, labels.data(), labels.size(), s, "download labels"));
    return Download(dev_best, best_sim.data(), best_sim.size(), s, "download similarities");
  };

  for (int32_t it = 0; it < options.iterations; ++it) {
    RETURN_IF_ERROR(assign());
    RETURN_IF_ERROR(
        CudaToStatus(cuda::LaunchAccumulate(rows.as<float>(), dev_labels.as<int32_t>(), n, d, k,
                                            sums.as<float>(), counts.as<int32_t>(), s),
                     "accumulate"));
    RETURN_IF_ERROR(Download(sums, host_sums.data(), host_sums.size(), s, "download sums"));
    RETURN_IF_ERROR(Download(counts, host_counts.data(), host_counts.size(), s, "download counts"));
    RETURN_IF_ERROR(stream.Synchronize());
    // As the CPU twin: no re-seeding after the last assignment, whose empty clusters keep
    // their centroid (a re-seeded one would be judged by no assignment).
    UpdateCentroids(host_sums, host_counts, labels, best_sim,
                    /*reseed=*/it + 1 < options.iterations, row_fn, d, centroids);
    RETURN_IF_ERROR(Upload(centroids, mu, s, "upload centroids"));
  }
  RETURN_IF_ERROR(assign());
  return stream.Synchronize();
}

absl::Status CudaScoreCentroids(const ConstMatrixView& queries, const ConstMatrixView& centroids,
                                float scale, absl::Span<float> scores, int device) {
  const int32_t g = static_cast<int32_t>(queries.rows);
  const int32_t d = static_cast<int32_t>(queries.cols);
  const int32_t c = static_cast<int32_t>(centroids.rows);
  ASSIGN_OR_RETURN(CudaStream stream, CudaStream::Create(device));
  const cudaStream_t s = stream.get();
  ASSIGN_OR_RETURN(
      DeviceBuffer dev_queries,
      DeviceBuffer::Allocate(Bytes(int64_t{g} * d, DTypeSize(queries.dtype)), "queries"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_centroids,
                   DeviceBuffer::Allocate(Bytes(int64_t{c} * d, sizeof(float)), "centroids"));
  ASSIGN_OR_RETURN(
      DeviceBuffer workspace,
      DeviceBuffer::Allocate(Bytes(cuda::ScoreCentroidsWorkspaceFloats(g, d, c), sizeof(float)),
                             "scoring workspace"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_scores,
                   DeviceBuffer::Allocate(Bytes(c, sizeof(float)), "scores"));

  RETURN_IF_ERROR(UploadMatrix(queries, queries.dtype, dev_queries.get(), s));
  RETURN_IF_ERROR(UploadMatrix(centroids, DType::kFloat32, dev_centroids.get(), s));
  RETURN_IF_ERROR(
      CudaToStatus(cuda::LaunchScoreCentroids(dev_queries.get(), DTypeIndex(queries.dtype), g, d, d,
                                              dev_centroids.as<float>(), c, scale,
                                              workspace.as<float>(), dev_scores.as<float>(), s),
                   "score centroids"));
  RETURN_IF_ERROR(Download(dev_scores, scores.data(), scores.size(), s, "download scores"));
  return stream.Synchronize();
}

absl::Status CudaAttention(const AttentionTask& task, int device) {
  const int32_t g = static_cast<int32_t>(task.queries.rows);
  const int32_t d = static_cast<int32_t>(task.queries.cols);
  if (d > cuda::kMaxAttentionHeadDim) {
    return absl::UnimplementedError(absl::StrCat(
        "CUDA attention supports head_dim <= ", cuda::kMaxAttentionHeadDim, ", got ", d));
  }
  if (g > 65535) {
    return absl::UnimplementedError("CUDA attention supports at most 65535 queries");
  }
  // Keys and values go to the device in their own dtype when every span shares it, and as fp32
  // (converted on the host) otherwise.
  int64_t total = 0;
  DType dtype = DType::kFloat32;
  bool first = true;
  bool mixed = false;
  for (const KvSpan& span : task.spans) {
    if (span.keys.rows == 0) continue;
    if (first) dtype = span.keys.dtype;
    first = false;
    mixed = mixed || span.keys.dtype != dtype || span.values.dtype != dtype;
    total += span.keys.rows;
  }
  if (total == 0) return absl::InvalidArgumentError("attention over zero tokens");
  if (mixed) dtype = DType::kFloat32;
  const size_t row_bytes = Bytes(d, DTypeSize(dtype));

  ASSIGN_OR_RETURN(CudaStream stream, CudaStream::Create(device));
  const cudaStream_t s = stream.get();
  ASSIGN_OR_RETURN(DeviceBuffer dev_queries,
                   DeviceBuffer::Allocate(Bytes(int64_t{g} * d, sizeof(float)), "queries"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_keys,
                   DeviceBuffer::Allocate(static_cast<size_t>(total) * row_bytes, "keys"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_values,
                   DeviceBuffer::Allocate(static_cast<size_t>(total) * row_bytes, "values"));
  ASSIGN_OR_RETURN(
      DeviceBuffer workspace,
      DeviceBuffer::Allocate(Bytes(cuda::AttentionWorkspaceFloats(total, g, d), sizeof(float)),
                             "attention workspace"));
  ASSIGN_OR_RETURN(DeviceBuffer dev_out,
                   DeviceBuffer::Allocate(Bytes(int64_t{g} * d, sizeof(float)), "out"));

  RETURN_IF_ERROR(UploadMatrix(task.queries, DType::kFloat32, dev_queries.get(), s));
  std::vector<cuda::DeviceKvSpan> spans;
  spans.reserve(task.spans.size());
  int64_t offset = 0;
  for (const KvSpan& span : task.spans) {
    if (span.keys.rows == 0) continue;
    uint8_t* key_dst = dev_keys.as<uint8_t>() + static_cast<size_t>(offset) * row_bytes;
    uint8_t* value_dst = dev_values.as<uint8_t>() + static_cast<size_t>(offset) * row_bytes;
    RETURN_IF_ERROR(UploadMatrix(span.keys, dtype, key_dst, s));
    RETURN_IF_ERROR(UploadMatrix(span.values, dtype, value_dst, s));
    spans.push_back(cuda::DeviceKvSpan{key_dst, value_dst, span.keys.rows, d, d, offset});
    offset += span.keys.rows;
  }
  ASSIGN_OR_RETURN(DeviceBuffer dev_spans,
                   DeviceBuffer::Allocate(sizeof(cuda::DeviceKvSpan) * spans.size(), "spans"));
  RETURN_IF_ERROR(Upload(spans, dev_spans, s, "upload spans"));

  RETURN_IF_ERROR(CudaToStatus(
      cuda::LaunchAttention(dev_queries.as<float>(), g, d, dev_spans.as<cuda::DeviceKvSpan>(),
                            static_cast<int32_t>(spans.size()), total, DTypeIndex(dtype),
                            task.scale, workspace.as<float>(), dev_out.as<float>(), s),
      "attention"));
  RETURN_IF_ERROR(CudaToStatus(
      cudaMemcpy2DAsync(task.out.data, Bytes(task.out.row_stride, sizeof(float)), dev_out.get(),
                        Bytes(d, sizeof(float)), Bytes(d, sizeof(float)), static_cast<size_t>(g),
                        cudaMemcpyDeviceToHost, s),
      "download attention output"));
  return stream.Synchronize();
}

}  // namespace clusterkv::gpu::internal
