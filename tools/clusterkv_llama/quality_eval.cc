#include "tools/clusterkv_llama/quality_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_eval/layer_data.h"
#include "tools/clusterkv_llama/baseline_attention.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"
#include "tools/clusterkv_llama/local_window.h"
#include "tools/clusterkv_llama/passkey.h"
#include "tools/clusterkv_llama/text_source.h"

namespace clusterkv::llama {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kAdaptive[] = "clusterkv_adaptive";
using internal::SecondsSince;
using internal::SteadyClock;

// One attention variant: "full" (budget 0) or a method at a budget.
// "clusterkv_adaptive" runs once per recall target, `budget` then being the cap of the mean
// per-head budget (core/config.h).
// `overrides` ("key=value+key=value", the part of a method entry after its first '+') changes
// ClusterKV's configuration for this variant only.
struct Variant {
  std::string method;
  int64_t budget = 0;
  double recall_target = 0.0;
  std::string overrides;
  std::string Name() const {
    if (method == "full") return "full_attention";
    const std::string tag = overrides.empty() ? "" : absl::StrCat("+", overrides);
    if (method == kAdaptive) return absl::StrCat("clusterkv_r", recall_target, tag, "_b", budget);
    return absl::StrCat(method, tag, "_b", budget);
  }
};

// Applies "key=value+key=value" to `config`. InvalidArgument: an unknown key, a value that is
// not a number (or a scoring name), or a configuration that fails Validate().
absl::Status ApplyOverrides(absl::string_view overrides, ClusterKvConfig* config) {
  if (overrides.empty()) return absl::OkStatus();
  for (absl::string_view item : absl::StrSplit(overrides, '+')) {
    const std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, '=');
    if (kv.first == "centroid_scoring") {
      ASSIGN_OR_RETURN(config->centroid_scoring, ParseCentroidScoring(kv.second));
      continue;
    }
    int32_t value = 0;
    if (!absl::SimpleAtoi(kv.second, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("override \"", item, "\" needs key=integer (or centroid_scoring=name)"));
    }
    if (kv.first == "clusters") {
      config->num_prefill_clusters = value;
    } else if (kv.first == "prefill_segment_tokens") {
      config->prefill_segment_tokens = value;
    } else if (kv.first == "prefill_segment_clusters") {
      config->prefill_segment_clusters = value;
    } else if (kv.first == "sinks") {
      config->num_sink_tokens = value;
    } else if (kv.first == "recluster_interval") {
      config->recluster_interval = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown override \"", kv.first,
          "\" (centroid_scoring, clusters, prefill_segment_tokens, prefill_segment_clusters, "
          "sinks, recluster_interval)"));
    }
  }
  return config->Validate();
}

// Splits a method entry "clusterkv+key=value+..." into its method and its overrides.
std::pair<std::string, std::string> SplitMethod(const std::string& entry) {
  const size_t plus = entry.find('+');
  if (plus == std::string::npos) return {entry, ""};
  return {entry.substr(0, plus), entry.substr(plus + 1)};
}

// A fresh backend for one pass; for ClusterKV it owns the session (client + sequence).
struct PassBackend {
  std::optional<ClusterKvSession> session;
  std::unique_ptr<AttentionBackend> owned;
  AttentionBackend& get() { return session ? *session->backend : *owned; }
  // Drops the ClusterKV sequence from the daemon.
  absl::Status Close() {
    if (!session) return absl::OkStatus();
    return session->sparse->sequence().Close(/*drop=*/true);
  }
};

class Evaluator {
 public:
  Evaluator(const ModelWeights& w, const Tokenizer& tok, const QualityEvalOptions& o, int threads,
            gpu::ExecContext exec)
      : w_(w), c_(w.config), tok_(tok), o_(o), threads_(threads), exec_(exec), model_(&w, threads) {
    variants_.push_back(Variant{"full", 0, 0.0, ""});
    for (const std::string& entry : o.methods) {
      const auto [m, overrides] = SplitMethod(entry);
      for (int64_t b : o.budgets) {
        if (m != kAdaptive) {
          variants_.push_back(Variant{m, b, 0.0, overrides});
          continue;
        }
        for (double t : o.recall_targets) variants_.push_back(Variant{m, b, t, overrides});
      }
    }
  }

