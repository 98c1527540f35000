#include "tools/clusterkv_llama/gguf.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "tools/clusterkv_llama/internal/byte_reader.h"

namespace clusterkv::llama {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 8;  // ggml uses 4; allow some slack, refuse nonsense
constexpr int64_t kMaxElements = int64_t{1} << 40;

size_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      break;
  }
  return 0;
}

bool KnownType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

absl::Status ReadString(internal::ByteReader& r, absl::string_view what, std::string* out) {
  uint64_t n = 0;
  RETURN_IF_ERROR(r.Read(&n, what));
  absl::string_view bytes;
  RETURN_IF_ERROR(r.ReadBytes(n, what, &bytes));
  out->assign(bytes.data(), bytes.size());
  return absl::OkStatus();
}

// Reads one scalar of numeric/bool type `t` into `v` (by kind) and returns it as a double too.
absl::Status ReadScalar(internal::ByteReader& r, GgufType t, GgufValue* v, double* as_double) {
  switch (t) {
#define CLUSTERKV_GGUF_CASE(kind, ctype, field)    \
  case GgufType::kind: {                           \
    ctype x{};                                     \
    RETURN_IF_ERROR(r.Read(&x, "metadata value")); \
    v->field = x;                                  \
    *as_double = static_cast<double>(x);           \
    return absl::OkStatus();                       \
  }
    CLUSTERKV_GGUF_CASE(kUint8, uint8_t, uint_value)
    CLUSTERKV_GGUF_CASE(kInt8, int8_t, int_value)
    CLUSTERKV_GGUF_CASE(kUint16, uint16_t, uint_value)
    CLUSTERKV_GGUF_CASE(kInt16, int16_t, int_value)
    CLUSTERKV_GGUF_CASE(kUint32, uint32_t, uint_value)
    CLUSTERKV_GGUF_CASE(kInt32, int32_t, int_value)
    CLUSTERKV_GGUF_CASE(kFloat32, float, float_value)
    CLUSTERKV_GGUF_CASE(kUint64, uint64_t, uint_value)
    CLUSTERKV_GGUF_CASE(kInt64, int64_t, int_value)
    CLUSTERKV_GGUF_CASE(kFloat64, double, float_value)
#undef CLUSTERKV_GGUF_CASE
    case GgufType::kBool: {
      uint8_t x = 0;
      RETURN_IF_ERROR(r.Read(&x, "metadata value"));
      if (x > 1) return absl::DataLossError(absl::StrCat("GGUF: bool value ", int{x}));
      v->bool_value = x != 0;
      *as_double = x;
      return absl::OkStatus();
    }
    case GgufType::kString:
    case GgufType::kArray:
      break;
  }
  return absl::InternalError("ReadScalar on a non-scalar type");
}

absl::Status ReadValue(internal::ByteReader& r, GgufType type, int depth, GgufValue* v) {
  v->type = type;
  if (type == GgufType::kString) return ReadString(r, "metadata string", &v->string_value);
  if (type != GgufType::kArray) {
    double unused;
    return ReadScalar(r, type, v, &unused);
  }
  if (depth >= kMaxArrayDepth) {
    return absl::DataLossError(absl::StrCat("GGUF: arrays nested deeper than ", kMaxArrayDepth));
  }
  uint32_t element = 0;
  uint64_t count = 0;
  RETURN_IF_ERROR(r.Read(&element, "array element type"));
  RETURN_IF_ERROR(r.Read(&count, "array length"));
  if (!KnownType(element)) {
    return absl::DataLossError(absl::StrCat("GGUF: unknown array element type ", element));
  }
  v->element_type = static_cast<GgufType>(element);
  // Every element takes at least this many bytes: refuse counts the file cannot hold before
  // reserving memory for them.
  const size_t min_bytes = v->element_type == GgufType::kString  ? 8
                           : v->element_type == GgufType::kArray ? 12
                                                                 : ScalarSize(v->element_type);
  if (count > r.remaining() / min_bytes) {
    return absl::DataLossError(absl::StrCat("truncated file: array of ", count, " ",
                                            GgufTypeName(v->element_type), " elements at offset ",
                                            r.offset(), " needs at least ", count * min_bytes,
                                            " bytes, only ", r.remaining(), " remain"));
  }
  if (v->element_type == GgufType::kString) {
    v->strings.resize(static_cast<size_t>(count));
    for (std::string& s : v->strings) RETURN_IF_ERROR(ReadString(r, "array string", &s));
  } else if (v->element_type == GgufType::kArray) {
    v->arrays.resize(static_cast<size_t>(count));
    for (GgufValue& a : v->arrays) RETURN_IF_ERROR(ReadValue(r, GgufType::kArray, depth + 1, &a));
  } else {
    v->numbers.resize(static_cast<size_t>(count));
    GgufValue scratch;
    for (double& x : v->numbers) RETURN_IF_ERROR(ReadScalar(r, v->element_type, &scratch, &x));
  }
  return absl::OkStatus();
}

