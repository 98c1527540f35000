// Durable records that make a sequence recallable after a restart (DESIGN.md section 6): the
// sequence's metadata and, per (layer, kv_head), its centroid index. Both are versioned binary
// encodings; the SSD tier adds a CRC32C to each.
#ifndef CLUSTERKV_STORAGE_INDEX_RECORD_H_
#define CLUSTERKV_STORAGE_INDEX_RECORD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/kv_layout.h"

namespace clusterkv::storage {

struct SequenceMeta {
  KvLayout layout;
  int64_t num_tokens = 0;  // tokens offloaded so far
};

// One (layer, kv_head)'s centroid index: C unit-norm centroids and each cluster's token count.
// Cluster j's block holds sizes[j] tokens. key_norms / key_spreads are the clustering's
// per-cluster key statistics (gpu::Clustering, used by the recall estimate): empty, or C each,
// NaN where a cluster's are unknown.
struct HeadIndexRecord {
  int32_t head_dim = 0;
  std::vector<float> centroids;    // [C, head_dim]
  std::vector<int32_t> sizes;      // [C]
  std::vector<float> key_norms;    // [C] or empty
  std::vector<float> key_spreads;  // [C] or empty
  int32_t num_clusters() const { return static_cast<int32_t>(sizes.size()); }
  bool has_key_stats() const { return !key_norms.empty(); }
};

// Appends `added`'s clusters to `base`; the statistics stay empty only when both lack them, the
// missing side's clusters get NaN. Both must have base.head_dim (not checked).
void AppendHeadIndex(const HeadIndexRecord& added, HeadIndexRecord* base);

std::string EncodeSequenceMeta(const SequenceMeta& meta);
// DataLoss for a malformed record; the decoded layout is validated.
absl::StatusOr<SequenceMeta> DecodeSequenceMeta(absl::string_view bytes);

// InvalidArgument when centroids.size() != sizes.size() * head_dim, a size is negative, or the
// key statistics are neither empty nor one per cluster.
absl::StatusOr<std::string> EncodeHeadIndex(const HeadIndexRecord& record);
// DataLoss for a malformed record. Reads both versions: 1 (no key statistics) and 2.
absl::StatusOr<HeadIndexRecord> DecodeHeadIndex(absl::string_view bytes);

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_INDEX_RECORD_H_
