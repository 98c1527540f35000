// Tests of storage/host_arena: mapping, page kinds, whole-range reads and writes, and the
// registrar protocol (one Register after mapping, one Unregister before unmapping).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "storage/host_arena.h"

namespace clusterkv::storage {
namespace {

// Hand-written fake: counts calls, remembers the range and can be told to fail.
class FakeRegistrar : public ArenaRegistrar {
 public:
  absl::Status Register(void* base, size_t bytes) override {
    ++register_calls;
    registered_base = base;
    registered_bytes = bytes;
    return register_status;
  }
  void Unregister(void* base, size_t bytes) override {
    ++unregister_calls;
    unregistered_base = base;
    unregistered_bytes = bytes;
  }

  absl::Status register_status = absl::OkStatus();
  int register_calls = 0;
  int unregister_calls = 0;
  void* registered_base = nullptr;
  size_t registered_bytes = 0;
  void* unregistered_base = nullptr;
  size_t unregistered_bytes = 0;
};

// Writes a position-dependent pattern over the whole arena and reads it back.
void WriteAndVerify(HostArena& arena) {
  uint8_t* base = arena.base();
  const size_t n = arena.capacity();
  for (size_t i = 0; i < n; i += sizeof(uint64_t)) {
    const uint64_t v = i * 0x9e3779b97f4a7c15ull;
    std::memcpy(base + i, &v, std::min(sizeof(v), n - i));
  }
  for (size_t i = 0; i < n; i += sizeof(uint64_t)) {
    const uint64_t want = i * 0x9e3779b97f4a7c15ull;
    uint64_t got = 0;
    const size_t len = std::min(sizeof(got), n - i);
    std::memcpy(&got, base + i, len);
    ASSERT_EQ(std::memcmp(&got, &want, len), 0) << "at offset " << i;
  }
}

TEST(HostArenaTest, WritesAndReadsTheWholeRange) {
  HostArenaOptions options;
  options.capacity_bytes = size_t{8} << 20;
  auto arena = HostArena::Create(options);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ((*arena)->capacity(), options.capacity_bytes);
  ASSERT_NE((*arena)->base(), nullptr);
  const std::string kind = (*arena)->page_kind();
  EXPECT_TRUE(kind == "hugetlb" || kind == "thp" || kind == "4k") << kind;
  WriteAndVerify(**arena);
}

TEST(HostArenaTest, PrefaultedPlainPagesAreZeroAndWritable) {
  HostArenaOptions options;
  options.capacity_bytes = (size_t{3} << 20) + 12345;  // not a page multiple
  options.huge_pages = false;
  options.prefault = true;
  auto arena = HostArena::Create(options);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_STREQ((*arena)->page_kind(), "4k");
  const uint8_t* base = (*arena)->base();
  for (size_t i = 0; i < options.capacity_bytes; ++i) {
    ASSERT_EQ(base[i], 0) << "at offset " << i;
  }
  WriteAndVerify(**arena);
}

TEST(HostArenaTest, HugePageArenaIsAlignedWhenBackedByHugePages) {
  HostArenaOptions options;
  options.capacity_bytes = size_t{4} << 20;
  options.huge_pages = true;
  options.prefault = true;
  auto arena = HostArena::Create(options);
  ASSERT_TRUE(arena.ok()) << arena.status();
  if (std::string((*arena)->page_kind()) != "4k") {
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*arena)->base()) % (size_t{2} << 20), 0u);
  }
  WriteAndVerify(**arena);
}

TEST(HostArenaTest, ZeroCapacityIsInvalidArgument) {
  HostArenaOptions options;
  options.capacity_bytes = 0;
  FakeRegistrar registrar;
  options.registrar = &registrar;
  auto arena = HostArena::Create(options);
  EXPECT_EQ(arena.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registrar.register_calls, 0);
}

TEST(HostArenaTest, UnmappableCapacityIsResourceExhausted) {
  for (bool huge : {false, true}) {
    HostArenaOptions options;
    options.capacity_bytes = size_t{1} << 62;  // beyond any user address space
    options.huge_pages = huge;
    auto arena = HostArena::Create(options);
    EXPECT_EQ(arena.status().code(), absl::StatusCode::kResourceExhausted) << arena.status();
    options.capacity_bytes = std::numeric_limits<size_t>::max();
    arena = HostArena::Create(options);
    EXPECT_EQ(arena.status().code(), absl::StatusCode::kResourceExhausted) << arena.status();
  }
}

TEST(HostArenaTest, RegistrarSeesOneRegisterAndOneUnregister) {
  FakeRegistrar registrar;
  HostArenaOptions options;
  options.capacity_bytes = (size_t{2} << 20) + 4096;
  options.registrar = &registrar;
  void* base = nullptr;
  {
    auto arena = HostArena::Create(options);
    ASSERT_TRUE(arena.ok()) << arena.status();
    base = (*arena)->base();
    EXPECT_EQ(registrar.register_calls, 1);
    EXPECT_EQ(registrar.registered_base, base);
    EXPECT_EQ(registrar.registered_bytes, options.capacity_bytes);
    EXPECT_EQ(registrar.unregister_calls, 0);
    WriteAndVerify(**arena);
  }
  EXPECT_EQ(registrar.register_calls, 1);
  EXPECT_EQ(registrar.unregister_calls, 1);
  EXPECT_EQ(registrar.unregistered_base, base);
  EXPECT_EQ(registrar.unregistered_bytes, options.capacity_bytes);
}

TEST(HostArenaTest, RegistrarFailureFailsCreate) {
  FakeRegistrar registrar;
  registrar.register_status = absl::UnavailableError("transport down");
  HostArenaOptions options;
  options.capacity_bytes = size_t{1} << 20;
  options.registrar = &registrar;
  auto arena = HostArena::Create(options);
  EXPECT_EQ(arena.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(arena.status().message(), "transport down");
  EXPECT_EQ(registrar.register_calls, 1);
  // Nothing was registered, so nothing is unregistered.
  EXPECT_EQ(registrar.unregister_calls, 0);
}

TEST(HostArenaTest, RepeatedCreateAndDestroy) {
  // 64 x 256 MiB, touched at both ends: only works if each mapping is released (or at least
  // never charged in full, thanks to MAP_NORESERVE).
  for (int i = 0; i < 64; ++i) {
    HostArenaOptions options;
    options.capacity_bytes = size_t{256} << 20;
    auto arena = HostArena::Create(options);
    ASSERT_TRUE(arena.ok()) << arena.status();
    (*arena)->base()[0] = 1;
    (*arena)->base()[options.capacity_bytes - 1] = 1;
  }
}

}  // namespace
}  // namespace clusterkv::storage
