#include "tools/clusterkv_llama/llama_tool.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "tools/clusterkv_demo/daemon_launcher.h"
#include "tools/clusterkv_llama/generate.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/report.h"
#include "tools/clusterkv_llama/park.h"
#include "tools/clusterkv_llama/reuse_bench.h"
#include "tools/clusterkv_llama/speed_bench.h"
#include "tools/clusterkv_llama/text_source.h"
#include "tools/clusterkv_llama/tokenizer.h"

namespace clusterkv::llama {
namespace {

// A daemon of our own in a scratch directory; stops it and removes the directory.
class OwnDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<OwnDaemon>> Start(const ToolOptions& o, std::ostream& err) {
    std::string dir = o.work_dir;
    bool remove = false;
    if (dir.empty()) {
      std::string pattern = (std::filesystem::temp_directory_path() / "clusterkv_llama_XXXXXX");
      if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
      dir = pattern;
      remove = true;
    }
    std::unique_ptr<OwnDaemon> d(new OwnDaemon(dir, remove));
    const std::string socket = dir + "/clusterkvd.sock";
    ASSIGN_OR_RETURN(d->launcher_, demo::DaemonLauncher::Start(
                                       o.daemon_binary,
                                       {"--socket=" + socket, "--data_dir=" + dir + "/data",
                                        absl::StrCat("--host_capacity_mib=", o.host_capacity_mib),
                                        // No fixed metrics port: other daemons may hold it.
                                        "--metrics_address="}));
    err << d->launcher_->banner();
    d->target_ = "unix:" + socket;
    return d;
  }
  ~OwnDaemon() {
    launcher_.reset();  // kills a daemon still running
    if (remove_) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  const std::string& target() const { return target_; }
  absl::Status Stop() {
    ASSIGN_OR_RETURN(int code, launcher_->Stop());
    if (code != 0) return absl::InternalError(absl::StrCat("clusterkvd exited with ", code));
    return absl::OkStatus();
  }

 private:
  OwnDaemon(std::string dir, bool remove) : dir_(std::move(dir)), remove_(remove) {}
  std::string dir_;
  bool remove_;
  std::string target_;
  std::unique_ptr<demo::DaemonLauncher> launcher_;
};

absl::StatusOr<ModelWeights> ObtainModel(const ToolOptions& o, std::ostream& err) {
  if (!o.model.empty()) {
    err << "loading " << o.model << "\n";
    ASSIGN_OR_RETURN(ModelFormat format, FormatFromPath(o.model));
    if (format == ModelFormat::kSafetensors) return LoadSafetensorsModel(o.model, o.config_json);
    return LoadGgufModel(o.model);
  }
  err << absl::StreamFormat("random model (seed %d, qk_gain %.2f, qk_shared %.2f), in memory\n",
                            o.random.seed, o.random.qk_gain, o.random.qk_shared);
  return MakeRandomWeights(o.random);
}

// The generate mode: streams both continuations to `out`, then the summary.
// The generate and demo modes: streams both continuations to `out`, then the summary; with a
// reference continuation also the perplexity gap; --json writes the summary rows.
absl::Status RunGenerate(const ToolOptions& o, const ComparisonOptions& co,
                         const ModelWeights& weights, const Tokenizer& tokenizer,
                         const std::vector<int32_t>& prompt, const std::vector<int32_t>& reference,
                         std::ostream& out) {
  GenerateOptions go;
  static_cast<ServiceOptions&>(go) = co;
  go.max_new_tokens = o.max_new_tokens;
  go.budget = o.generate_budget;
  go.full_attention = o.generate_full;
  go.progress = co.progress;
  go.reference = reference;
  std::string current;
  go.on_text = [&](absl::string_view variant, absl::string_view text) {
    if (variant != current) {
      current = std::string(variant);
      out << "\n== " << variant << " ==\n";
    }
    out << (text.empty() ? absl::string_view("\n") : text);  // "" ends the run
    out.flush();
  };
  ASSIGN_OR_RETURN(GenerateResult r, Generate(weights, tokenizer, prompt, go));
  out << "\n";
  out << absl::StreamFormat("prompt %d tokens, prefill %.2f s (%.1f tokens/s)\n", r.prompt_tokens,
                            r.prefill_s, r.prompt_tokens / std::max(1e-9, r.prefill_s));
  out << "per decode step over all layers, ms (score/select/fetch/attend: ClusterKV's attention "
         "split; attend for full attention)\n";
  out << absl::StreamFormat("%-18s %7s %9s %10s %9s %9s %9s %9s %8s %s\n", "variant", "tokens",
                            "step_ms", "tokens/s", "score_ms", "select_ms", "fetch_ms", "attend_ms",
                            "hit_rate", "data_plane");
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  double full_step_ms = 0.0, full_ppl = 0.0;
  for (const GeneratedRun& run : r.runs) {
    const double steps = std::max<size_t>(1, run.step_us.size());
    double total_us = 0;
    for (double u : run.step_us) total_us += u;
    const double step_ms = total_us / steps / 1000.0;
    const AttentionStepStats& t = run.totals;
    out << absl::StreamFormat("%-18s %7d %9.2f %10.2f %9.3f %9.3f %9.3f %9.3f %8.3f %s%s\n",
                              run.variant, run.tokens.size(), step_ms,
                              step_ms > 0 ? 1000.0 / step_ms : 0.0, t.score_us / steps / 1000.0,
                              t.select_us / steps / 1000.0, t.fetch_us / steps / 1000.0,
                              t.attend_us / steps / 1000.0, run.cache_hit_rate, run.data_plane,
                              run.stopped_at_end ? " (stopped at end of generation)" : "");
    if (run.variant == "full_attention") {
      full_step_ms = step_ms;
      full_ppl = run.perplexity;
    }
    nlohmann::ordered_json row = nlohmann::ordered_json::object();
    row["variant"] = run.variant;
    row["params"] = {{"metric", "decode_step_ms"},
                     {"prompt_tokens", r.prompt_tokens},
                     {"new_tokens", run.tokens.size()}};
    row["value"] = step_ms;
    row["unit"] = "ms";
    row["baseline"] = "full_attention";
    row["baseline_value"] = full_step_ms;
    row["ratio"] = step_ms > 0 ? full_step_ms / step_ms : 0.0;
    row["ratio_meaning"] = "baseline_value / value (> 1: faster than full attention)";
    row["cache_hit_rate"] = run.cache_hit_rate;
    row["data_plane"] = run.data_plane;
    row["text"] = run.text;
    if (run.perplexity > 0) row["reference_perplexity"] = run.perplexity;
    rows.push_back(row);
  }
  for (const GeneratedRun& run : r.runs) {
    if (!run.data_plane_configured.empty()) {
      out << run.variant << ": recalls from clusterkvd over " << run.data_plane_configured
          << "; blocks fetched over " << run.data_plane
          << (run.data_plane == "none" ? " (the prompt fit in the sinks and recent window)" : "")
          << "\n";
    }
    if (!run.daemon_tiers.empty())
      out << "clusterkvd while it held the sequence: " << run.daemon_tiers << "\n";
  }
  if (r.agreeing_prefix >= 0) {
    out << "ClusterKV and full attention generated the same first " << r.agreeing_prefix
        << " tokens\n";
  }
  if (!reference.empty()) {
    out << absl::StreamFormat("perplexity of the text's next %d tokens (teacher-forced):",
                              reference.size() - 1);
    for (const GeneratedRun& run : r.runs) {
      out << absl::StreamFormat(" %s %.3f", run.variant, run.perplexity);
      if (full_ppl > 0 && run.variant != "full_attention") {
        out << absl::StreamFormat(" (%+.2f%% vs full attention)",
                                  100.0 * (run.perplexity / full_ppl - 1.0));
      }
    }
    out << "\n";
  }
  if (!o.json_path.empty()) {
    nlohmann::ordered_json report = nlohmann::ordered_json::object();
    report["bench"] = "llama_generate";
    report["machine"] = MachineInfo();
    report["model"] = weights.config.DebugString();
    report["prompt_tokens"] = r.prompt_tokens;
    report["prefill_s"] = r.prefill_s;
    report["agreeing_prefix"] = r.agreeing_prefix;
    report["results"] = rows;
    RETURN_IF_ERROR(WriteJsonFile(report, o.json_path));
    out << "wrote " << o.json_path << "\n";
  }
  return absl::OkStatus();
}

// The bench mode: speed_bench.h's table, and its report when --json is given.
// The bench JSON of a mode (DESIGN.md section 9) at --json, when given.
absl::Status WriteReport(const ToolOptions& o, const std::string& bench,
                         const ModelWeights& weights, nlohmann::ordered_json rows,
                         std::ostream& out) {
  if (o.json_path.empty()) return absl::OkStatus();
  nlohmann::ordered_json report = nlohmann::ordered_json::object();
  report["bench"] = bench;
  report["machine"] = MachineInfo();
  report["model"] = weights.config.DebugString();
  report["results"] = std::move(rows);
  RETURN_IF_ERROR(WriteJsonFile(report, o.json_path));
  out << "wrote " << o.json_path << "\n";
  return absl::OkStatus();
}

// The reuse mode: reuse_bench.h's table, and its report when --json is given.
absl::Status RunReuse(const ToolOptions& o, const ComparisonOptions& co,
                      const ModelWeights& weights, const std::vector<int32_t>& prompt,
                      std::ostream& out) {
  ReuseBenchOptions ro;
  static_cast<ServiceOptions&>(ro) = co;
  ro.budget = o.generate_budget;
  ro.steps = static_cast<int32_t>(std::max<int64_t>(o.bench_steps, 1));
  ro.model_name =
      o.model.empty() ? "random" : std::filesystem::path(o.model).filename().string();
  ro.progress = co.progress;
  ASSIGN_OR_RETURN(nlohmann::ordered_json rows, RunReuseBench(weights, prompt, ro, out));
  return WriteReport(o, "llama_reuse", weights, std::move(rows), out);
}

absl::Status RunBench(const ToolOptions& o, const ComparisonOptions& co,
                      const ModelWeights& weights, const std::vector<int32_t>& prompt,
                      std::ostream& out) {
  SpeedBenchOptions so;
  static_cast<ServiceOptions&>(so) = co;
  so.budget = o.generate_budget;
  so.decode_steps = o.bench_steps;
  so.overlap = o.bench_overlap;
  so.batch_sizes = o.bench_batch_sizes;
  so.batch_tokens = o.bench_batch_tokens;
  so.model_name = o.model.empty() ? "random" : std::filesystem::path(o.model).filename().string();
  so.progress = co.progress;
  ASSIGN_OR_RETURN(nlohmann::ordered_json rows, RunSpeedBench(weights, prompt, so, out));
  return WriteReport(o, "llama_speed", weights, std::move(rows), out);
}

// Whether `text` encodes (special tokens parsed) to exactly one control token.
bool IsOneControlToken(const Tokenizer& tokenizer, absl::string_view text) {
  EncodeOptions eo;
  eo.add_bos = false;
  eo.parse_special = true;
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, eo);
  return ids.ok() && ids->size() == 1 && tokenizer.IsControl((*ids)[0]);
}

// `user_text` as one user turn of the model's chat format, ending where the model's answer
// starts: ChatML (<|im_start|>, SmolLM2 and others) or Gemma's <start_of_turn> turns.
absl::StatusOr<std::string> ChatPrompt(const Tokenizer& tokenizer, absl::string_view user_text) {
  if (IsOneControlToken(tokenizer, "<|im_start|>") && IsOneControlToken(tokenizer, "<|im_end|>")) {
    return absl::StrCat("<|im_start|>user\n", user_text, "<|im_end|>\n<|im_start|>assistant\n");
  }
  if (IsOneControlToken(tokenizer, "<start_of_turn>") &&
      IsOneControlToken(tokenizer, "<end_of_turn>")) {
    return absl::StrCat("<start_of_turn>user\n", user_text,
                        "<end_of_turn>\n<start_of_turn>model\n");
  }
  return absl::InvalidArgumentError(
      "--chat: the model's vocabulary has neither ChatML (<|im_start|>) nor Gemma "
      "(<start_of_turn>) turn tokens");
}

// The eval mode: its own daemon unless --target, the tables, and the report with --json.
absl::Status RunEval(const ToolOptions& o, const ModelWeights& weights, const Tokenizer& tokenizer,
                     std::ostream& out, std::ostream& err) {
  QualityEvalOptions eo = o.eval;
  static_cast<ServiceOptions&>(eo) = o.comparison;
  eo.budgets = o.comparison.budgets;
  eo.model_name = o.model.empty() ? "random" : std::filesystem::path(o.model).filename().string();
  if (!o.quiet) eo.progress = &err;
  std::unique_ptr<OwnDaemon> daemon;
  if (eo.target.empty()) {
    ASSIGN_OR_RETURN(daemon, OwnDaemon::Start(o, err));
    eo.target = daemon->target();
  }
  absl::StatusOr<nlohmann::ordered_json> rows = RunQualityEval(weights, tokenizer, eo, out);
  if (daemon != nullptr) {
    const absl::Status stopped = daemon->Stop();
    RETURN_IF_ERROR(rows.status());
    RETURN_IF_ERROR(stopped);
  }
  RETURN_IF_ERROR(rows.status());
  if (!o.json_path.empty()) {
    nlohmann::ordered_json report = nlohmann::ordered_json::object();
    report["bench"] = "llama_eval";
    report["machine"] = MachineInfo();
    report["model"] = weights.config.DebugString();
    report["clusterkv_config"] = SequenceConfig(weights.config, eo.config).DebugString();
    report["results"] = *std::move(rows);
    RETURN_IF_ERROR(WriteJsonFile(report, o.json_path));
    out << "wrote " << o.json_path << "\n";
  }
  return absl::OkStatus();
}
}  // namespace

