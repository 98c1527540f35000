#include "storage/testing/faulty_file_system.h"

#include <cstring>
#include <utility>

namespace clusterkv::storage::testing {
namespace {

using rocksdb::DataVerificationInfo;
using rocksdb::FSReadRequest;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// RocksDB's info log: "LOG" or a rotated "LOG.old.<time>".
bool IsInfoLog(const std::string& fname) {
  const size_t slash = fname.find_last_of('/');
  const std::string base = slash == std::string::npos ? fname : fname.substr(slash + 1);
  return base == "LOG" || base.rfind("LOG.old", 0) == 0;
}

// A writable file whose writes fail while FailWrites or NoSpace is on.
class FaultyWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file,
                     std::shared_ptr<FaultyFileSystem::State> state)
      : FSWritableFileOwnerWrapper(std::move(file)), state_(std::move(state)) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok() ? FSWritableFileOwnerWrapper::Append(data, options, dbg) : fault;
  }
  IOStatus Append(const Slice& data, const IOOptions& options, const DataVerificationInfo& info,
                  IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok() ? FSWritableFileOwnerWrapper::Append(data, options, info, dbg) : fault;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok() ? FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg)
                      : fault;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            const DataVerificationInfo& info, IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok()
               ? FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg)
               : fault;
  }
  IOStatus Flush(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok() ? FSWritableFileOwnerWrapper::Flush(options, dbg) : fault;
  }
  IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok() ? FSWritableFileOwnerWrapper::Sync(options, dbg) : fault;
  }
  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus fault = Fault();
    return fault.ok() ? FSWritableFileOwnerWrapper::Fsync(options, dbg) : fault;
  }

 private:
  // The fault to inject now, or OK.
  IOStatus Fault() const {
    if (state_->no_space.load()) {
      state_->write_faults.fetch_add(1);
      return IOStatus::NoSpace("injected by FaultyFileSystem");
    }
    if (state_->fail_writes.load()) {
      state_->write_faults.fetch_add(1);
      return IOStatus::IOError("injected write error by FaultyFileSystem");
    }
    return IOStatus::OK();
  }

  std::shared_ptr<FaultyFileSystem::State> state_;
};

// A random-access file whose reads fail (FailReads, ".sst" and ".blob" files) or come back
// corrupted (CorruptBlobReads, ".blob" files). MultiRead and ReadAsync go through Read so no
// read path bypasses the faults.
class FaultyRandomAccessFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FaultyRandomAccessFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file,
                         std::shared_ptr<FaultyFileSystem::State> state, bool is_table,
                         bool is_blob)
      : FSRandomAccessFileOwnerWrapper(std::move(file)),
        state_(std::move(state)),
        is_table_(is_table),
        is_blob_(is_blob) {}

  IOStatus Read(uint64_t offset, size_t n, const IOOptions& options, Slice* result, char* scratch,
                IODebugContext* dbg) const override {
    if ((is_table_ || is_blob_) && state_->fail_reads.load()) {
      state_->read_faults.fetch_add(1);
      return IOStatus::IOError("injected read error by FaultyFileSystem");
    }
    if (is_blob_) {
      FaultyFileSystem::State& st = *state_;
      absl::MutexLock lock(&st.hold_mu);
      if (st.hold_blob_reads) {
        ++st.held_reads;
        st.hold_mu.Await(absl::Condition(
            +[](FaultyFileSystem::State* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return !s->hold_blob_reads;
            },
            &st));
        --st.held_reads;
      }
    }
    IOStatus s = FSRandomAccessFileOwnerWrapper::Read(offset, n, options, result, scratch, dbg);
    if (s.ok() && is_blob_ && state_->corrupt_blob_reads.load() && !result->empty() &&
        scratch != nullptr) {
      // The target may have returned memory it owns (mmap); corrupt a private copy.
      if (result->data() != scratch) {
        std::memmove(scratch, result->data(), result->size());
        *result = Slice(scratch, result->size());
      }
      scratch[result->size() / 2] ^= 0x5a;
      state_->corruptions.fetch_add(1);
    }
    return s;
  }

  IOStatus MultiRead(FSReadRequest* reqs, size_t num_reqs, const IOOptions& options,
                     IODebugContext* dbg) override {
    for (size_t i = 0; i < num_reqs; ++i) {
      reqs[i].status =
          Read(reqs[i].offset, reqs[i].len, options, &reqs[i].result, reqs[i].scratch, dbg);
    }
    return IOStatus::OK();
  }

  IOStatus ReadAsync(FSReadRequest& req, const IOOptions& options,
                     std::function<void(const FSReadRequest&, void*)> cb, void* cb_arg,
                     void** io_handle, rocksdb::IOHandleDeleter* del_fn,
                     IODebugContext* dbg) override {
    // Synchronous, like FSRandomAccessFile's default: no handle to wait on or delete.
    if (io_handle != nullptr) *io_handle = nullptr;
    if (del_fn != nullptr) *del_fn = nullptr;
    req.status = Read(req.offset, req.len, options, &req.result, req.scratch, dbg);
    cb(req, cb_arg);
    return IOStatus::OK();
  }

 private:
  std::shared_ptr<FaultyFileSystem::State> state_;
  bool is_table_;
  bool is_blob_;
};

