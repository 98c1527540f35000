#include "tools/clusterkv_llama/llama_tool.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "tools/clusterkv_demo/daemon_launcher.h"
#include "tools/clusterkv_llama/model_loader.h"
#include "tools/clusterkv_llama/report.h"

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

absl::StatusOr<LlamaWeights> ObtainModel(const ToolOptions& o, std::ostream& err) {
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

}  // namespace

absl::string_view UsageText() {
  return "clusterkv_llama: a Llama-architecture decode engine on the CPU that runs its decode\n"
         "attention through libclusterkv, next to full attention, in one process.\n\n"
         "It loads a GGUF (v2/v3, F32/F16/BF16 tensors) or safetensors (+ config.json) Llama\n"
         "checkpoint, or makes a seeded random one; prefills a prompt of token ids densely;\n"
         "decodes --steps tokens greedily with full attention, then replays the same tokens\n"
         "(teacher forcing) through ClusterKV at each --budgets entry against clusterkvd (its\n"
         "own, or --target). It prints the per-step latency breakdown (dense forward; ClusterKV\n"
         "append/score/select/fetch/attend) and agreement with full attention (greedy-token\n"
         "match rate, logit max-abs and relative L2 error); --json writes the report.\n\n"
         "Usage:\n"
         "  clusterkv_llama [--model=m.gguf|m.safetensors] [--prompt_len=4096] [--steps=384]\n"
         "                  [--budgets=256,512,1024,2048] [--target=unix:/path.sock] [--json=f]\n"
         "  clusterkv_llama --write_random_model=out.gguf|out.safetensors [--dim=...]\n";
}

LlamaConfig DefaultRandomConfig() {
  LlamaConfig c;
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

absl::Status RunLlamaTool(const ToolOptions& o, std::ostream& out, std::ostream& err) {
  if (!o.write_random_model.empty()) {
    ASSIGN_OR_RETURN(ModelFormat format, FormatFromPath(o.write_random_model));
    ASSIGN_OR_RETURN(LlamaWeights w, MakeRandomWeights(o.random));
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
  ASSIGN_OR_RETURN(LlamaWeights weights, ObtainModel(o, err));
  const LlamaConfig& c = weights.config;
  err << "model: " << c.DebugString() << ", RoPE " << RopeStyleName(weights.rope_style)
      << (weights.lm_head.empty() ? ", tied embeddings" : "") << "\n";
  std::vector<int32_t> prompt;
  if (!o.prompt_tokens.empty()) {
    ASSIGN_OR_RETURN(prompt, ParseTokenList(o.prompt_tokens, c.vocab));
  } else {
    ASSIGN_OR_RETURN(prompt, SyntheticPrompt(o.synthetic, c.vocab));
  }

  std::unique_ptr<OwnDaemon> daemon;
  ComparisonOptions co = o.comparison;
  if (!o.quiet) co.progress = &err;
  if (co.target.empty()) {
    ASSIGN_OR_RETURN(daemon, OwnDaemon::Start(o, err));
    co.target = daemon->target();
  }
  absl::StatusOr<ComparisonResult> result = RunComparison(weights, prompt, co);
  if (daemon != nullptr) {
    const absl::Status stopped = daemon->Stop();
    RETURN_IF_ERROR(result.status());
    RETURN_IF_ERROR(stopped);
  }
  RETURN_IF_ERROR(result.status());

  ReportContext ctx;
  ctx.n_layers = c.n_layers;
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
  // The start of full attention's greedy continuation, as strings when the file has them.
  out << "greedy continuation (full attention):";
  const size_t shown = std::min<size_t>(result->greedy_tokens.size(), 16);
  for (size_t i = 0; i < shown; ++i) {
    const int32_t t = result->greedy_tokens[i];
    if (weights.token_strings.empty()) {
      out << " " << t;
    } else {
      out << " " << t << ":\"" << weights.token_strings[static_cast<size_t>(t)] << "\"";
    }
  }
  out << (shown < result->greedy_tokens.size() ? " ...\n" : "\n");
  if (!o.json_path.empty()) {
    RETURN_IF_ERROR(WriteReportJson(*result, ctx, o.json_path));
    out << "wrote " << o.json_path << "\n";
  }
  return absl::OkStatus();
}

}  // namespace clusterkv::llama
