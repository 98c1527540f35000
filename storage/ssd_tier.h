// SsdTier: the durable tier on RocksDB (DESIGN.md section 6). Three column families:
//   blocks  cluster blocks, keyed by EncodeBlockKey, stored in BlobDB blob files (large values
//           stay out of the LSM tree);
//   index   per-(sequence, layer, kv_head) centroid index records, EncodeIndexKey;
//   meta    per-sequence metadata records, EncodeMetadataKey, and the block directory
//           (EncodeDirectoryKey -> block size), written in the same batch as each block.
// Every value is stored as payload + CRC32C (4 bytes, little endian) and verified on every
// read: a mismatch is DataLoss, never silent data. Thread-safe (RocksDB is); holds no lock of
// its own across I/O, except a reader lock that a post-error reopen takes exclusively.
//
// Status mapping (storage/internal/rocksdb_status.h, the one conversion of rocksdb::Status):
// NotFound -> NotFound, no space -> ResourceExhausted, Corruption -> DataLoss, other I/O
// errors -> Unavailable. RocksDB 7.8 cannot Resume() after a failed WAL write, so after any
// write error the tier closes and reopens the DB (replaying the WAL) before the next write;
// after a full disk it waits until the filesystem reports room again. A freed or repaired disk
// is therefore usable again without restarting the process.
#ifndef CLUSTERKV_STORAGE_SSD_TIER_H_
#define CLUSTERKV_STORAGE_SSD_TIER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "storage/key_codec.h"

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace clusterkv::storage {

struct SsdTierOptions {
  std::string path;  // RocksDB directory; created if missing
  // Filesystem RocksDB uses (tests inject faults here); null = the default POSIX one.
  std::shared_ptr<rocksdb::FileSystem> file_system;
  // Values of at least this many bytes go to blob files.
  uint64_t min_blob_bytes = 4096;
  uint64_t write_buffer_bytes = uint64_t{64} << 20;
};

struct SsdStats {
  uint64_t bytes_written = 0;
  uint64_t bytes_read = 0;
  uint64_t blocks_written = 0;
  uint64_t blocks_read = 0;
  uint64_t write_errors = 0;
  uint64_t read_errors = 0;
  uint64_t checksum_failures = 0;
};

class SsdTier {
 public:
  // Unavailable/DataLoss when RocksDB cannot open the directory (message says why).
  static absl::StatusOr<std::unique_ptr<SsdTier>> Open(const SsdTierOptions& options);
  // Flushes memtables and closes the DB.
  ~SsdTier();
  SsdTier(const SsdTier&) = delete;
  SsdTier& operator=(const SsdTier&) = delete;

  // Writes a block. sync = true: durable (WAL fsync'd) before returning.
  absl::Status PutBlock(const BlockKey& key, absl::Span<const uint8_t> block, bool sync);
  // NotFound when absent; DataLoss on checksum mismatch.
  absl::StatusOr<std::vector<uint8_t>> GetBlock(const BlockKey& key);
  // Like GetBlock, into dst, whose size must equal the stored block's (InvalidArgument
  // otherwise, and dst is untouched).
  absl::Status GetBlockInto(const BlockKey& key, absl::Span<uint8_t> dst);
  absl::Status DeleteBlock(const BlockKey& key);
  // Calls fn for every stored block with its size, from the block directory (no block is
  // read), in key order.
  absl::Status ForEachBlock(const std::function<absl::Status(const BlockKey&, uint64_t)>& fn);

  // Opaque records of the index and meta families (encodings in index_record.h).
  absl::Status PutIndexRecord(const SequenceKey& sequence, const HeadId& head,
                              absl::string_view record, bool sync);
  absl::StatusOr<std::string> GetIndexRecord(const SequenceKey& sequence, const HeadId& head);
  // Calls fn for every index record of the sequence, in (layer, kv_head) order.
  absl::Status ForEachIndexRecord(
      const SequenceKey& sequence,
      const std::function<absl::Status(const HeadId&, absl::string_view)>& fn);
  absl::Status PutMetadata(const SequenceKey& sequence, absl::string_view record, bool sync);
  absl::StatusOr<std::string> GetMetadata(const SequenceKey& sequence);
  // The sequence's session state record (opaque bytes; dropped with the sequence).
  absl::Status PutStateRecord(const SequenceKey& sequence, absl::string_view record, bool sync);
  absl::StatusOr<std::string> GetStateRecord(const SequenceKey& sequence);
  // Every sequence with a metadata record, in key order.
  absl::StatusOr<std::vector<SequenceKey>> ListSequences();

  // Deletes every block, index and metadata record of the sequence (range deletes).
  absl::Status DropSequence(const SequenceKey& sequence, bool sync);
  // Flushes memtables to SST/blob files.
  absl::Status Flush();

  SsdStats Stats() const;

 private:
  class Impl;
  explicit SsdTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clusterkv::storage

#endif  // CLUSTERKV_STORAGE_SSD_TIER_H_
