// clusterkv_llama: a decode engine (Llama, Gemma 3) over libclusterkv (see llama_tool.h). Flags
// grouped by subsystem; --help.
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "core/cli_help.h"
#include "tools/clusterkv_llama/llama_tool.h"

ABSL_FLAG(std::string, model, "",
          "Model file to load: .gguf or .safetensors (with config.json "
          "next to it). Empty: the seeded random model described by the Random model flags.");
ABSL_FLAG(std::string, config_json, "",
          "safetensors: the config.json to use (default: next to "
          "the model file).");
ABSL_FLAG(std::string, write_random_model, "",
          "Write the random model to this .gguf or "
          ".safetensors file (and config.json beside it) and exit.");
ABSL_FLAG(std::string, weight_dtype, "f32",
          "Tensor type of --write_random_model: f32, f16, "
          "bf16.");
ABSL_FLAG(int32_t, dim, 512, "Random model: hidden size.");
ABSL_FLAG(int32_t, layers, 8, "Random model: layers.");
ABSL_FLAG(int32_t, heads, 8, "Random model: query heads.");
ABSL_FLAG(int32_t, kv_heads, 2, "Random model: kv heads (GQA).");
ABSL_FLAG(int32_t, head_dim, 64, "Random model: head dimension.");
ABSL_FLAG(int32_t, ffn_dim, 1408, "Random model: SwiGLU hidden size.");
ABSL_FLAG(int32_t, vocab, 8192, "Random model: vocabulary size.");
ABSL_FLAG(double, rope_theta, 500000.0, "Random model: RoPE base.");
ABSL_FLAG(int64_t, max_context, 32768, "Random model: maximum context.");
ABSL_FLAG(uint64_t, seed, 1, "Random model: weight seed.");
ABSL_FLAG(double, qk_gain, 1.2,
          "Random model: scale of Wq and Wk (attention peakedness; see "
          "model_writer.h).");
ABSL_FLAG(double, qk_shared, 0.9,
          "Random model: share of a query head's projection drawn "
          "from its kv head's key projection (0 = i.i.d. weights, near-uniform attention).");
ABSL_FLAG(bool, tie_embeddings, false, "Random model: no separate output head.");
ABSL_FLAG(std::string, prompt, "",
          "Prompt text, tokenized with the GGUF model's own tokenizer (UTF-8).");
ABSL_FLAG(std::string, prompt_file, "",
          "Read the prompt text from this file (UTF-8), or austen / kjv for the Debian "
          "packages' texts (as --text).");
ABSL_FLAG(int64_t, prompt_bytes, 0,
          "Use only the first bytes of the prompt text (0 = all), e.g. --prompt_file=austen "
          "--prompt_bytes=26000 for the opening of Emma.");
ABSL_FLAG(bool, parse_special, false,
          "Special-token strings in the prompt text (e.g. <|im_start|>, <start_of_turn>) become "
          "those tokens; otherwise they are plain text.");
ABSL_FLAG(bool, chat, false,
          "Wrap the prompt text as one user turn of the model's chat format (ChatML for "
          "SmolLM2-Instruct, <start_of_turn> for Gemma), so instruction-tuned models answer it.");
ABSL_FLAG(std::string, prompt_tokens, "", "Prompt as token ids \"1,2,3\" (default: synthetic).");
ABSL_FLAG(std::string, mode, "auto",
          "generate (text in, text out: full attention and ClusterKV continue the prompt), "
          "demo (the main job: a long real passage, both continuations, the perplexity gap), "
          "compare (teacher-forced comparison at every --budgets entry), bench (prefill and "
          "decode speed, OpenBLAS vs own kernels), reuse (time to first token over a stored "
          "document and after a parked session vs a full prefill; needs "
          "--prefill_segment_tokens), park (prefill, generate --max_new_tokens, leave the decode "
          "in the daemon as --session), resume (continue a parked --session with no prompt and "
          "no prefill), or auto (generate for a text prompt, else compare).");
ABSL_FLAG(std::string, session, "",
          "park / resume: the parked decode's sequence id (needs --target: a daemon that "
          "outlives this process).");
ABSL_FLAG(int32_t, max_new_tokens, 64, "generate: tokens to generate per variant.");
ABSL_FLAG(int64_t, budget, 1024, "generate and bench: the ClusterKV budget B.");
ABSL_FLAG(int32_t, bench_steps, 32, "bench: decode steps per variant.");
ABSL_FLAG(std::string, bench_batch_sizes, "",
          "bench: also decode batches of this many sequences in lockstep (e.g. 1,8,32) over the "
          "first --bench_batch_tokens prompt tokens: ClusterKV with one AttendBatch per layer, "
          "with one Attend per sequence, and full attention (\"\" = off).");
