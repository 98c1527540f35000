// Sortable binary keys for the SSD tier. Ids never contain bytes below 0x20 (SequenceKey::
// Validate), so 0x00 terminates each id and byte-wise order equals (tenant, sequence, layer,
// kv_head, cluster) order; all keys of one sequence share a prefix, so dropping a sequence is
// one range delete.
//
//   block key:    tenant 0x00 sequence 0x00 'B' layer:be32 kv_head:be32 cluster:be32
//   index key:    tenant 0x00 sequence 0x00 'I' layer:be32 kv_head:be32
//   metadata key: tenant 0x00 sequence 0x00 'M'
//   state key:    tenant 0x00 sequence 0x00 'S'
//   directory key: tenant 0x00 sequence 0x00 'D' layer:be32 kv_head:be32 cluster:be32
// A directory entry (small, in the meta family) records each stored block's size, so that a
// restart can rebuild the block table without reading any block.
#ifndef CLUSTERKV_STORAGE_KEY_CODEC_H_
#define CLUSTERKV_STORAGE_KEY_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/ids.h"

namespace clusterkv::storage {

// A cluster block's identity.
struct BlockKey {
  SequenceKey sequence;
  ClusterId cluster;

  template <typename H>
  friend H AbslHashValue(H h, const BlockKey& k) {
    return H::combine(std::move(h), k.sequence, k.cluster);
  }
  friend bool operator==(const BlockKey& a, const BlockKey& b) {
    return a.sequence == b.sequence && a.cluster == b.cluster;
  }
};

// tenant 0x00 sequence 0x00: the prefix of every key of the sequence.
std::string SequencePrefix(const SequenceKey& sequence);
// The first key after every key that starts with `prefix` (for range deletes and scans).
std::string PrefixEnd(absl::string_view prefix);

std::string EncodeBlockKey(const BlockKey& key);
std::string EncodeIndexKey(const SequenceKey& sequence, const HeadId& head);
std::string EncodeMetadataKey(const SequenceKey& sequence);
// The sequence's session state record (its last checkpoint): tenant 0x00 sequence 0x00 'S'.
std::string EncodeStateKey(const SequenceKey& sequence);
std::string EncodeDirectoryKey(const BlockKey& key);

// Inverse of EncodeBlockKey / EncodeDirectoryKey. DataLoss for a malformed key (the store's
// own data is corrupt).
absl::StatusOr<BlockKey> DecodeBlockKey(absl::string_view encoded);
absl::StatusOr<BlockKey> DecodeDirectoryKey(absl::string_view encoded);
// The kind byte of a key ('B', 'I', 'M', 'D'); DataLoss for a malformed key.
absl::StatusOr<char> KeyKind(absl::string_view encoded);
// The sequence of any key above. DataLoss for a malformed key.
absl::StatusOr<SequenceKey> DecodeSequence(absl::string_view encoded);

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_KEY_CODEC_H_
