// `clusterkv_llama --mode=reuse`: time to first token over a stored document and after a
// parked session, against a full prefill, on a real model (docs/decisions.md D85, D86).
//   full    the whole prompt prefilled (dense), offloaded through ClusterKV, first token;
//   reuse   the prompt's segment-aligned prefix found in the daemon (Client::FindPrefix), a
//           fork of it opened, its keys and values read back (Sequence::ReadTokens), only the
//           rest of the prompt run through the model and offloaded, first token;
//   resume  the full run's sequence, checkpointed and left, resumed by a new client
//           (Client::ResumeSequence) and its next token decoded.
// Each run then generates `steps` greedy tokens; the report says whether they match.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_REUSE_BENCH_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_REUSE_BENCH_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct ReuseBenchOptions : ServiceOptions {
  int64_t budget = 1024;
  int32_t steps = 8;       // greedy tokens per run
  std::string model_name;  // names the document's model in its hash chain
  std::ostream* progress = nullptr;
};

// The table goes to `out`; returns the JSON rows. InvalidArgument: no prefill segments
// configured, or a prompt shorter than one segment; Unimplemented: a model with local layers
// (their sliding windows live in the engine, not in the daemon).
absl::StatusOr<nlohmann::ordered_json> RunReuseBench(const ModelWeights& weights,
                                                     const std::vector<int32_t>& prompt,
                                                     const ReuseBenchOptions& options,
                                                     std::ostream& out);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_REUSE_BENCH_H_