absl::Status ReadTensorInfo(internal::ByteReader& r, StoredTensor* t, uint32_t* type,
                            uint64_t* offset) {
  RETURN_IF_ERROR(ReadString(r, "tensor name", &t->name));
  uint32_t n_dims = 0;
  RETURN_IF_ERROR(r.Read(&n_dims, "tensor n_dims"));
  if (n_dims == 0 || n_dims > kMaxDims) {
    return absl::DataLossError(
        absl::StrCat("GGUF: tensor \"", t->name, "\" has ", n_dims, " dims (1..8 allowed)"));
  }
  std::vector<int64_t> ne(n_dims);
  int64_t elements = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    uint64_t d = 0;
    RETURN_IF_ERROR(r.Read(&d, "tensor dim"));
    if (d == 0 || d > static_cast<uint64_t>(kMaxElements) ||
        elements > kMaxElements / static_cast<int64_t>(d)) {
      return absl::DataLossError(
          absl::StrCat("GGUF: tensor \"", t->name, "\" has an invalid dim ", d));
    }
    ne[i] = static_cast<int64_t>(d);
    elements *= ne[i];
  }
  t->shape.assign(ne.rbegin(), ne.rend());  // outermost first
  RETURN_IF_ERROR(r.Read(type, "tensor type"));
  RETURN_IF_ERROR(r.Read(offset, "tensor offset"));
  return absl::OkStatus();
}

// Little-endian append helpers for the writer.
template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}

void PutString(std::string* out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out->append(s);
}

void PutScalar(std::string* out, GgufType t, double x) {
  switch (t) {
    case GgufType::kUint8:
      Put<uint8_t>(out, static_cast<uint8_t>(x));
      break;
    case GgufType::kInt8:
      Put<int8_t>(out, static_cast<int8_t>(x));
      break;
    case GgufType::kUint16:
      Put<uint16_t>(out, static_cast<uint16_t>(x));
      break;
    case GgufType::kInt16:
      Put<int16_t>(out, static_cast<int16_t>(x));
      break;
    case GgufType::kUint32:
      Put<uint32_t>(out, static_cast<uint32_t>(x));
      break;
    case GgufType::kInt32:
      Put<int32_t>(out, static_cast<int32_t>(x));
      break;
    case GgufType::kFloat32:
      Put<float>(out, static_cast<float>(x));
      break;
    case GgufType::kBool:
      Put<uint8_t>(out, x != 0 ? 1 : 0);
      break;
    case GgufType::kUint64:
      Put<uint64_t>(out, static_cast<uint64_t>(x));
      break;
    case GgufType::kInt64:
      Put<int64_t>(out, static_cast<int64_t>(x));
      break;
    case GgufType::kFloat64:
      Put<double>(out, x);
      break;
    case GgufType::kString:
    case GgufType::kArray:
      break;
  }
}

