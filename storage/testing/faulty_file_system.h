// FaultyFileSystem: a rocksdb::FileSystem for tests that wraps a real one (POSIX by default)
// and injects faults on demand, so the SSD tier's real error and recovery paths run
// (STYLE.md "Inject what tests must fake"). Test-only: not part of clusterkv_storage.
//
// Example:
//   auto fs = std::make_shared<FaultyFileSystem>();
//   SsdTierOptions options;
//   options.file_system = fs;
//   ... open the tier, write ...
//   fs->NoSpace(true);   // every write now fails with IOStatus::NoSpace()
//   EXPECT_EQ(tier->PutBlock(...).code(), absl::StatusCode::kResourceExhausted);
//   fs->NoSpace(false);
//
// Thread-safe: the knobs and counters are atomics shared with every file the filesystem has
// opened, so they may be flipped while RocksDB's background threads do I/O. Files opened
// before a knob changes see the change.
#ifndef CLUSTERKV_STORAGE_TESTING_FAULTY_FILE_SYSTEM_H_
#define CLUSTERKV_STORAGE_TESTING_FAULTY_FILE_SYSTEM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/file_system.h"

namespace clusterkv::storage::testing {

class FaultyFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // Knobs and counters shared by the filesystem and the files it opened.
  struct State {
    std::atomic<bool> fail_writes{false};
    std::atomic<bool> no_space{false};
    std::atomic<bool> fail_reads{false};
    std::atomic<bool> corrupt_blob_reads{false};
    std::atomic<uint64_t> write_faults{0};
    std::atomic<uint64_t> read_faults{0};
    std::atomic<uint64_t> corruptions{0};
    // HoldBlobReads: readers of ".blob" files wait here while `hold_blob_reads` is set.
    absl::Mutex hold_mu;
    bool hold_blob_reads ABSL_GUARDED_BY(hold_mu) = false;
    int64_t held_reads ABSL_GUARDED_BY(hold_mu) = 0;
  };

  explicit FaultyFileSystem(
      std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default());

  const char* Name() const override { return "FaultyFileSystem"; }

  // Append, PositionedAppend, Flush, Sync and Fsync of every writable file return
  // IOStatus::IOError (Unavailable in the tier). RocksDB's info log ("LOG") is spared: it is
  // diagnostics, not data, and RocksDB 7.8's logger trips a debug assertion (Debian builds
  // with assertions) when its file is written again after an error.
  void FailWrites(bool on) { state_->fail_writes.store(on); }
  // The same operations return IOStatus::NoSpace() (ResourceExhausted in the tier), and
  // GetFreeSpace reports 0 bytes, as a full disk would. Takes precedence over FailWrites.
  void NoSpace(bool on) { state_->no_space.store(on); }
  // Reads of ".sst" and ".blob" files return IOStatus::IOError.
  void FailReads(bool on) { state_->fail_reads.store(on); }
  // Data read from ".blob" files comes back with one byte flipped (the middle one).
  void CorruptBlobReads(bool on) { state_->corrupt_blob_reads.store(on); }
  // Reads of ".blob" files (the SSD tier's block values) wait until HoldBlobReads(false): a
  // slow or hung SSD, held for exactly as long as a test needs, with no timing involved.
  void HoldBlobReads(bool on);
  // Waits until at least `n` reads are held by HoldBlobReads; false when `timeout` passed
  // first (a bound for a broken test, not a synchronisation by time).
  bool WaitForHeldReads(int64_t n, absl::Duration timeout);

  // Faults injected so far (corruptions: reads returned with a flipped byte).
  uint64_t write_faults() const { return state_->write_faults.load(); }
  uint64_t read_faults() const { return state_->read_faults.load(); }
  uint64_t corruptions() const { return state_->corruptions.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& file_opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& file_opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& file_opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus GetFreeSpace(const std::string& path, const rocksdb::IOOptions& options,
                                 uint64_t* diskfree, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomAccessFile(const std::string& fname,
                                        const rocksdb::FileOptions& file_opts,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace clusterkv::storage::testing

#endif  // CLUSTERKV_STORAGE_TESTING_FAULTY_FILE_SYSTEM_H_
