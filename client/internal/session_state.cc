#include "client/internal/session_state.h"

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "openssl/evp.h"

namespace clusterkv::client::internal {
namespace {

constexpr uint32_t kChunkMagic = 0x53564b43;  // "CKVS"
constexpr uint8_t kChunkVersion = 1;

template <typename T>
void Put(const T& v, std::string* out) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void PutBytes(const void* data, size_t n, std::string* out) {
  out->append(static_cast<const char*>(data), n);
}

class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T* v) {
    return GetBytes(v, sizeof(T));
  }
  bool GetBytes(void* dst, size_t n) {
    if (bytes_.size() < n) return false;
    if (n > 0) std::memcpy(dst, bytes_.data(), n);
    bytes_.remove_prefix(n);
    return true;
  }
  bool done() const { return bytes_.empty(); }

 private:
  absl::string_view bytes_;
};

std::string Sha256(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), size);
}

}  // namespace

std::string EncodeChunk(const ChunkRows& rows, const KvLayout& layout) {
  const size_t local_bytes =
      static_cast<size_t>(rows.num_local) * layout.head_dim * DTypeSize(layout.dtype);
  const size_t window_floats = rows.window_positions.size() * layout.head_dim;
  std::string out;
  Put(kChunkMagic, &out);
  Put(kChunkVersion, &out);
  Put(rows.layer, &out);
  Put(layout.num_kv_heads, &out);
  Put(layout.head_dim, &out);
  Put(static_cast<uint8_t>(layout.dtype), &out);
  Put(rows.first_local, &out);
  Put(rows.num_local, &out);
  Put(static_cast<int64_t>(rows.window_positions.size()), &out);
  PutBytes(rows.window_positions.data(), rows.window_positions.size() * sizeof(int32_t), &out);
  for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
    PutBytes(rows.local_keys[h].data(), local_bytes, &out);
    PutBytes(rows.local_values[h].data(), local_bytes, &out);
    PutBytes(rows.window_keys[h].data(), window_floats * sizeof(float), &out);
    PutBytes(rows.window_values[h].data(), window_floats * sizeof(float), &out);
  }
  return out;
}

absl::StatusOr<ChunkRows> DecodeChunk(absl::string_view bytes, int32_t layer,
                                      const KvLayout& layout) {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("state chunk of layer ", layer, " is malformed (",
                                            why, ", ", bytes.size(), " bytes)"));
  };
  Reader r(bytes);
  uint32_t magic = 0;
  uint8_t version = 0, dtype = 0;
  int32_t chunk_layer = 0, heads = 0, head_dim = 0;
  int64_t num_window = 0;
  ChunkRows rows;
  if (!r.Get(&magic) || magic != kChunkMagic || !r.Get(&version) || version != kChunkVersion ||
      !r.Get(&chunk_layer) || !r.Get(&heads) || !r.Get(&head_dim) || !r.Get(&dtype) ||
      !r.Get(&rows.first_local) || !r.Get(&rows.num_local) || !r.Get(&num_window)) {
    return bad("header");
  }
  if (chunk_layer != layer || heads != layout.num_kv_heads || head_dim != layout.head_dim ||
      dtype != static_cast<uint8_t>(layout.dtype)) {
    return bad("another layer or layout");
  }
  // Sizes are checked against what is left before anything is allocated.
  const uint64_t remaining = bytes.size();
  if (rows.first_local < 0 || rows.num_local < 0 || num_window < 0 ||
      static_cast<uint64_t>(rows.num_local) > remaining ||
      static_cast<uint64_t>(num_window) > remaining) {
    return bad("row counts");
  }
  rows.layer = layer;
  const size_t local_bytes =
      static_cast<size_t>(rows.num_local) * head_dim * DTypeSize(layout.dtype);
  const size_t window_floats = static_cast<size_t>(num_window) * head_dim;
  rows.window_positions.resize(static_cast<size_t>(num_window));
  if (!r.GetBytes(rows.window_positions.data(), rows.window_positions.size() * sizeof(int32_t))) {
    return bad("window positions");
  }
  rows.local_keys.resize(heads);
  rows.local_values.resize(heads);
  rows.window_keys.resize(heads);
  rows.window_values.resize(heads);
  for (int32_t h = 0; h < heads; ++h) {
    rows.local_keys[h].resize(local_bytes);
    rows.local_values[h].resize(local_bytes);
    rows.window_keys[h].resize(window_floats);
    rows.window_values[h].resize(window_floats);
    if (!r.GetBytes(rows.local_keys[h].data(), local_bytes) ||
        !r.GetBytes(rows.local_values[h].data(), local_bytes) ||
        !r.GetBytes(rows.window_keys[h].data(), window_floats * sizeof(float)) ||
        !r.GetBytes(rows.window_values[h].data(), window_floats * sizeof(float))) {
      return bad("rows");
    }
  }
  if (!r.done()) return bad("trailing bytes");
  return rows;
}

std::vector<int64_t> SegmentEnds(int64_t tokens, int32_t segment_tokens) {
  std::vector<int64_t> ends;
  if (segment_tokens > 0) {
    for (int64_t e = segment_tokens; e < tokens; e += segment_tokens) ends.push_back(e);
  }
  if (tokens > 0) ends.push_back(tokens);
  return ends;
}

std::vector<std::string> PrefixHashes(absl::Span<const int32_t> tokens,
                                      absl::Span<const int64_t> ends, absl::string_view model,
                                      const KvLayout& layout, const ClusterKvConfig& config) {
  // The chain's seed: everything that decides which blocks a prefix produces.
  std::string hash = Sha256(absl::StrCat(
      "clusterkv prefix v1", std::string(1, '\0'), model, std::string(1, '\0'),
      layout.DebugString(), " sinks=", config.num_sink_tokens, " dense=",
      absl::StrJoin(config.dense_layers, ","), " C0=", config.num_prefill_clusters,
      " G=", config.prefill_segment_tokens, " Cs=", config.prefill_segment_clusters,
      " iters=", config.kmeans_iterations, " seed=", config.seed));
  std::vector<std::string> out;
  int64_t begin = 0;
  for (int64_t end : ends) {
    std::string block = hash;
    block.append(reinterpret_cast<const char*>(tokens.data() + begin),
                 static_cast<size_t>(end - begin) * sizeof(int32_t));
    hash = Sha256(block);
    out.push_back(hash);
    begin = end;
  }
  return out;
}

}  // namespace clusterkv::client::internal
