#include "storage/internal/rocksdb_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace clusterkv::storage::internal {

absl::Status FromRocksDbStatus(const rocksdb::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", status.ToString());
  if (status.IsNotFound()) return absl::NotFoundError(message);
  // IsNoSpace() is IOError with subcode kNoSpace; test it before the generic IOError case.
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (status.IsCorruption()) return absl::DataLossError(message);
  if (status.IsIOError() || status.IsBusy() || status.IsTimedOut() || status.IsTryAgain() ||
      status.IsAborted()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

}  // namespace clusterkv::storage::internal