  absl::Status Run(Json* rows, std::ostream& out);

 private:
  void Say(const std::string& line) {
    if (o_.progress != nullptr) *o_.progress << line << "\n" << std::flush;
  }
  absl::StatusOr<PassBackend> Make(const Variant& v, int64_t capacity, const std::string& tag);
  // Loads `prefill` into a fresh backend of `v` and teacher-forces `inputs` (at positions
  // prefill.tokens, ...), calling `on_logits(i, logits)` for input i.
  absl::Status TeacherForce(const Variant& v, const PrefillResult& prefill,
                            const std::vector<int32_t>& inputs, const std::string& tag,
                            const std::function<void(int64_t, const float*)>& on_logits,
                            AttentionStepStats* stats, std::string* data_plane);
  absl::Status EvaluateContext(const std::vector<int32_t>& text, int64_t context, Json* rows,
                               std::ostream& out);
  absl::Status EvaluatePasskey(const std::vector<int32_t>& haystack, int64_t context, Json* rows,
                               std::ostream& out);
  Json Row(const Variant& v, const std::string& task, int64_t context, double value,
           const std::string& unit, double baseline_value, const std::string& ratio_meaning);
  absl::Status DumpNpy(const PrefillResult& prefill,
                       const std::vector<std::vector<float>>& queries);

  const ModelWeights& w_;
  const ModelConfig& c_;
  const Tokenizer& tok_;
  const QualityEvalOptions& o_;
  int threads_;
  gpu::ExecContext exec_;
  DecoderModel model_;
  std::vector<Variant> variants_;
  int64_t sequence_serial_ = 0;
  bool dumped_ = false;  // the .npy dump holds the first context only
};

absl::StatusOr<PassBackend> Evaluator::Make(const Variant& v, int64_t capacity,
                                            const std::string& tag) {
  PassBackend b;
  if (v.method == "full") {
    b.owned = ForModelLayers(
        c_, std::make_unique<FullAttentionBackend>(c_, o_.kv_dtype, capacity, exec_));
  } else if (v.method == "clusterkv" || v.method == kAdaptive) {
    ServiceOptions service = o_;
    service.config.recall_target = v.recall_target;
    RETURN_IF_ERROR(ApplyOverrides(v.overrides, &service.config));
    ASSIGN_OR_RETURN(ClusterKvSession s,
                     OpenClusterKv(c_, service, v.budget,
                                   absl::StrCat(v.Name(), "-", tag, "-", sequence_serial_++),
                                   threads_));
    b.session = std::move(s);
  } else {
    ASSIGN_OR_RETURN(BaselineMethod method, ParseBaselineMethod(v.method));
    b.owned = ForModelLayers(
        c_, std::make_unique<BaselineBackend>(method, c_, SequenceConfig(c_, o_.config), v.budget,
                                              o_.kv_dtype, capacity, exec_));
  }
  return b;
}

absl::Status Evaluator::TeacherForce(const Variant& v, const PrefillResult& prefill,
                                     const std::vector<int32_t>& inputs, const std::string& tag,
                                     const std::function<void(int64_t, const float*)>& on_logits,
                                     AttentionStepStats* stats, std::string* data_plane) {
  const int64_t n = static_cast<int64_t>(inputs.size());
  ASSIGN_OR_RETURN(PassBackend b, Make(v, prefill.tokens + n, tag));
  absl::Status status = LoadPrefillInto(c_, prefill, b.get());
  AttentionStepStats total;
  for (int64_t i0 = 0; i0 < n && status.ok(); i0 += o_.chunk) {
    const int64_t m = std::min<int64_t>(o_.chunk, n - i0);
    AttentionStepStats s;
    status = model_.DecodeChunk(
        absl::MakeConstSpan(inputs.data() + i0, static_cast<size_t>(m)), prefill.tokens + i0,
        b.get(), [&](int64_t pos, const float* logits) { on_logits(pos - prefill.tokens, logits); },
        &s);
    total.Add(s);
  }
  if (data_plane != nullptr) *data_plane = b.session ? b.session->DataPlaneUsed() : "local";
  const absl::Status closed = b.Close();
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(closed);
  if (stats != nullptr) *stats = total;
  return absl::OkStatus();
}

