// libFuzzer target: every client-supplied request message through the daemon's validation.
// The input is parsed (protobuf ParseFromArray) as each request type in turn; whatever parses
// is run through the same checks the gRPC and UCX paths use (server/request_validation.h,
// rpc::FromProto, SequenceKey::Validate), against a fixed layout and, when the message carries
// a valid layout of its own, against that one too. A block that passes validation must also be
// viewable (storage::ViewClusterBlock), and an index that passes must round-trip through the
// SSD record codec: both are invariants the handler relies on after validation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "google/protobuf/stubs/logging.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "core/ids.h"
#include "core/kv_layout.h"
#include "proto/rpc_support.h"
#include "server/request_validation.h"
#include "storage/cluster_block.h"
#include "storage/index_record.h"

namespace clusterkv {
namespace {

// Aborts (a libFuzzer crash) when an invariant fails.
void Require(bool condition) {
  if (!condition) std::abort();
}

// The daemon's default bound (HandlerOptions::max_block_bytes).
constexpr uint64_t kMaxBlockBytes = uint64_t{32} << 20;

KvLayout FixedLayout() {
  KvLayout layout;
  layout.num_layers = 4;
  layout.num_q_heads = 8;
  layout.num_kv_heads = 4;
  layout.head_dim = 128;
  layout.dtype = DType::kFloat16;
  return layout;
}

void CheckSequenceId(const std::string& sequence_id) {
  const SequenceKey key{"tenant-a", sequence_id};
  (void)key.Validate();
}

void CheckBlock(const KvLayout& layout, const v1::ClusterBlock& block) {
  if (!server::ValidateBlock(layout, block, kMaxBlockBytes).ok()) return;
  Require(server::ValidateClusterRef(layout, block.id()).ok());
  const ClusterId id = rpc::FromProto(block.id());
  Require(id.head.layer == block.id().layer() && id.head.kv_head == block.id().kv_head() &&
          id.cluster == block.id().cluster());
  // Copy into an aligned buffer, as the host tier stores it.
  std::vector<int32_t> aligned((block.data().size() + 3) / 4);
  std::vector<uint8_t> bytes(block.data().begin(), block.data().end());
  if (!bytes.empty()) std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto view = storage::ViewClusterBlock(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(aligned.data()), bytes.size()),
      block.num_tokens(), layout.head_dim, layout.dtype);
  Require(view.ok() && view->tokens() == block.num_tokens());
}

void CheckIndex(const KvLayout& layout, const v1::HeadIndex& index) {
  if (!server::ValidateHeadIndex(layout, index).ok()) return;
  storage::HeadIndexRecord record;
  record.head_dim = layout.head_dim;
  record.centroids.assign(index.centroids().begin(), index.centroids().end());
  record.sizes.assign(index.sizes().begin(), index.sizes().end());
  record.key_norms.assign(index.key_norms().begin(), index.key_norms().end());
  record.key_spreads.assign(index.key_spreads().begin(), index.key_spreads().end());
  const auto encoded = storage::EncodeHeadIndex(record);
  Require(encoded.ok());
  const auto decoded = storage::DecodeHeadIndex(*encoded);
  Require(decoded.ok() && decoded->head_dim == record.head_dim &&
          decoded->sizes == record.sizes && decoded->centroids.size() == record.centroids.size() &&
          decoded->key_norms.size() == record.key_norms.size());
}

// The layouts to validate against: the fixed one, plus the message's own when it is valid.
std::vector<KvLayout> Layouts(const v1::KvLayout* proto_layout) {
  std::vector<KvLayout> layouts = {FixedLayout()};
  if (proto_layout != nullptr) {
    const absl::StatusOr<KvLayout> layout = rpc::FromProto(*proto_layout);
    if (layout.ok()) {
      Require(layout->Validate().ok());
      const v1::KvLayout back = rpc::ToProto(*layout);
      const absl::StatusOr<KvLayout> again = rpc::FromProto(back);
      Require(again.ok() && *again == *layout);
      layouts.push_back(*layout);
    }
  }
  return layouts;
}

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* message) {
  return message->ParseFromArray(data, static_cast<int>(size));
}

