// GGML tensor types: the type ids of ggml.h with their names and block geometry (the one table
// the GGUF reader and the decoders share), and decoders from GGML's block-quantized formats to
// the fp32 the engine computes in.
//
// A quantized tensor is a sequence of fixed-size blocks, each holding `block_elements`
// consecutive values of a row in `block_bytes` bytes: per-block fp16 scales (and mins) and
// packed small integers. The decoders read every multi-byte field with memcpy, so blocks may
// sit at any address (GGUF places 18-byte Q4_0 blocks back to back). Results are exact: every
// product of an fp16 scale (11 significant bits) with the block's small integers (at most 12
// bits together) fits in fp32's 24, so the only rounding is the final add or subtract of a
// block minimum, the same with or without fused multiply-add; values match the gguf Python
// package's decoders bit for bit (Q8_K's fp32 scale times an int8 is one rounded multiply).
// Decoding is a pure function of the bytes: every bit pattern decodes (NaN or infinite scales
// give NaN or infinite values), nothing is read outside `src`.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GGML_QUANT_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GGML_QUANT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace clusterkv::llama {

// ggml.h's ids of the types the engine names.
inline constexpr uint32_t kGgmlTypeF32 = 0;
inline constexpr uint32_t kGgmlTypeF16 = 1;
inline constexpr uint32_t kGgmlTypeQ4_0 = 2;
inline constexpr uint32_t kGgmlTypeQ4_1 = 3;
inline constexpr uint32_t kGgmlTypeQ5_0 = 6;
inline constexpr uint32_t kGgmlTypeQ5_1 = 7;
inline constexpr uint32_t kGgmlTypeQ8_0 = 8;
inline constexpr uint32_t kGgmlTypeQ2_K = 10;
inline constexpr uint32_t kGgmlTypeQ3_K = 11;
inline constexpr uint32_t kGgmlTypeQ4_K = 12;
inline constexpr uint32_t kGgmlTypeQ5_K = 13;
inline constexpr uint32_t kGgmlTypeQ6_K = 14;
inline constexpr uint32_t kGgmlTypeQ8_K = 15;
inline constexpr uint32_t kGgmlTypeIQ2_XXS = 16;
inline constexpr uint32_t kGgmlTypeBF16 = 30;

// One GGML type: `block_elements` values take `block_bytes` bytes (1 and the element size for
// the plain types F32, F16, I8, ...).
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;  // "Q4_K"
  int64_t block_elements;
  int64_t block_bytes;
};

// The table entry of `type`, or nullptr when the table does not know it.
const GgmlTypeInfo* FindGgmlType(uint32_t type);

// The GGML name of a tensor type ("Q4_K"), or "" when unknown.
absl::string_view GgmlTypeName(uint32_t type);

// True for the block-quantized types this module decodes: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K and Q8_K. False for the plain types (F32, F16, BF16 are converted by
// tensor_file.h), the codebook types (IQ*), the ternary and FP4 types, and unknown ids.
bool IsDequantizable(uint32_t type);

// The names of the dequantizable types, comma-separated, for error messages.
std::string DequantizableTypeNames();

// Bytes that `n` elements of `type` occupy. InvalidArgument when the type is unknown or `n` is
// negative or not a multiple of its block.
absl::StatusOr<int64_t> GgmlBytes(uint32_t type, int64_t n);

// Decodes `n` elements of `type` from `src` into dst[0, n) on the calling thread.
// InvalidArgument (naming the type) when the type is not dequantizable, `n` is negative or not
// a multiple of the block, or `src` does not hold exactly the bytes of `n` elements; dst is
// untouched then.
//
// Example: one Q8_0 block (fp16 scale, then 32 int8 values).
//   uint8_t block[34] = {0x00, 0x38};  // d = 0.5
//   block[2] = 4;                      // first value 4 * 0.5
//   float out[32];
//   RETURN_IF_ERROR(DequantizeRow(kGgmlTypeQ8_0, block, 32, out));  // out[0] == 2.0f
[[nodiscard]] absl::Status DequantizeRow(uint32_t type, absl::Span<const uint8_t> src, int64_t n,
                                         float* dst);

// DequantizeRow over a whole tensor of `n` elements (its rows are whole numbers of blocks and
// back to back, so the tensor is one run of blocks), split by blocks over `threads` threads
// (0: DefaultThreads()); small tensors decode on the calling thread. Same errors as
// DequantizeRow; the result does not depend on the thread count.
[[nodiscard]] absl::Status DequantizeTensor(uint32_t type, absl::Span<const uint8_t> src, int64_t n,
                                            float* dst, int threads = 0);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_GGML_QUANT_H_
