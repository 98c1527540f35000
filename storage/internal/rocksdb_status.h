// The one conversion of rocksdb::Status (and its subclass rocksdb::IOStatus) to absl::Status
// (STYLE.md "Errors"). Internal to the storage module.
#ifndef CLUSTERKV_STORAGE_INTERNAL_ROCKSDB_STATUS_H_
#define CLUSTERKV_STORAGE_INTERNAL_ROCKSDB_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace clusterkv::storage::internal {

// Maps `status` to the most specific absl code:
//   OK -> OK; NotFound -> NotFound; IOError(no space) -> ResourceExhausted;
//   Corruption -> DataLoss; other IOError, Busy, TimedOut, TryAgain, Aborted -> Unavailable;
//   anything else -> Internal.
// The message is "<context>: <rocksdb's ToString()>" so the caller's operation and RocksDB's
// reason both reach the log.
absl::Status FromRocksDbStatus(const rocksdb::Status& status, absl::string_view context);

}  // namespace clusterkv::storage::internal

#endif  // CLUSTERKV_STORAGE_INTERNAL_ROCKSDB_STATUS_H_
