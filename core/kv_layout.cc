#include "core/kv_layout.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace clusterkv {
namespace {

// Generous upper bounds: they reject garbage from the wire, not any real model.
constexpr int32_t kMaxLayers = 1024;
constexpr int32_t kMaxHeads = 1024;
constexpr int32_t kMaxHeadDim = 1024;

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat32:
      return 4;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat32:
      return "fp32";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "fp16" || lower == "float16" || lower == "half") return DType::kFloat16;
  if (lower == "bf16" || lower == "bfloat16") return DType::kBFloat16;
  if (lower == "fp32" || lower == "float32" || lower == "float") return DType::kFloat32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "' (expected fp16, bf16 or fp32)"));
}

absl::Status KvLayout::Validate() const {
  if (num_layers <= 0 || num_layers > kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_layers must be in [1, ", kMaxLayers, "], got ", num_layers));
  }
  if (num_kv_heads <= 0 || num_kv_heads > kMaxHeads) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_kv_heads must be in [1, ", kMaxHeads, "], got ", num_kv_heads));
  }
  if (num_q_heads <= 0 || num_q_heads > kMaxHeads) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_q_heads must be in [1, ", kMaxHeads, "], got ", num_q_heads));
  }
  if (num_q_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_q_heads (", num_q_heads,
                                                   ") must be a multiple of num_kv_heads (",
                                                   num_kv_heads, ")"));
  }
  if (head_dim <= 0 || head_dim > kMaxHeadDim || head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must be even and in [2, ", kMaxHeadDim, "], got ", head_dim));
  }
  if (DTypeSize(dtype) == 0) return absl::InvalidArgumentError("unknown dtype");
  return absl::OkStatus();
}

std::string KvLayout::DebugString() const {
  return absl::StrCat("layers=", num_layers, " q_heads=", num_q_heads, " kv_heads=", num_kv_heads,
                      " head_dim=", head_dim, " dtype=", DTypeName(dtype));
}

KvLayout KvLayout::Llama3_8B() {
  KvLayout layout;
  layout.num_layers = 32;
  layout.num_q_heads = 32;
  layout.num_kv_heads = 8;
  layout.head_dim = 128;
  layout.dtype = DType::kFloat16;
  return layout;
}

}  // namespace clusterkv
