#include "storage/index_record.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace clusterkv::storage {
namespace {

constexpr uint8_t kMetaVersion = 1;
// Version 1: head_dim, C, sizes, centroids. Version 2 adds a byte (1: key statistics follow)
// and then C key norms and C key spreads.
constexpr uint8_t kIndexVersion1 = 1;
constexpr uint8_t kIndexVersion = 2;

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
  const bool stats = record.has_key_stats();
  if ((stats && record.key_norms.size() != record.sizes.size()) ||
      record.key_spreads.size() != record.key_norms.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "index has ", record.key_norms.size(), " key norms and ", record.key_spreads.size(),
        " key spreads for ", record.sizes.size(), " clusters"));
  }
  std::string out;
  out.reserve(16 + record.centroids.size() * 4 + record.sizes.size() * (stats ? 12 : 4));
  Put<uint8_t>(kIndexVersion, &out);
  Put<int32_t>(record.head_dim, &out);
  Put<int32_t>(record.num_clusters(), &out);
  out.append(reinterpret_cast<const char*>(record.sizes.data()), record.sizes.size() * 4);
  out.append(reinterpret_cast<const char*>(record.centroids.data()), record.centroids.size() * 4);
  Put<uint8_t>(stats ? 1 : 0, &out);
  if (stats) {
    out.append(reinterpret_cast<const char*>(record.key_norms.data()), record.key_norms.size() * 4);
    out.append(reinterpret_cast<const char*>(record.key_spreads.data()),
               record.key_spreads.size() * 4);
  }
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
  if (!r.Get(&version) || (version != kIndexVersion && version != kIndexVersion1) ||
      !r.Get(&record.head_dim) || !r.Get(&clusters) || record.head_dim < 1 || clusters < 0) {
    return bad();
  }
  const size_t c = static_cast<size_t>(clusters);
  const size_t base = 9 + c * 4 * (1 + static_cast<size_t>(record.head_dim));
  const size_t v2 = base + 1;  // the statistics flag
  if (version == kIndexVersion1 ? bytes.size() != base
                                : (bytes.size() != v2 && bytes.size() != v2 + 8 * c)) {
    return bad();
  }
  record.sizes.resize(c);
  record.centroids.resize(c * record.head_dim);
  if (!r.GetBytes(record.sizes.data(), record.sizes.size() * 4) ||
      !r.GetBytes(record.centroids.data(), record.centroids.size() * 4)) {
    return bad();
  }
  if (version == kIndexVersion) {
    uint8_t stats = 0;
    if (!r.Get(&stats) || stats > 1 || bytes.size() != v2 + (stats == 1 ? 8 * c : 0)) {
      return bad();
    }
    if (stats == 1) {
      record.key_norms.resize(c);
      record.key_spreads.resize(c);
      if (!r.GetBytes(record.key_norms.data(), c * 4) ||
          !r.GetBytes(record.key_spreads.data(), c * 4)) {
        return bad();
      }
    }
  }
  if (!r.done()) return bad();
  for (int32_t s : record.sizes) {
    if (s < 0) return bad();
  }
  return record;
}

void AppendHeadIndex(const HeadIndexRecord& added, HeadIndexRecord* base) {
  const size_t had = base->sizes.size();
  const size_t more = added.sizes.size();
  const bool stats = base->has_key_stats() || added.has_key_stats();
  const float unknown = std::numeric_limits<float>::quiet_NaN();
  if (stats && !base->has_key_stats()) {
    base->key_norms.assign(had, unknown);
    base->key_spreads.assign(had, unknown);
  }
  base->centroids.insert(base->centroids.end(), added.centroids.begin(), added.centroids.end());
  base->sizes.insert(base->sizes.end(), added.sizes.begin(), added.sizes.end());
  if (!stats) return;
  if (added.has_key_stats()) {
    base->key_norms.insert(base->key_norms.end(), added.key_norms.begin(), added.key_norms.end());
    base->key_spreads.insert(base->key_spreads.end(), added.key_spreads.begin(),
                             added.key_spreads.end());
  } else {
    base->key_norms.insert(base->key_norms.end(), more, unknown);
    base->key_spreads.insert(base->key_spreads.end(), more, unknown);
  }
}

}  // namespace clusterkv::storage
