// ClusterKvBackend: decode attention through libclusterkv. The prefill's K/V of each layer go
// to Sequence::OffloadPrefill (sinks and dense layers stay in the client, the rest is clustered
// with K-means and streamed to clusterkvd); each decode step appends the new token
// (Sequence::AppendToken, which re-clusters every m tokens) and then attends
// (Sequence::Attend: score centroids, select whole clusters up to the budget, fetch the
// device-cache misses from the daemon, attend over sinks + clusters + recent window).
// Owns the Sequence; the Client that opened it must outlive this object. Not thread-safe.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_CLUSTERKV_ATTENTION_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_CLUSTERKV_ATTENTION_H_

#include <memory>
#include <string>

#include "client/sequence.h"
#include "tools/clusterkv_llama/attention_backend.h"

namespace clusterkv::llama {

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

  client::Sequence& sequence() { return *sequence_; }

 private:
  std::string name_;
  std::unique_ptr<client::Sequence> sequence_;
};

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_CLUSTERKV_ATTENTION_H_
