#include "tools/clusterkv_llama/speed_bench.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/container/flat_hash_map.h"
#include "client/connection.h"
#include "client/internal/client_internals.h"
#include "absl/strings/str_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/full_attention.h"
#include "tools/clusterkv_llama/internal/stopwatch.h"
#include "tools/clusterkv_llama/local_window.h"
#include "tools/clusterkv_llama/ops.h"

namespace clusterkv::llama {
namespace {

using Json = nlohmann::ordered_json;
using internal::SecondsSince;
using internal::SteadyClock;

// The best of `repeats` timings of `fn`, in seconds (after one warm-up run).
double BestOf(int repeats, const std::function<void()>& fn) {
  fn();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = SteadyClock::now();
    fn();
    best = std::min(best, SecondsSince(t0));
  }
  return best;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1)))];
}

Json Row(const std::string& variant, Json params, double value, const std::string& unit,
         const std::string& baseline, double baseline_value, bool higher_is_better) {
  Json r = Json::object();
  r["variant"] = variant;
  r["params"] = std::move(params);
  r["value"] = value;
  r["unit"] = unit;
  r["baseline"] = baseline;
  r["baseline_value"] = baseline_value;
  r["ratio"] = higher_is_better ? value / std::max(1e-12, baseline_value)
                                : baseline_value / std::max(1e-12, value);
  r["ratio_meaning"] = higher_is_better ? "value / baseline_value (> 1: faster than baseline)"
                                        : "baseline_value / value (> 1: faster than baseline)";
  return r;
}

// FLOPs of the weight products per token (the vocabulary projection counted separately).
double LayerFlopsPerToken(const ModelConfig& c) {
  const double per_layer = static_cast<double>(c.dim) * (2.0 * c.QDim() + 2.0 * c.KvDim()) +
                           3.0 * static_cast<double>(c.dim) * c.ffn_dim;
  return 2.0 * per_layer * c.n_layers;
}

// FLOPs of the prefill's attention (QK^T and PV) over `n` tokens.
double PrefillAttentionFlops(const ModelConfig& c, int64_t n) {
  double flops = 0;
  for (int32_t l = 0; l < c.n_layers; ++l) {
    double pairs = static_cast<double>(n) * static_cast<double>(n + 1) / 2.0;
    if (c.IsLocalLayer(l) && n > c.sliding_window) {
      const double w = c.sliding_window;
      pairs = w * (w + 1) / 2.0 + static_cast<double>(n - c.sliding_window) * w;
    }
    flops += 4.0 * c.n_heads * c.head_dim * pairs;
  }
  return flops;
}

struct DecodeRun {
  std::vector<double> step_us;
  AttentionStepStats totals;
  std::string data_plane = "local";
  double hit_rate = 0.0;
  Json daemon;  // the daemon's tier and hint counters over the decode (ClusterKV runs)
};

absl::Status Greedy(const DecoderModel& model, AttentionBackend& backend, int64_t n, int32_t first,
                    int32_t steps, DecodeRun* run) {
  std::vector<float> logits(static_cast<size_t>(model.config().vocab));
  int32_t token = first;
  for (int32_t s = 0; s < steps; ++s) {
    DecodeTiming timing;
    AttentionStepStats stats;
    RETURN_IF_ERROR(model.DecodeStep(token, n + s, backend, logits.data(), &timing, &stats));
    run->step_us.push_back(static_cast<double>(timing.total_us));
    run->totals.Add(stats);
    token = ArgMax(logits.data(), static_cast<int64_t>(logits.size()));
  }
  return absl::OkStatus();
}

// Selected tokens of the sparse layers (after the first step) and those of them covered by
// the speculated selection, by the previous step's selection, and by either.
struct SpeculationCounts {
  int64_t real_tokens = 0;
  int64_t predicted_tokens = 0;
  int64_t previous_tokens = 0;
  int64_t either_tokens = 0;
  int64_t layer_steps = 0;
};

// Per kv head: cluster -> tokens taken from it.
using Picked = std::vector<absl::flat_hash_map<int32_t, int64_t>>;

Picked ToPicked(const std::vector<gpu::ClusterSelection>& selections) {
  Picked out(selections.size());
  for (size_t h = 0; h < selections.size(); ++h) {
    for (size_t i = 0; i < selections[h].clusters.size(); ++i) {
      out[h][selections[h].clusters[i]] = selections[h].tokens[i];
    }
  }
  return out;
}

