#include "core/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace clusterkv {

void ParallelFor(int64_t n, int threads,
                 const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (workers == 1) {
    fn(0, n, 0);
    return;
  }
  const int64_t chunk = (n + workers - 1) / workers;
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(workers - 1));
  for (int64_t w = 1; w < workers; ++w) {
    const int64_t begin = w * chunk;
    const int64_t end = std::min(n, begin + chunk);
    if (begin >= end) break;
    pool.emplace_back([&fn, begin, end, w] { fn(begin, end, static_cast<int>(w)); });
  }
  fn(0, std::min(n, chunk), 0);
  for (std::thread& t : pool) t.join();
}

int DefaultThreads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

}  // namespace clusterkv
