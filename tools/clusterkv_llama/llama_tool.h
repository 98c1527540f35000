// clusterkv_llama as a library: main.cc turns flags into ToolOptions and calls RunLlamaTool, so
// tests can run the whole tool in-process.
//
// The tool loads a checkpoint (GGUF Llama or Gemma 3, or safetensors Llama) or makes a seeded
// random Llama, builds a prompt (text through the GGUF's own tokenizer, token ids, or a
// synthetic prompt), starts clusterkvd (unless --target names a running one) and runs one mode:
//   generate  text in, text out (generate.h): full attention and ClusterKV each continue the
//             prompt greedily; both texts, the per-step breakdown and the cache hit rate print.
//   compare   the teacher-forced comparison of comparison.h at each budget, then the latency
//             breakdown and agreement table and the JSON report.
//   bench     the engine's speed (speed_bench.h): sgemm ceiling, own kernel vs OpenBLAS,
//             prefill tokens/s, decode tokens/s full attention vs ClusterKV.
// --write_random_model only writes a model file and exits.
#ifndef CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_LLAMA_TOOL_H_
#define CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_LLAMA_TOOL_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/clusterkv_llama/comparison.h"
#include "tools/clusterkv_llama/model_writer.h"
#include "tools/clusterkv_llama/model_profile.h"
#include "tools/clusterkv_llama/prompt.h"
#include "tools/clusterkv_llama/quality_eval.h"

namespace clusterkv::llama {

// The --help text.
absl::string_view UsageText();

// The default random model: Llama-shaped, small enough for a 2-core CPU (8 layers, dim 512,
// 8 query heads sharing 2 kv heads of 64 dims, SwiGLU 1408, vocabulary 8192, RoPE theta 5e5).
ModelConfig DefaultRandomConfig();

struct ToolOptions {
  // Model: a file to load, else the random model.
  std::string model;
  std::string config_json;  // safetensors: config.json path ("" = next to the model)
  RandomModelOptions random;
  // Only write the random model here (format from the extension) and exit.
  std::string write_random_model;
  StoredDType write_dtype = StoredDType::kF32;
  // Prompt: text (or a text file), token ids "1,2,3", else the synthetic prompt.
  std::string prompt_text;
  std::string prompt_file;  // a path, or "austen" / "kjv" (text_source.h)
  int64_t prompt_bytes = 0;  // > 0: only the text's first bytes (cut back to a UTF-8 boundary)
  bool parse_special = false;  // special-token strings in the text become those tokens
  bool chat = false;           // wrap the text as one user turn of the model's chat format
  std::string prompt_tokens;
  SyntheticPromptOptions synthetic;
  // "generate", "compare", "bench", or "auto" (generate for a text prompt, else compare).
  std::string mode = "auto";
  int32_t bench_steps = 32;  // bench: decode steps per variant
  bool bench_overlap = false;  // bench: also the prefetch and compute-only-bound decodes
  std::vector<int32_t> bench_batch_sizes;  // bench: batched decodes (empty: none)
  int64_t bench_batch_tokens = 2048;
  // demo: prompt length and reference continuation (text from eval.text).
  int64_t demo_context = 4096;
  int32_t demo_reference_tokens = 128;
  // eval: everything but the service options, which come from `comparison`.
  QualityEvalOptions eval;
  // generate: new tokens, budget, whether full attention runs beside ClusterKV.
  int32_t max_new_tokens = 64;
  std::string session;  // park / resume: the parked decode's sequence id
  int64_t generate_budget = 1024;
  bool generate_full = true;
  // Comparison (budgets, steps, ClusterKV config, target, tenant, threads, ...).
  ComparisonOptions comparison;
  // Apply the model family's ClusterKV profile (model_profile.h) to comparison.config, except
  // the fields named in `profile_given`.
  bool model_profile = true;
  ProfileOverrides profile_given;
  // The daemon started when comparison.target is empty.
  std::string daemon_binary;
  std::string work_dir;  // "" = a temporary directory, removed afterwards
  int64_t host_capacity_mib = 1024;
  std::string json_path;
  bool quiet = false;  // no progress lines
};

// "256,512" -> {256, 512}; InvalidArgument naming `what` on an empty list or a bad entry.
absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view text, absl::string_view what);

// Runs the tool: progress on `err`, the table on `out`, the JSON file when asked. Errors pass
// through from the loader, the writer, the daemon launcher and the comparison.
absl::Status RunLlamaTool(const ToolOptions& options, std::ostream& out, std::ostream& err);

}  // namespace clusterkv::llama

#endif  // CLUSTERKV_TOOLS_CLUSTERKV_LLAMA_LLAMA_TOOL_H_
