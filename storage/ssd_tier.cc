#include "storage/ssd_tier.h"

#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "rocksdb/iterator.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/write_batch.h"
#include "storage/checksum.h"
#include "storage/internal/rocksdb_status.h"

namespace clusterkv::storage {
namespace {

using internal::FromRocksDbStatus;

constexpr size_t kCrcBytes = 4;

// Column family names; the order is the order of SsdTier::Impl::handles_.
constexpr const char* kBlocksFamily = "blocks";
constexpr const char* kIndexFamily = "index";
constexpr const char* kMetaFamily = "meta";

void EncodeCrc(uint32_t crc, char out[kCrcBytes]) {
  out[0] = static_cast<char>(crc);
  out[1] = static_cast<char>(crc >> 8);
  out[2] = static_cast<char>(crc >> 16);
  out[3] = static_cast<char>(crc >> 24);
}

uint32_t DecodeCrc(const char* in) {
  const auto b = [&](int i) { return static_cast<uint32_t>(static_cast<uint8_t>(in[i])); };
  return b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
}

void EncodeFixed64(uint64_t v, char out[8]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
}

uint64_t DecodeFixed64(const char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

int32_t DecodeBigEndian32(const char* in) {
  const auto b = [&](int i) { return static_cast<uint32_t>(static_cast<uint8_t>(in[i])); };
  return static_cast<int32_t>((b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3));
}

// The payload of a stored value (value minus its trailing CRC32C), or false when the value is
// too short or its CRC does not match.
bool VerifiedPayload(const rocksdb::Slice& value, absl::string_view* payload) {
  if (value.size() < kCrcBytes) return false;
  const size_t n = value.size() - kCrcBytes;
  if (Crc32c(value.data(), n) != DecodeCrc(value.data() + n)) return false;
  *payload = absl::string_view(value.data(), n);
  return true;
}

rocksdb::Slice ToSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// Turns off RocksDB's own recovery from a full disk. In 7.8 its SstFileManager retries at once
// (it reserves no free space), and a retry that fails while the disk is still full escalates the
// error to fatal (the memtable switch cannot write the WAL tail), which only a reopen clears.
// The tier instead resumes on the next write, and only when the filesystem reports room.
class ManualRecoveryListener : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "ClusterKvManualRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status /*bg_error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

}  // namespace

class SsdTier::Impl {
 public:
  enum Family { kBlocks = 0, kIndex = 1, kMeta = 2, kDefault = 3 };

  static absl::StatusOr<std::unique_ptr<Impl>> Open(const SsdTierOptions& options);

  // Flushes, then releases the column family handles before closing the DB (RocksDB requires
  // that order), then the DB before the Env it uses (member order).
  ~Impl();

  // After a failed write or flush: ResourceExhausted while the disk is still full, otherwise
  // reopens the DB (WAL replay) and returns its status. Must be called without db_mu held.
  absl::Status RecoverBeforeWrite(absl::string_view context) ABSL_LOCKS_EXCLUDED(db_mu);
  // Recovers if needed, then writes under a reader lock of db_mu.
  absl::Status Write(rocksdb::WriteBatch* batch, bool sync, absl::string_view context)
      ABSL_LOCKS_EXCLUDED(db_mu);
  // Reads `key` of `family` into `value`. Counts read errors and RocksDB-detected corruption;
  // NotFound is not an error.
  absl::Status Read(Family family, const std::string& key, rocksdb::PinnableSlice* value,
                    absl::string_view context);
  // Reads a record of the index or meta family and verifies its CRC.
  absl::StatusOr<std::string> GetRecord(Family family, const std::string& key,
                                        absl::string_view what);
  // Reads a block and verifies its CRC; `payload` points into `value`.
  absl::Status GetVerifiedBlock(const BlockKey& key, rocksdb::PinnableSlice* value,
                                absl::string_view* payload);
  // Calls fn(key, value) for every key of the meta family whose kind byte is `kind` (metadata
  // 'M' and block directory 'D' entries share the family), holding a reader lock of db_mu.
  absl::Status ForEachMetaKey(
      char kind, const std::function<absl::Status(absl::string_view, const rocksdb::Slice&)>& fn)
      ABSL_LOCKS_EXCLUDED(db_mu);
  // Adds key -> record + CRC32C of `family` to the batch.
  absl::Status AppendRecord(rocksdb::WriteBatch* batch, Family family, const std::string& key,
                            absl::string_view record, absl::string_view context);
  absl::Status PutRecord(Family family, const std::string& key, absl::string_view record, bool sync,
                         absl::string_view context);