void FuzzOne(const uint8_t* data, size_t size) {
  if (v1::OpenSequenceRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    Layouts(m.has_layout() ? &m.layout() : nullptr);
  }
  if (v1::CloseSequenceRequest m; Parse(data, size, &m)) CheckSequenceId(m.sequence_id());
  if (v1::PutClustersRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    for (const KvLayout& layout : Layouts(nullptr)) {
      for (const v1::ClusterBlock& block : m.blocks()) CheckBlock(layout, block);
      for (const v1::HeadIndex& index : m.indexes()) CheckIndex(layout, index);
    }
  }
  if (v1::AppendClustersRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    for (const KvLayout& layout : Layouts(nullptr)) {
      for (const v1::ClusterBlock& block : m.blocks()) CheckBlock(layout, block);
      for (const v1::HeadIndex& index : m.appended()) CheckIndex(layout, index);
    }
  }
  if (v1::GetIndexRequest m; Parse(data, size, &m)) CheckSequenceId(m.sequence_id());
  if (v1::FetchClustersRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    for (const v1::ClusterRef& ref : m.clusters()) {
      (void)server::ValidateClusterRef(FixedLayout(), ref);
      (void)rpc::FromProto(ref);
    }
  }
  if (v1::SelectRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    (void)server::ValidateSelect(FixedLayout(), m);
  }
  if (v1::PutStateRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    // An accepted checkpoint names chunks the store can key: below the state chunk range's
    // end, on a layer of the layout (or the engine's).
    if (server::ValidatePutState(FixedLayout(), m, kMaxBlockBytes).ok()) {
      for (const v1::StateChunk& chunk : m.chunks()) {
        Require(chunk.chunk() >= 0 && chunk.chunk() < server::kStateChunkBase);
        Require(chunk.layer() == server::kEngineStateLayer ||
                (chunk.layer() >= 0 && chunk.layer() < FixedLayout().num_layers));
        Require(!chunk.data().empty() && chunk.data().size() <= kMaxBlockBytes);
      }
      Require(m.state().layers_size() <= FixedLayout().num_layers);
    }
  }
  if (v1::GetStateRequest m; Parse(data, size, &m)) CheckSequenceId(m.sequence_id());
  if (v1::SealDocumentRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    if (server::ValidateDocumentSegments(FixedLayout(), m.segments()).ok()) {
      const v1::DocumentSegments& s = m.segments();
      Require(s.hashes_size() >= 1 && s.hashes_size() <= server::kMaxDocumentSegments);
      Require(s.clusters_size() == s.hashes_size() * FixedLayout().num_layers);
    }
  }
  if (v1::FindPrefixRequest m; Parse(data, size, &m)) (void)m.hashes_size();
  if (v1::GrantDocumentRequest m; Parse(data, size, &m)) {
    CheckSequenceId(m.sequence_id());
    CheckSequenceId(m.tenant());
  }
  if (v1::SequenceInfo m; Parse(data, size, &m)) {
    // A layout arriving on its own (OpenSequence's layout, the admin tool's sequence info).
    Layouts(m.has_layout() ? &m.layout() : nullptr);
  }
  if (v1::ConnectDataPlaneRequest m; Parse(data, size, &m)) {
    // Opaque bytes handed to UCX by the daemon; parsing must simply not fail unsafely.
    (void)m.worker_address().size();
  }
  if (v1::ReportClientStatsRequest m; Parse(data, size, &m)) {
    (void)m.device_cache_hit_tokens();
    // An accepted per-sequence report has a bounded step and per-head budget.
    if (server::ValidateSequenceReport(m).ok()) {
      Require(m.step() >= 0 && m.step() <= (int64_t{1} << 40));
      Require(m.selected_tokens() == 0 ||
              (m.selected_heads() > 0 &&
               m.selected_tokens() / m.selected_heads() <= (uint64_t{1} << 31)));
      Require(!m.sequence_id().empty() || (m.step() == 0 && m.selected_heads() == 0));
    }
  }
}

}  // namespace
}  // namespace clusterkv

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Invalid UTF-8 in a string field is a parse failure the daemon answers; don't log each one.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clusterkv::FuzzOne(data, size);
  return 0;
}
