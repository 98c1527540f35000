// KvLayout: the shape and element type of one model's KV cache. Every other module reads
// dimensions from here, so a layout is validated once and trusted afterwards.
#ifndef CLUSTERKV_CORE_KV_LAYOUT_H_
#define CLUSTERKV_CORE_KV_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace clusterkv {

// Element type of stored keys and values. Compute always accumulates in fp32.
enum class DType : uint8_t { kFloat16 = 0, kBFloat16 = 1, kFloat32 = 2 };

// Bytes per element.
size_t DTypeSize(DType dtype);
// "fp16", "bf16", "fp32".
absl::string_view DTypeName(DType dtype);
// Parses the names above (also "float16", "bfloat16", "float32"); InvalidArgument otherwise.
absl::StatusOr<DType> ParseDType(absl::string_view name);

// Attention geometry of a model. Immutable value type; thread-compatible.
struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;  // GQA: num_q_heads is a multiple of this.
  int32_t head_dim = 0;
  DType dtype = DType::kFloat16;

  // Query heads that share one kv head.
  int32_t GroupSize() const { return num_q_heads / num_kv_heads; }
  // Bytes of one token's key (or value) for one kv head.
  size_t HeadVectorBytes() const { return static_cast<size_t>(head_dim) * DTypeSize(dtype); }
  // Bytes of K and V for one token across all layers and kv heads.
  size_t TokenBytes() const {
    return 2 * HeadVectorBytes() * static_cast<size_t>(num_kv_heads) * num_layers;
  }

  // InvalidArgument unless every dimension is positive and bounded, head_dim is even (RoPE
  // pairs) and num_q_heads is a multiple of num_kv_heads.
  absl::Status Validate() const;
  std::string DebugString() const;

  // Llama-3-8B: 32 layers, 32 q heads, 8 kv heads, head_dim 128, fp16.
  static KvLayout Llama3_8B();

  friend bool operator==(const KvLayout& a, const KvLayout& b) {
    return a.num_layers == b.num_layers && a.num_q_heads == b.num_q_heads &&
           a.num_kv_heads == b.num_kv_heads && a.head_dim == b.head_dim && a.dtype == b.dtype;
  }
  friend bool operator!=(const KvLayout& a, const KvLayout& b) { return !(a == b); }
};

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_KV_LAYOUT_H_
