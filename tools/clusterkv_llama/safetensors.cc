#include "tools/clusterkv_llama/safetensors.h"

#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_llama/internal/byte_reader.h"

namespace clusterkv::llama {
namespace {

using Json = nlohmann::json;

// Header JSON above this is refused (the reference implementation's limit is 100 MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
constexpr int64_t kMaxDim = int64_t{1} << 40;

StoredDType DTypeOf(const std::string& name) {
  if (name == "F32") return StoredDType::kF32;
  if (name == "F16") return StoredDType::kF16;
  if (name == "BF16") return StoredDType::kBF16;
  return StoredDType::kUnsupported;
}

// Element sizes of the dtypes we do not read, so their byte ranges can still be validated.
int64_t OtherDTypeSize(const std::string& name) {
  if (name == "F64" || name == "I64" || name == "U64") return 8;
  if (name == "I32" || name == "U32") return 4;
  if (name == "I16" || name == "U16") return 2;
  if (name == "I8" || name == "U8" || name == "BOOL" || name == "F8_E4M3" || name == "F8_E5M2") {
    return 1;
  }
  return 0;
}

absl::Status Bad(const std::string& name, absl::string_view why) {
  return absl::DataLossError(absl::StrCat("safetensors: tensor \"", name, "\": ", why));
}

absl::StatusOr<StoredTensor> ParseEntry(const std::string& name, const Json& e,
                                        absl::Span<const uint8_t> buffer) {
  if (!e.is_object()) return Bad(name, "entry is not an object");
  auto dtype_it = e.find("dtype");
  auto shape_it = e.find("shape");
  auto offsets_it = e.find("data_offsets");
  if (dtype_it == e.end() || !dtype_it->is_string()) return Bad(name, "missing dtype");
  if (shape_it == e.end() || !shape_it->is_array()) return Bad(name, "missing shape");
  if (offsets_it == e.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return Bad(name, "missing data_offsets [begin, end]");
  }
  StoredTensor t;
  t.name = name;
  t.type_name = dtype_it->get<std::string>();
  t.dtype = DTypeOf(t.type_name);
  int64_t elements = 1;
  for (const Json& d : *shape_it) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(kMaxDim)) {
      return Bad(name, "shape entries must be non-negative integers below 2^40");
    }
    t.shape.push_back(d.get<int64_t>());
    if (elements > kMaxDim) return Bad(name, "too many elements");
    elements *= t.shape.back();
  }
  if (elements > kMaxDim) return Bad(name, "too many elements");
  for (const Json& o : *offsets_it) {
    if (!o.is_number_unsigned()) return Bad(name, "data_offsets must be non-negative integers");
  }
  const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  const uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (begin > end || end > buffer.size()) {
    return Bad(name, absl::StrCat("data_offsets [", begin, ", ", end, ") leave the data buffer of ",
                                  buffer.size(), " bytes"));
  }
  const int64_t esize = t.dtype != StoredDType::kUnsupported
                            ? static_cast<int64_t>(StoredDTypeSize(t.dtype))
                            : OtherDTypeSize(t.type_name);
  if (esize == 0) return Bad(name, absl::StrCat("unknown dtype \"", t.type_name, "\""));
  if (static_cast<uint64_t>(elements * esize) != end - begin) {
    return Bad(name, absl::StrCat("shape ", ShapeString(t.shape), " of ", t.type_name, " needs ",
                                  elements * esize, " bytes, data_offsets span ", end - begin));
  }
  if (t.dtype != StoredDType::kUnsupported) {
    t.bytes = buffer.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
  }
  return t;
}

}  // namespace

const StoredTensor* SafetensorsIndex::Find(absl::string_view name) const {
  for (const StoredTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::StatusOr<SafetensorsIndex> ParseSafetensors(absl::Span<const uint8_t> bytes) {
  internal::ByteReader reader(bytes);
  uint64_t header_bytes = 0;
  RETURN_IF_ERROR(reader.Read(&header_bytes, "safetensors header length"));
  if (header_bytes > kMaxHeaderBytes) {
    return absl::DataLossError(absl::StrCat("safetensors: header length ", header_bytes,
                                            " exceeds the 100 MiB limit (not a safetensors "
                                            "file?)"));
  }
  absl::string_view header;
  RETURN_IF_ERROR(reader.ReadBytes(header_bytes, "safetensors JSON header", &header));
  const absl::Span<const uint8_t> buffer = bytes.subspan(reader.offset());
  Json j = Json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("safetensors: the header is not a JSON object");
  }
  SafetensorsIndex index;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return absl::DataLossError("safetensors: __metadata__ not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return absl::DataLossError("safetensors: __metadata__ values must be strings");
        }
        index.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(StoredTensor t, ParseEntry(it.key(), *it, buffer));
    index.tensors.push_back(std::move(t));
  }
  return index;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::MappedFile> file, internal::MappedFile::Open(path));
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(file->bytes());
  if (!index.ok()) {
    return absl::Status(index.status().code(), absl::StrCat(path, ": ", index.status().message()));
  }
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(std::move(file), *std::move(index)));
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (!names.insert(t.name).second || t.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: duplicate tensor ", t.name));
    }
    int64_t elements = 1;
    for (int64_t d : t.shape) elements *= d;
    if (t.dtype == StoredDType::kUnsupported ||
        t.bytes.size() != static_cast<size_t>(elements) * StoredDTypeSize(t.dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor ", t.name, " bytes disagree with its shape"));
    }
    header[t.name] = {{"dtype", std::string(StoredDTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  while (text.size() % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot create ", path));
  const uint64_t n = text.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof(n));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const TensorToWrite& t : tensors) {
    out.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
  }
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