// Greedy decoding as Greedy() with the hooks of the speculation measurement.
// `backend` is what the decoder calls (`sparse` itself, or a local-window backend around it).
absl::Status MeasureSpeculation(DecoderModel& model, AttentionBackend& backend,
                                ClusterKvBackend& sparse, int64_t n, int32_t first,
                                int32_t steps, DecodeRun* run, SpeculationCounts* counts) {
  const ModelConfig& c = model.config();
  const client::SequenceCore& core = client::ClientInternals::core(sparse.sequence());
  // Model layer -> sequence layer (-1: local, or dense in the sequence).
  std::vector<int32_t> seq_layer(static_cast<size_t>(c.n_layers), -1);
  const std::vector<int32_t> global = c.GlobalLayers();
  for (size_t i = 0; i < global.size(); ++i) {
    if (!core.config().IsDenseLayer(static_cast<int32_t>(i))) {
      seq_layer[static_cast<size_t>(global[i])] = static_cast<int32_t>(i);
    }
  }
  std::vector<Picked> predicted(seq_layer.size()), previous(seq_layer.size());
  std::vector<float> q_pred(static_cast<size_t>(c.QDim()));
  absl::Status hook_status;
  auto select = [&](int32_t layer, const float* q) -> absl::StatusOr<Picked> {
    ASSIGN_OR_RETURN(std::vector<gpu::ClusterSelection> s,
                     core.PreviewSelection(seq_layer[layer],
                                           ConstMatrixView(q, c.n_heads, c.head_dim)));
    return ToPicked(s);
  };
  model.set_residual_hook([&](int32_t l, int64_t pos, const float* x) {
    const int32_t next = l + 1;
    if (next >= c.n_layers || seq_layer[next] < 0 || !hook_status.ok()) return;
    model.PredictQuery(next, pos, x, q_pred.data());
    absl::StatusOr<Picked> p = select(next, q_pred.data());
    if (!p.ok()) {
      hook_status = p.status();
      return;
    }
    predicted[next] = *std::move(p);
  });
  model.set_query_hook([&](int32_t l, const float* q) {
    if (seq_layer[l] < 0 || !hook_status.ok()) return;
    absl::StatusOr<Picked> real = select(l, q);
    if (!real.ok()) {
      hook_status = real.status();
      return;
    }
    if (!previous[l].empty()) {
      ++counts->layer_steps;
      for (size_t h = 0; h < real->size(); ++h) {
        for (const auto& [cluster, tokens] : (*real)[h]) {
          const bool p = h < predicted[l].size() && predicted[l][h].contains(cluster);
          const bool r = previous[l][h].contains(cluster);
          counts->real_tokens += tokens;
          if (p) counts->predicted_tokens += tokens;
          if (r) counts->previous_tokens += tokens;
          if (p || r) counts->either_tokens += tokens;
        }
      }
    }
    previous[l] = *std::move(real);
    predicted[l].clear();
  });
  absl::Status status = Greedy(model, backend, n, first, steps, run);
  model.set_residual_hook(nullptr);
  model.set_query_hook(nullptr);
  RETURN_IF_ERROR(status);
  return hook_status;
}

}  // namespace