ABSL_FLAG(int64_t, bench_batch_tokens, 2048, "bench: prompt tokens of each batched sequence.");
ABSL_FLAG(bool, bench_overlap, false,
          "bench: also decode with speculative prefetch (each sparse layer's recall starts "
          "from a query predicted from the previous layer's input) and as the compute-only "
          "bound (every selected cluster resident before the timed attend).");
ABSL_FLAG(int64_t, demo_context, 4096, "demo: prompt tokens of --text.");
ABSL_FLAG(int32_t, demo_reference_tokens, 128,
          "demo: tokens of the text after the prompt whose perplexity both variants report.");
ABSL_FLAG(std::string, contexts, "2048,4096,8192", "eval: context lengths in tokens.");
ABSL_FLAG(std::string, methods, "clusterkv,quest,streamingllm,oracle",
          "eval: methods beside full attention (clusterkv, clusterkv_adaptive, quest, "
          "streamingllm, oracle).");
ABSL_FLAG(std::string, recall_targets, "0.9",
          "eval: the estimated-recall targets of clusterkv_adaptive, each run at every --budgets "
          "entry (then the cap of the mean per-head budget).");
ABSL_FLAG(int32_t, min_budget, 0, "clusterkv_adaptive: B_min per kv head (0 = B / 4).");
ABSL_FLAG(int32_t, max_budget, 0, "clusterkv_adaptive: B_max per kv head (0 = 4 B).");
ABSL_FLAG(std::string, text, "austen",
          "eval: the text for perplexity and agreement: austen (r-cran-janeaustenr), kjv "
          "(bible-kjv) or a file path.");
ABSL_FLAG(std::string, passkey_text, "kjv", "eval: the passkey haystack (same choices).");
ABSL_FLAG(int32_t, ppl_tokens, 256, "eval: teacher-forced tokens per perplexity measurement.");
ABSL_FLAG(int32_t, agreement_tokens, 256, "eval: full attention's greedy tokens to agree on.");
ABSL_FLAG(int32_t, passkey_depths, 10, "eval: passkey depths (0 = no passkey task).");
ABSL_FLAG(std::string, passkey_depth_indices, "",
          "eval: run only these of the --passkey_depths depths (\"1,2\"; same needles and keys "
          "as the full run; default all).");
ABSL_FLAG(std::string, passkey_contexts, "",
          "eval: contexts of the passkey task (default: every --contexts entry).");
ABSL_FLAG(std::string, dump_npy, "",
          "eval: write the first context's real Q/K/V per global layer here, in "
          "clusterkv_eval's .npy layout (clusterkv_eval --npy_dir reads it).");
ABSL_FLAG(bool, full_attention, true, "generate: also generate with full attention.");
ABSL_FLAG(int64_t, prompt_len, 4096, "Synthetic prompt length in tokens.");
ABSL_FLAG(uint64_t, prompt_seed, 7, "Synthetic prompt seed.");
ABSL_FLAG(int32_t, steps, 384,
          "Decode steps (the default passes m = 320, so one decode window "
          "is re-clustered and offloaded during the run).");
ABSL_FLAG(std::string, budgets, "256,512,1024,2048",
          "ClusterKV budgets B to compare (tokens "
          "recalled per layer and kv head, on top of sinks and the recent window).");
ABSL_FLAG(std::string, kv_dtype, "fp16", "KV cache dtype of both backends: fp16, bf16, fp32.");
ABSL_FLAG(int32_t, clusters, 400, "C0: prefill clusters per kv head.");
ABSL_FLAG(int32_t, kmeans_iters, 20, "K-means iterations.");
ABSL_FLAG(int32_t, prefill_segment_tokens, clusterkv::ClusterKvConfig().prefill_segment_tokens,
          "G: cluster the prompt in segments of G tokens, each its own K-means (the first with "
          "C0 clusters), so that segment-aligned prefixes are reusable (--mode=reuse needs it); "
          "0 = the whole prompt at once (the paper).");
ABSL_FLAG(int32_t, prefill_segment_clusters, 0,
          "Clusters per full prefill segment after the first (0: C0 * G / 8192).");
ABSL_FLAG(int32_t, sinks, 16, "Sink tokens.");
ABSL_FLAG(std::string, centroid_scoring, "unit",
          "How queries score clusters: unit (the paper's cosine to the unit centroid), "
          "key_norm (times the cluster's mean key norm) or head_norm (times the kv head's mean key "
          "norm). QK-norm models get key_norm from their profile unless this is given.");
