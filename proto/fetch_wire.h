// FetchClustersResponse on the wire without an intermediate protobuf message: the gRPC fetch
// path's serialization (decision D84).
//
// FetchResponseBuilder writes one response message as a grpc::ByteBuffer whose bytes are
// exactly what protobuf serializes for the same FetchClustersResponse (fields in number order,
// proto3 defaults omitted, int32 as sign-extended varints, `id` always present), so every
// ordinary protobuf client parses it. Between small header slices, each block's data is one
// slice that points at the block's bytes (AddReferenced: no copy; the slice keeps the block's
// holder, e.g. its host-tier pin, until gRPC has written and released it) or a gRPC-owned
// copy of them (AddCopied: one copy). The usual path builds a protobuf message (one copy into
// its bytes field, one more for the bytes field's std::string) and then serializes it (a
// third copy); these slices go to the socket as they are.
//
// ForEachFetchedBlock reads a received response the other way: block by block straight from
// its slices into one reused v1::ClusterBlock, so only the block's own bytes are copied (once,
// into that message's data field) and a message never exists whole as a parsed protobuf.
// Malformed input is DataLoss, never a crash or a read out of bounds.
//
// Value types; thread-compatible.
//
// Example:
//   wire::FetchResponseBuilder builder;
//   builder.AddReferenced(ref, tokens, block_bytes, pin);  // pin: std::shared_ptr<const void>
//   grpc::ByteBuffer message = builder.Take();            // for ServerWriteReactor::StartWrite
//   ...
//   v1::ClusterBlock scratch;
//   RETURN_IF_ERROR(wire::ForEachFetchedBlock(message, scratch, on_block));
#ifndef CLUSTERKV_PROTO_FETCH_WIRE_H_
#define CLUSTERKV_PROTO_FETCH_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace clusterkv::wire {

class FetchResponseBuilder {
 public:
  FetchResponseBuilder() = default;
  FetchResponseBuilder(const FetchResponseBuilder&) = delete;
  FetchResponseBuilder& operator=(const FetchResponseBuilder&) = delete;

  // Appends block `id` of `num_tokens` tokens whose bytes `data` stay valid while `holder`
  // lives: the message references them, and gRPC drops its reference to `holder` once it has
  // released the slice (after the bytes were written to the socket, or the call ended).
  void AddReferenced(const v1::ClusterRef& id, int32_t num_tokens, absl::Span<const uint8_t> data,
                     std::shared_ptr<const void> holder);
  // Appends a block whose bytes are copied once, into a slice the message owns; `data` may be
  // released as soon as this returns.
  void AddCopied(const v1::ClusterRef& id, int32_t num_tokens, absl::Span<const uint8_t> data);

  int blocks() const { return blocks_; }
  // Sum of the blocks' data sizes so far.
  uint64_t data_bytes() const { return data_bytes_; }
  // Exact serialized size of the message built so far.
  uint64_t message_bytes() const { return message_bytes_; }

  // The message built so far (no block: an empty FetchClustersResponse); the builder is empty
  // again afterwards.
  grpc::ByteBuffer Take();

 private:
  // Appends the framing of one block (its field tag and length, id and num_tokens, and the data
  // field's tag and length) to the pending header bytes.
  void AddHeader(const v1::ClusterRef& id, int32_t num_tokens, size_t data_bytes);
  void FlushHeader();

  std::vector<grpc::Slice> slices_;
  std::string header_;  // framing not yet turned into a slice
  int blocks_ = 0;
  uint64_t data_bytes_ = 0;
  uint64_t message_bytes_ = 0;
};

// Calls on_block for each block of the FetchClustersResponse in `message`, in order, with
// `scratch` holding it (id, num_tokens, data; fields absent on the wire read as their proto3
// defaults, unknown fields are skipped). `scratch` is reused from block to block, so the
// callback must copy what it keeps. Returns the first error of on_block, or DataLoss when
// `message` is not a well-formed FetchClustersResponse (truncated, a length past its end, a
// bad varint, a group or unknown wire type); blocks before the malformed one were delivered.
absl::Status ForEachFetchedBlock(
    const grpc::ByteBuffer& message, v1::ClusterBlock& scratch,
    const std::function<absl::Status(const v1::ClusterBlock& block)>& on_block);

}  // namespace clusterkv::wire

#endif  // CLUSTERKV_PROTO_FETCH_WIRE_H_