void PutValue(std::string* out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kString:
      PutString(out, v.string_value);
      return;
    case GgufType::kArray:
      Put<uint32_t>(out, static_cast<uint32_t>(v.element_type));
      Put<uint64_t>(out, v.ArraySize());
      for (const std::string& s : v.strings) PutString(out, s);
      for (double x : v.numbers) PutScalar(out, v.element_type, x);
      for (const GgufValue& a : v.arrays) PutValue(out, a);
      return;
    case GgufType::kUint8:
    case GgufType::kUint16:
    case GgufType::kUint32:
    case GgufType::kUint64:
      // Exact for 64-bit values too (no detour through double).
      if (v.type == GgufType::kUint64) {
        Put<uint64_t>(out, v.uint_value);
      } else {
        PutScalar(out, v.type, static_cast<double>(v.uint_value));
      }
      return;
    case GgufType::kInt8:
    case GgufType::kInt16:
    case GgufType::kInt32:
    case GgufType::kInt64:
      if (v.type == GgufType::kInt64) {
        Put<int64_t>(out, v.int_value);
      } else {
        PutScalar(out, v.type, static_cast<double>(v.int_value));
      }
      return;
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      PutScalar(out, v.type, v.float_value);
      return;
    case GgufType::kBool:
      Put<uint8_t>(out, v.bool_value ? 1 : 0);
      return;
  }
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

absl::string_view GgufTypeName(GgufType type) {
  static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
  const uint32_t i = static_cast<uint32_t>(type);
  return i < 13 ? kNames[i] : "unknown";
}

GgufValue GgufValue::Uint32(uint32_t v) {
  GgufValue x;
  x.type = GgufType::kUint32;
  x.uint_value = v;
  return x;
}
GgufValue GgufValue::Uint64(uint64_t v) {
  GgufValue x;
  x.type = GgufType::kUint64;
  x.uint_value = v;
  return x;
}
GgufValue GgufValue::Int32(int32_t v) {
  GgufValue x;
  x.type = GgufType::kInt32;
  x.int_value = v;
  return x;
}
GgufValue GgufValue::Float32(float v) {
  GgufValue x;
  x.type = GgufType::kFloat32;
  x.float_value = v;
  return x;
}
GgufValue GgufValue::Bool(bool v) {
  GgufValue x;
  x.type = GgufType::kBool;
  x.bool_value = v;
  return x;
}
GgufValue GgufValue::String(std::string v) {
  GgufValue x;
  x.type = GgufType::kString;
  x.string_value = std::move(v);
  return x;
}
GgufValue GgufValue::StringArray(std::vector<std::string> v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.element_type = GgufType::kString;
  x.strings = std::move(v);
  return x;
}
GgufValue GgufValue::NumberArray(GgufType element_type, std::vector<double> v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.element_type = element_type;
  x.numbers = std::move(v);
  return x;
}
GgufValue GgufValue::ArrayOfArrays(std::vector<GgufValue> v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.element_type = GgufType::kArray;
  x.arrays = std::move(v);
  return x;
}

uint64_t GgufValue::ArraySize() const {
  if (type != GgufType::kArray) return 0;
  return strings.size() + numbers.size() + arrays.size();
}

const GgufValue* GgufIndex::Find(absl::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

const StoredTensor* GgufIndex::FindTensor(absl::string_view name) const {
  for (const StoredTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::StatusOr<int64_t> GgufIndex::GetInt(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF: no metadata key ", key));
  switch (v->type) {
    case GgufType::kUint8:
    case GgufType::kUint16:
    case GgufType::kUint32:
      return static_cast<int64_t>(v->uint_value);
    case GgufType::kUint64:
      if (v->uint_value > static_cast<uint64_t>(INT64_MAX)) break;
      return static_cast<int64_t>(v->uint_value);
    case GgufType::kInt8:
    case GgufType::kInt16:
    case GgufType::kInt32:
    case GgufType::kInt64:
      return v->int_value;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("GGUF: metadata ", key, " is a ",
                                                 GgufTypeName(v->type), ", expected an integer"));
}

absl::StatusOr<double> GgufIndex::GetFloat(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF: no metadata key ", key));
  if (v->type == GgufType::kFloat32 || v->type == GgufType::kFloat64) return v->float_value;
  absl::StatusOr<int64_t> i = GetInt(key);
  if (i.ok()) return static_cast<double>(*i);
  return absl::InvalidArgumentError(
      absl::StrCat("GGUF: metadata ", key, " is a ", GgufTypeName(v->type), ", expected a number"));
}

absl::StatusOr<std::string> GgufIndex::GetString(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF: no metadata key ", key));
  if (v->type != GgufType::kString) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF: metadata ", key, " is a ",
                                                   GgufTypeName(v->type), ", expected a string"));
  }
  return v->string_value;
}

