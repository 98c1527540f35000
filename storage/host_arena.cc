#include "storage/host_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace clusterkv::storage {
namespace {

constexpr size_t kHugePageBytes = size_t{2} << 20;
constexpr size_t kSmallPageBytes = size_t{4} << 10;

// Rounds up to a multiple of `unit` (a power of two); the caller has checked for overflow.
size_t RoundUp(size_t bytes, size_t unit) { return (bytes + unit - 1) & ~(unit - 1); }

absl::Status MmapError(size_t bytes, int err) {
  return absl::ResourceExhaustedError(
      absl::StrCat("host arena: mmap of ", bytes, " bytes failed: ", std::strerror(err)));
}

// Explicit huge pages. MAP_NORESERVE is deliberately left out: with it the kernel skips the
// hugetlb reservation, so the mmap succeeds even with an empty pool and the first touch of a
// missing page raises SIGBUS. Without it an empty pool fails here with ENOMEM instead.
void* MapHugetlb(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
                 -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// A plain mapping of `bytes`, 2 MiB aligned when `align_huge` so transparent huge pages can
// back whole extents: maps one extra huge page and trims the unaligned head and tail. On
// failure returns nullptr with errno set by mmap.
void* MapPlain(size_t bytes, bool align_huge) {
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (!align_huge || bytes > std::numeric_limits<size_t>::max() - kHugePageBytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  const size_t padded = bytes + kHugePageBytes;
  void* p = mmap(nullptr, padded, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = RoundUp(start, kHugePageBytes);
  const size_t head = aligned - start;
  const size_t tail = padded - head - bytes;
  if (head > 0) munmap(p, head);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HostArena>> HostArena::Create(const HostArenaOptions& options) {
  const size_t capacity = options.capacity_bytes;
  if (capacity == 0) return absl::InvalidArgumentError("host arena: capacity_bytes is 0");
  if (capacity > std::numeric_limits<size_t>::max() - kHugePageBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("host arena: capacity of ", capacity, " bytes cannot be mapped"));
  }

  void* base = nullptr;
  size_t mapped = 0;
  const char* page_kind = "4k";
  if (options.huge_pages) {
    mapped = RoundUp(capacity, kHugePageBytes);
    base = MapHugetlb(mapped);
    if (base != nullptr) page_kind = "hugetlb";
  }
  if (base == nullptr) {
    mapped = RoundUp(capacity, kSmallPageBytes);
    base = MapPlain(mapped, options.huge_pages);
    if (base == nullptr) return MmapError(mapped, errno);
    // THP is advisory: a kernel without it (or with it set to "never") rejects or ignores
    // the advice, and the arena still works on 4 KiB pages.
    if (options.huge_pages && madvise(base, mapped, MADV_HUGEPAGE) == 0) page_kind = "thp";
  }

  uint8_t* bytes = static_cast<uint8_t*>(base);
  if (options.prefault) {
    // One write per 4 KiB page faults in every page (huge pages are faulted by their first
    // 4 KiB). Volatile so the compiler keeps every store.
    volatile uint8_t* p = bytes;
    for (size_t off = 0; off < mapped; off += kSmallPageBytes) p[off] = 0;
  }

  if (options.registrar != nullptr) {
    absl::Status status = options.registrar->Register(base, capacity);
    if (!status.ok()) {
      munmap(base, mapped);
      return status;
    }
  }
  return std::unique_ptr<HostArena>(
      new HostArena(bytes, mapped, capacity, page_kind, options.registrar));
}

HostArena::HostArena(uint8_t* base, size_t mapped, size_t capacity, const char* page_kind,
                     ArenaRegistrar* registrar)
    : base_(base),
      mapped_(mapped),
      capacity_(capacity),
      page_kind_(page_kind),
      registrar_(registrar) {}

HostArena::~HostArena() {
  if (registrar_ != nullptr) registrar_->Unregister(base_, capacity_);
  munmap(base_, mapped_);
}

}  // namespace clusterkv::storage