absl::string_view UsageText() {
  return "clusterkv_llama: a decode engine on the CPU (Llama and Gemma 3 architectures) that\n"
         "runs its decode attention through libclusterkv, next to full attention, in one\n"
         "process, against clusterkvd (its own, or --target).\n\n"
         "It loads a GGUF model (v2/v3; F32/F16/BF16 and the GGML quantized types Q4_0, Q4_1,\n"
         "Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K; architectures llama and gemma3) or a safetensors\n"
         "Llama (+ config.json), or makes a seeded random Llama. Modes:\n"
         "  generate  text in, text out: the prompt (--prompt/--prompt_file, tokenized with the\n"
         "            GGUF's own vocabulary) is prefilled once; full attention and ClusterKV\n"
         "            (--budget) each continue it greedily for --max_new_tokens; both texts,\n"
         "            the per-step breakdown, the device-cache hit rate and the data plane\n"
         "            used print.\n"
         "  compare   --steps greedy full-attention steps, replayed (teacher forcing) through\n"
         "            ClusterKV at each --budgets entry: per-step latency breakdown (dense\n"
         "            forward; append/score/select/fetch/attend), greedy-token agreement, logit\n"
         "            errors; --json writes the report.\n"
         "  bench     speed on this machine: OpenBLAS sgemm ceiling, own kernel vs OpenBLAS on\n"
         "            the model's products, prefill tokens/s, decode tokens/s of full attention\n"
         "            vs ClusterKV (--budget, --bench_steps).\n"
         "  demo      the main job: the first --demo_context tokens of --text (Jane Austen)\n"
         "            prefilled, offloaded to clusterkvd over UCX; full attention and ClusterKV\n"
         "            each continue it (texts printed), then the perplexity of the text's next\n"
         "            --demo_reference_tokens tokens under both, the per-step breakdown, the\n"
         "            cache hit rate and the daemon's tiers. Default model: SmolLM2 from the\n"
         "            model cache.\n"
         "  eval      the ClusterKV paper's protocol on the model, every method in one run:\n"
         "            perplexity of the next --ppl_tokens tokens of --text after each of\n"
         "            --contexts, agreement with full attention's greedy continuation, passkey\n"
         "            retrieval at --passkey_depths depths of --passkey_text, cost (cache hit\n"
         "            rate, bytes recalled, score/select/fetch/attend); full attention,\n"
         "            ClusterKV (through clusterkvd), Quest, StreamingLLM and the oracle top-B at\n"
         "            each --budgets entry. --dump_npy writes the real Q/K/V for "
         "clusterkv_eval.\n\n"
         "Usage:\n"
         "  clusterkv_llama --model=m.gguf --prompt \"Once upon a time\" [--max_new_tokens=64]\n"
         "  clusterkv_llama --model=m.gguf --prompt_file=book.txt [--budget=1024]\n"
         "  clusterkv_llama [--model=m.gguf] --mode=compare [--prompt_len=4096] [--steps=384]\n"
         "                  [--budgets=256,512,1024,2048] [--target=unix:/path.sock] [--json=f]\n"
         "  clusterkv_llama --write_random_model=out.gguf|out.safetensors [--dim=...]\n";
}

