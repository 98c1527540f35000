// Shared helpers of the clusterkv_llama tests: status assertions, small model configs and
// seeded random data.
#ifndef CLUSTERKV_TESTS_UNIT_LLAMA_TEST_UTIL_H_
#define CLUSTERKV_TESTS_UNIT_LLAMA_TEST_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tools/clusterkv_llama/model_config.h"

#define LLAMA_ASSERT_OK(expr)                \
  do {                                       \
    const ::absl::Status _st = (expr);       \
    ASSERT_TRUE(_st.ok()) << _st.ToString(); \
  } while (0)

#define LLAMA_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  LLAMA_ASSERT_OK_AND_ASSIGN_IMPL_(LLAMA_CONCAT_(_sor, __LINE__), lhs, expr)
#define LLAMA_CONCAT_INNER_(a, b) a##b
#define LLAMA_CONCAT_(a, b) LLAMA_CONCAT_INNER_(a, b)
#define LLAMA_ASSERT_OK_AND_ASSIGN_IMPL_(sor, lhs, expr) \
  auto sor = (expr);                                     \
  ASSERT_TRUE(sor.ok()) << sor.status().ToString();      \
  lhs = std::move(sor).value()

namespace clusterkv::llama::testing {

// A tiny Llama: 2 layers, dim 32, 4 query heads over 2 kv heads of 8 dims, vocab 50.
inline ModelConfig TinyConfig() {
  ModelConfig c;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 48;
  c.vocab = 50;
  c.rope_theta = 10000.0f;
  c.norm_eps = 1e-5f;
  c.max_context = 512;
  return c;
}

inline std::vector<float> RandomVector(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace clusterkv::llama::testing

#endif  // CLUSTERKV_TESTS_UNIT_LLAMA_TEST_UTIL_H_
