#include "tools/clusterkv_eval/layer_data.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace clusterkv::eval {
namespace {

std::string ShapeString(const NpyArray& a) {
  return absl::StrCat("(", absl::StrJoin(a.shape, ", "), ")");
}

// Re-encodes `a` as `dtype` (a copy when it already is).
NpyArray Convert(const NpyArray& a, DType dtype) {
  if (a.dtype == dtype) return a;
  std::vector<float> f(static_cast<size_t>(a.NumElements()));
  ConvertToFloat(a.data.data(), a.dtype, a.NumElements(), f.data());
  return NpyArray::FromFloats(f, a.shape, dtype);
}

}  // namespace

absl::Status LayerTensors::Validate() const {
  const std::pair<const char*, const NpyArray*> all[] = {{"k", &k}, {"v", &v}, {"q", &q}};
  for (const auto& [name, a] : all) {
    if (a->shape.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " must be 3-d [heads, tokens, head_dim], got shape ", ShapeString(*a)));
    }
    for (int64_t d : a->shape) {
      if (d < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " has an empty dimension: shape ", ShapeString(*a)));
      }
    }
  }
  if (k.shape != v.shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("k shape ", ShapeString(k), " differs from v shape ", ShapeString(v)));
  }
  if (q.shape[2] != k.shape[2]) {
    return absl::InvalidArgumentError(
        absl::StrCat("q head_dim ", q.shape[2], " differs from k head_dim ", k.shape[2]));
  }
  if (q.shape[0] % k.shape[0] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_q_heads ", q.shape[0], " is not a multiple of num_kv_heads ", k.shape[0]));
  }
  return absl::OkStatus();
}

ConstMatrixView LayerTensors::GroupQueries(int64_t h, int64_t s) const {
  const int64_t g = group_size();
  const int64_t d = head_dim();
  const size_t first = static_cast<size_t>(((h * g) * num_queries() + s) * d);
  return ConstMatrixView(q.data.data() + first * DTypeSize(q.dtype), q.dtype, g, d,
                         num_queries() * d);
}

std::string LayerFilePath(const std::string& dir, int32_t layer, char tensor) {
  return (std::filesystem::path(dir) /
          absl::StrCat("layer_", layer, "_", std::string(1, tensor), ".npy"))
      .string();
}

absl::StatusOr<NpyDirSource> NpyDirSource::Open(const std::string& dir, bool bf16) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("--npy_dir ", dir, " is not a directory"));
  }
  std::vector<int32_t> layers;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string filename = entry.path().filename().string();  // owns the bytes
    absl::string_view name = filename;
    if (!absl::ConsumePrefix(&name, "layer_") || !absl::ConsumeSuffix(&name, "_k.npy")) continue;
    int32_t layer = 0;
    if (!absl::SimpleAtoi(name, &layer) || layer < 0) continue;
    layers.push_back(layer);
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  if (layers.empty()) {
    return absl::NotFoundError(
        absl::StrCat(dir, " holds no layer_<L>_k.npy files (see --help for the layout)"));
  }
  std::sort(layers.begin(), layers.end());
  for (int32_t layer : layers) {
    for (char t : {'v', 'q'}) {
      if (!std::filesystem::exists(LayerFilePath(dir, layer, t), ec)) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", layer, " has a k file but no ", LayerFilePath(dir, layer, t)));
      }
    }
  }
  return NpyDirSource(dir, bf16, std::move(layers));
}

absl::StatusOr<LayerTensors> NpyDirSource::Load(int32_t layer) {
  if (!std::binary_search(layers_.begin(), layers_.end(), layer)) {
    return absl::NotFoundError(absl::StrCat("layer ", layer, " is not in ", dir_));
  }
  LayerTensors t;
  const NpyReadOptions options{.bf16 = bf16_};
  ASSIGN_OR_RETURN(t.k, ReadNpy(LayerFilePath(dir_, layer, 'k'), options));
  ASSIGN_OR_RETURN(t.v, ReadNpy(LayerFilePath(dir_, layer, 'v'), options));
  ASSIGN_OR_RETURN(t.q, ReadNpy(LayerFilePath(dir_, layer, 'q'), options));
  absl::Status valid = t.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(dir_, " layer ", layer, ": ", valid.message()));
  }
  return t;
}

std::string NpyDirSource::Describe() const {
  return absl::StrCat("npy dir ", dir_, bf16_ ? " (bf16)" : "", ", ", layers_.size(), " layers");
}

absl::Status WriteLayerNpy(const std::string& dir, int32_t layer, const LayerTensors& tensors,
                           DType dtype) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  RETURN_IF_ERROR(WriteNpy(LayerFilePath(dir, layer, 'k'), Convert(tensors.k, dtype)));
  RETURN_IF_ERROR(WriteNpy(LayerFilePath(dir, layer, 'v'), Convert(tensors.v, dtype)));
  RETURN_IF_ERROR(WriteNpy(LayerFilePath(dir, layer, 'q'), Convert(tensors.q, dtype)));
  return absl::OkStatus();
}

}  // namespace clusterkv::eval