absl::StatusOr<Json> RunSpeedBench(const ModelWeights& weights, const std::vector<int32_t>& prompt,
                                   const SpeedBenchOptions& o, std::ostream& out) {
  RETURN_IF_ERROR(weights.Validate());
  RETURN_IF_ERROR(o.config.Validate());
  const ModelConfig& c = weights.config;
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n < kBlasMinRows) {
    return absl::InvalidArgumentError(
        absl::StrCat("the speed bench needs a prompt of at least ", kBlasMinRows, " tokens"));
  }
  if (o.decode_steps < 1 || n + o.decode_steps > c.max_context) {
    return absl::InvalidArgumentError("decode_steps must be >= 1 and fit the model's context");
  }
  const int threads = o.threads > 0 ? o.threads : DefaultThreads();
  auto say = [&](const std::string& line) {
    if (o.progress != nullptr) *o.progress << line << "\n" << std::flush;
  };
  Json rows = Json::array();
  Json common = {{"model", o.model_name}, {"threads", threads}};

  // 1. The sgemm ceiling and the own kernel on the same 1024^3 product.
  say("bench: sgemm ceiling (1024 x 1024 x 1024)");
  constexpr int64_t kSide = 1024;
  std::vector<float> a(static_cast<size_t>(kSide * kSide), 0.5f), b(a.size(), 0.25f), y(a.size());
  const double square_flops = 2.0 * kSide * kSide * kSide;
  const double blas_s = BestOf(3, [&] {
    MatMul(a.data(), kSide, b.data(), kSide, kSide, y.data(), threads, MatMulImpl::kBlas);
  });
  const double own_s = BestOf(1, [&] {
    MatMul(a.data(), kSide, b.data(), kSide, kSide, y.data(), threads, MatMulImpl::kOwn);
  });
  const double ceiling = square_flops / blas_s / 1e9;
  Json p = common;
  p["shape"] = "1024x1024x1024";
  rows.push_back(Row("sgemm_openblas", p, ceiling, "GFLOP/s", "sgemm_openblas", ceiling, true));
  rows.push_back(
      Row("matmul_own", p, square_flops / own_s / 1e9, "GFLOP/s", "sgemm_openblas", ceiling, true));

  // 2. The model's products at prefill (256 rows) and decode (1 row) shapes.
  say("bench: the model's matrix products, own kernel vs OpenBLAS");
  struct Product {
    const float* w;
    int64_t out, in;
  };
  const LayerWeights& l0 = weights.layers[0];
  const std::vector<Product> products = {
      {l0.wq.data(), c.QDim(), c.dim},      {l0.wk.data(), c.KvDim(), c.dim},
      {l0.wv.data(), c.KvDim(), c.dim},     {l0.wo.data(), c.dim, c.QDim()},
      {l0.w_gate.data(), c.ffn_dim, c.dim}, {l0.w_up.data(), c.ffn_dim, c.dim},
      {l0.w_down.data(), c.dim, c.ffn_dim}, {weights.Output().data(), c.vocab, c.dim}};
  double product_flops_row = 0;
  int64_t widest = 0;
  for (const Product& pr : products) {
    product_flops_row += 2.0 * static_cast<double>(pr.out) * pr.in;
    widest = std::max({widest, pr.out, pr.in});
  }
  for (int64_t r : {int64_t{256}, int64_t{1}}) {
    std::vector<float> x(static_cast<size_t>(r * widest), 0.1f),
        yy(static_cast<size_t>(r) * static_cast<size_t>(c.vocab));
    double results[2];
    for (MatMulImpl impl : {MatMulImpl::kOwn, MatMulImpl::kBlas}) {
      const double s = BestOf(r == 1 ? 5 : 2, [&] {
        for (const Product& pr : products) {
          MatMul(x.data(), r, pr.w, pr.out, pr.in, yy.data(), threads, impl);
        }
      });
      results[impl == MatMulImpl::kOwn ? 0 : 1] = product_flops_row * r / s / 1e9;
    }
    Json q = common;
    q["rows"] = r;
    q["products"] = "layer 0 q,k,v,o,gate,up,down + vocabulary projection";
    rows.push_back(Row(r == 1 ? "decode_products_own" : "prefill_products_own", q, results[0],
                       "GFLOP/s", r == 1 ? "decode_products_openblas" : "prefill_products_openblas",
                       results[1], true));
    rows.push_back(Row(r == 1 ? "decode_products_openblas" : "prefill_products_openblas", q,
                       results[1], "GFLOP/s", "sgemm_openblas", ceiling, true));
  }

  // 3. Prefill tokens/s of the whole prompt with the engine's choice of products, and of a
  //    prefix of at most kOwnPrefill tokens with OpenBLAS and with the own kernel only (the own
  //    kernel over a whole 32k prompt would take most of an hour).
  auto prefill_flops = [&](int64_t tokens) {
    return LayerFlopsPerToken(c) * static_cast<double>(tokens) + PrefillAttentionFlops(c, tokens) +
           2.0 * c.dim * c.vocab;
  };
  auto prefill_with = [&](MatMulImpl impl, int64_t tokens, PrefillResult* keep,
                          double* seconds) -> absl::Status {
    DecoderModel model(&weights, threads, impl);
    say(absl::StrCat("bench: prefill of ", tokens, " tokens (", MatMulImplName(impl), ")"));
    const auto t0 = SteadyClock::now();
    ASSIGN_OR_RETURN(PrefillResult r, model.Prefill(absl::MakeConstSpan(
                                          prompt.data(), static_cast<size_t>(tokens))));
    *seconds = SecondsSince(t0);
    if (keep != nullptr) *keep = std::move(r);
    return absl::OkStatus();
  };
  PrefillResult prefill;
  double auto_s = 0;
  RETURN_IF_ERROR(prefill_with(MatMulImpl::kAuto, n, &prefill, &auto_s));
  Json pp = common;
  pp["prompt_tokens"] = n;
  pp["gflop"] = prefill_flops(n) / 1e9;
  const double auto_tps = static_cast<double>(n) / auto_s;
  rows.push_back(Row("prefill", pp, auto_tps, "tokens/s", "prefill", auto_tps, true));
  rows.back()["gflops"] = prefill_flops(n) / auto_s / 1e9;
  rows.back()["sgemm_ceiling_gflops"] = ceiling;
  rows.back()["seconds"] = auto_s;
  if (o.own_kernel_prefill) {
    constexpr int64_t kOwnPrefill = 2048;
    const int64_t m = std::min(n, kOwnPrefill);
    double blas_prefix_s = 0, own_prefix_s = 0;
    RETURN_IF_ERROR(prefill_with(MatMulImpl::kBlas, m, nullptr, &blas_prefix_s));
    RETURN_IF_ERROR(prefill_with(MatMulImpl::kOwn, m, nullptr, &own_prefix_s));
    Json pm = common;
    pm["prompt_tokens"] = m;
    pm["gflop"] = prefill_flops(m) / 1e9;
    rows.push_back(Row("prefill_prefix_openblas", pm, static_cast<double>(m) / blas_prefix_s,
                       "tokens/s", "prefill_prefix_own_kernel",
                       static_cast<double>(m) / own_prefix_s, true));
    rows.back()["gflops"] = prefill_flops(m) / blas_prefix_s / 1e9;
    rows.push_back(Row("prefill_prefix_own_kernel", pm, static_cast<double>(m) / own_prefix_s,
                       "tokens/s", "sgemm_openblas", ceiling, true));
    rows.back()["gflops"] = prefill_flops(m) / own_prefix_s / 1e9;
  }

  // 4. Decode: full attention vs ClusterKV after the same prefill.
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  DecoderModel model(&weights, threads);
  const int32_t first =
      ArgMax(prefill.last_logits.data(), static_cast<int64_t>(prefill.last_logits.size()));
  DecodeRun full;
  {
    say(absl::StrCat("bench: ", o.decode_steps, " decode steps, full attention"));
    std::unique_ptr<AttentionBackend> backend = ForModelLayers(
        c, std::make_unique<FullAttentionBackend>(c, o.kv_dtype, n + o.decode_steps, exec));
    RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *backend));
    RETURN_IF_ERROR(Greedy(model, *backend, n, first, o.decode_steps, &full));
  }
  // One ClusterKV decode through clusterkvd with `config`, in `mode`; the daemon's counters
  // are read before and after so the run's tier traffic and hint outcomes can be told apart.
  enum class Mode { kPlain, kPrefetch, kResidentBound };
  auto run_sparse = [&](const ClusterKvConfig& config, const std::string& name, Mode mode,
                        DecodeRun* run) -> absl::Status {
    say(absl::StrCat("bench: ", o.decode_steps, " decode steps, ", name, " through clusterkvd"));
    ServiceOptions so = o;
    so.config = config;
    ASSIGN_OR_RETURN(ClusterKvSession session, OpenClusterKv(c, so, o.budget, name, threads));
    client::Connection* conn = client::ClientInternals::connection(*session.client);
    absl::Status status = LoadPrefillInto(c, prefill, *session.backend);
    absl::StatusOr<v1::StatsResponse> before =
        conn != nullptr ? conn->Stats() : absl::StatusOr<v1::StatsResponse>();
    session.sparse->set_resident_bound(mode == Mode::kResidentBound);
    model.set_speculative_prefetch(mode == Mode::kPrefetch);
    if (status.ok()) status = Greedy(model, *session.backend, n, first, o.decode_steps, run);
    model.set_speculative_prefetch(false);
    absl::StatusOr<v1::StatsResponse> after =
        conn != nullptr ? conn->Stats() : absl::StatusOr<v1::StatsResponse>();
    const absl::Status closed = session.sparse->sequence().Close(/*drop=*/true);
    RETURN_IF_ERROR(status);
    RETURN_IF_ERROR(closed);
    run->data_plane = session.DataPlaneUsed();
    const int64_t looked = run->totals.hit_tokens + run->totals.miss_tokens;
    run->hit_rate = looked > 0 ? static_cast<double>(run->totals.hit_tokens) / looked : 0.0;
    if (before.ok() && after.ok()) {
      const Json counts = Json{
          {"host_hits", after->host().hits() - before->host().hits()},
          {"ssd_hits", after->ssd().hits() - before->ssd().hits()},
          {"hint_promotions", after->hint_promotions() - before->hint_promotions()},
          {"hint_promotions_recalled",
           after->hint_promotions_recalled() - before->hint_promotions_recalled()},
          {"hint_promotions_wasted",
           after->hint_promotions_wasted() - before->hint_promotions_wasted()},
          {"hint_already_resident",
           after->hint_already_resident() - before->hint_already_resident()},
          {"hint_no_room", after->hint_no_room() - before->hint_no_room()},
          {"hint_throttled", after->hint_throttled() - before->hint_throttled()}};
      if (run->daemon.is_null()) run->daemon = Json::object();
      for (const auto& [k, v] : counts.items()) {
        run->daemon[k] = run->daemon.value(k, uint64_t{0}) + v.get<uint64_t>();
      }
    }
    return absl::OkStatus();
  };
  // With hints or overlap, the ClusterKV decodes alternate over two rounds (plain, hinted,
  // prefetch, bound, plain, ...) and each pools its rounds, so none always runs first on a
  // cold page cache.
  ClusterKvConfig plain = o.config;
  plain.promotion_hint_tokens = 0;
  DecodeRun sparse;
  DecodeRun hinted;
  DecodeRun prefetched;
  DecodeRun bound;
  const bool hints = o.config.promotion_hint_tokens > 0;
  const int rounds = hints || o.overlap ? 2 : 1;
  const std::string base_name = absl::StrCat("clusterkv_b", o.budget);
  for (int r = 0; r < rounds; ++r) {
    RETURN_IF_ERROR(run_sparse(plain, base_name, Mode::kPlain, &sparse));
    if (hints) {
      RETURN_IF_ERROR(run_sparse(
          o.config, absl::StrCat(base_name, "_hints", o.config.promotion_hint_tokens),
          Mode::kPlain, &hinted));
    }
    if (o.overlap) {
      RETURN_IF_ERROR(
          run_sparse(plain, absl::StrCat(base_name, "_prefetch"), Mode::kPrefetch, &prefetched));
      RETURN_IF_ERROR(run_sparse(plain, absl::StrCat(base_name, "_resident_bound"),
                                 Mode::kResidentBound, &bound));
    }
  }
  // Speculation, untimed: one more ClusterKV decode in which, before each layer's attention,
  // the next layer's query is predicted from this layer's input (the next layer's norm, Wq and
  // RoPE applied to this layer's residual stream, as InfiniGen does) and selected on the next
  // layer's centroids; once the next layer has attended, its real selection is compared with
  // the predicted one and with the previous step's selection of the same layer (what a device
  // cache of residency R = 1 holds). Counted in selected tokens, from the second step on.
  SpeculationCounts speculation;
  {
    say(absl::StrCat("bench: ", o.decode_steps, " decode steps, speculation measurement"));
    ServiceOptions so = o;
    so.config = plain;
    ASSIGN_OR_RETURN(ClusterKvSession session,
                     OpenClusterKv(c, so, o.budget, "clusterkv_speculation", threads));
    absl::Status status = LoadPrefillInto(c, prefill, *session.backend);
    if (status.ok()) {
      DecodeRun ignored;
      status = MeasureSpeculation(model, *session.backend, *session.sparse, n, first,
                                  o.decode_steps, &ignored, &speculation);
    }
    const absl::Status closed = session.sparse->sequence().Close(/*drop=*/true);
    RETURN_IF_ERROR(status);
    RETURN_IF_ERROR(closed);
  }
  const double full_p50 = Quantile(full.step_us, 0.5), sparse_p50 = Quantile(sparse.step_us, 0.5);
  Json dp = common;
  dp["prompt_tokens"] = n;
  dp["steps"] = o.decode_steps;
  dp["kv_dtype"] = std::string(DTypeName(o.kv_dtype));
  rows.push_back(Row("decode_full_attention", dp, 1e6 / full_p50, "tokens/s",
                     "decode_full_attention", 1e6 / full_p50, true));
  rows.back()["p50_us"] = full_p50;
  rows.back()["p99_us"] = Quantile(full.step_us, 0.99);
  const double steps = static_cast<double>(o.decode_steps) * rounds;
  auto add_sparse = [&](const std::string& variant, const Json& params, const DecodeRun& run,
                        const std::string& baseline, double baseline_us) {
    const double p50 = Quantile(run.step_us, 0.5);
    Json p = params;
    p["data_plane"] = run.data_plane;
    rows.push_back(Row(variant, p, 1e6 / p50, "tokens/s", baseline, 1e6 / baseline_us, true));
    Json& r = rows.back();
    r["p50_us"] = p50;
    r["p99_us"] = Quantile(run.step_us, 0.99);
    r["score_ms"] = run.totals.score_us / steps / 1000.0;
    r["select_ms"] = run.totals.select_us / steps / 1000.0;
    r["fetch_ms"] = run.totals.fetch_us / steps / 1000.0;
    r["attend_ms"] = run.totals.attend_us / steps / 1000.0;
    r["cache_hit_rate"] = run.hit_rate;
    r["bytes_fetched_per_step"] = static_cast<double>(run.totals.bytes_fetched) / steps;
    if (!run.daemon.is_null()) r["daemon"] = run.daemon;
  };
  Json sp = dp;
  sp["budget"] = o.budget;
  sp["rounds"] = rounds;  // ClusterKV decodes of `steps` steps each, pooled
  const std::string sparse_name = absl::StrCat("decode_clusterkv_b", o.budget);
  const std::string hinted_name =
      absl::StrCat(sparse_name, "_hints", o.config.promotion_hint_tokens);
  add_sparse(sparse_name, sp, sparse, "decode_full_attention", full_p50);
  const Json last = rows.back();
  if (hints) {
    Json hp = sp;
    hp["promotion_hint_tokens"] = o.config.promotion_hint_tokens;
    add_sparse(hinted_name, hp, hinted, sparse_name, sparse_p50);
  }
  const std::string prefetch_name = absl::StrCat(sparse_name, "_prefetch");
  const std::string bound_name = absl::StrCat(sparse_name, "_resident_bound");
  if (o.overlap) {
    // The bound first: the prefetch row's baseline is the plain decode, and it also carries
    // its step time over the bound's (the target is <= 1.15).
    const double bound_p50 = Quantile(bound.step_us, 0.5);
    Json bp = sp;
    bp["meaning"] = "every selected cluster made resident, untimed, before each timed attend";
    add_sparse(bound_name, bp, bound, sparse_name, sparse_p50);
    Json pp2 = sp;
    pp2["predictor"] = "next layer's norm + Wq + RoPE on this layer's residual stream";
    add_sparse(prefetch_name, pp2, prefetched, sparse_name, sparse_p50);
    Json& r = rows.back();
    const double steps_total = static_cast<double>(o.decode_steps) * rounds;
    r["step_over_resident_bound"] = Quantile(prefetched.step_us, 0.5) / bound_p50;
    r["plain_step_over_resident_bound"] = sparse_p50 / bound_p50;
    r["prefetch_wait_ms"] = prefetched.totals.prefetch_wait_us / steps_total / 1000.0;
    const int64_t selected = prefetched.totals.hit_tokens + prefetched.totals.miss_tokens;
    r["prefetched_share_of_selection"] =
        selected > 0 ? static_cast<double>(prefetched.totals.prefetch_used_tokens) / selected
                     : 0.0;
    r["prefetched_tokens_used_fraction"] =
        prefetched.totals.prefetched_tokens > 0
            ? static_cast<double>(prefetched.totals.prefetch_used_tokens) /
                  prefetched.totals.prefetched_tokens
            : 0.0;
    r["miss_tokens_per_step"] = static_cast<double>(prefetched.totals.miss_tokens) / steps_total;
    r["plain_miss_tokens_per_step"] = static_cast<double>(sparse.totals.miss_tokens) / steps_total;
  }
  if (speculation.real_tokens > 0) {
    const double real = static_cast<double>(speculation.real_tokens);
    Json spp = sp;
    spp["predictor"] = "next layer's norm + Wq + RoPE on this layer's residual stream";
    rows.push_back(Row("speculation_next_layer_query", spp, speculation.predicted_tokens / real,
                       "fraction", "previous_step_selection", speculation.previous_tokens / real,
                       true));
    rows.back()["ratio_meaning"] =
        "value / baseline_value: selected tokens the prediction covers over those the previous "
        "step's selection covers";
    rows.back()["either_fraction"] = speculation.either_tokens / real;
    rows.back()["selected_tokens"] = speculation.real_tokens;
    rows.back()["layer_steps"] = speculation.layer_steps;
  }
  // 5. Batched decode: b sequences over the same prefix, stepping together.
  if (!o.batch_sizes.empty()) {
    const int64_t m = std::min<int64_t>(n, o.batch_tokens);
    say(absl::StrCat("bench: prefill of ", m, " tokens for the batched decodes"));
    ASSIGN_OR_RETURN(PrefillResult base,
                     model.Prefill(absl::MakeConstSpan(prompt.data(), static_cast<size_t>(m))));
    const int32_t start = ArgMax(base.last_logits.data(), c.vocab);
    const std::vector<int32_t> global = c.GlobalLayers();
    std::vector<int32_t> seq_layer(static_cast<size_t>(c.n_layers), -1);
    for (size_t g = 0; g < global.size(); ++g) {
      seq_layer[static_cast<size_t>(global[g])] = static_cast<int32_t>(g);
    }
    const int64_t q_dim = c.QDim(), kv_dim = c.KvDim();
    // Steps of `b` sequences through `attention`; p50 step time in us.
    auto decode = [&](int32_t b, std::vector<AttentionBackend*> backends,
                      const DecoderModel::BatchAttention& attention) -> absl::StatusOr<double> {
      std::vector<int32_t> tokens(static_cast<size_t>(b), start);
      std::vector<float> logits(static_cast<size_t>(b) * c.vocab);
      std::vector<double> step_us;
      for (int32_t s = 0; s < o.decode_steps; ++s) {
        for (AttentionBackend* be : backends) be->BeginStep();
        const auto t0 = SteadyClock::now();
        RETURN_IF_ERROR(model.DecodeBatchStep(tokens, m + s, attention, logits.data()));
        step_us.push_back(SecondsSince(t0) * 1e6);
        for (int32_t i = 0; i < b; ++i) {
          tokens[static_cast<size_t>(i)] =
              ArgMax(&logits[static_cast<size_t>(i) * c.vocab], c.vocab);
        }
      }
      return Quantile(step_us, 0.5);
    };
    // Each sequence's own AppendAndAttend, one after the other.
    auto one_by_one = [&](const std::vector<AttentionBackend*>& backends) {
      return [&, backends](int32_t l, const float* q, const float* k, const float* v, float* out,
                           int32_t b) -> absl::Status {
        for (int32_t i = 0; i < b; ++i) {
          RETURN_IF_ERROR(backends[static_cast<size_t>(i)]->AppendAndAttend(
              l, q + i * q_dim, k + i * kv_dim, v + i * kv_dim, out + i * q_dim, nullptr));
        }
        return absl::OkStatus();
      };
    };
    ServiceOptions so = o;
    so.config = plain;
    for (int32_t b : o.batch_sizes) {
      if (b < 1) return absl::InvalidArgumentError("batch sizes must be >= 1");
      double us[3] = {0, 0, 0};  // batched, one by one, full attention
      for (int variant = 0; variant < 2; ++variant) {
        say(absl::StrCat("bench: ", o.decode_steps, " decode steps of ", b, " sequences, ",
                         variant == 0 ? "AttendBatch" : "Attend per sequence"));
        ASSIGN_OR_RETURN(ClusterKvBatch batch,
                         OpenClusterKvBatch(c, so, o.budget, absl::StrCat("batch", b, "v", variant),
                                            threads, b));
        std::vector<AttentionBackend*> backends;
        for (auto& be : batch.backends) {
          RETURN_IF_ERROR(LoadPrefillInto(c, base, *be));
          backends.push_back(be.get());
        }
        std::vector<client::BatchAttendItem> items(static_cast<size_t>(b));
        DecoderModel::BatchAttention batched =
            [&](int32_t l, const float* q, const float* k, const float* v, float* out,
                int32_t rows) -> absl::Status {
          const int32_t g = seq_layer[static_cast<size_t>(l)];
          if (g < 0) return one_by_one(backends)(l, q, k, v, out, rows);  // a local layer
          for (int32_t i = 0; i < rows; ++i) {
            client::Sequence& seq = batch.sparse[static_cast<size_t>(i)]->sequence();
            RETURN_IF_ERROR(seq.AppendToken(g, ConstMatrixView(k + i * kv_dim, c.n_kv_heads,
                                                               c.head_dim),
                                            ConstMatrixView(v + i * kv_dim, c.n_kv_heads,
                                                            c.head_dim)));
            items[static_cast<size_t>(i)] = client::BatchAttendItem{
                &seq, ConstMatrixView(q + i * q_dim, c.n_heads, c.head_dim),
                MatrixView(out + i * q_dim, c.n_heads, c.head_dim), nullptr, absl::OkStatus()};
          }
          return client::Sequence::AttendBatch(g, absl::MakeSpan(items));
        };
        absl::StatusOr<double> p50 =
            variant == 0 ? decode(b, backends, batched) : decode(b, backends, one_by_one(backends));
        for (ClusterKvBackend* sparse : batch.sparse) {
          sparse->sequence().Close(/*drop=*/true).IgnoreError();
        }
        RETURN_IF_ERROR(p50.status());
        us[variant] = *p50;
      }
      {
        say(absl::StrCat("bench: ", o.decode_steps, " decode steps of ", b,
                         " sequences, full attention"));
        std::vector<std::unique_ptr<AttentionBackend>> owned;
        std::vector<AttentionBackend*> backends;
        for (int32_t i = 0; i < b; ++i) {
          owned.push_back(ForModelLayers(
              c, std::make_unique<FullAttentionBackend>(c, o.kv_dtype, m + o.decode_steps, exec)));
          RETURN_IF_ERROR(LoadPrefillInto(c, base, *owned.back()));
          backends.push_back(owned.back().get());
        }
        ASSIGN_OR_RETURN(us[2], decode(b, backends, one_by_one(backends)));
      }
      Json bp = common;
      bp["prompt_tokens"] = m;
      bp["batch"] = b;
      bp["steps"] = o.decode_steps;
      bp["budget"] = o.budget;
      bp["kv_dtype"] = std::string(DTypeName(o.kv_dtype));
      const std::string name = absl::StrCat("decode_batch", b, "_clusterkv_attend_batch");
      rows.push_back(Row(name, bp, b * 1e6 / us[0], "tokens/s",
                         absl::StrCat("decode_batch", b, "_full_attention"), b * 1e6 / us[2],
                         true));
      rows.back()["p50_step_us"] = us[0];
      rows.push_back(Row(name, bp, b * 1e6 / us[0], "tokens/s",
                         absl::StrCat("decode_batch", b, "_clusterkv_attend_per_sequence"),
                         b * 1e6 / us[1], true));
      rows.back()["p50_step_us"] = us[0];
      rows.back()["baseline_p50_step_us"] = us[1];
    }
  }

  out << absl::StreamFormat("\n== clusterkv_llama speed: %s, %d threads ==\n", o.model_name,
                            threads);
  out << absl::StreamFormat("%-28s %12s %-10s %12s %8s\n", "variant", "value", "unit", "baseline",
                            "ratio");
  for (const Json& r : rows) {
    out << absl::StreamFormat("%-28s %12.2f %-10s %12.2f %8.3f  (vs %s)\n",
                              r["variant"].get<std::string>(), r["value"].get<double>(),
                              r["unit"].get<std::string>(), r["baseline_value"].get<double>(),
                              r["ratio"].get<double>(), r["baseline"].get<std::string>());
  }
  out << absl::StreamFormat(
      "prefill: %d tokens in %.2f s = %.1f GFLOP/s (sgemm ceiling %.1f); decode step p50: full "
      "%.2f ms, ClusterKV B=%d %.2f ms (score %.3f, select %.3f, fetch %.3f, attend %.3f ms; "
      "hit rate %.3f; %s)\n",
      n, auto_s, prefill_flops(n) / auto_s / 1e9, ceiling, full_p50 / 1000.0, o.budget,
      sparse_p50 / 1000.0, last["score_ms"].get<double>(), last["select_ms"].get<double>(),
      last["fetch_ms"].get<double>(), last["attend_ms"].get<double>(), sparse.hit_rate,
      sparse.data_plane);
  // The daemon's view of each ClusterKV decode: which tier served the fetches, and what became
  // of the promotions the hints asked for.
  auto tiers = [&](const std::string& name, const DecodeRun& run) {
    if (run.daemon.is_null()) return;
    const Json& t = run.daemon;
    out << absl::StreamFormat(
        "%s: fetch %.3f ms/step, daemon host hits %d, SSD hits %d; hint promotions %d "
        "(recalled %d, wasted %d, already resident %d, no room %d, throttled %d)\n",
        name, run.totals.fetch_us / steps / 1000.0, t["host_hits"].get<int64_t>(),
        t["ssd_hits"].get<int64_t>(), t["hint_promotions"].get<int64_t>(),
        t["hint_promotions_recalled"].get<int64_t>(), t["hint_promotions_wasted"].get<int64_t>(),
        t["hint_already_resident"].get<int64_t>(), t["hint_no_room"].get<int64_t>(),
        t["hint_throttled"].get<int64_t>());
  };
  if (speculation.real_tokens > 0) {
    const double real = static_cast<double>(speculation.real_tokens);
    out << absl::StreamFormat(
        "speculation: of the tokens each sparse layer selected, %.3f were in the selection "
        "predicted from the previous layer's input, %.3f in the same layer's selection one step "
        "earlier, %.3f in either (%d layer-steps)\n",
        speculation.predicted_tokens / real, speculation.previous_tokens / real,
        speculation.either_tokens / real, speculation.layer_steps);
  }
  tiers(sparse_name, sparse);
  if (hints) tiers(hinted_name, hinted);
  if (o.overlap) {
    const double bound_p50 = Quantile(bound.step_us, 0.5);
    const double prefetch_p50 = Quantile(prefetched.step_us, 0.5);
    out << absl::StreamFormat(
        "overlap: decode step p50 plain %.2f ms, with prefetch %.2f ms, compute-only bound "
        "%.2f ms: prefetch / bound %.3f, plain / bound %.3f; fetch %.3f ms/step in Attend with "
        "prefetch (%.3f plain), %.3f ms/step waiting for prefetches\n",
        sparse_p50 / 1000.0, prefetch_p50 / 1000.0, bound_p50 / 1000.0, prefetch_p50 / bound_p50,
        sparse_p50 / bound_p50, prefetched.totals.fetch_us / steps / 1000.0,
        sparse.totals.fetch_us / steps / 1000.0,
        prefetched.totals.prefetch_wait_us / steps / 1000.0);
    tiers(prefetch_name, prefetched);
  }
  return rows;
}

}  // namespace clusterkv::llama