ABSL_FLAG(bool, model_profile, true,
          "Apply the model family's measured ClusterKV profile (QK-norm models such as Gemma 3: "
          "--centroid_scoring=key_norm --prefill_segment_clusters=200) to the fields not given "
          "on the command line; false keeps the library's defaults.");
ABSL_FLAG(std::string, dense_layers, "0,1", "Layers that keep full attention (\"\" = none).");
ABSL_FLAG(int32_t, recluster_interval, 320, "m: decode tokens per recent window.");
ABSL_FLAG(int32_t, clusters_per_recluster, 8,
          "C+: clusters made from each window of m decode "
          "tokens.");
ABSL_FLAG(int32_t, residency, 1, "R: device-cache residency in steps.");
ABSL_FLAG(int32_t, promotion_hint_tokens, 0,
          "Promotion hints: tokens per kv head ranked past the selection that the daemon is asked "
          "to bring up from its SSD tier (0 = off). bench: ClusterKV decode runs twice, without "
          "and with hints.");
ABSL_FLAG(std::string, target, "",
          "A running clusterkvd (unix:/path.sock or host:port); "
          "default: start one.");
ABSL_FLAG(std::string, tenant, "llama", "Tenant of the sequences.");
ABSL_FLAG(std::string, daemon, "",
          "clusterkvd binary to start (default: next to this binary, "
          "else the one this build produced).");
ABSL_FLAG(std::string, work_dir, "",
          "Socket and data directory of the started daemon "
          "(default: a temporary directory, removed afterwards).");
ABSL_FLAG(int64_t, host_capacity_mib, 1024, "Host tier of the started daemon, MiB.");
ABSL_FLAG(std::string, data_plane, "auto", "Fetch path: auto, ucx, grpc.");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0 = all cores).");
ABSL_FLAG(bool, oracle, true, "Measure full attention's top-B attention mass.");
ABSL_FLAG(std::string, json, "", "Write the report (DESIGN.md section 9 shape) to this file.");
ABSL_FLAG(bool, quiet, false, "No progress lines.");

namespace {

std::string DefaultDaemon() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto sibling = self.parent_path() / "clusterkvd";  // an installed layout
    if (std::filesystem::exists(sibling)) return sibling.string();
  }
  return CLUSTERKV_DAEMON_BIN;
}

int Usage(const std::string& message) {
  std::cerr << "clusterkv_llama: " << message << " (see --help)\n";
  return 2;
}

