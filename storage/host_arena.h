// HostArena: the host tier's memory, one large mapping made once at start (DESIGN.md section
// 6). A registrar supplied by the owner (the daemon registers the arena with UCX; a GPU host
// pins it with cudaHostRegister) sees the whole range once after mapping and once before
// unmapping. Move-only RAII owner; thread-safe for concurrent reads/writes of disjoint bytes.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<HostArena> arena,
//                    HostArena::Create({.capacity_bytes = 8ull << 30}));
//   std::memcpy(arena->base() + offset, block.data(), block.size());
#ifndef CLUSTERKV_STORAGE_HOST_ARENA_H_
#define CLUSTERKV_STORAGE_HOST_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace clusterkv::storage {

// Hook for registering the arena with a transport or device. Implementations must be
// thread-compatible; the arena calls Register once and Unregister once.
class ArenaRegistrar {
 public:
  virtual ~ArenaRegistrar() = default;
  // Called after mapping; a failure fails HostArena::Create.
  virtual absl::Status Register(void* base, size_t bytes) = 0;
  // Called before unmapping.
  virtual void Unregister(void* base, size_t bytes) = 0;
};

struct HostArenaOptions {
  size_t capacity_bytes = size_t{1} << 30;
  // Try MAP_HUGETLB first, then transparent huge pages (madvise), then plain pages.
  bool huge_pages = true;
  // Touch every page at creation so the first puts do not pay page faults.
  bool prefault = false;
  ArenaRegistrar* registrar = nullptr;  // not owned; must outlive the arena
};

class HostArena {
 public:
  // InvalidArgument for a zero capacity; ResourceExhausted when the mapping fails; the
  // registrar's error when registration fails (the mapping is released).
  static absl::StatusOr<std::unique_ptr<HostArena>> Create(const HostArenaOptions& options);
  ~HostArena();
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  uint8_t* base() const { return base_; }
  size_t capacity() const { return capacity_; }
  // "hugetlb", "thp" or "4k": what backs the mapping.
  const char* page_kind() const { return page_kind_; }

 private:
  HostArena(uint8_t* base, size_t mapped, size_t capacity, const char* page_kind,
            ArenaRegistrar* registrar);
  uint8_t* base_;
  size_t mapped_;
  size_t capacity_;
  const char* page_kind_;
  ArenaRegistrar* registrar_;
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_HOST_ARENA_H_
