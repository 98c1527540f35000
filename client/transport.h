// KvTransport: the calls a Sequence makes to the daemon, as one small interface. Connection
// (gRPC) is the production implementation; tests inject an in-memory fake that stores blocks
// and indexes, so the whole client-side algorithm (prefill clustering, selection, device cache,
// fetch, attention, decode appends) is testable without a daemon.
//
// Messages are the clusterkv.v1 protos themselves: they are the contract (see
// proto/clusterkv/v1/kvcache.proto for the semantics of every field), and a second vocabulary
// would only add conversions. The tenant is not part of any message; the transport adds it.
#ifndef CLUSTERKV_CLIENT_TRANSPORT_H_
#define CLUSTERKV_CLIENT_TRANSPORT_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "clusterkv/v1/kvcache.pb.h"

namespace clusterkv::client {

// Receives each block of a FetchClusters answer; the block is valid only during the call (a
// transport may reuse it for the next block), so the callback copies what it keeps. A non-OK
// return cancels the fetch and becomes its result. After a transparent retry the same block
// may be delivered again, so the callback must be idempotent (copying a block into its slot
// is).
using BlockCallback = std::function<absl::Status(const v1::ClusterBlock& block)>;

// Implementations are thread-safe: one transport serves every Sequence of a Client.
// Every method returns the daemon's status (InvalidArgument, NotFound, FailedPrecondition,
// ResourceExhausted, DataLoss, ...) or UNAVAILABLE when the daemon could not be reached after
// the transport's retries; DeadlineExceeded when a call ran past its deadline.
class KvTransport {
 public:
  virtual ~KvTransport() = default;

  [[nodiscard]] virtual absl::StatusOr<v1::OpenSequenceResponse> OpenSequence(
      const v1::OpenSequenceRequest& request) = 0;
  [[nodiscard]] virtual absl::Status CloseSequence(const v1::CloseSequenceRequest& request) = 0;
  [[nodiscard]] virtual absl::StatusOr<v1::GetIndexResponse> GetIndex(
      const v1::GetIndexRequest& request) = 0;
  // Sends `messages` as one client stream, in order. Blocks are immutable, so a stream retried
  // after UNAVAILABLE may find some of them stored: those count as stored.
  [[nodiscard]] virtual absl::StatusOr<v1::PutClustersResponse> PutClusters(
      absl::Span<const v1::PutClustersRequest> messages) = 0;
  [[nodiscard]] virtual absl::StatusOr<v1::AppendClustersResponse> AppendClusters(
      const v1::AppendClustersRequest& request) = 0;
  // Streams the requested blocks to `on_block` (in request order). OK only when the stream
  // completed; the caller checks that every requested block arrived.
  [[nodiscard]] virtual absl::Status FetchClusters(const v1::FetchClustersRequest& request,
                                                   const BlockCallback& on_block) = 0;
  // Observability deltas for the daemon's client metrics; best effort (one attempt, callers
  // ignore failures). The default drops them: a transport without a daemon has no metrics.
  [[nodiscard]] virtual absl::Status ReportClientStats(const v1::ReportClientStatsRequest& request) {
    return absl::OkStatus();
  }
  // Session checkpoints and shared documents (see the messages' comments). The defaults answer
  // UNIMPLEMENTED: a transport without a daemon keeps no sessions.
  [[nodiscard]] virtual absl::StatusOr<v1::PutStateResponse> PutState(
      const v1::PutStateRequest& request) {
    return absl::UnimplementedError("this transport keeps no session state");
  }
  [[nodiscard]] virtual absl::StatusOr<v1::GetStateResponse> GetState(
      const v1::GetStateRequest& request) {
    return absl::UnimplementedError("this transport keeps no session state");
  }
  [[nodiscard]] virtual absl::StatusOr<v1::SealDocumentResponse> SealDocument(
      const v1::SealDocumentRequest& request) {
    return absl::UnimplementedError("this transport keeps no documents");
  }
  [[nodiscard]] virtual absl::StatusOr<v1::FindPrefixResponse> FindPrefix(
      const v1::FindPrefixRequest& request) {
    return absl::UnimplementedError("this transport keeps no documents");
  }
  [[nodiscard]] virtual absl::StatusOr<v1::GrantDocumentResponse> GrantDocument(
      const v1::GrantDocumentRequest& request) {
    return absl::UnimplementedError("this transport keeps no documents");
  }
  // A promotion hint (HintClustersRequest): asynchronous and best effort. Returns at once,
  // never waiting for the daemon; false when the hint was dropped without being sent (too
  // many hints in flight). The default drops it: a transport without a daemon has no SSD.
  virtual bool HintClusters(const v1::HintClustersRequest& request) {
    (void)request;
    return false;
  }
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_TRANSPORT_H_
