// `clusterkv_llama --mode=park` and `--mode=resume`: a decode that outlives its process.
//   park     prefills the prompt (dense), offloads it through ClusterKV, generates greedy tokens,
//            then checkpoints the sequence with the engine's own state (the local layers'
//            windows, the last token and its position) and leaves it in the daemon as `session`;
//   resume   rebuilds `session` from the daemon alone (client::Client::ResumeSequence: no prompt,
//            no prefill) and generates more tokens where the parked run stopped.
// Both print the generated text and their times. The daemon must outlive the process (--target).
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PARK_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PARK_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/tokenizer.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct ParkOptions : ServiceOptions {
  std::string session;  // the sequence id the decode is parked under
  int64_t budget = 1024;
  int32_t new_tokens = 64;
};

// InvalidArgument: no session name; AlreadyExists: a parked session of that name (park).
absl::Status RunPark(const ModelWeights& weights, const Tokenizer* tokenizer,
                     const std::vector<int32_t>& prompt, const ParkOptions& options,
                     std::ostream& out);
// NotFound: no such session; FailedPrecondition: it was never parked.
absl::Status RunResume(const ModelWeights& weights, const Tokenizer* tokenizer,
                       const ParkOptions& options, std::ostream& out);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_PARK_H_
