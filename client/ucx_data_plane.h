// DataPlane: the seam through which a Sequence recalls clusters by one-sided writes: the
// daemon puts each block's keys+values straight into the slot of the device cache, so the
// client copies nothing (DESIGN.md section 5). UcxTransport (client/ucx_transport.h) is the
// implementation; this header has no UCX dependency, so the Sequence builds without UCX and
// tests can fake the plane.
//
// The plane owns one memory region registered with the daemon. A Sequence's device cache must
// live inside it to be written directly: NewMemory() gives a DeviceMemory carved from that
// region (DirectMemory), whose slots are addressed by their offset from the region's base.
#ifndef CLUSTERKV_CLIENT_UCX_DATA_PLANE_H_
#define CLUSTERKV_CLIENT_UCX_DATA_PLANE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/device_memory.h"
#include "core/ids.h"

namespace clusterkv::client {

// Device memory inside the plane's registered region, starting region_offset() bytes from its
// base (valid after Allocate).
class DirectMemory : public DeviceMemory {
 public:
  virtual uint64_t region_offset() const = 0;
};

// One block to recall: the cluster, where its keys+values go (bytes from the region's base),
// and the token count the client's index expects.
struct DirectFetch {
  ClusterId id;
  uint64_t region_offset = 0;
  int32_t expected_tokens = 0;
};

struct DirectFetchResult {
  absl::Status status;     // the daemon's verdict on this block
  int32_t num_tokens = 0;  // tokens of the stored block
  uint64_t bytes = 0;      // bytes written into the slot (keys+values; FetchBlocksInto: the block)
};

// The blocks of one sequence in a batched recall (FetchBatchInto). Views: the caller keeps
// the id and the blocks alive for the call.
struct SequenceFetch {
  absl::string_view sequence_id;
  absl::Span<const DirectFetch> blocks;
};

// One sequence's part of a batched recall: the daemon's verdict on the whole sequence
// (NOT_FOUND: no such sequence for this tenant; INVALID_ARGUMENT: bad refs), or its block
// results in request order.
using SequenceFetchResult = absl::StatusOr<std::vector<DirectFetchResult>>;

// Thread-safe: Sequences on different threads share one plane.
class DataPlane {
 public:
  virtual ~DataPlane() = default;

  virtual absl::string_view name() const = 0;

  // A DirectMemory whose Allocate() carves from the registered region (ResourceExhausted when
  // the region is full: the caller then uses ordinary device memory and the gRPC path).
  virtual std::unique_ptr<DirectMemory> NewMemory() = 0;

  // Recalls `blocks` of `sequence_id` into the region; results in request order.
  // Whole-request errors: UNAVAILABLE (no data-plane session: the daemon is gone, restarting
  // or refused one), DEADLINE_EXCEEDED (no completion in time), FAILED_PRECONDITION /
  // UNIMPLEMENTED (the daemon serves no data plane) -- after any of these the caller falls back
  // to KvTransport::FetchClusters -- or the daemon's status for the whole request
  // (NOT_FOUND: no such sequence for this tenant; INVALID_ARGUMENT: bad refs).
  [[nodiscard]] virtual absl::StatusOr<std::vector<DirectFetchResult>> FetchInto(
      absl::string_view sequence_id, absl::Span<const DirectFetch> blocks) = 0;

  // Recalls the blocks of several sequences (of the session's tenant) in one request, so a
  // batch of sequences pays one round trip per layer; results per sequence, in batch order.
  // Whole-request errors as FetchInto's (after UNAVAILABLE and the like the caller falls back
  // to the gRPC path); a sequence's own verdict (NOT_FOUND, INVALID_ARGUMENT) is its entry's
  // status and leaves the other sequences' results valid. This default issues one FetchInto
  // per sequence; a plane whose wire carries several sequences overrides it.
  [[nodiscard]] virtual absl::StatusOr<std::vector<SequenceFetchResult>> FetchBatchInto(
      absl::Span<const SequenceFetch> batch);
};

// Whether a FetchInto error means "use the gRPC path instead" rather than a verdict.
inline bool IsDataPlaneUnavailable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsFailedPrecondition(status) || absl::IsUnimplemented(status) ||
         absl::IsCancelled(status);
}

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_UCX_DATA_PLANE_H_