ModelConfig DefaultRandomConfig() {
  ModelConfig c;
  c.dim = 512;
  c.n_layers = 8;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.ffn_dim = 1408;
  c.vocab = 8192;
  c.rope_theta = 500000.0f;
  c.norm_eps = 1e-5f;
  c.max_context = 32768;
  return c;
}

absl::StatusOr<std::vector<int64_t>> ParseIntList(absl::string_view text, absl::string_view what) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad entry \"", part, "\""));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  return out;
}

absl::Status RunLlamaTool(const ToolOptions& options, std::ostream& out, std::ostream& err) {
  ToolOptions o = options;
  if (o.mode == "demo" && o.model.empty()) {
    // The main job runs the real model deploy/models.sh fetched.
    o.model = DefaultModelDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
  }
  if (!o.write_random_model.empty()) {
    ASSIGN_OR_RETURN(ModelFormat format, FormatFromPath(o.write_random_model));
    ASSIGN_OR_RETURN(ModelWeights w, MakeRandomWeights(o.random));
    WriteOptions wo;
    wo.dtype = o.write_dtype;
    RETURN_IF_ERROR(WriteModel(w, o.write_random_model, format, wo));
    out << "wrote " << o.write_random_model << " (" << ModelFormatName(format) << ", "
        << StoredDTypeName(o.write_dtype) << ", " << w.config.DebugString() << ")"
        << (format == ModelFormat::kSafetensors
                ? absl::StrCat(" and ", ConfigPathNextTo(o.write_random_model))
                : std::string())
        << "\n";
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(o.comparison.config.Validate());  // before any model or daemon work
  ASSIGN_OR_RETURN(ModelWeights weights, ObtainModel(o, err));
  const ModelConfig& c = weights.config;
  err << "model: " << c.DebugString() << ", RoPE " << RopeStyleName(weights.rope_style)
      << (weights.lm_head.empty() ? ", tied embeddings" : "") << "\n";
  if (o.model_profile) {
    const std::string changed = ApplyModelProfile(c, o.profile_given, &o.comparison.config);
    if (!changed.empty()) {
      err << "ClusterKV profile for QK-norm models (D88; --model_profile=false for the "
             "library's defaults): "
          << changed << "\n";
    }
  }
  const bool text_prompt = !o.prompt_text.empty() || !o.prompt_file.empty();
  if (!o.prompt_text.empty() + !o.prompt_file.empty() + !o.prompt_tokens.empty() > 1) {
    return absl::InvalidArgumentError(
        "give at most one of --prompt, --prompt_file and --prompt_tokens");
  }
  std::string mode = o.mode;
  if (mode == "auto") mode = text_prompt ? "generate" : "compare";
  if (mode != "generate" && mode != "compare" && mode != "bench" && mode != "eval" &&
      mode != "demo" && mode != "reuse" && mode != "park" && mode != "resume") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mode must be auto, generate, compare, bench, eval, demo, reuse, park or resume, got "
        "\"", o.mode, "\""));
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (!o.model.empty() &&
      FormatFromPath(o.model).value_or(ModelFormat::kSafetensors) == ModelFormat::kGguf) {
    ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(o.model));
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromGguf(file->index());
    if (t.ok()) {
      tokenizer = *std::move(t);
    } else if (text_prompt || mode == "generate") {
      return absl::Status(t.status().code(),
                          absl::StrCat(o.model, ": tokenizer: ", t.status().message()));
    }
  }
  const bool needs_tokenizer =
      text_prompt || mode == "generate" || mode == "eval" || mode == "demo";
  if (needs_tokenizer && tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        "text prompts and --mode=generate, eval and demo need a GGUF model with a tokenizer "
        "(--model=*.gguf)");
  }
  if (mode == "eval") return RunEval(o, weights, *tokenizer, out, err);
  ParkOptions park;
  static_cast<ServiceOptions&>(park) = o.comparison;
  park.session = o.session;
  park.budget = o.generate_budget;
  park.new_tokens = o.max_new_tokens;
  if (mode == "resume") return RunResume(weights, tokenizer.get(), park, out);
  std::vector<int32_t> prompt, reference;
  if (mode == "demo") {
    // A long passage of real text, and the text that follows it for the perplexity gap.
    ASSIGN_OR_RETURN(std::string text, LoadText(o.eval.text));
    ASSIGN_OR_RETURN(std::vector<int32_t> tokens, tokenizer->Encode(text, EncodeOptions{}));
    const int64_t need = o.demo_context + o.demo_reference_tokens + 1;
    if (static_cast<int64_t>(tokens.size()) < need || o.demo_context < 1 ||
        o.demo_reference_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--demo_context and --demo_reference_tokens must be >= 1 and fit the text's ",
          tokens.size(), " tokens"));
    }
    prompt.assign(tokens.begin(), tokens.begin() + o.demo_context);
    reference.assign(tokens.begin() + o.demo_context, tokens.begin() + need);
    err << "prompt: the first " << prompt.size() << " tokens of " << DescribeTextSource(o.eval.text)
        << "; perplexity over the next " << o.demo_reference_tokens << "\n";
  } else if (text_prompt) {
    std::string text = o.prompt_text;
    if (!o.prompt_file.empty()) {
      absl::StatusOr<std::string> loaded = LoadText(o.prompt_file);
      if (!loaded.ok()) {
        return absl::Status(loaded.status().code(), absl::StrCat("--prompt_file: ",
                                                                 loaded.status().message()));
      }
      text = *std::move(loaded);
    }
    if (o.prompt_bytes < 0) return absl::InvalidArgumentError("--prompt_bytes must be >= 0");
    if (o.prompt_bytes > 0 && static_cast<int64_t>(text.size()) > o.prompt_bytes) {
      size_t cut = static_cast<size_t>(o.prompt_bytes);
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
      text.resize(cut);
    }
    if (o.chat) {
      ASSIGN_OR_RETURN(text, ChatPrompt(*tokenizer, text));
    }
    EncodeOptions eo;
    eo.parse_special = o.parse_special || o.chat;
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text, eo);
    if (!ids.ok()) {
      return absl::Status(ids.status().code(),
                          absl::StrCat("the prompt: ", ids.status().message()));
    }
    prompt = *std::move(ids);
    err << "prompt: " << text.size() << " bytes of text, " << prompt.size() << " tokens\n";
  } else if (!o.prompt_tokens.empty()) {
    ASSIGN_OR_RETURN(prompt, ParseTokenList(o.prompt_tokens, c.vocab));
  } else {
    ASSIGN_OR_RETURN(prompt, SyntheticPrompt(o.synthetic, c.vocab));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt holds no tokens");
  const int64_t new_tokens = mode == "generate" ? o.max_new_tokens
                             : mode == "demo"
                                 ? std::max<int64_t>(o.max_new_tokens, o.demo_reference_tokens + 1)
                             : mode == "bench" || mode == "reuse" ? o.bench_steps
                             : mode == "park"                     ? o.max_new_tokens
                                               : o.comparison.steps;
  if (static_cast<int64_t>(prompt.size()) + new_tokens > c.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt's ", prompt.size(), " tokens + ", new_tokens,
                     " new tokens exceed the model's context of ", c.max_context, " tokens"));
  }

  if (mode == "park") return RunPark(weights, tokenizer.get(), prompt, park, out);
  std::unique_ptr<OwnDaemon> daemon;
  ComparisonOptions co = o.comparison;
  if (!o.quiet) co.progress = &err;
  if (co.target.empty()) {
    ASSIGN_OR_RETURN(daemon, OwnDaemon::Start(o, err));
    co.target = daemon->target();
  }
  if (mode == "generate" || mode == "demo" || mode == "bench" || mode == "reuse") {
    absl::Status status = mode == "reuse"   ? RunReuse(o, co, weights, prompt, out)
                          : mode != "bench" ? RunGenerate(o, co, weights, *tokenizer, prompt,
                                                          reference, out)
                                            : RunBench(o, co, weights, prompt, out);
    if (daemon != nullptr) {
      const absl::Status stopped = daemon->Stop();
      RETURN_IF_ERROR(status);
      RETURN_IF_ERROR(stopped);
    }
    return status;
  }
  absl::StatusOr<ComparisonResult> result = RunComparison(weights, prompt, co);
  if (daemon != nullptr) {
    const absl::Status stopped = daemon->Stop();
    RETURN_IF_ERROR(result.status());
    RETURN_IF_ERROR(stopped);
  }
  RETURN_IF_ERROR(result.status());

  ReportContext ctx;
  ctx.n_layers = static_cast<int32_t>(c.GlobalLayers().size());
  ctx.n_kv_heads = c.n_kv_heads;
  ctx.params = {{"model", o.model.empty() ? "random" : o.model},
                {"dim", c.dim},
                {"layers", c.n_layers},
                {"q_heads", c.n_heads},
                {"kv_heads", c.n_kv_heads},
                {"head_dim", c.head_dim},
                {"ffn_dim", c.ffn_dim},
                {"vocab", c.vocab},
                {"prompt_tokens", static_cast<int64_t>(prompt.size())},
                {"steps", co.steps},
                {"kv_dtype", std::string(DTypeName(co.kv_dtype))},
                {"sinks", co.config.num_sink_tokens},
                {"prefill_clusters", co.config.num_prefill_clusters},
                {"recent_window", co.config.recluster_interval},
                {"dense_layers", absl::StrJoin(co.config.dense_layers, ",")},
                {"threads", co.threads > 0 ? co.threads : DefaultThreads()}};
  if (o.model.empty()) {
    ctx.params["qk_gain"] = o.random.qk_gain;
    ctx.params["qk_shared"] = o.random.qk_shared;
    ctx.params["seed"] = o.random.seed;
  }
  PrintTable(*result, ctx, out);
  // The start of full attention's greedy continuation: text when the model has a tokenizer.
  out << "greedy continuation (full attention):";
  const size_t shown = std::min<size_t>(result->greedy_tokens.size(), 32);
  if (tokenizer != nullptr) {
    out << " \""
        << tokenizer->Decode(absl::MakeConstSpan(result->greedy_tokens.data(), shown),
                             /*render_special=*/true)
        << "\"";
  } else {
    for (size_t i = 0; i < shown; ++i) out << " " << result->greedy_tokens[i];
  }
  out << (shown < result->greedy_tokens.size() ? " ...\n" : "\n");
  if (!o.json_path.empty()) {
    RETURN_IF_ERROR(WriteReportJson(*result, ctx, o.json_path));
    out << "wrote " << o.json_path << "\n";
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