  // A failed flush leaves a background error just like a failed write.
  void MarkNeedsResume(bool out_of_space) {
    out_of_space_.store(out_of_space);
    needs_resume_.store(true);
  }

  rocksdb::DB* db() const { return db_.get(); }

  // Readers (every RocksDB call, and every use of memory RocksDB pinned) hold it shared; only a
  // reopen after a write error takes it exclusively. RocksDB 7.8 cannot Resume() after a
  // failed WAL write (it asserts when the failed WAL writer is used again), so recovery closes
  // and reopens the DB, which replays the WAL.
  absl::Mutex db_mu;
  rocksdb::ColumnFamilyHandle* handle(Family family) const { return handles_[family].get(); }

  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> blocks_written{0};
  std::atomic<uint64_t> blocks_read{0};
  std::atomic<uint64_t> write_errors{0};
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> checksum_failures{0};

 private:
  Impl() = default;
  // Opens the DB read-write, or read-only (no file is written) as the fallback that keeps reads
  // working while the disk refuses writes.
  absl::Status OpenDb(bool read_only = false);
  void CloseDb();

  SsdTierOptions options_;

  // Declaration order is teardown order reversed: handles go before the DB, the DB before the
  // Env that routes its I/O to the injected FileSystem.
  std::unique_ptr<rocksdb::Env> env_;  // null: rocksdb::Env::Default()
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<std::unique_ptr<rocksdb::ColumnFamilyHandle>> handles_;  // indexed by Family
  // Reopen only when the filesystem reports at least this much free space after a full-disk
  // error: room to flush one memtable, which is what recovery writes first.
  uint64_t resume_min_free_bytes_ = 0;
  std::string path_;
  // Set when a write fails: RocksDB may have stopped accepting writes (background error), so
  // the next write first reopens the DB. Also tells the destructor not to sync the WAL,
  // whose writer RocksDB must not touch again after an error.
  std::atomic<bool> needs_resume_{false};
  // The failed write ran out of space (gates the reopen on free space).
  std::atomic<bool> out_of_space_{false};
};

absl::StatusOr<std::unique_ptr<SsdTier::Impl>> SsdTier::Impl::Open(const SsdTierOptions& options) {
  std::unique_ptr<Impl> impl(new Impl());
  impl->options_ = options;
  impl->path_ = options.path;
  impl->resume_min_free_bytes_ = options.write_buffer_bytes;
  if (options.file_system != nullptr) impl->env_ = rocksdb::NewCompositeEnv(options.file_system);
  absl::Status s = impl->OpenDb();
  if (!s.ok()) return s;
  return impl;
}

absl::Status SsdTier::Impl::OpenDb(bool read_only) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.listeners.push_back(std::make_shared<ManualRecoveryListener>());
  if (env_ != nullptr) db_options.env = env_.get();

  rocksdb::ColumnFamilyOptions base;
  base.write_buffer_size = static_cast<size_t>(options_.write_buffer_bytes);

  // Blocks are large and written once: BlobDB keeps them out of the LSM tree so compactions
  // move only small blob references. KV data is not compressible.
  rocksdb::ColumnFamilyOptions blocks = base;
  blocks.enable_blob_files = true;
  blocks.min_blob_size = options_.min_blob_bytes;
  blocks.enable_blob_garbage_collection = true;
  blocks.blob_compression_type = rocksdb::kNoCompression;

  // Order matches Family.
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {kBlocksFamily, blocks},
      {kIndexFamily, base},
      {kMetaFamily, base},
      {rocksdb::kDefaultColumnFamilyName, base},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status s =
      read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, path_, families, &raw_handles, &raw_db)
          : rocksdb::DB::Open(db_options, path_, families, &raw_handles, &raw_db);
  if (!s.ok()) return FromRocksDbStatus(s, absl::StrCat("opening SSD tier at ", path_));
  db_.reset(raw_db);
  for (rocksdb::ColumnFamilyHandle* h : raw_handles) handles_.emplace_back(h);
  return absl::OkStatus();
}

