# CUDA-vs-CPU comparisons of the compute ops (label gpu). Built with or without CUDA: without a
# usable device every comparison skips and only the fallback test runs.
clusterkv_test(cuda_vs_cpu_test gpu
  cuda_vs_cpu_test.cc
  LIBS clusterkv_gpu)
