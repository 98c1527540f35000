#include "tools/clusterkv_llama/tensor_file.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/half.h"
#include "core/kv_layout.h"
#include "core/tensor_view.h"
#include "tools/clusterkv_llama/ggml_quant.h"

namespace clusterkv::llama {

absl::string_view StoredDTypeName(StoredDType dtype) {
  switch (dtype) {
    case StoredDType::kF32:
      return "F32";
    case StoredDType::kF16:
      return "F16";
    case StoredDType::kBF16:
      return "BF16";
    case StoredDType::kQuantized:
      return "quantized";
    case StoredDType::kUnsupported:
      break;
  }
  return "unsupported";
}

size_t StoredDTypeSize(StoredDType dtype) {
  switch (dtype) {
    case StoredDType::kF32:
      return 4;
    case StoredDType::kF16:
    case StoredDType::kBF16:
      return 2;
    case StoredDType::kQuantized:
    case StoredDType::kUnsupported:
      break;
  }
  return 0;
}

absl::StatusOr<StoredDType> ParseStoredDType(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "f32" || n == "fp32" || n == "float32") return StoredDType::kF32;
  if (n == "f16" || n == "fp16" || n == "float16") return StoredDType::kF16;
  if (n == "bf16" || n == "bfloat16") return StoredDType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight dtype \"", name, "\" (use f32, f16 or bf16)"));
}

int64_t StoredTensor::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

namespace {

// A quantized tensor: its bytes checked against the block geometry of its GGML type, then
// decoded.
absl::StatusOr<std::vector<float>> DequantizeStored(const StoredTensor& t) {
  const int64_t n = t.NumElements();
  const GgmlTypeInfo* info = FindGgmlType(t.ggml_type);
  if (info == nullptr || !IsDequantizable(t.ggml_type)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", t.name, " of type ", t.type_name,
                                                   " has GGML type id ", t.ggml_type,
                                                   ", which is not a decodable block type"));
  }
  const int64_t inner = t.shape.empty() ? 1 : t.shape.back();
  if (inner % info->block_elements != 0) {
    return absl::DataLossError(absl::StrCat("tensor ", t.name, " of type ", info->name,
                                            " has rows of ", inner, " elements, not a multiple of ",
                                            info->block_elements));
  }
  const absl::StatusOr<int64_t> nbytes = GgmlBytes(t.ggml_type, n);
  if (!nbytes.ok() || static_cast<uint64_t>(*nbytes) != t.bytes.size()) {
    return absl::DataLossError(absl::StrCat("tensor ", t.name, " holds ", t.bytes.size(),
                                            " bytes for ", n, " elements of ", info->name));
  }
  std::vector<float> out(static_cast<size_t>(n));
  if (absl::Status s = DequantizeTensor(t.ggml_type, t.bytes, n, out.data()); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("tensor ", t.name, ": ", s.message()));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<float>> ReadAsFloat(const StoredTensor& t,
                                               const std::vector<int64_t>& expected_shape) {
  if (t.dtype == StoredDType::kUnsupported) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", t.name, " has type ", t.type_name,
                     ", which this engine does not read (it reads F32, F16, BF16 and the GGML "
                     "block types ",
                     DequantizableTypeNames(), "; convert the model to one of those first)"));
  }
  if (t.shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", t.name, " has shape ",
                                                   ShapeString(t.shape), ", the config implies ",
                                                   ShapeString(expected_shape)));
  }
  if (t.dtype == StoredDType::kQuantized) return DequantizeStored(t);
  const int64_t n = t.NumElements();
  // The readers already checked bytes.size() == n * element size; re-check what we rely on.
  if (static_cast<int64_t>(t.bytes.size()) != n * static_cast<int64_t>(StoredDTypeSize(t.dtype))) {
    return absl::DataLossError(
        absl::StrCat("tensor ", t.name, " holds ", t.bytes.size(), " bytes for ", n, " elements"));
  }
  std::vector<float> out(static_cast<size_t>(n));
  const DType core_dtype = t.dtype == StoredDType::kF32   ? DType::kFloat32
                           : t.dtype == StoredDType::kF16 ? DType::kFloat16
                                                          : DType::kBFloat16;
  ConvertToFloat(t.bytes.data(), core_dtype, n, out.data());  // unaligned loads are fine
  return out;
}

std::string EncodeFloats(const std::vector<float>& values, StoredDType dtype) {
  if (StoredDTypeSize(dtype) == 0) return std::string();  // no per-element encoding
  std::string out(values.size() * StoredDTypeSize(dtype), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == StoredDType::kF32) {
      std::memcpy(&out[4 * i], &values[i], 4);
    } else {
      const uint16_t h =
          dtype == StoredDType::kF16 ? FloatToHalf(values[i]) : FloatToBFloat16(values[i]);
      std::memcpy(&out[2 * i], &h, 2);
    }
  }
  return out;
}

std::vector<float> RoundTrip(const std::vector<float>& values, StoredDType dtype) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case StoredDType::kF16:
        out[i] = HalfToFloat(FloatToHalf(values[i]));
        break;
      case StoredDType::kBF16:
        out[i] = BFloat16ToFloat(FloatToBFloat16(values[i]));
        break;
      default:
        out[i] = values[i];
    }
  }
  return out;
}

}  // namespace clusterkv::llama