absl::StatusOr<GgufIndex> ParseGguf(absl::Span<const uint8_t> bytes) {
  internal::ByteReader r(bytes);
  uint32_t magic = 0;
  RETURN_IF_ERROR(r.Read(&magic, "GGUF magic"));
  if (magic != kMagic) return absl::InvalidArgumentError("not a GGUF file (bad magic)");
  GgufIndex index;
  RETURN_IF_ERROR(r.Read(&index.version, "GGUF version"));
  if (index.version != 2 && index.version != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GGUF version ", index.version, " is not supported (2 and 3 are; ",
        index.version > 0xffff ? "a big-endian file?)" : "version 1 used 32-bit counts)"));
  }
  uint64_t tensor_count = 0, kv_count = 0;
  RETURN_IF_ERROR(r.Read(&tensor_count, "tensor count"));
  RETURN_IF_ERROR(r.Read(&kv_count, "metadata count"));
  // Minimum encoded sizes: a kv is key length + type + 1 byte; a tensor info 8 + 4 + 8 + 4 + 8.
  if (kv_count > r.remaining() / 13 || tensor_count > r.remaining() / 32) {
    return absl::DataLossError(absl::StrCat("truncated file: ", kv_count, " metadata entries and ",
                                            tensor_count, " tensors cannot fit in the ",
                                            r.remaining(), " bytes that remain"));
  }
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key;
    RETURN_IF_ERROR(ReadString(r, "metadata key", &key));
    uint32_t type = 0;
    RETURN_IF_ERROR(r.Read(&type, "metadata value type"));
    if (!KnownType(type)) {
      return absl::DataLossError(
          absl::StrCat("GGUF: metadata ", key, " has unknown value type ", type));
    }
    GgufValue value;
    RETURN_IF_ERROR(ReadValue(r, static_cast<GgufType>(type), 0, &value));
    index.metadata.emplace_back(std::move(key), std::move(value));
  }
  if (const GgufValue* a = index.Find("general.alignment"); a != nullptr) {
    if (a->type != GgufType::kUint32 || a->uint_value == 0 ||
        (a->uint_value & (a->uint_value - 1)) != 0) {
      return absl::DataLossError("GGUF: general.alignment must be a u32 power of two");
    }
    index.alignment = static_cast<uint32_t>(a->uint_value);
  }
  std::vector<uint32_t> types(static_cast<size_t>(tensor_count));
  std::vector<uint64_t> offsets(types.size());
  index.tensors.resize(types.size());
  std::set<std::string> names;
  for (size_t i = 0; i < types.size(); ++i) {
    RETURN_IF_ERROR(ReadTensorInfo(r, &index.tensors[i], &types[i], &offsets[i]));
    if (!names.insert(index.tensors[i].name).second) {
      return absl::DataLossError(absl::StrCat("GGUF: duplicate tensor ", index.tensors[i].name));
    }
  }
  index.data_offset = AlignUp(r.offset(), index.alignment);
  if (index.data_offset > bytes.size()) {
    return absl::DataLossError(absl::StrCat("truncated file: the data section starts at ",
                                            index.data_offset, " but the file holds ", bytes.size(),
                                            " bytes"));
  }
  const absl::Span<const uint8_t> data = bytes.subspan(static_cast<size_t>(index.data_offset));
  for (size_t i = 0; i < types.size(); ++i) {
    StoredTensor& t = index.tensors[i];
    const GgmlTypeInfo* info = FindGgmlType(types[i]);
    if (info == nullptr) {
      return absl::DataLossError(
          absl::StrCat("GGUF: tensor ", t.name, " has unknown GGML type ", types[i]));
    }
    t.type_name = info->name;
    t.ggml_type = types[i];
    t.dtype = types[i] == kGgmlTypeF32    ? StoredDType::kF32
              : types[i] == kGgmlTypeF16  ? StoredDType::kF16
              : types[i] == kGgmlTypeBF16 ? StoredDType::kBF16
              : IsDequantizable(types[i]) ? StoredDType::kQuantized
                                          : StoredDType::kUnsupported;
    const int64_t inner = t.shape.back();
    if (inner % info->block_elements != 0) {
      return absl::DataLossError(absl::StrCat("GGUF: tensor ", t.name, " of type ", info->name,
                                              " has ne[0] = ", inner, ", not a multiple of ",
                                              info->block_elements));
    }
    const uint64_t nbytes =
        static_cast<uint64_t>(t.NumElements() / info->block_elements * info->block_bytes);
    if (offsets[i] % index.alignment != 0) {
      return absl::DataLossError(absl::StrCat("GGUF: tensor ", t.name, " offset ", offsets[i],
                                              " is not a multiple of the alignment ",
                                              index.alignment));
    }
    if (offsets[i] > data.size() || nbytes > data.size() - offsets[i]) {
      return absl::DataLossError(absl::StrCat("truncated file: tensor ", t.name, " needs bytes [",
                                              offsets[i], ", ", offsets[i] + nbytes,
                                              ") of a data section of ", data.size(), " bytes"));
    }
    if (t.dtype != StoredDType::kUnsupported) {
      t.bytes = data.subspan(static_cast<size_t>(offsets[i]), static_cast<size_t>(nbytes));
    }
  }
  return index;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::MappedFile> file, internal::MappedFile::Open(path));
  absl::StatusOr<GgufIndex> index = ParseGguf(file->bytes());
  if (!index.ok()) {
    return absl::Status(index.status().code(), absl::StrCat(path, ": ", index.status().message()));
  }
  return std::unique_ptr<GgufFile>(new GgufFile(std::move(file), *std::move(index)));
}

