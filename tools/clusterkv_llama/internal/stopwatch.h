// Wall time elapsed since a steady_clock time point, for the engine's step timings and progress
// lines.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_STOPWATCH_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_STOPWATCH_H_

#include <chrono>
#include <cstdint>

namespace clusterkv::llama::internal {

using SteadyClock = std::chrono::steady_clock;

inline int64_t MicrosSince(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count();
}

inline double SecondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

}  // namespace clusterkv::llama::internal

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_INTERNAL_STOPWATCH_H_
