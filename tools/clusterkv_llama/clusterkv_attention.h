// ClusterKvBackend: decode attention of a model's global layers through libclusterkv (local
// layers stay in the engine: local_window.h). The prefill's K/V of each layer go
// to Sequence::OffloadPrefill (sinks and dense layers stay in the client, the rest is clustered
// with K-means and streamed to clusterkvd); each decode step appends the new token
// (Sequence::AppendToken, which re-clusters every m tokens) and then attends
// (Sequence::Attend: score centroids, select whole clusters up to the budget, fetch the
// device-cache misses from the daemon, attend over sinks + clusters + recent window).
// Owns the Sequence; the Client that opened it must outlive this object. Not thread-safe.
//
// ServiceOptions and OpenClusterKv are how the tool's modes (comparison.h, generate.h) reach
// clusterkvd: one Client and one Sequence per ClusterKV run.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_CLUSTERKV_ATTENTION_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_CLUSTERKV_ATTENTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/sequence.h"
#include "core/config.h"
#include "core/kv_layout.h"
#include "tools/clusterkv_llama/attention_backend.h"
#include "tools/clusterkv_llama/model_config.h"

namespace clusterkv::llama {

// The config a model's Sequence runs with: `config` with its dense layers, which name model
// layers, renumbered to the sequence's layers (one per global layer, model_config.h); dense
// layers that are local are dropped (local layers never reach the sequence).
ClusterKvConfig SequenceConfig(const ModelConfig& model, const ClusterKvConfig& config);

// How the engine reaches clusterkvd and runs ClusterKV.
struct ServiceOptions {
  DType kv_dtype = DType::kFloat16;  // every backend stores K/V in this dtype
  ClusterKvConfig config;            // dense_layers name model layers; token_budget set per run
  // The daemon: "unix:/path" or host:port, and the caller's tenant.
  std::string target;
  std::string tenant = "llama";
  std::string data_plane = "auto";  // client::ClientOptions::data_plane
  absl::Duration call_timeout = absl::Seconds(120);
  int threads = 0;  // 0 = all cores
  std::string sequence_prefix = "llama";
};

class ClusterKvBackend : public AttentionBackend {
 public:
  ClusterKvBackend(std::string name, std::unique_ptr<client::Sequence> sequence);

  std::string Name() const override { return name_; }
  // Sequence::OffloadPrefill's errors.
  absl::Status LoadPrefill(int32_t layer, const Tensor3View& keys,
                           const Tensor3View& values) override;
  void BeginStep() override { sequence_->BeginStep(); }
  // Sequence::AppendToken's, then Sequence::Attend's errors.
  absl::Status AppendAndAttend(int32_t layer, const float* q, const float* k, const float* v,
                               float* out, AttentionStepStats* stats) override;
  // Sparse (not dense) sequence layers.
  bool WantsPrefetch(int32_t layer) const override;
  // Sequence::Prefetch.
  absl::Status Prefetch(int32_t layer, const float* q_guess) override;
  // The compute-only bound of a decode step: when on, AppendAndAttend first makes every
  // cluster the real query selects resident (a Prefetch of that query, waited for) and reports
  // that time as excluded_us, so the attend it times finds every selected cluster resident.
  void set_resident_bound(bool on) { resident_bound_ = on; }

  client::Sequence& sequence() { return *sequence_; }

 private:
  std::string name_;
  std::unique_ptr<client::Sequence> sequence_;
  bool resident_bound_ = false;
};

// One ClusterKV run: a connected Client, the ClusterKvBackend of its Sequence, and the backend
// the decoder calls (the ClusterKvBackend itself, or a LocalWindowBackend around it for a model
// with local layers). Members are destroyed backend first, client last.
struct ClusterKvSession {
  std::unique_ptr<client::Client> client;
  ClusterKvBackend* sparse = nullptr;  // owned by `backend`
  std::unique_ptr<AttentionBackend> backend;

  // "ucx", "grpc", "ucx+grpc" or "none" by the blocks the sequence fetched so far.
  std::string DataPlaneUsed() const;
  // What recalls will use: "ucx" when the client opened the UCX data plane, else "grpc" with
  // the reason ("grpc (UCX unavailable: ...)").
  std::string DataPlaneConfigured() const;
};

// Connects to options.target and opens the sequence "<prefix>-<pid>-<name>" with the model's
// KV layout (one layer per global layer) and `budget`. Client::Connect's and OpenSequence's
// errors.
absl::StatusOr<ClusterKvSession> OpenClusterKv(const ModelConfig& model,
                                               const ServiceOptions& options, int64_t budget,
                                               const std::string& name, int threads);

// The client options OpenClusterKv connects with, for `sequences` sequences of `model`.
client::ClientOptions ClientOptionsFor(const ModelConfig& model, const ServiceOptions& options,
                                       int64_t budget, int threads, int32_t sequences);
// A ClusterKvSession over a sequence opened some other way (a fork of a stored document, a
// resumed sequence) on `client`.
ClusterKvSession WrapClusterKv(const ModelConfig& model, std::unique_ptr<client::Client> client,
                               std::unique_ptr<client::Sequence> sequence,
                               const std::string& name);

// Several ClusterKV sequences of one model on one Client (a decode batch): the backend the
// decoder calls for each (as in ClusterKvSession) and its ClusterKvBackend. Members are destroyed
// backends first, client last.
struct ClusterKvBatch {
  std::unique_ptr<client::Client> client;
  std::vector<ClusterKvBackend*> sparse;  // owned by `backends`
  std::vector<std::unique_ptr<AttentionBackend>> backends;
};

// OpenClusterKv for `sequences` sequences "<prefix>-<pid>-<name>-<i>" on one Client, whose UCX
// region is sized for all of them.
absl::StatusOr<ClusterKvBatch> OpenClusterKvBatch(const ModelConfig& model,
                                                  const ServiceOptions& options, int64_t budget,
                                                  const std::string& name, int threads,
                                                  int32_t sequences);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_CLUSTERKV_ATTENTION_H_