GgufTensorToWrite ToGgufTensor(const TensorToWrite& t) {
  GgufTensorToWrite g;
  g.name = t.name;
  g.ggml_type = t.dtype == StoredDType::kF16    ? kGgmlTypeF16
                : t.dtype == StoredDType::kBF16 ? kGgmlTypeBF16
                                                : kGgmlTypeF32;
  g.shape = t.shape;
  g.bytes = t.bytes;
  return g;
}

absl::Status WriteGguf(const std::string& path, const GgufMetadata& metadata,
                       const std::vector<GgufTensorToWrite>& tensors, uint32_t version) {
  if (version != 2 && version != 3) {
    return absl::InvalidArgumentError("GGUF writer: version must be 2 or 3");
  }
  uint64_t alignment = 32;
  for (const auto& [key, value] : metadata) {
    if (key != "general.alignment") continue;
    if (value.type != GgufType::kUint32 || value.uint_value == 0 ||
        (value.uint_value & (value.uint_value - 1)) != 0) {
      return absl::InvalidArgumentError("GGUF writer: general.alignment must be a u32 power of 2");
    }
    alignment = value.uint_value;
  }
  std::string head;
  Put<uint32_t>(&head, kMagic);
  Put<uint32_t>(&head, version);
  Put<uint64_t>(&head, tensors.size());
  Put<uint64_t>(&head, metadata.size());
  for (const auto& [key, value] : metadata) {
    PutString(&head, key);
    Put<uint32_t>(&head, static_cast<uint32_t>(value.type));
    PutValue(&head, value);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const GgufTensorToWrite& t : tensors) {
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF writer: duplicate tensor ", t.name));
    }
    PutString(&head, t.name);
    Put<uint32_t>(&head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {
      Put<uint64_t>(&head, static_cast<uint64_t>(*it));  // innermost first
    }
    Put<uint32_t>(&head, t.ggml_type);
    Put<uint64_t>(&head, offset);
    offset = AlignUp(offset + t.bytes.size(), alignment);
  }
  head.resize(static_cast<size_t>(AlignUp(head.size(), alignment)), '\0');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot create ", path));
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  for (const GgufTensorToWrite& t : tensors) {
    out.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
    const size_t pad = static_cast<size_t>(AlignUp(t.bytes.size(), alignment) - t.bytes.size());
    const std::string zeros(pad, '\0');
    out.write(zeros.data(), static_cast<std::streamsize>(pad));
  }
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
