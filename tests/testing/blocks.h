// Deterministic test blocks: the bytes of block (tenant, sequence, layer, head, cluster) are a
// function of its identity, so any reader can check a block bit-exact without keeping a copy.
#ifndef CLUSTERKV_TESTS_TESTING_BLOCKS_H_
#define CLUSTERKV_TESTS_TESTING_BLOCKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "storage/key_codec.h"

namespace clusterkv::testing {

inline storage::BlockKey Key(const std::string& tenant, const std::string& seq, int layer,
                             int head, int cluster) {
  return storage::BlockKey{SequenceKey{tenant, seq}, ClusterId{HeadId{layer, head}, cluster}};
}

inline std::vector<uint8_t> BlockBytes(const storage::BlockKey& key, size_t size) {
  uint64_t state = std::hash<std::string>()(key.sequence.tenant + "/" + key.sequence.sequence) ^
                   (uint64_t(key.cluster.head.layer) << 40) ^
                   (uint64_t(key.cluster.head.kv_head) << 20) ^ uint64_t(key.cluster.cluster);
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    out[i] = static_cast<uint8_t>(state >> 56);
  }
  return out;
}

}  // namespace clusterkv::testing

#endif  // CLUSTERKV_TESTS_TESTING_BLOCKS_H_