Json Evaluator::Row(const Variant& v, const std::string& task, int64_t context, double value,
                    const std::string& unit, double baseline_value,
                    const std::string& ratio_meaning) {
  Json r = Json::object();
  r["variant"] = v.Name();
  r["params"] = {{"model", o_.model_name},
                 {"task", task},
                 {"context", context},
                 {"method", v.method == "full" ? "full_attention" : v.method},
                 {"budget", v.budget},
                 {"text", DescribeTextSource(task == "passkey" ? o_.passkey_text : o_.text)},
                 {"kv_dtype", std::string(DTypeName(o_.kv_dtype))}};
  if (!v.overrides.empty()) r["params"]["config_overrides"] = v.overrides;
  r["value"] = value;
  r["unit"] = unit;
  r["baseline"] = "full_attention";
  r["baseline_value"] = baseline_value;
  r["ratio"] = baseline_value != 0.0 ? value / baseline_value : 0.0;
  r["ratio_meaning"] = ratio_meaning;
  return r;
}

double LogSumExp(const float* x, int64_t n) {
  float best = x[0];
  for (int64_t i = 1; i < n; ++i) best = std::max(best, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - best);
  return best + std::log(sum);
}

absl::Status Evaluator::EvaluateContext(const std::vector<int32_t>& text, int64_t context,
                                        Json* rows, std::ostream& out) {
  const int64_t n_ppl = o_.ppl_tokens, n_agree = o_.agreement_tokens;
  const int64_t vocab = c_.vocab;
  Say(absl::StrCat("context ", context, ": dense prefill"));
  const auto t0 = SteadyClock::now();
  ASSIGN_OR_RETURN(PrefillResult prefill,
                   model_.Prefill(absl::MakeConstSpan(text.data(), static_cast<size_t>(context)),
                                  [&](int64_t done, int64_t total) {
                                    if (done % 4096 < 256 || done == total) {
                                      Say(absl::StrFormat("  prefill %d/%d tokens (%.0f s)", done,
                                                          total, SecondsSince(t0)));
                                    }
                                  }));
  const double prefill_s = SecondsSince(t0);
  // Perplexity inputs: text[C .. C + N), predicting text[C + 1 .. C + N].
  const std::vector<int32_t> inputs(text.begin() + context, text.begin() + context + n_ppl);
  // Full attention's greedy continuation (free-running), for the agreement task.
  std::vector<int32_t> greedy = {
      ArgMax(prefill.last_logits.data(), static_cast<int64_t>(prefill.last_logits.size()))};
  {
    Say(absl::StrCat("context ", context, ": full attention's greedy continuation (", n_agree,
                     " tokens)"));
    ASSIGN_OR_RETURN(PassBackend b, Make(variants_[0], context + n_agree, "greedy"));
    RETURN_IF_ERROR(LoadPrefillInto(c_, prefill, b.get()));
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (int64_t s = 0; s < n_agree; ++s) {
      RETURN_IF_ERROR(
          model_.DecodeStep(greedy.back(), context + s, b.get(), logits.data(), nullptr, nullptr));
      greedy.push_back(ArgMax(logits.data(), vocab));
    }
  }
  const std::vector<int32_t> agree_inputs(greedy.begin(), greedy.end() - 1);

  std::vector<std::vector<float>> full_logits;
  std::vector<std::vector<float>> queries;  // per global layer, for the .npy dump
  double full_ppl = 0.0, full_attend_ms = 0.0;
  out << absl::StreamFormat(
      "\n== %s, context %d (prefill %.1f s): perplexity of the next %d tokens, agreement over "
      "%d greedy tokens ==\n",
      o_.model_name, context, prefill_s, n_ppl, n_agree);
  out << absl::StreamFormat("%-20s %9s %7s %7s %9s %9s %7s %9s %8s %8s %8s %8s %s\n", "variant",
                            "ppl", "ratio", "agree", "logit_max", "logit_avg", "hit", "KiB/tok",
                            "score", "select", "fetch", "attend", "plane");
  for (const Variant& v : variants_) {
    const auto tv = SteadyClock::now();
    double nll = 0.0, max_abs = 0.0, sum_abs = 0.0;
    const std::vector<int32_t> global = c_.GlobalLayers();
    const bool dump = v.method == "full" && !o_.dump_npy_dir.empty() && !dumped_;
    if (dump) {
      queries.assign(global.size(), {});
      model_.set_query_hook([&](int32_t layer, const float* q) {
        const auto g = std::find(global.begin(), global.end(), layer);
        if (g == global.end()) return;
        std::vector<float>& dst = queries[static_cast<size_t>(g - global.begin())];
        dst.insert(dst.end(), q, q + c_.QDim());
      });
    }
    AttentionStepStats stats;
    std::string plane;
    RETURN_IF_ERROR(TeacherForce(
        v, prefill, inputs, "ppl",
        [&](int64_t i, const float* logits) {
          const int32_t target = text[static_cast<size_t>(context + i + 1)];
          nll += LogSumExp(logits, vocab) - logits[target];
          if (v.method == "full") {
            full_logits.emplace_back(logits, logits + vocab);
            return;
          }
          const std::vector<float>& ref = full_logits[static_cast<size_t>(i)];
          for (int64_t t = 0; t < vocab; ++t) {
            const double d = std::abs(static_cast<double>(logits[t]) - ref[static_cast<size_t>(t)]);
            max_abs = std::max(max_abs, d);
            sum_abs += d;
          }
        },
        &stats, &plane));
    if (dump) {
      model_.set_query_hook(nullptr);
      RETURN_IF_ERROR(DumpNpy(prefill, queries));
      dumped_ = true;
    }
    const double ppl = std::exp(nll / static_cast<double>(n_ppl));
    if (v.method == "full") full_ppl = ppl;
    int64_t matches = 0;
    RETURN_IF_ERROR(TeacherForce(
        v, prefill, agree_inputs, "agree",
        [&](int64_t i, const float* logits) {
          matches += ArgMax(logits, vocab) == greedy[static_cast<size_t>(i + 1)];
        },
        nullptr, nullptr));
    const double agreement = static_cast<double>(matches) / static_cast<double>(n_agree);
    const double steps = static_cast<double>(n_ppl);
    const int64_t looked = stats.hit_tokens + stats.miss_tokens;
    const double hit = looked > 0 ? static_cast<double>(stats.hit_tokens) / looked : 0.0;
    const double attend_ms = stats.attend_us / steps / 1000.0;
    if (v.method == "full") full_attend_ms = attend_ms;
    Json r = Row(v, "perplexity", context, ppl, "perplexity", full_ppl,
                 "perplexity / full attention's (1 = no loss; lower is better)");
    r["logit_max_abs_error"] = max_abs;
    r["logit_mean_abs_error"] = sum_abs / (steps * static_cast<double>(vocab));
    r["cache_hit_rate"] = hit;
    r["bytes_recalled_per_token"] = static_cast<double>(stats.bytes_fetched) / steps;
    r["attended_tokens_per_kv_head"] =
        static_cast<double>(stats.attended_tokens) /
        (steps * static_cast<double>(c_.n_layers) * static_cast<double>(c_.n_kv_heads));
    if (stats.selected_heads > 0) {
      r["mean_budget_per_kv_head"] =
          static_cast<double>(stats.selected_tokens) / static_cast<double>(stats.selected_heads);
      r["estimated_recall"] =
          stats.estimated_recall_sum / static_cast<double>(stats.selected_heads);
    }
    if (v.method == kAdaptive) r["recall_target"] = v.recall_target;
    r["score_ms_per_step"] = stats.score_us / steps / 1000.0;
    r["select_ms_per_step"] = stats.select_us / steps / 1000.0;
    r["fetch_ms_per_step"] = stats.fetch_us / steps / 1000.0;
    r["attend_ms_per_step"] = attend_ms;
    r["full_attention_attend_ms_per_step"] = full_attend_ms;
    r["data_plane"] = plane;
    r["prefill_s"] = prefill_s;
    rows->push_back(r);
    Json a = Row(v, "agreement", context, agreement, "fraction", 1.0,
                 "fraction of steps whose greedy token is full attention's");
    rows->push_back(a);
    out << absl::StreamFormat(
        "%-20s %9.3f %7.4f %7.3f %9.3f %9.4f %7.3f %9.1f %8.3f %8.3f %8.3f %8.3f %s\n", v.Name(),
        ppl, ppl / full_ppl, agreement, max_abs, sum_abs / (steps * vocab), hit,
        static_cast<double>(stats.bytes_fetched) / steps / 1024.0, stats.score_us / steps / 1000.0,
        stats.select_us / steps / 1000.0, stats.fetch_us / steps / 1000.0, attend_ms, plane);
    out.flush();
    Say(absl::StrFormat("  %s: ppl %.3f (x%.4f), agreement %.3f (%.0f s)", v.Name(), ppl,
                        ppl / full_ppl, agreement, SecondsSince(tv)));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::EvaluatePasskey(const std::vector<int32_t>& haystack, int64_t context,
                                        Json* rows, std::ostream& out) {
  constexpr int32_t kAnswerTokens = 8;
  std::vector<int32_t> run(o_.passkey_depth_indices.begin(), o_.passkey_depth_indices.end());
  if (run.empty()) {
    for (int32_t d = 0; d < o_.passkey_depths; ++d) run.push_back(d);
  }
  const int32_t depths = static_cast<int32_t>(run.size());
  std::vector<std::vector<int>> correct(variants_.size(), std::vector<int>(depths, 0));
  std::vector<std::vector<std::string>> answers(variants_.size(), std::vector<std::string>(depths));
  std::vector<double> depth_at(static_cast<size_t>(depths));
  for (int32_t i = 0; i < depths; ++i) {
    const int32_t d = run[static_cast<size_t>(i)];
    const double depth =
        o_.passkey_depths == 1 ? 0.5 : static_cast<double>(d) / (o_.passkey_depths - 1);
    depth_at[static_cast<size_t>(i)] = depth;
    ASSIGN_OR_RETURN(PasskeyPrompt p, MakePasskeyPrompt(tok_, haystack, context, depth,
                                                        o_.seed * 1000003 + d * 7919 + context));
    Say(absl::StrFormat("passkey, context %d, depth %.2f (needle at token %d): prefill", context,
                        depth, p.needle_token));
    ASSIGN_OR_RETURN(PrefillResult prefill, model_.Prefill(p.tokens));
    for (size_t vi = 0; vi < variants_.size(); ++vi) {
      const Variant& v = variants_[vi];
      ASSIGN_OR_RETURN(PassBackend b, Make(v, context + kAnswerTokens, "passkey"));
      absl::Status status = LoadPrefillInto(c_, prefill, b.get());
      std::vector<int32_t> answer = {
          ArgMax(prefill.last_logits.data(), static_cast<int64_t>(prefill.last_logits.size()))};
      std::vector<float> logits(static_cast<size_t>(c_.vocab));
      for (int32_t s = 0; s + 1 < kAnswerTokens && status.ok(); ++s) {
        status =
            model_.DecodeStep(answer.back(), context + s, b.get(), logits.data(), nullptr, nullptr);
        answer.push_back(ArgMax(logits.data(), c_.vocab));
      }
      const absl::Status closed = b.Close();
      RETURN_IF_ERROR(status);
      RETURN_IF_ERROR(closed);
      const std::string text = tok_.Decode(answer, /*render_special=*/false);
      answers[vi][static_cast<size_t>(i)] = text;
      correct[vi][static_cast<size_t>(i)] = ExtractPasskey(text) == p.passkey ? 1 : 0;
      if (vi > 0) Say(absl::StrFormat("  %s answered \"%s\"", v.Name(), text));
    }
    Say(absl::StrFormat("  full attention answered \"%s\" (passkey %s)", answers[0][i], p.passkey));
  }
  out << absl::StreamFormat("\n== %s, passkey retrieval at context %d, %d depths ==\n",
                            o_.model_name, context, depths);
  out << absl::StreamFormat("%-20s %8s  per depth %s\n", "variant", "accuracy",
                            absl::StrJoin(depth_at, " ", [](std::string* o, double x) {
                              absl::StrAppend(o, absl::StrFormat("%.2f", x));
                            }));
  double full_accuracy = 0.0;
  for (size_t vi = 0; vi < variants_.size(); ++vi) {
    int hits = 0;
    std::string marks;
    for (int x : correct[vi]) {
      hits += x;
      marks += x ? "+" : ".";
    }
    const double accuracy = static_cast<double>(hits) / depths;
    if (vi == 0) full_accuracy = accuracy;
    Json r = Row(variants_[vi], "passkey", context, accuracy, "fraction", full_accuracy,
                 "exact-match accuracy / full attention's");
    r["depths"] = depth_at;
    r["correct"] = correct[vi];
    r["answers"] = answers[vi];
    rows->push_back(r);
    out << absl::StreamFormat("%-20s %8.2f  %s\n", variants_[vi].Name(), accuracy, marks);
  }
  return absl::OkStatus();
}

absl::Status Evaluator::DumpNpy(const PrefillResult& prefill,
                                const std::vector<std::vector<float>>& queries) {
  const std::vector<int32_t> global = c_.GlobalLayers();
  const int64_t hd = c_.head_dim, n_kv = c_.n_kv_heads, n_q = c_.n_heads;
  for (size_t g = 0; g < global.size(); ++g) {
    const int32_t layer = global[g];
    const std::vector<float>& k = prefill.keys[static_cast<size_t>(layer)];
    const std::vector<float>& v = prefill.values[static_cast<size_t>(layer)];
    const int64_t tokens = prefill.tokens;
    std::vector<float> kh(k.size()), vh(v.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < n_kv; ++h) {
        for (int64_t d = 0; d < hd; ++d) {
          kh[static_cast<size_t>((h * tokens + t) * hd + d)] =
              k[static_cast<size_t>(t * n_kv * hd + h * hd + d)];
          vh[static_cast<size_t>((h * tokens + t) * hd + d)] =
              v[static_cast<size_t>(t * n_kv * hd + h * hd + d)];
        }
      }
    }
    const std::vector<float>& q = queries[g];
    const int64_t steps = static_cast<int64_t>(q.size()) / (n_q * hd);
    std::vector<float> qh(q.size());
    for (int64_t s = 0; s < steps; ++s) {
      for (int64_t h = 0; h < n_q; ++h) {
        for (int64_t d = 0; d < hd; ++d) {
          qh[static_cast<size_t>((h * steps + s) * hd + d)] =
              q[static_cast<size_t>((s * n_q + h) * hd + d)];
        }
      }
    }
    eval::LayerTensors t;
    t.k = eval::NpyArray::FromFloats(kh, {n_kv, tokens, hd}, DType::kFloat32);
    t.v = eval::NpyArray::FromFloats(vh, {n_kv, tokens, hd}, DType::kFloat32);
    t.q = eval::NpyArray::FromFloats(qh, {n_q, steps, hd}, DType::kFloat32);
    RETURN_IF_ERROR(eval::WriteLayerNpy(o_.dump_npy_dir, layer, t, DType::kFloat16));
  }
  Say(absl::StrCat("wrote the real Q/K/V of ", global.size(), " layers to ", o_.dump_npy_dir));
  return absl::OkStatus();
}

absl::Status Evaluator::Run(Json* rows, std::ostream& out) {
  // RunQualityEval refuses an empty list of contexts.
  const int64_t longest = *std::max_element(o_.contexts.begin(), o_.contexts.end());
  const int64_t continuation = std::max(o_.ppl_tokens, o_.agreement_tokens) + 1;
  Say(absl::StrCat("tokenizing ", DescribeTextSource(o_.text)));
  ASSIGN_OR_RETURN(std::string text, LoadText(o_.text));
  ASSIGN_OR_RETURN(std::vector<int32_t> body, EncodeOpening(tok_, text, longest + continuation));
  std::vector<int32_t> tokens;
  if (tok_.add_bos_default() && tok_.bos_id() >= 0) tokens.push_back(tok_.bos_id());
  tokens.insert(tokens.end(), body.begin(), body.end());
  for (int64_t context : o_.contexts) {
    const int64_t need = context + continuation;
    if (static_cast<int64_t>(tokens.size()) < need) {
      return absl::InvalidArgumentError(absl::StrCat(DescribeTextSource(o_.text), " holds ",
                                                     tokens.size(), " tokens; context ", context,
                                                     " needs ", need));
    }
    RETURN_IF_ERROR(EvaluateContext(tokens, context, rows, out));
  }
  if (o_.passkey_depths > 0) {
    Say(absl::StrCat("tokenizing ", DescribeTextSource(o_.passkey_text)));
    ASSIGN_OR_RETURN(std::string hay_text, LoadText(o_.passkey_text));
    const std::vector<int64_t>& contexts =
        o_.passkey_contexts.empty() ? o_.contexts : o_.passkey_contexts;
    ASSIGN_OR_RETURN(std::vector<int32_t> haystack,
                     EncodeOpening(tok_, hay_text,
                                   *std::max_element(contexts.begin(), contexts.end())));
    for (int64_t context : contexts) {
      RETURN_IF_ERROR(EvaluatePasskey(haystack, context, rows, out));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Json> RunQualityEval(const ModelWeights& weights, const Tokenizer& tokenizer,
                                    const QualityEvalOptions& o, std::ostream& out) {
  RETURN_IF_ERROR(weights.Validate());
  RETURN_IF_ERROR(o.config.Validate());
  const ModelConfig& c = weights.config;
  if (o.contexts.empty()) return absl::InvalidArgumentError("no context lengths given");
  if (o.ppl_tokens < 1 || o.agreement_tokens < 1 || o.chunk < 1 || o.passkey_depths < 0) {
    return absl::InvalidArgumentError(
        "ppl_tokens, agreement_tokens and chunk must be >= 1, passkey_depths >= 0");
  }
  for (int64_t d : o.passkey_depth_indices) {  // in range before any narrowing
    if (d < 0 || d >= o.passkey_depths) {
      return absl::InvalidArgumentError(absl::StrCat("passkey depth index ", d, " is not in [0, ",
                                                     o.passkey_depths, ")"));
    }
  }
  for (const std::string& entry : o.methods) {
    const auto [m, overrides] = SplitMethod(entry);
    if (m != "clusterkv" && m != kAdaptive && !ParseBaselineMethod(m).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown method \"", m,
          "\" (clusterkv, clusterkv_adaptive, quest, streamingllm, oracle)"));
    }
    if (!overrides.empty()) {
      if (m != "clusterkv" && m != kAdaptive) {
        return absl::InvalidArgumentError(
            absl::StrCat("method \"", entry, "\": only clusterkv takes +key=value overrides"));
      }
      ClusterKvConfig check = o.config;
      RETURN_IF_ERROR(ApplyOverrides(overrides, &check));
    }
    if (m == kAdaptive && o.recall_targets.empty()) {
      return absl::InvalidArgumentError("clusterkv_adaptive needs at least one recall target");
    }
  }
  for (double t : o.recall_targets) {
    if (!(t > 0.0 && t <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat("recall target ", t, " is not in (0, 1]"));
    }
  }
  for (int64_t b : o.budgets) {
    if (b < 1) return absl::InvalidArgumentError(absl::StrCat("bad budget ", b));
  }
  const int64_t extra = std::max(o.ppl_tokens, o.agreement_tokens) + 1;
  for (int64_t context : o.contexts) {
    if (context < 64 || context + extra > c.max_context) {
      return absl::InvalidArgumentError(
          absl::StrCat("context ", context, " + ", extra,
                       " evaluated tokens must be >= 64 and fit the model's ", c.max_context));
    }
  }
  const int threads = o.threads > 0 ? o.threads : DefaultThreads();
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  Evaluator e(weights, tokenizer, o, threads, exec);
  Json rows = Json::array();
  RETURN_IF_ERROR(e.Run(&rows, out));
  return rows;
}

}  // namespace clusterkv::llama
