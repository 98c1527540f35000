// The per-layer and per-head state of a Sequence, shared by sequence.cc (open, prefill,
// append) and sequence_attend.cc (the decode step). Internal to client/.
#ifndef CLUSTERKV_CLIENT_INTERNAL_SEQUENCE_STATE_H_
#define CLUSTERKV_CLIENT_INTERNAL_SEQUENCE_STATE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "client/internal/background_worker.h"
#include "client/device_memory.h"
#include "client/ucx_data_plane.h"
#include "client/internal/sequence_core.h"
#include "clusterkv/v1/kvcache.pb.h"
#include "gpu/cluster_index.h"
#include "gpu/device_cache.h"
#include "gpu/incremental.h"
#include "gpu/recall_estimate.h"
#include "gpu/selection.h"
#include "core/tensor_view.h"

namespace clusterkv::client {

struct SequenceCore::HeadState {
  HeadState(int32_t head_dim, const gpu::IncrementalOptions& options, const gpu::ExecContext& exec)
      : index(head_dim), window(head_dim, options, exec) {}

  gpu::ClusterIndex index;
  gpu::IncrementalClusterer window;
  // Sinks of a clustered layer, every token of a dense layer: rows in the sequence dtype.
  std::vector<uint8_t> local_keys;
  std::vector<uint8_t> local_values;
};

// A completed decode window whose AppendClusters has not succeeded yet.
struct SequenceCore::PendingAppend {
  v1::AppendClustersRequest request;
  std::vector<gpu::WindowClusters> windows;  // per kv head
};

// A speculative recall of a layer (Prefetch), run on the background worker: the selection for
// the predicted queries and its reservation in the layer's device cache (`planned` is notified
// after them: until then the worker reads the layer's index and changes its cache), then the
// fetch filling the reserved slots (`done`). The worker writes every other field before
// `done`; the engine thread reads them only after it.
struct SequenceCore::PendingPrefetch {
  std::vector<float> queries;  // the predicted queries, fp32 [num_q_heads, head_dim]
  int64_t step = 0;            // the step of the Attend it prepares
  std::vector<gpu::CacheEntry> misses;  // the reserved clusters being fetched
  Event planned;
  Event done;
  absl::Status status;
  StepStats fetched;
  bool direct = false;
};

// One Attend between BeginAttend and FinishAttend (internal/sequence_core.h).
struct SequenceCore::StepPlan {
  int32_t layer = 0;
  LayerState* state = nullptr;
  ConstMatrixView queries;
  MatrixView out;
  StepStats* stats = nullptr;  // the caller's, or local_stats
  StepStats local_stats;
  bool done = false;  // a dense layer: attended by BeginAttend
  absl::flat_hash_set<ClusterId> prefetched;  // placed by the prefetch this step took up
  std::vector<std::vector<float>> scores;     // per kv head
  std::vector<gpu::ClusterMasses> masses;
  std::vector<gpu::ClusterSelection> selections;
  gpu::CachePlan cache;  // hits, and the misses to fetch
};

struct SequenceCore::LayerState {
  bool dense = false;
  int64_t num_tokens = 0;  // positions handed out so far
  int64_t local_rows = 0;  // rows of local_keys / local_values of every head
  std::vector<HeadState> heads;
  std::optional<PendingAppend> pending;
  std::unique_ptr<PendingPrefetch> prefetch;  // not yet taken up by an Attend

  // Device cache, created at the layer's first clustered Attend.
  std::unique_ptr<gpu::ClusterCache> cache;
  std::unique_ptr<DeviceMemory> memory;
  // = memory when it lives in the data plane's registered region (the daemon writes it).
  DirectMemory* direct = nullptr;
  int64_t capacity_tokens = 0;
  int64_t last_step = -1;   // step of the last Attend
  // Promotion hints: the step each cluster was last named in a hint (not named again within
  // SequenceCore::kHintRepeatSteps steps).
  absl::flat_hash_map<ClusterId, int64_t> hinted_at;
  gpu::CacheStats retired;  // statistics of caches dropped by a reset

  // Prefill segments: where each ended (position) and the clusters each head then held.
  std::vector<std::pair<int64_t, int32_t>> segment_ends;
  // Checkpoints (sequence_session.cc): local rows and window positions already saved, and the
  // saved chunks that still hold rows a resume needs.
  struct SavedChunk {
    int32_t id = 0;
    bool has_local = false;
    int64_t last_window_position = -1;  // -1: no window rows
  };
  int64_t saved_local_rows = 0;
  int64_t saved_position = 0;  // window rows at or after it are not saved yet
  std::vector<SavedChunk> chunks;
  // Local rows a fork shares with its document (saved there, not in this sequence's chunks).
  int64_t base_local_rows = 0;
};

}  // namespace clusterkv::client

#endif  // CLUSTERKV_CLIENT_INTERNAL_SEQUENCE_STATE_H_
