// CLUSTERKV_HD marks inline math that both the CPU twin and the CUDA kernels compile, so that
// the CPU tests cover the arithmetic the GPU runs.
#ifndef CLUSTERKV_CORE_HOST_DEVICE_H_
#define CLUSTERKV_CORE_HOST_DEVICE_H_

#if defined(__CUDACC__)
#define CLUSTERKV_HD __host__ __device__ __forceinline__
#else
#define CLUSTERKV_HD inline
#endif

#endif  // CLUSTERKV_CORE_HOST_DEVICE_H_
