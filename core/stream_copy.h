// StreamCopy: memcpy for destinations this thread will not read again, e.g. a recalled block
// written into another process's cache memory. Large copies use non-temporal (streaming)
// stores: no read-for-ownership of the destination lines and no eviction of the copier's own
// working set, which on the build machine moves 64 KiB blocks ~15% faster than glibc's memcpy
// (DESIGN.md section 10; docs/decisions.md D51). The bytes are globally visible when it
// returns (store fence), so a following release/flag publishes them like a plain memcpy.
#ifndef CLUSTERKV_CORE_STREAM_COPY_H_
#define CLUSTERKV_CORE_STREAM_COPY_H_

#include <cstddef>

namespace clusterkv {

// Copies below this size go through memcpy (the destination lines are likely cached).
inline constexpr size_t kStreamCopyMinBytes = 4096;

// Copies `bytes` from `src` to `dst` (no overlap, any alignment).
void StreamCopy(void* dst, const void* src, size_t bytes);

// Which implementation StreamCopy uses on this CPU: "avx2", "sse2" or "memcpy".
const char* StreamCopyKind();

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_STREAM_COPY_H_
