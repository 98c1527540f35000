#include "core/stream_copy.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace clusterkv {
namespace {

#if defined(__x86_64__)

// Bytes until `p` is aligned to `alignment` (a power of two).
size_t Misalignment(const void* p, size_t alignment) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return (alignment - (a & (alignment - 1))) & (alignment - 1);
}

// Both bodies: align the destination with memcpy, stream whole 128-byte (AVX2) or 64-byte
// (SSE2) chunks with unaligned loads, memcpy the tail, fence.
__attribute__((target("avx2"))) void CopyAvx2(uint8_t* dst, const uint8_t* src, size_t n) {
  const size_t head = Misalignment(dst, 32);
  std::memcpy(dst, src, head);
  dst += head;
  src += head;
  n -= head;
  for (; n >= 128; n -= 128, dst += 128, src += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 96));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst), a);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + 32), b);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + 64), c);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + 96), d);
  }
  std::memcpy(dst, src, n);
  _mm_sfence();
}

void CopySse2(uint8_t* dst, const uint8_t* src, size_t n) {
  const size_t head = Misalignment(dst, 16);
  std::memcpy(dst, src, head);
  dst += head;
  src += head;
  n -= head;
  for (; n >= 64; n -= 64, dst += 64, src += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
  }
  std::memcpy(dst, src, n);
  _mm_sfence();
}

using CopyFn = void (*)(uint8_t*, const uint8_t*, size_t);

struct Choice {
  CopyFn fn;
  const char* kind;
};

Choice Choose() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return {&CopyAvx2, "avx2"};
  return {&CopySse2, "sse2"};  // every x86-64 CPU has SSE2
}

// Resolved once; a function-local constant, not mutable global state.
const Choice& Chosen() {
  static const Choice choice = Choose();
  return choice;
}

#endif  // __x86_64__

}  // namespace

void StreamCopy(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  if (bytes >= kStreamCopyMinBytes) {
    Chosen().fn(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), bytes);
    return;
  }
#endif
  std::memcpy(dst, src, bytes);
}

const char* StreamCopyKind() {
#if defined(__x86_64__)
  return Chosen().kind;
#else
  return "memcpy";
#endif
}

}  // namespace clusterkv
