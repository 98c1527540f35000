// libFuzzer target: the UCX data-plane message decoders (proto/ucx_wire.h), single-sequence and
// batch, and PeekHeader. The daemon decodes fetch requests from any connected client and the
// client decodes completions, so both must reject every malformed input without reading out of
// bounds. What decodes must re-encode to a message that decodes to the same value, and, when a
// request's unused status field is zero, to the very input bytes (a reply's block_slot_bytes
// must be zero to decode at all; a batch request's status must be zero too). Whatever decodes
// peeks as its own kind.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "proto/ucx_wire.h"

namespace clusterkv::wire {
namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

// The daemon's limit on entries per request (HandlerOptions::max_fetch_clusters), and a small
// one so that the count check is exercised too.
constexpr size_t kLimits[] = {size_t{1} << 16, 4};

// A request's status field (offset 28) is not carried by FetchRequest.
bool RequestStatusZero(absl::string_view bytes) {
  return bytes.size() >= kHeaderBytes &&
         bytes.substr(28, 4) == absl::string_view("\0\0\0\0", 4);
}

bool Same(const FetchEntry& a, const FetchEntry& b) {
  return a.layer == b.layer && a.kv_head == b.kv_head && a.cluster == b.cluster &&
         a.expected_tokens == b.expected_tokens && a.slot_offset == b.slot_offset;
}

bool Same(const BatchFetchEntry& a, const BatchFetchEntry& b) {
  return a.sequence == b.sequence && Same(a.block, b.block);
}

bool Same(const SequenceResult& a, const SequenceResult& b) {
  return a.code == b.code && a.message == b.message;
}

bool Same(const BlockResult& a, const BlockResult& b) {
  return a.code == b.code && a.num_tokens == b.num_tokens && a.bytes == b.bytes;
}

template <typename T>
bool SameAll(const T& a, const T& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!Same(a[i], b[i])) return false;
  }
  return true;
}

bool PeeksAs(absl::string_view bytes, Kind kind) {
  const absl::StatusOr<MessageHeader> header = PeekHeader(bytes);
  return header.ok() && header->kind == kind;
}

void FuzzBatch(absl::string_view bytes, const BatchLimits& limits) {
  if (absl::StatusOr<BatchFetchRequest> request = DecodeBatchFetchRequest(bytes, limits);
      request.ok()) {
    Require(request->entries.size() <= limits.max_entries &&
            request->sequence_ids.size() <= limits.max_sequences);
    uint32_t previous = 0;
    for (const BatchFetchEntry& e : request->entries) {
      Require(e.sequence < request->sequence_ids.size() && e.sequence >= previous);
      previous = e.sequence;
    }
    const std::string encoded = Encode(*request);
    const absl::StatusOr<BatchFetchRequest> again = DecodeBatchFetchRequest(encoded, limits);
    Require(again.ok() && again->request_id == request->request_id &&
            again->session_id == request->session_id &&
            again->sequence_ids == request->sequence_ids &&
            SameAll(again->entries, request->entries));
    Require(encoded == bytes && PeeksAs(bytes, Kind::kBatchFetchRequest));
  }
  if (absl::StatusOr<BatchFetchCompletion> done = DecodeBatchFetchCompletion(bytes, limits);
      done.ok()) {
    Require(done->blocks.size() <= limits.max_entries &&
            done->sequences.size() <= limits.max_sequences &&
            done->message.size() <= kMaxTextBytes);
    Require(done->code == 0 || (done->sequences.empty() && done->blocks.empty()));
    const std::string encoded = Encode(*done);
    const absl::StatusOr<BatchFetchCompletion> again = DecodeBatchFetchCompletion(encoded, limits);
    Require(again.ok() && again->request_id == done->request_id &&
            again->session_id == done->session_id && again->code == done->code &&
            again->message == done->message && SameAll(again->sequences, done->sequences) &&
            SameAll(again->blocks, done->blocks));
    Require(encoded == bytes && PeeksAs(bytes, Kind::kBatchFetchCompletion));
  }
}

void FuzzOne(absl::string_view bytes) {
  (void)PeekHeader(bytes);
  // The daemon's limits, and small ones so that every count check is exercised too.
  FuzzBatch(bytes, BatchLimits{kMaxBatchSequences, size_t{1} << 16, kMaxBatchTextBytes});
  FuzzBatch(bytes, BatchLimits{2, 4, 64});
  for (size_t limit : kLimits) {
    if (absl::StatusOr<FetchRequest> request = DecodeFetchRequest(bytes, limit); request.ok()) {
      Require(request->entries.size() <= limit);
      const std::string encoded = Encode(*request);
      const absl::StatusOr<FetchRequest> again = DecodeFetchRequest(encoded, limit);
      Require(again.ok() && again->request_id == request->request_id &&
              again->session_id == request->session_id &&
              again->sequence_id == request->sequence_id &&
              again->block_slot_bytes == request->block_slot_bytes &&
              SameAll(again->entries, request->entries));
      if (RequestStatusZero(bytes)) Require(encoded == bytes);
    }
    if (absl::StatusOr<FetchCompletion> done = DecodeFetchCompletion(bytes, limit); done.ok()) {
      Require(done->blocks.size() <= limit && done->message.size() <= kMaxTextBytes);
      const std::string encoded = Encode(*done);
      const absl::StatusOr<FetchCompletion> again = DecodeFetchCompletion(encoded, limit);
      Require(again.ok() && again->request_id == done->request_id &&
              again->session_id == done->session_id && again->code == done->code &&
              again->message == done->message && SameAll(again->blocks, done->blocks));
      Require(encoded == bytes);
    }
  }
}

}  // namespace
}  // namespace clusterkv::wire

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clusterkv::wire::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
