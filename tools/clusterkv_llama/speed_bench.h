// The engine's speed on this machine, for one model, all measured in one run:
//   - the matrix-product ceiling: OpenBLAS sgemm GFLOP/s on a 1024^3 product, beside the
//     project's own kernel on the same product;
//   - the model's own products (every weight matrix of one layer plus the vocabulary
//     projection) at prefill shape (256 rows) and decode shape (1 row), own kernel vs OpenBLAS;
//   - prefill tokens/s of the prompt with the engine's choice of products (OpenBLAS for >= 16
//     rows and for the attention blocks) and its GFLOP/s against the sgemm ceiling; and of a
//     prefix of at most 2048 tokens with OpenBLAS and with the own kernel only;
//   - decode tokens/s after that prompt: full attention vs ClusterKV (clusterkvd over the data
//     plane), `decode_steps` greedy steps each, with the ClusterKV step split into
//     score/select/fetch/attend; with config.promotion_hint_tokens > 0 the ClusterKV decode
//     runs a second time with promotion hints (the first run, without, is its baseline), and
//     each ClusterKV row carries the daemon's tier hits and hint outcomes over its decode;
//     with `overlap` it also runs with speculative prefetch (DecoderModel::
//     set_speculative_prefetch: each layer's recall starts from a query predicted from the
//     previous layer's input and overlaps that layer's compute) and as the compute-only bound
//     (every selected cluster made resident, untimed, before each layer's timed attend);
//   - with `batch_sizes`, decode throughput of b sequences stepping together: ClusterKV with
//     one AttendBatch per layer, ClusterKV with one Attend per sequence, full attention.
// Rows of the DESIGN.md section 9 report shape go to the returned JSON; the table to `out`.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_SPEED_BENCH_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_SPEED_BENCH_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_llama/clusterkv_attention.h"
#include "tools/clusterkv_llama/weights.h"

namespace clusterkv::llama {

struct SpeedBenchOptions : ServiceOptions {
  int64_t budget = 1024;
  int32_t decode_steps = 32;
  bool own_kernel_prefill = true;  // also time a prefix with OpenBLAS and with the own kernel
  bool overlap = false;            // also the prefetch and compute-only-bound decodes
  // Batched decode: for each size b, b sequences over the first batch_tokens tokens of the
  // prompt decode in lockstep (DecoderModel::DecodeBatchStep), their attention through one
  // Sequence::AttendBatch per layer, vs one Attend per sequence and vs full attention.
  std::vector<int32_t> batch_sizes;
  int64_t batch_tokens = 2048;
  std::string model_name;          // for the report
  std::ostream* progress = nullptr;
};

// `prompt` is the prefill (at least 16 tokens). InvalidArgument on bad options; otherwise the
// engine's or libclusterkv's errors. Returns the report's "results" rows.
absl::StatusOr<nlohmann::ordered_json> RunSpeedBench(const ModelWeights& weights,
                                                     const std::vector<int32_t>& prompt,
                                                     const SpeedBenchOptions& options,
                                                     std::ostream& out);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_SPEED_BENCH_H_
