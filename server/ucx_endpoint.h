// UcxDataPlane: the daemon's UCX data plane (DESIGN.md section 5). One UCX context, one worker
// and its progress thread (core/ucx/progress_thread.h). It
//   - registers the host arena with UCX once at start, as the arena's storage::ArenaRegistrar,
//     so puts read blocks straight from the arena;
//   - creates a session per ConnectDataPlane call: an endpoint to the client's worker (peer
//     error handling) and the client's unpacked rkey, bound to the caller's tenant;
//   - serves fetch requests (proto/ucx_wire.h active messages): it resolves the clusters
//     through RequestHandler -- the same handler, validation and tier resolution as the gRPC
//     FetchClusters -- and ucp_puts each block's keys+values (the block minus its int32
//     positions) from the pinned arena bytes to client base + slot offset, flushes the
//     endpoint and replies with a completion message holding a status per block;
//   - serves batch requests (several sequences of the session's tenant in one message) the same
//     way per sequence -- each sequence gets its own verdict (another tenant's or a missing
//     sequence is NOT_FOUND and nothing is written for it) -- behind one flush and one reply.
//
// Threading: every UCX call runs on the progress thread, and the progress thread never waits
// on the store. A fetch whose sequence is loaded and whose blocks are all in the host tier is
// resolved there (RequestHandler::TryResolveResident: one batch pin, no I/O) and put at once,
// at memcpy speed. Any other fetch (a block on the SSD, a sequence not yet loaded, a traced
// call, a cluster-mode fetch that may pull from a peer) is resolved by a task on the worker
// pool (RequestHandler::ResolveFetch), which posts the resolved blocks back to the progress
// thread for their puts; a full pool answers the request RESOURCE_EXHAUSTED. A batch resolves
// each sequence that way (the ones that need the pool spread over at most 8 tasks; a full pool
// makes a refused task's sequences RESOURCE_EXHAUSTED) and is put once its last sequence is
// resolved. All puts of a request are issued before one non-blocking flush whose completion
// sends the reply; each block's pin (or temporary copy) is held until then. A flush still
// pending at the request's deadline (set once, when it arrives) drops the session: the client
// stopped taking data.
//
// Sessions: a session id is a random 64-bit capability handed to the client over its
// authenticated control-plane call; a request names it, and the session's tenant is the one
// every FetchOne runs under (another tenant's sequence is NOT_FOUND). A client that vanishes
// (endpoint error) has its session, endpoint and rkey released; the daemon keeps serving.
//
// Lifetime: Create before opening the store (pass it as the store's registrar), Start once the
// RequestHandler exists, Stop before the handler and store go; destroy after the store.
// Connect/Stop/num_sessions are thread-safe.
#ifndef CLUSTERKV_SERVER_UCX_ENDPOINT_H_
#define CLUSTERKV_SERVER_UCX_ENDPOINT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "server/data_plane_options.h"
#include "server/request_handler.h"
#include "server/worker_pool.h"
#include "storage/host_arena.h"

namespace clusterkv::server {

struct UcxDataPlaneOptions {
  // UCX_TLS-like transport list ("tcp,self"); empty: UCX's default (or $UCX_TLS).
  std::string transports;
  // Most concurrent sessions; RESOURCE_EXHAUSTED beyond.
  size_t max_sessions = 4096;
  // See server/data_plane_options.h.
  UcxPeerErrors peer_errors = UcxPeerErrors::kRemoteOnly;
  // How long the progress thread keeps polling after its last event before it sleeps on the
  // event fd (core/ucx/progress_thread.h): a request arriving in the window is served without
  // a wakeup. Zero: sleep at once (no CPU spent while idle).
  absl::Duration busy_poll = absl::Microseconds(50);
  // Same-host clients over shared memory: map their region into the daemon (ucp_rkey_ptr) and
  // write blocks with memcpy instead of one ucp_put_nbx each. Off: always ucp_put_nbx.
  bool direct_shm = true;
};

class UcxDataPlane final : public storage::ArenaRegistrar {
 public:
  // Creates the context, the worker and its progress thread. The UCX error when UCX cannot
  // start (e.g. an unknown transport list: InvalidArgument).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<UcxDataPlane>> Create(
      const UcxDataPlaneOptions& options);
  ~UcxDataPlane() override;
  UcxDataPlane(const UcxDataPlane&) = delete;
  UcxDataPlane& operator=(const UcxDataPlane&) = delete;

  // storage::ArenaRegistrar: maps the arena with UCX (once) / unmaps it.
  absl::Status Register(void* base, size_t bytes) override;
  void Unregister(void* base, size_t bytes) override;

  // Installs the fetch-request handler; `handler` and `pool` (the worker pool that resolves
  // fetches needing I/O; null: they are resolved on the progress thread) must stay alive
  // until Stop().
  [[nodiscard]] absl::Status Start(RequestHandler* handler, WorkerPool* pool);

  // ConnectDataPlane. InvalidArgument: empty or oversized address/rkey, empty region, an rkey
  // or address UCX cannot unpack; ResourceExhausted: too many sessions; FailedPrecondition:
  // not started or stopped.
  [[nodiscard]] absl::StatusOr<v1::ConnectDataPlaneResponse> Connect(
      const CallContext& call, const v1::ConnectDataPlaneRequest& request);

  // Releases every session and stops the progress thread (idempotent).
  void Stop();

  size_t num_sessions() const;
  // This daemon's UCX worker address (registered in cluster mode).
  const std::string& worker_address() const;
  // Requests answered (a batch of sequences is one).
  uint64_t requests_served() const;

 private:
  class Impl;
  explicit UcxDataPlane(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_UCX_ENDPOINT_H_
