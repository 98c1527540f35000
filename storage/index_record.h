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
// Cluster j's block holds sizes[j] tokens.
struct HeadIndexRecord {
  int32_t head_dim = 0;
  std::vector<float> centroids;  // [C, head_dim]
  std::vector<int32_t> sizes;    // [C]
  int32_t num_clusters() const { return static_cast<int32_t>(sizes.size()); }
};

std::string EncodeSequenceMeta(const SequenceMeta& meta);
// DataLoss for a malformed record; the decoded layout is validated.
absl::StatusOr<SequenceMeta> DecodeSequenceMeta(absl::string_view bytes);

// InvalidArgument when centroids.size() != sizes.size() * head_dim or a size is negative.
absl::StatusOr<std::string> EncodeHeadIndex(const HeadIndexRecord& record);
// DataLoss for a malformed record.
absl::StatusOr<HeadIndexRecord> DecodeHeadIndex(absl::string_view bytes);

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_INDEX_RECORD_H_
