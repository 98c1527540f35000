// UcxTransport: libclusterkv's UCX data plane (DESIGN.md section 5), the DataPlane of
// client/ucx_data_plane.h. At creation it starts a UCX context, a worker and its progress
// thread, and maps the device-cache region with UCP_MEM_MAP_ALLOCATE (client/ucx_host_memory.h)
// and packs its rkey. A session -- ConnectDataPlane over the gRPC Connection (worker address,
// rkey, region base and size), then an endpoint to the daemon's worker with peer error
// handling -- is opened by Connect() and re-opened by the next FetchInto after it broke (peer
// error, timeout, daemon restart).
//
// FetchInto sends one active message (proto/ucx_wire.h) naming the blocks and their slot
// offsets and waits (bounded by fetch_timeout) for the daemon's completion message; the blocks
// themselves were ucp_put by the daemon straight into the slots before it. FetchBatchInto does
// the same for several sequences with one batch message and one completion.
//
// Threading: all UCX calls on the worker run on the progress thread (UCS_THREAD_MODE_SINGLE);
// FetchInto and FetchBatchInto may be called from any number of threads (each waits for its
// own completion).
// The transport must outlive every DirectMemory it handed out and the Connection must outlive
// the transport.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<UcxTransport> ucx, UcxTransport::Create(conn, {}));
//   RETURN_IF_ERROR(ucx->Connect());
//   std::unique_ptr<DirectMemory> mem = ucx->NewMemory();
//   RETURN_IF_ERROR(mem->Allocate(bytes));
//   ASSIGN_OR_RETURN(auto results, ucx->FetchInto("req-42", {{id, mem->region_offset(), n}}));
#ifndef CLUSTERKV_CLIENT_UCX_TRANSPORT_H_
#define CLUSTERKV_CLIENT_UCX_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/ucx_data_plane.h"

namespace clusterkv::client {

struct UcxTransportOptions {
  // UCX_TLS-like transport list; empty: UCX's default (or $UCX_TLS).
  std::string transports;
  // Size of the registered device-cache region shared by every Sequence of the client.
  size_t region_bytes = size_t{256} << 20;
  // Bound on one FetchInto (request, puts and completion).
  absl::Duration fetch_timeout = absl::Seconds(10);
  // FetchInto sends from the calling thread and then progresses the worker itself, for up to
  // this long, waiting for the completion (the engine thread waits for its data either way);
  // past it, the progress thread takes over and the caller blocks. Spinning saves the two
  // thread wakeups of a hand-off (tens of microseconds each on a VM). Zero: block at once.
  absl::Duration fetch_spin = absl::Microseconds(250);
  // Busy-poll window of the background progress thread after its last event (see
  // core/ucx/progress_thread.h); it serves nothing latency-critical on the client.
  absl::Duration busy_poll = absl::ZeroDuration();
};

class UcxTransport final : public DataPlane {
 public:
  // Starts UCX and maps the region; opens no session yet. InvalidArgument for bad options;
  // the UCX error when UCX cannot start or allocate.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<UcxTransport>> Create(
      Connection* connection, const UcxTransportOptions& options);
  ~UcxTransport() override;
  UcxTransport(const UcxTransport&) = delete;
  UcxTransport& operator=(const UcxTransport&) = delete;

  // Opens a session unless one is live. The ConnectDataPlane status (UNIMPLEMENTED or
  // FAILED_PRECONDITION: the daemon serves no data plane; UNAVAILABLE: no daemon), or the UCX
  // error creating the endpoint.
  [[nodiscard]] absl::Status Connect();

  // DataPlane.
  absl::string_view name() const override { return "ucx"; }
  std::unique_ptr<DirectMemory> NewMemory() override;
  absl::StatusOr<std::vector<DirectFetchResult>> FetchInto(
      absl::string_view sequence_id, absl::Span<const DirectFetch> blocks) override;
  // One batch request and one completion for every sequence with blocks (more only past
  // wire::kMaxBatchSequences sequences or kMaxBatchTextBytes of ids), with FetchInto's timeout,
  // reconnect and whole-request errors. Sequences without blocks are answered OK and empty
  // without asking the daemon, as FetchInto answers them; an id too long for the wire is that
  // sequence's INVALID_ARGUMENT. A sequence's verdict that means the plane cannot serve it
  // (IsDataPlaneUnavailable) is returned for the whole batch, as the default does. A batch
  // naming more blocks than the daemon's --max_fetch_clusters is INVALID_ARGUMENT as a whole.
  absl::StatusOr<std::vector<SequenceFetchResult>> FetchBatchInto(
      absl::Span<const SequenceFetch> batch) override;

  // Whole stored blocks (int32 positions, then keys, then values, as the daemon stores them)
  // into slots of `slot_bytes` at each region_offset: how a daemon pulls a peer's blocks into
  // its own store (cluster mode). A block larger than its slot is that block's OUT_OF_RANGE,
  // with `bytes` set to its size and nothing written. Otherwise as FetchInto.
  absl::StatusOr<std::vector<DirectFetchResult>> FetchBlocksInto(
      absl::string_view sequence_id, absl::Span<const DirectFetch> blocks, uint32_t slot_bytes);

  // The registered region (tests write and read it directly).
  uint8_t* region_base() const;
  size_t region_bytes() const;
  // The live session's id (0 when none).
  uint64_t session_id() const;

 private:
  class Impl;
  explicit UcxTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_UCX_TRANSPORT_H_