// Whether --name (or -name) was given on the command line: a field the model profile must not
// change.
bool Given(int argc, char** argv, absl::string_view name) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--")) absl::ConsumePrefix(&arg, "-");
    if (arg == name || absl::StartsWith(arg, absl::StrCat(name, "="))) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  namespace ckl = clusterkv::llama;
  absl::SetProgramUsageMessage(std::string(ckl::UsageText()));
  if (clusterkv::WantsHelp(argc, argv)) {
    clusterkv::PrintHelp(
        ckl::UsageText(),
        {{"Model", {"model", "config_json", "write_random_model", "weight_dtype"}},
         {"Random model",
          {"dim", "layers", "heads", "kv_heads", "head_dim", "ffn_dim", "vocab", "rope_theta",
           "max_context", "seed", "qk_gain", "qk_shared", "tie_embeddings"}},
         {"Prompt and mode",
          {"prompt", "prompt_file", "prompt_bytes", "parse_special", "chat", "prompt_tokens", "prompt_len",
           "prompt_seed", "mode"}},
         {"Generate and bench", {"max_new_tokens", "budget", "full_attention", "bench_steps", "bench_overlap", "bench_batch_sizes",
           "bench_batch_tokens"}},
         {"Demo", {"demo_context", "demo_reference_tokens"}},
         {"Eval",
          {"contexts", "methods", "text", "passkey_text", "ppl_tokens", "agreement_tokens",
           "passkey_depths", "passkey_depth_indices", "passkey_contexts", "dump_npy", "recall_targets"}},
         {"Compare", {"steps", "budgets", "oracle"}},
         {"ClusterKV",
          {"kv_dtype", "clusters", "kmeans_iters", "sinks", "centroid_scoring", "model_profile", "dense_layers", "recluster_interval",
           "clusters_per_recluster", "residency", "min_budget", "max_budget",
           "promotion_hint_tokens"}},
         {"Daemon", {"target", "tenant", "daemon", "work_dir", "host_capacity_mib", "data_plane"}},
         {"Compute and output", {"threads", "json", "quiet"}}},
        std::cout);
    return 0;
  }
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Usage(absl::StrCat("unexpected argument '", rest[1], "'"));

  ckl::ToolOptions o;
  o.model = absl::GetFlag(FLAGS_model);
  o.config_json = absl::GetFlag(FLAGS_config_json);
  o.write_random_model = absl::GetFlag(FLAGS_write_random_model);
  absl::StatusOr<ckl::StoredDType> wdtype =
      ckl::ParseStoredDType(absl::GetFlag(FLAGS_weight_dtype));
  if (!wdtype.ok()) return Usage(std::string(wdtype.status().message()));
  o.write_dtype = *wdtype;
  ckl::ModelConfig& c = o.random.config;
  c = ckl::DefaultRandomConfig();
  c.dim = absl::GetFlag(FLAGS_dim);
  c.n_layers = absl::GetFlag(FLAGS_layers);
  c.n_heads = absl::GetFlag(FLAGS_heads);
  c.n_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  c.head_dim = absl::GetFlag(FLAGS_head_dim);
  c.ffn_dim = absl::GetFlag(FLAGS_ffn_dim);
  c.vocab = absl::GetFlag(FLAGS_vocab);
  c.rope_theta = static_cast<float>(absl::GetFlag(FLAGS_rope_theta));
  c.max_context = absl::GetFlag(FLAGS_max_context);
  o.random.seed = absl::GetFlag(FLAGS_seed);
  o.random.qk_gain = static_cast<float>(absl::GetFlag(FLAGS_qk_gain));
  o.random.qk_shared = static_cast<float>(absl::GetFlag(FLAGS_qk_shared));
  o.random.tie_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  o.prompt_text = absl::GetFlag(FLAGS_prompt);
  o.prompt_file = absl::GetFlag(FLAGS_prompt_file);
  o.prompt_bytes = absl::GetFlag(FLAGS_prompt_bytes);
  o.parse_special = absl::GetFlag(FLAGS_parse_special);
  o.chat = absl::GetFlag(FLAGS_chat);
  o.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  o.mode = absl::GetFlag(FLAGS_mode);
  o.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  o.session = absl::GetFlag(FLAGS_session);
  o.generate_budget = absl::GetFlag(FLAGS_budget);
  o.generate_full = absl::GetFlag(FLAGS_full_attention);
  o.bench_steps = absl::GetFlag(FLAGS_bench_steps);
  o.bench_overlap = absl::GetFlag(FLAGS_bench_overlap);
  o.bench_batch_tokens = absl::GetFlag(FLAGS_bench_batch_tokens);
  if (!absl::GetFlag(FLAGS_bench_batch_sizes).empty()) {
    absl::StatusOr<std::vector<int64_t>> sizes =
        ckl::ParseIntList(absl::GetFlag(FLAGS_bench_batch_sizes), "--bench_batch_sizes");
    if (!sizes.ok()) return Usage(std::string(sizes.status().message()));
    for (int64_t b : *sizes) {
      if (b < 1 || b > 256) return Usage("--bench_batch_sizes: each size must be in [1, 256]");
      o.bench_batch_sizes.push_back(static_cast<int32_t>(b));
    }
  }
  o.demo_context = absl::GetFlag(FLAGS_demo_context);
  o.demo_reference_tokens = absl::GetFlag(FLAGS_demo_reference_tokens);
  {
    absl::StatusOr<std::vector<int64_t>> contexts =
        ckl::ParseIntList(absl::GetFlag(FLAGS_contexts), "--contexts");
    if (!contexts.ok()) return Usage(std::string(contexts.status().message()));
    o.eval.contexts = *contexts;
    o.eval.methods = absl::StrSplit(absl::GetFlag(FLAGS_methods), ',', absl::SkipEmpty());
    o.eval.text = absl::GetFlag(FLAGS_text);
    o.eval.passkey_text = absl::GetFlag(FLAGS_passkey_text);
    o.eval.ppl_tokens = absl::GetFlag(FLAGS_ppl_tokens);
    o.eval.agreement_tokens = absl::GetFlag(FLAGS_agreement_tokens);
    o.eval.passkey_depths = absl::GetFlag(FLAGS_passkey_depths);
    if (!absl::GetFlag(FLAGS_passkey_contexts).empty()) {
      absl::StatusOr<std::vector<int64_t>> pc =
          ckl::ParseIntList(absl::GetFlag(FLAGS_passkey_contexts), "--passkey_contexts");
      if (!pc.ok()) return Usage(std::string(pc.status().message()));
      o.eval.passkey_contexts = *pc;
    }
    if (!absl::GetFlag(FLAGS_passkey_depth_indices).empty()) {
      absl::StatusOr<std::vector<int64_t>> di =
          ckl::ParseIntList(absl::GetFlag(FLAGS_passkey_depth_indices), "--passkey_depth_indices");
      if (!di.ok()) return Usage(std::string(di.status().message()));
      o.eval.passkey_depth_indices = *di;
    }
    o.eval.dump_npy_dir = absl::GetFlag(FLAGS_dump_npy);
    o.eval.recall_targets.clear();
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_recall_targets), ',', absl::SkipEmpty())) {
      double t = 0.0;
      if (!absl::SimpleAtod(part, &t) || !(t > 0.0 && t <= 1.0)) {
        return Usage(absl::StrCat("--recall_targets: \"", part, "\" is not a number in (0, 1]"));
      }
      o.eval.recall_targets.push_back(t);
    }
  }
  o.synthetic.length = absl::GetFlag(FLAGS_prompt_len);
  o.synthetic.seed = absl::GetFlag(FLAGS_prompt_seed);

  ckl::ComparisonOptions& co = o.comparison;
  co.steps = absl::GetFlag(FLAGS_steps);
  absl::StatusOr<std::vector<int64_t>> budgets =
      ckl::ParseIntList(absl::GetFlag(FLAGS_budgets), "--budgets");
  if (!budgets.ok()) return Usage(std::string(budgets.status().message()));
  co.budgets = *budgets;
  absl::StatusOr<clusterkv::DType> kv_dtype = clusterkv::ParseDType(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_dtype.ok()) return Usage(std::string(kv_dtype.status().message()));
  co.kv_dtype = *kv_dtype;
  co.config.num_prefill_clusters = absl::GetFlag(FLAGS_clusters);
  co.config.kmeans_iterations = absl::GetFlag(FLAGS_kmeans_iters);
  co.config.prefill_segment_tokens = absl::GetFlag(FLAGS_prefill_segment_tokens);
  co.config.prefill_segment_clusters = absl::GetFlag(FLAGS_prefill_segment_clusters);
  co.config.num_sink_tokens = absl::GetFlag(FLAGS_sinks);
  absl::StatusOr<clusterkv::CentroidScoring> scoring =
      clusterkv::ParseCentroidScoring(absl::GetFlag(FLAGS_centroid_scoring));
  if (!scoring.ok()) return Usage(std::string(scoring.status().message()));
  co.config.centroid_scoring = *scoring;
  o.model_profile = absl::GetFlag(FLAGS_model_profile);
  o.profile_given.centroid_scoring = Given(argc, argv, "centroid_scoring");
  o.profile_given.prefill_segment_clusters = Given(argc, argv, "prefill_segment_clusters");
  co.config.min_token_budget = absl::GetFlag(FLAGS_min_budget);
  co.config.max_token_budget = absl::GetFlag(FLAGS_max_budget);
  co.config.recluster_interval = absl::GetFlag(FLAGS_recluster_interval);
  co.config.clusters_per_recluster = absl::GetFlag(FLAGS_clusters_per_recluster);
  co.config.cache_residency_steps = absl::GetFlag(FLAGS_residency);
  co.config.promotion_hint_tokens = absl::GetFlag(FLAGS_promotion_hint_tokens);
  co.config.dense_layers.clear();
  if (!absl::GetFlag(FLAGS_dense_layers).empty()) {
    absl::StatusOr<std::vector<int64_t>> dense =
        ckl::ParseIntList(absl::GetFlag(FLAGS_dense_layers), "--dense_layers");
    if (!dense.ok()) return Usage(std::string(dense.status().message()));
    for (int64_t l : *dense) co.config.dense_layers.push_back(static_cast<int32_t>(l));
  }
  co.target = absl::GetFlag(FLAGS_target);
  co.tenant = absl::GetFlag(FLAGS_tenant);
  co.data_plane = absl::GetFlag(FLAGS_data_plane);
  co.threads = absl::GetFlag(FLAGS_threads);
  co.oracle = absl::GetFlag(FLAGS_oracle);
  o.daemon_binary =
      absl::GetFlag(FLAGS_daemon).empty() ? DefaultDaemon() : absl::GetFlag(FLAGS_daemon);
  o.work_dir = absl::GetFlag(FLAGS_work_dir);
  o.host_capacity_mib = absl::GetFlag(FLAGS_host_capacity_mib);
  o.json_path = absl::GetFlag(FLAGS_json);
  o.quiet = absl::GetFlag(FLAGS_quiet);

  const absl::Status status = ckl::RunLlamaTool(o, std::cout, std::cerr);
  if (!status.ok()) {
    std::cerr << "clusterkv_llama: FAILED: " << status << "\n";
    return absl::IsInvalidArgument(status) ? 2 : 1;
  }
  return 0;
}
