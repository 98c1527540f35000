// CRC32C (Castagnoli) of block bytes: every block written to a tier carries one and every read
// verifies it, so a corrupted block is DataLoss, never silent data. Hardware-accelerated with
// SSE4.2 where available.
#ifndef CLUSTERKV_STORAGE_CHECKSUM_H_
#define CLUSTERKV_STORAGE_CHECKSUM_H_

#include <cstddef>
#include <cstdint>

namespace clusterkv::storage {

// CRC32C of data[0, n), continuing from `crc` (0 for a fresh checksum).
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_CHECKSUM_H_
