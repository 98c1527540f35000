#include "storage/index_record.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace clusterkv::storage {
namespace {

constexpr uint8_t kMetaVersion = 1;
constexpr uint8_t kIndexVersion = 1;

template <typename T>
void Put(T value, std::string* out) {
  char buf[sizeof(T)];
  std::memcpy(buf, &value, sizeof(T));  // little endian on every supported host
  out->append(buf, sizeof(T));
}

// Sequential reader that fails instead of reading past the end.
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T* value) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(value, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool GetBytes(void* dst, size_t n) {
    if (in_.size() < n) return false;
    if (n == 0) return true;  // dst may be null (an empty vector's data())
    std::memcpy(dst, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

}  // namespace

std::string EncodeSequenceMeta(const SequenceMeta& meta) {
  std::string out;
  Put<uint8_t>(kMetaVersion, &out);
  Put<int32_t>(meta.layout.num_layers, &out);
  Put<int32_t>(meta.layout.num_q_heads, &out);
  Put<int32_t>(meta.layout.num_kv_heads, &out);
  Put<int32_t>(meta.layout.head_dim, &out);
  Put<uint8_t>(static_cast<uint8_t>(meta.layout.dtype), &out);
  Put<int64_t>(meta.num_tokens, &out);
  return out;
}

absl::StatusOr<SequenceMeta> DecodeSequenceMeta(absl::string_view bytes) {
  Reader r(bytes);
  uint8_t version = 0, dtype = 0;
  SequenceMeta meta;
  if (!r.Get(&version) || version != kMetaVersion || !r.Get(&meta.layout.num_layers) ||
      !r.Get(&meta.layout.num_q_heads) || !r.Get(&meta.layout.num_kv_heads) ||
      !r.Get(&meta.layout.head_dim) || !r.Get(&dtype) || !r.Get(&meta.num_tokens) || !r.done() ||
      dtype > static_cast<uint8_t>(DType::kFloat32)) {
    return absl::DataLossError(absl::StrCat("malformed sequence metadata (", bytes.size(), " bytes)"));
  }
  meta.layout.dtype = static_cast<DType>(dtype);
  if (absl::Status s = meta.layout.Validate(); !s.ok()) {
    return absl::DataLossError(absl::StrCat("stored layout is invalid: ", s.message()));
  }
  return meta;
}

absl::StatusOr<std::string> EncodeHeadIndex(const HeadIndexRecord& record) {
  if (record.head_dim < 1 ||
      record.centroids.size() != record.sizes.size() * static_cast<size_t>(record.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index has ", record.centroids.size(), " centroid values for ", record.sizes.size(),
        " clusters of width ", record.head_dim));
  }
  for (int32_t s : record.sizes) {
    if (s < 0) return absl::InvalidArgumentError("negative cluster size");
  }
  std::string out;
  out.reserve(16 + record.centroids.size() * 4 + record.sizes.size() * 4);
  Put<uint8_t>(kIndexVersion, &out);
  Put<int32_t>(record.head_dim, &out);
  Put<int32_t>(record.num_clusters(), &out);
  out.append(reinterpret_cast<const char*>(record.sizes.data()), record.sizes.size() * 4);
  out.append(reinterpret_cast<const char*>(record.centroids.data()), record.centroids.size() * 4);
  return out;
}

absl::StatusOr<HeadIndexRecord> DecodeHeadIndex(absl::string_view bytes) {
  Reader r(bytes);
  uint8_t version = 0;
  int32_t clusters = 0;
  HeadIndexRecord record;
  const auto bad = [&] {
    return absl::DataLossError(absl::StrCat("malformed index record (", bytes.size(), " bytes)"));
  };
  if (!r.Get(&version) || version != kIndexVersion || !r.Get(&record.head_dim) ||
      !r.Get(&clusters) || record.head_dim < 1 || clusters < 0 ||
      bytes.size() != 9 + static_cast<size_t>(clusters) * 4 * (1 + static_cast<size_t>(record.head_dim))) {
    return bad();
  }
  record.sizes.resize(static_cast<size_t>(clusters));
  record.centroids.resize(static_cast<size_t>(clusters) * record.head_dim);
  if (!r.GetBytes(record.sizes.data(), record.sizes.size() * 4) ||
      !r.GetBytes(record.centroids.data(), record.centroids.size() * 4) || !r.done()) {
    return bad();
  }
  for (int32_t s : record.sizes) {
    if (s < 0) return bad();
  }
  return record;
}

}  // namespace clusterkv::storage
