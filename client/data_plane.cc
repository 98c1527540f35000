#include "client/ucx_data_plane.h"

#include <utility>

namespace clusterkv::client {

absl::StatusOr<std::vector<SequenceFetchResult>> DataPlane::FetchBatchInto(
    absl::Span<const SequenceFetch> batch) {
  std::vector<SequenceFetchResult> results;
  results.reserve(batch.size());
  for (const SequenceFetch& part : batch) {
    SequenceFetchResult result = FetchInto(part.sequence_id, part.blocks);
    // A plane-level failure ends the batch: the caller falls back for all of it.
    if (!result.ok() && IsDataPlaneUnavailable(result.status())) return result.status();
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace clusterkv::client