SsdTier::Impl::~Impl() { CloseDb(); }

void SsdTier::Impl::CloseDb() {
  if (db_ == nullptr) return;
  if (!needs_resume_.load()) {
    // Best effort: a failure here leaves the data in the WAL, which the next Open replays.
    // Skipped after a failed write: RocksDB 7.8 asserts when a WAL writer that has seen an
    // error is synced again, and the DB refuses the flush anyway.
    db_->FlushWAL(/*sync=*/true).PermitUncheckedError();
    std::vector<rocksdb::ColumnFamilyHandle*> raw;
    for (const auto& h : handles_) raw.push_back(h.get());
    rocksdb::FlushOptions flush_options;
    flush_options.wait = true;
    db_->Flush(flush_options, raw).PermitUncheckedError();
  }
  handles_.clear();
  db_->Close().PermitUncheckedError();
  db_.reset();
}

absl::Status SsdTier::Impl::RecoverBeforeWrite(absl::string_view context) {
  if (!needs_resume_.load()) return absl::OkStatus();
  if (out_of_space_.load()) {
    // A Resume() (or flush) that fails for lack of space makes the error fatal (see
    // ManualRecoveryListener), so wait until the filesystem reports room.
    uint64_t free_bytes = 0;
    rocksdb::Env* env = env_ != nullptr ? env_.get() : rocksdb::Env::Default();
    const rocksdb::Status fs = env->GetFreeSpace(path_, &free_bytes);
    if (fs.ok() && free_bytes < resume_min_free_bytes_) {
      write_errors.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(absl::StrCat(context, ": SSD tier full (", free_bytes,
                                                       " bytes free, ", resume_min_free_bytes_,
                                                       " needed to resume)"));
    }
  }
  // Clear the error by reopening: every acknowledged write is in the WAL, which Open replays.
  absl::WriterMutexLock lock(&db_mu);
  if (!needs_resume_.load()) return absl::OkStatus();  // another writer recovered first
  CloseDb();
  needs_resume_.store(false);
  absl::Status reopened = OpenDb();
  if (!reopened.ok()) {
    // Still failing: serve reads from a read-only instance; the next write tries again.
    needs_resume_.store(true);
    write_errors.fetch_add(1, std::memory_order_relaxed);
    OpenDb(/*read_only=*/true).IgnoreError();
    return absl::UnavailableError(absl::StrCat(context, ": reopening the SSD tier after a write "
                                               "error failed: ", reopened.message()));
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Impl::Write(rocksdb::WriteBatch* batch, bool sync,
                                  absl::string_view context) {
  absl::Status ready = RecoverBeforeWrite(context);
  if (!ready.ok()) return ready;
  rocksdb::WriteOptions write_options;
  write_options.sync = sync;
  absl::ReaderMutexLock lock(&db_mu);
  if (db_ == nullptr) return absl::UnavailableError(absl::StrCat(context, ": SSD tier closed"));
  const rocksdb::Status s = db_->Write(write_options, batch);
  if (!s.ok()) {
    out_of_space_.store(s.IsNoSpace());
    needs_resume_.store(true);
    write_errors.fetch_add(1, std::memory_order_relaxed);
    return FromRocksDbStatus(s, context);
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Impl::Read(Family family, const std::string& key,
                                 rocksdb::PinnableSlice* value, absl::string_view context) {
  if (db_ == nullptr) return absl::UnavailableError(absl::StrCat(context, ": SSD tier not open"));
  const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(family), key, value);
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) {
    // RocksDB's own checksums (SST blocks, blob records) caught it before ours could.
    checksum_failures.fetch_add(1, std::memory_order_relaxed);
  } else if (!s.IsNotFound()) {
    read_errors.fetch_add(1, std::memory_order_relaxed);
  }
  return FromRocksDbStatus(s, context);
}

absl::StatusOr<std::string> SsdTier::Impl::GetRecord(Family family, const std::string& key,
                                                     absl::string_view what) {
  absl::ReaderMutexLock lock(&db_mu);
  rocksdb::PinnableSlice value;
  absl::Status status = Read(family, key, &value, absl::StrCat("reading ", what));
  if (!status.ok()) return status;
  absl::string_view payload;
  if (!VerifiedPayload(value, &payload)) {
    checksum_failures.fetch_add(1, std::memory_order_relaxed);
    return absl::DataLossError(absl::StrCat("checksum mismatch for ", what));
  }
  return std::string(payload);
}

absl::Status SsdTier::Impl::GetVerifiedBlock(const BlockKey& key, rocksdb::PinnableSlice* value,
                                             absl::string_view* payload) {
  absl::Status status = Read(kBlocks, EncodeBlockKey(key), value,
                             absl::StrCat("reading block ", ToString(key.cluster)));
  if (!status.ok()) return status;
  if (!VerifiedPayload(*value, payload)) {
    checksum_failures.fetch_add(1, std::memory_order_relaxed);
    return absl::DataLossError(absl::StrCat("checksum mismatch for block ", ToString(key.cluster)));
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Impl::ForEachMetaKey(
    char kind, const std::function<absl::Status(absl::string_view, const rocksdb::Slice&)>& fn) {
  absl::ReaderMutexLock lock(&db_mu);
  if (db_ == nullptr) return absl::UnavailableError("SSD tier not open");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(kMeta)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    auto key_kind = KeyKind(key);
    if (!key_kind.ok()) return key_kind.status();
    if (*key_kind != kind) continue;
    absl::Status status = fn(key, it->value());
    if (!status.ok()) return status;
  }
  const rocksdb::Status s = it->status();
  if (!s.ok()) {
    if (s.IsCorruption()) {
      checksum_failures.fetch_add(1, std::memory_order_relaxed);
    } else {
      read_errors.fetch_add(1, std::memory_order_relaxed);
    }
    return FromRocksDbStatus(s, "scanning the meta column family");
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Impl::AppendRecord(rocksdb::WriteBatch* batch, Family family,
                                         const std::string& key, absl::string_view record,
                                         absl::string_view context) {
  char crc[kCrcBytes];
  EncodeCrc(Crc32c(record.data(), record.size()), crc);
  const rocksdb::Slice key_slice(key);
  const rocksdb::Slice value_parts[2] = {ToSlice(record), rocksdb::Slice(crc, kCrcBytes)};
  const rocksdb::Status s = batch->Put(handle(family), rocksdb::SliceParts(&key_slice, 1),
                                       rocksdb::SliceParts(value_parts, 2));
  if (!s.ok()) {
    write_errors.fetch_add(1, std::memory_order_relaxed);
    return FromRocksDbStatus(s, context);
  }
  return absl::OkStatus();
}

absl::Status SsdTier::Impl::PutRecord(Family family, const std::string& key,
                                      absl::string_view record, bool sync,
                                      absl::string_view context) {
  rocksdb::WriteBatch batch;
  absl::Status status = AppendRecord(&batch, family, key, record, context);
  if (!status.ok()) return status;
  return Write(&batch, sync, context);
}

// ---- SsdTier ----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SsdTier>> SsdTier::Open(const SsdTierOptions& options) {
  auto impl = Impl::Open(options);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<SsdTier>(new SsdTier(std::move(*impl)));
}

SsdTier::SsdTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SsdTier::~SsdTier() = default;

absl::Status SsdTier::PutBlock(const BlockKey& key, absl::Span<const uint8_t> block, bool sync) {
  const absl::string_view payload(reinterpret_cast<const char*>(block.data()), block.size());
  const std::string context = absl::StrCat("writing block ", ToString(key.cluster));
  // The block and its directory entry land atomically.
  char size[8];
  EncodeFixed64(block.size(), size);
  rocksdb::WriteBatch batch;
  absl::Status status =
      impl_->AppendRecord(&batch, Impl::kBlocks, EncodeBlockKey(key), payload, context);
  if (status.ok()) {
    status = impl_->AppendRecord(&batch, Impl::kMeta, EncodeDirectoryKey(key),
                                 absl::string_view(size, sizeof(size)), context);
  }
  if (status.ok()) status = impl_->Write(&batch, sync, context);
  if (!status.ok()) return status;
  impl_->bytes_written.fetch_add(block.size(), std::memory_order_relaxed);
  impl_->blocks_written.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> SsdTier::GetBlock(const BlockKey& key) {
  absl::ReaderMutexLock lock(&impl_->db_mu);  // the slice pins RocksDB memory
  rocksdb::PinnableSlice value;
  absl::string_view payload;
  absl::Status status = impl_->GetVerifiedBlock(key, &value, &payload);
  if (!status.ok()) return status;
  impl_->bytes_read.fetch_add(payload.size(), std::memory_order_relaxed);
  impl_->blocks_read.fetch_add(1, std::memory_order_relaxed);
  return std::vector<uint8_t>(payload.begin(), payload.end());
}

absl::Status SsdTier::GetBlockInto(const BlockKey& key, absl::Span<uint8_t> dst) {
  // The PinnableSlice pins RocksDB's buffer (block cache or blob read buffer), so the only copy
  // is the one into dst.
  absl::ReaderMutexLock lock(&impl_->db_mu);
  rocksdb::PinnableSlice value;
  absl::string_view payload;
  absl::Status status = impl_->GetVerifiedBlock(key, &value, &payload);
  if (!status.ok()) return status;
  if (payload.size() != dst.size()) {
    return absl::InvalidArgumentError(absl::StrCat("block ", ToString(key.cluster), " holds ",
                                                   payload.size(), " bytes, destination has ",
                                                   dst.size()));
  }
  if (!payload.empty()) std::memcpy(dst.data(), payload.data(), payload.size());
  impl_->bytes_read.fetch_add(payload.size(), std::memory_order_relaxed);
  impl_->blocks_read.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status SsdTier::DeleteBlock(const BlockKey& key) {
  rocksdb::WriteBatch batch;
  const std::string context = absl::StrCat("deleting block ", ToString(key.cluster));
  rocksdb::Status s = batch.Delete(impl_->handle(Impl::kBlocks), EncodeBlockKey(key));
  if (s.ok()) s = batch.Delete(impl_->handle(Impl::kMeta), EncodeDirectoryKey(key));
  if (!s.ok()) return internal::FromRocksDbStatus(s, context);
  return impl_->Write(&batch, /*sync=*/false, context);
}

absl::Status SsdTier::ForEachBlock(
    const std::function<absl::Status(const BlockKey&, uint64_t)>& fn) {
  return impl_->ForEachMetaKey('D', [&](absl::string_view key, const rocksdb::Slice& value) {
    auto block = DecodeDirectoryKey(key);
    if (!block.ok()) return block.status();
    absl::string_view payload;
    if (!VerifiedPayload(value, &payload) || payload.size() != 8) {
      impl_->checksum_failures.fetch_add(1, std::memory_order_relaxed);
      return absl::DataLossError(
          absl::StrCat("bad directory entry for block ", ToString(block->cluster)));
    }
    return fn(*block, DecodeFixed64(payload.data()));
  });
}

absl::Status SsdTier::PutIndexRecord(const SequenceKey& sequence, const HeadId& head,
                                     absl::string_view record, bool sync) {
  return impl_->PutRecord(Impl::kIndex, EncodeIndexKey(sequence, head), record, sync,
                          absl::StrCat("writing index record L", head.layer, "/H", head.kv_head));
}

absl::StatusOr<std::string> SsdTier::GetIndexRecord(const SequenceKey& sequence,
                                                    const HeadId& head) {
  return impl_->GetRecord(Impl::kIndex, EncodeIndexKey(sequence, head),
                          absl::StrCat("index record L", head.layer, "/H", head.kv_head));
}

absl::Status SsdTier::ForEachIndexRecord(
    const SequenceKey& sequence,
    const std::function<absl::Status(const HeadId&, absl::string_view)>& fn) {
  // Index keys are prefix 'I' layer:be32 kv_head:be32 (key_codec.h).
  std::string start = SequencePrefix(sequence);
  start.push_back('I');
  const std::string end = PrefixEnd(start);
  const rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;
  absl::ReaderMutexLock lock(&impl_->db_mu);
  if (impl_->db() == nullptr) return absl::UnavailableError("SSD tier not open");
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db()->NewIterator(read_options, impl_->handle(Impl::kIndex)));
  for (it->Seek(start); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    if (key.size() != start.size() + 8) {
      return absl::DataLossError(absl::StrCat("malformed index key of ", key.size(), " bytes"));
    }
    HeadId head;
    head.layer = DecodeBigEndian32(key.data() + start.size());
    head.kv_head = DecodeBigEndian32(key.data() + start.size() + 4);
    absl::string_view payload;
    if (!VerifiedPayload(it->value(), &payload)) {
      impl_->checksum_failures.fetch_add(1, std::memory_order_relaxed);
      return absl::DataLossError(
          absl::StrCat("checksum mismatch for index record L", head.layer, "/H", head.kv_head));
    }
    absl::Status status = fn(head, payload);
    if (!status.ok()) return status;
  }
  const rocksdb::Status s = it->status();
  if (!s.ok()) {
    if (s.IsCorruption()) {
      impl_->checksum_failures.fetch_add(1, std::memory_order_relaxed);
    } else {
      impl_->read_errors.fetch_add(1, std::memory_order_relaxed);
    }
    return FromRocksDbStatus(s, "scanning index records");
  }
  return absl::OkStatus();
}

absl::Status SsdTier::PutMetadata(const SequenceKey& sequence, absl::string_view record,
                                  bool sync) {
  return impl_->PutRecord(Impl::kMeta, EncodeMetadataKey(sequence), record, sync,
                          "writing metadata record");
}

absl::StatusOr<std::string> SsdTier::GetMetadata(const SequenceKey& sequence) {
  return impl_->GetRecord(Impl::kMeta, EncodeMetadataKey(sequence), "metadata record");
}

absl::Status SsdTier::PutStateRecord(const SequenceKey& sequence, absl::string_view record,
                                     bool sync) {
  return impl_->PutRecord(Impl::kIndex, EncodeStateKey(sequence), record, sync,
                          "writing session state record");
}

absl::StatusOr<std::string> SsdTier::GetStateRecord(const SequenceKey& sequence) {
  return impl_->GetRecord(Impl::kIndex, EncodeStateKey(sequence), "session state record");
}

absl::StatusOr<std::vector<SequenceKey>> SsdTier::ListSequences() {
  std::vector<SequenceKey> sequences;
  absl::Status status =
      impl_->ForEachMetaKey('M', [&](absl::string_view key, const rocksdb::Slice&) {
        auto sequence = DecodeSequence(key);
        if (!sequence.ok()) return sequence.status();
        sequences.push_back(*std::move(sequence));
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return sequences;
}

absl::Status SsdTier::DropSequence(const SequenceKey& sequence, bool sync) {
  const std::string begin = SequencePrefix(sequence);
  const std::string end = PrefixEnd(begin);
  rocksdb::WriteBatch batch;
  for (Impl::Family family : {Impl::kBlocks, Impl::kIndex, Impl::kMeta}) {
    const rocksdb::Status s = batch.DeleteRange(impl_->handle(family), begin, end);
    if (!s.ok()) return FromRocksDbStatus(s, "dropping sequence");
  }
  return impl_->Write(&batch, sync, "dropping sequence");
}

absl::Status SsdTier::Flush() {
  absl::Status ready = impl_->RecoverBeforeWrite("flushing SSD tier");
  if (!ready.ok()) return ready;
  absl::ReaderMutexLock lock(&impl_->db_mu);
  if (impl_->db() == nullptr) return absl::UnavailableError("flushing SSD tier: not open");
  std::vector<rocksdb::ColumnFamilyHandle*> handles = {
      impl_->handle(Impl::kBlocks), impl_->handle(Impl::kIndex), impl_->handle(Impl::kMeta)};
  rocksdb::FlushOptions flush_options;
  flush_options.wait = true;
  const rocksdb::Status s = impl_->db()->Flush(flush_options, handles);
  if (!s.ok()) {
    impl_->write_errors.fetch_add(1, std::memory_order_relaxed);
    impl_->MarkNeedsResume(s.IsNoSpace());
  }
  return FromRocksDbStatus(s, "flushing SSD tier");
}

SsdStats SsdTier::Stats() const {
  SsdStats stats;
  stats.bytes_written = impl_->bytes_written.load(std::memory_order_relaxed);
  stats.bytes_read = impl_->bytes_read.load(std::memory_order_relaxed);
  stats.blocks_written = impl_->blocks_written.load(std::memory_order_relaxed);
  stats.blocks_read = impl_->blocks_read.load(std::memory_order_relaxed);
  stats.write_errors = impl_->write_errors.load(std::memory_order_relaxed);
  stats.read_errors = impl_->read_errors.load(std::memory_order_relaxed);
  stats.checksum_failures = impl_->checksum_failures.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace clusterkv::storage