// Wraps `file` to inject write faults, unless it is the info log.
std::unique_ptr<rocksdb::FSWritableFile> WrapWritable(
    const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile> file,
    const std::shared_ptr<FaultyFileSystem::State>& state) {
  if (IsInfoLog(fname)) return file;
  return std::make_unique<FaultyWritableFile>(std::move(file), state);
}

}  // namespace

FaultyFileSystem::FaultyFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
    : FileSystemWrapper(base), state_(std::make_shared<State>()) {}

rocksdb::IOStatus FaultyFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  IOStatus s = target()->NewWritableFile(fname, file_opts, &file, dbg);
  if (s.ok()) *result = WrapWritable(fname, std::move(file), state_);
  return s;
}

rocksdb::IOStatus FaultyFileSystem::ReopenWritableFile(
    const std::string& fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  IOStatus s = target()->ReopenWritableFile(fname, file_opts, &file, dbg);
  if (s.ok()) *result = WrapWritable(fname, std::move(file), state_);
  return s;
}

rocksdb::IOStatus FaultyFileSystem::ReuseWritableFile(
    const std::string& fname, const std::string& old_fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  IOStatus s = target()->ReuseWritableFile(fname, old_fname, file_opts, &file, dbg);
  if (s.ok()) *result = WrapWritable(fname, std::move(file), state_);
  return s;
}

rocksdb::IOStatus FaultyFileSystem::GetFreeSpace(const std::string& path,
                                                 const rocksdb::IOOptions& options,
                                                 uint64_t* diskfree, rocksdb::IODebugContext* dbg) {
  if (state_->no_space.load()) {
    *diskfree = 0;
    return IOStatus::OK();
  }
  return target()->GetFreeSpace(path, options, diskfree, dbg);
}

rocksdb::IOStatus FaultyFileSystem::NewRandomAccessFile(
    const std::string& fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSRandomAccessFile>* result, rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  IOStatus s = target()->NewRandomAccessFile(fname, file_opts, &file, dbg);
  if (s.ok()) {
    result->reset(new FaultyRandomAccessFile(std::move(file), state_, EndsWith(fname, ".sst"),
                                             EndsWith(fname, ".blob")));
  }
  return s;
}

void FaultyFileSystem::HoldBlobReads(bool on) {
  absl::MutexLock lock(&state_->hold_mu);
  state_->hold_blob_reads = on;
}

bool FaultyFileSystem::WaitForHeldReads(int64_t n, absl::Duration timeout) {
  State& st = *state_;
  std::pair<State*, int64_t> wanted(&st, n);
  absl::MutexLock lock(&st.hold_mu);
  return st.hold_mu.AwaitWithTimeout(
      absl::Condition(
          +[](std::pair<State*, int64_t>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return a->first->held_reads >= a->second;
          },
          &wanted),
      timeout);
}

}  // namespace clusterkv::storage::testing
