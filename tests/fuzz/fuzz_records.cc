// libFuzzer target: the SSD tier's durable encodings (storage/index_record.h and
// storage/key_codec.h). On restart the daemon decodes every record and key it finds in RocksDB;
// a corrupt or foreign database must answer DataLoss, never crash. What decodes must re-encode
// to the input bytes (the encodings are canonical; an index record of the older version 1
// re-encodes as the current one and decodes back to the same index), and a decoded key must sort inside its
// sequence's [prefix, PrefixEnd(prefix)) range, which the range deletes rely on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/index_record.h"
#include "storage/key_codec.h"

namespace clusterkv::storage {
namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

void RequireInsideSequence(absl::string_view key, const SequenceKey& sequence) {
  const std::string prefix = SequencePrefix(sequence);
  Require(key.substr(0, prefix.size()) == prefix);
  const std::string end = PrefixEnd(prefix);
  Require(end.empty() || key < absl::string_view(end));
}

void FuzzOne(absl::string_view bytes) {
  if (absl::StatusOr<SequenceMeta> meta = DecodeSequenceMeta(bytes); meta.ok()) {
    Require(meta->layout.Validate().ok());
    Require(EncodeSequenceMeta(*meta) == bytes);
  } else {
    Require(absl::IsDataLoss(meta.status()));
  }
  if (absl::StatusOr<HeadIndexRecord> index = DecodeHeadIndex(bytes); index.ok()) {
    Require(index->centroids.size() ==
            index->sizes.size() * static_cast<size_t>(index->head_dim));
    Require(index->key_norms.size() == index->key_spreads.size() &&
            (index->key_norms.empty() || index->key_norms.size() == index->sizes.size()));
    const absl::StatusOr<std::string> encoded = EncodeHeadIndex(*index);
    Require(encoded.ok());
    if (bytes[0] == 1) {
      // A version 1 record re-encodes as the current version, which decodes to the same index.
      const absl::StatusOr<HeadIndexRecord> again = DecodeHeadIndex(*encoded);
      Require(again.ok() && again->sizes == index->sizes &&
              again->centroids.size() == index->centroids.size() && !again->has_key_stats());
    } else {
      Require(*encoded == bytes);
    }
  } else {
    Require(absl::IsDataLoss(index.status()));
  }
  if (absl::StatusOr<BlockKey> key = DecodeBlockKey(bytes); key.ok()) {
    Require(EncodeBlockKey(*key) == bytes);
    RequireInsideSequence(bytes, key->sequence);
  }
  if (absl::StatusOr<BlockKey> key = DecodeDirectoryKey(bytes); key.ok()) {
    Require(EncodeDirectoryKey(*key) == bytes);
    RequireInsideSequence(bytes, key->sequence);
  }
  const absl::StatusOr<char> kind = KeyKind(bytes);
  const absl::StatusOr<SequenceKey> sequence = DecodeSequence(bytes);
  if (kind.ok()) {
    Require(sequence.ok());
    RequireInsideSequence(bytes, *sequence);
    if (*kind == 'M') {
      Require((EncodeMetadataKey(*sequence) == bytes) ==
              (bytes.size() == SequencePrefix(*sequence).size() + 1));
    }
  }
}

}  // namespace
}  // namespace clusterkv::storage

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clusterkv::storage::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
