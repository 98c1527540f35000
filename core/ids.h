// Identifiers of the data model (DESIGN.md section 3): a sequence belongs to a tenant; each
// (sequence, layer, kv_head) has a centroid index whose clusters are numbered from 0 and only
// ever appended.
#ifndef CLUSTERKV_CORE_IDS_H_
#define CLUSTERKV_CORE_IDS_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace clusterkv {

// A tenant and one of its sequences. Ids are opaque strings chosen by the engine.
struct SequenceKey {
  std::string tenant;
  std::string sequence;

  // InvalidArgument for empty ids, ids over 128 bytes, or ids with control characters.
  absl::Status Validate() const;

  template <typename H>
  friend H AbslHashValue(H h, const SequenceKey& k) {
    return H::combine(std::move(h), k.tenant, k.sequence);
  }
  friend bool operator==(const SequenceKey& a, const SequenceKey& b) {
    return a.tenant == b.tenant && a.sequence == b.sequence;
  }
  friend bool operator<(const SequenceKey& a, const SequenceKey& b) {
    return std::tie(a.tenant, a.sequence) < std::tie(b.tenant, b.sequence);
  }
};

// One (layer, kv_head) of a sequence: the unit that owns a centroid index.
struct HeadId {
  int32_t layer = 0;
  int32_t kv_head = 0;

  template <typename H>
  friend H AbslHashValue(H h, const HeadId& id) {
    return H::combine(std::move(h), id.layer, id.kv_head);
  }
  friend bool operator==(const HeadId& a, const HeadId& b) {
    return a.layer == b.layer && a.kv_head == b.kv_head;
  }
  friend bool operator<(const HeadId& a, const HeadId& b) {
    return std::tie(a.layer, a.kv_head) < std::tie(b.layer, b.kv_head);
  }
};

// One cluster block: stable for the life of its sequence.
struct ClusterId {
  HeadId head;
  int32_t cluster = 0;

  template <typename H>
  friend H AbslHashValue(H h, const ClusterId& id) {
    return H::combine(std::move(h), id.head, id.cluster);
  }
  friend bool operator==(const ClusterId& a, const ClusterId& b) {
    return a.head == b.head && a.cluster == b.cluster;
  }
  friend bool operator<(const ClusterId& a, const ClusterId& b) {
    return std::tie(a.head, a.cluster) < std::tie(b.head, b.cluster);
  }
};

inline std::string ToString(const ClusterId& id) {
  return absl::StrCat("L", id.head.layer, "/H", id.head.kv_head, "/C", id.cluster);
}

}  // namespace clusterkv

#endif  // CLUSTERKV_CORE_IDS_H_
