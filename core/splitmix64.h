// SplitMix64: the project's one seeded generator for synthetic data, sampling and tests. Tiny,
// counter-based (a stream can be split by seeding each part) and bit-identical on every
// platform, unlike std:: distributions, so seeded inputs are reproducible across machines.
#ifndef CLUSTERKV_CORE_SPLITMIX64_H_
#define CLUSTERKV_CORE_SPLITMIX64_H_

#include <cstdint>

namespace clusterkv {

// Advances `state` and returns the next 64 random bits.
inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_SPLITMIX64_H_
