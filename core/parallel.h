// ParallelFor: splits an index range over a fixed number of threads. Work is static-chunked so
// that results are deterministic regardless of scheduling. Threads are created per call: the
// callers (K-means iterations, batched heads, attention over heads) do milliseconds of work
// per call, so creation cost is negligible and no pool outlives its user.
#ifndef CLUSTERKV_CORE_PARALLEL_H_
#define CLUSTERKV_CORE_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace clusterkv {

// Calls fn(begin, end, worker) on disjoint chunks covering [0, n) using up to `threads` threads
// (the caller's thread is one of them). Returns when every chunk is done. threads <= 1 runs
// inline.
void ParallelFor(int64_t n, int threads,
                 const std::function<void(int64_t begin, int64_t end, int worker)>& fn);

// Threads to use when the caller asks for 0 ("all cores").
int DefaultThreads();

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_PARALLEL_H_
