// Seeded test data shared by the unit tests: gaussian matrices and clustered keys.
#ifndef CLUSTERKV_TESTS_TESTING_RANDOM_DATA_H_
#define CLUSTERKV_TESTS_TESTING_RANDOM_DATA_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace clusterkv::testing {

// rows x cols standard normal values (mt19937 + Box-Muller: identical on every platform).
inline std::vector<float> Gaussian(int64_t rows, int64_t cols, uint32_t seed,
                                   float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (float& v : out) {
    const double u1 = (static_cast<double>(rng()) + 1.0) / 4294967297.0;
    const double u2 = static_cast<double>(rng()) / 4294967296.0;
    v = stddev * static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                                    std::cos(6.283185307179586 * u2));
  }
  return out;
}

// Keys drawn around `centers` random directions: row i belongs to center (i * 7919) % centers,
// with noise of `noise` per channel. Returns [rows, cols] and the true center of each row.
inline std::vector<float> ClusteredKeys(int64_t rows, int64_t cols, int centers, float noise,
                                        uint32_t seed, std::vector<int>* truth = nullptr) {
  std::vector<float> dirs = Gaussian(centers, cols, seed);
  std::vector<float> eps = Gaussian(rows, cols, seed + 1, noise);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  if (truth) truth->resize(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const int c = static_cast<int>((i * 7919) % centers);
    if (truth) (*truth)[i] = c;
    for (int64_t j = 0; j < cols; ++j) out[i * cols + j] = dirs[c * cols + j] + eps[i * cols + j];
  }
  return out;
}

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_TESTING_RANDOM_DATA_H_
