// `clusterkv_bench e2e`: a whole decode step through libclusterkv against full attention, on
// the CPU, at 32k context. A real clusterkvd holds the blocks; client::Client / Sequence
// offload a prefill made by the demo's text model (Llama-3-8B geometry, --e2e_layers layers,
// every layer sparse: config.dense_layers is empty so that each timed layer goes through
// scoring, selection, the device cache and FetchClusters over gRPC). Each decode step appends
// the next token to every layer and then times, per layer,
//   ours      Sequence::Attend (score + select + fetch of the misses + attend), and
//   baseline  gpu::AttentionBatch over every token of the layer (the same fp16 K/V),
// with the same threads. Value = median per (step, layer) in us, ratio = full / sparse;
// extra fields carry the StepStats breakdown, the device-cache hit rate and the attention
// output's error against full attention.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/sequence.h"
#include "core/config.h"
#include "core/kv_layout.h"
#include "core/status_macros.h"
#include "core/tensor_view.h"
#include "gpu/attention.h"
#include "gpu/backend.h"
#include "storage/cluster_block.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_daemon.h"
#include "tools/clusterkv_bench/bench_report.h"
#include "tools/clusterkv_demo/text_corpus.h"
#include "tools/clusterkv_demo/text_model.h"

namespace clusterkv::bench {
namespace {

using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// A seeded Zipf-distributed stream over made-up words, for machines without the novels.
std::vector<std::string> SyntheticWords(int64_t n, uint64_t seed) {
  constexpr int kVocabulary = 5000;
  std::vector<double> weights(kVocabulary);
  for (int r = 0; r < kVocabulary; ++r) weights[r] = 1.0 / std::pow(r + 1.0, 1.1);
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  std::mt19937_64 rng(seed);
  std::vector<std::string> words;
  words.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) words.push_back(absl::StrCat("w", pick(rng)));
  return words;
}

// `needed` words of the configured text (cycled when short) and where they came from.
absl::StatusOr<std::vector<std::string>> LoadWords(const E2eBenchConfig& cfg, int64_t needed,
                                                   uint64_t seed, std::string* source) {
  absl::StatusOr<std::vector<std::string>> lines =
      cfg.text_file.empty() ? demo::ReadRLazyLoadStrings(demo::kJaneAustenRdb)
                            : demo::ReadTextLines(cfg.text_file);
  if (cfg.text_file.empty() && absl::IsNotFound(lines.status())) {
    *source = "synthetic Zipf words (r-cran-janeaustenr is not installed)";
    return SyntheticWords(needed, seed);
  }
  RETURN_IF_ERROR(lines.status());
  *source = cfg.text_file.empty() ? "Jane Austen's novels (r-cran-janeaustenr)" : cfg.text_file;
  const std::vector<std::string> corpus = demo::Words(*lines);
  if (corpus.empty()) return absl::InvalidArgumentError("e2e: the text has no words");
  std::vector<std::string> words;
  words.reserve(static_cast<size_t>(needed));
  while (static_cast<int64_t>(words.size()) < needed) {
    for (const std::string& w : corpus) {
      if (static_cast<int64_t>(words.size()) == needed) break;
      words.push_back(w);
    }
  }
  return words;
}

// Mean over rows of ||got - want|| / ||want||, each row head_dim wide.
double MeanRelativeError(const std::vector<float>& got, const std::vector<float>& want, int d) {
  const size_t rows = want.size() / static_cast<size_t>(d);
  double sum = 0;
  for (size_t r = 0; r < rows; ++r) {
    double num = 0, den = 0;
    for (int i = 0; i < d; ++i) {
      const double w = want[r * d + i];
      const double diff = got[r * d + i] - w;
      num += diff * diff;
      den += w * w;
    }
    sum += den > 0 ? std::sqrt(num / den) : 0.0;
  }
  return rows == 0 ? 0.0 : sum / static_cast<double>(rows);
}

void Accumulate(const client::StepStats& s, client::StepStats* total) {
  total->score_us += s.score_us;
  total->select_us += s.select_us;
  total->fetch_us += s.fetch_us;
  total->attend_us += s.attend_us;
  total->bytes_fetched += s.bytes_fetched;
  total->blocks_fetched += s.blocks_fetched;
  total->hit_clusters += s.hit_clusters;
  total->miss_clusters += s.miss_clusters;
  total->hit_tokens += s.hit_tokens;
  total->miss_tokens += s.miss_tokens;
  total->attended_tokens += s.attended_tokens;
}

absl::Status ValidateConfig(const E2eBenchConfig& c, const ClusterKvConfig& config) {
  if (c.layers < 1 || c.steps < 1 || c.host_capacity_mib < 1) {
    return absl::InvalidArgumentError("e2e: need layers >= 1, steps >= 1 and a host capacity");
  }
  if (c.context <= config.num_sink_tokens + config.num_prefill_clusters + config.token_budget) {
    return absl::InvalidArgumentError(
        "e2e: context must exceed sinks + prefill clusters + budget");
  }
  return config.Validate();
}

// One layer's full K/V in fp16, [kv_heads][capacity][d], growing with decode tokens: what full
// attention reads.
struct FullLayer {
  std::vector<uint8_t> keys;
  std::vector<uint8_t> values;
};

}  // namespace

absl::Status RunE2eBench(const BenchOptions& options) {
  const E2eBenchConfig& cfg = options.e2e;
  KvLayout layout = KvLayout::Llama3_8B();
  layout.num_layers = cfg.layers;
  ClusterKvConfig config;
  config.dense_layers.clear();  // every layer sparse: each timed layer recalls clusters
  config.num_prefill_clusters = cfg.centroids;
  config.kmeans_iterations = cfg.kmeans_iterations;
  config.token_budget = cfg.budget;
  RETURN_IF_ERROR(ValidateConfig(cfg, config));
  RETURN_IF_ERROR(layout.Validate());
  const int threads = ResolveThreads(options.threads);
  const int d = layout.head_dim;
  const int32_t heads = layout.num_kv_heads;
  const int32_t group = layout.GroupSize();
  const int64_t capacity = cfg.context + cfg.steps;
  const size_t esize = DTypeSize(layout.dtype);

  std::string source;
  ASSIGN_OR_RETURN(std::vector<std::string> words,
                   LoadWords(cfg, capacity, options.seed, &source));
  demo::TextKvModel model(layout, words, options.seed);
  std::cerr << "e2e: " << words.size() << " words from " << source << "\n";
  const int64_t stored_bytes = static_cast<int64_t>(
      storage::ClusterBlockBytes(cfg.context, d, layout.dtype) * heads * layout.num_layers);
  const int64_t host_mib = std::max<int64_t>(cfg.host_capacity_mib, 2 * (stored_bytes >> 20) + 64);
  ASSIGN_OR_RETURN(std::unique_ptr<BenchDaemon> daemon,
                   BenchDaemon::Start(options.daemon, "e2e", host_mib));

  client::ClientOptions co;
  co.target = daemon->target();
  co.tenant = "bench";
  co.config = config;
  co.backend = "cpu";
  co.threads = threads;
  co.call_timeout = absl::Seconds(120);
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, client::Client::Connect(co));
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> seq,
                   client->OpenSequence("e2e-bench", layout));

  // Prefill: the text model's K/V, kept whole in fp16 for the baseline and offloaded.
  std::vector<FullLayer> full(static_cast<size_t>(layout.num_layers));
  const Clock::time_point prefill_start = Clock::now();
  {
    std::vector<float> k32(static_cast<size_t>(heads) * cfg.context * d);
    std::vector<float> v32(k32.size());
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      model.Fill(l, 0, cfg.context, k32.data(), v32.data(), threads);
      FullLayer& f = full[l];
      f.keys.resize(static_cast<size_t>(heads) * capacity * d * esize);
      f.values.resize(f.keys.size());
      for (int32_t h = 0; h < heads; ++h) {
        const size_t src = static_cast<size_t>(h) * cfg.context * d;
        const size_t dst = static_cast<size_t>(h) * capacity * d * esize;
        ConvertFromFloat(&k32[src], cfg.context * d, layout.dtype, &f.keys[dst]);
        ConvertFromFloat(&v32[src], cfg.context * d, layout.dtype, &f.values[dst]);
      }
      Tensor3View keys(f.keys.data(), layout.dtype, {heads, cfg.context, d});
      Tensor3View values(f.values.data(), layout.dtype, {heads, cfg.context, d});
      keys.strides = {capacity * d, d};
      values.strides = {capacity * d, d};
      RETURN_IF_ERROR(seq->OffloadPrefill(l, keys, values));
      std::cerr << "e2e: prefill layer " << l + 1 << "/" << layout.num_layers << " offloaded\n";
    }
  }
  const double prefill_s = MicrosSince(prefill_start) * 1e-6;

  // Decode steps.
  std::vector<double> sparse_us, full_us, first_step_sparse_us, append_us;
  client::StepStats totals;
  double error_sum = 0;
  std::vector<float> q(static_cast<size_t>(layout.num_q_heads) * d);
  std::vector<float> sparse(q.size()), reference(q.size());
  std::vector<float> k1(static_cast<size_t>(heads) * d), v1(k1.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (int32_t s = 0; s < cfg.steps; ++s) {
    const int64_t pos = cfg.context + s;
    seq->BeginStep();
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      model.Fill(l, pos, pos + 1, k1.data(), v1.data(), 1);
      FullLayer& f = full[l];
      for (int32_t h = 0; h < heads; ++h) {
        const size_t at = (static_cast<size_t>(h) * capacity + pos) * d * esize;
        ConvertFromFloat(&k1[static_cast<size_t>(h) * d], d, layout.dtype, &f.keys[at]);
        ConvertFromFloat(&v1[static_cast<size_t>(h) * d], d, layout.dtype, &f.values[at]);
      }
      Clock::time_point t0 = Clock::now();
      RETURN_IF_ERROR(seq->AppendToken(l, ConstMatrixView(k1.data(), heads, d),
                                       ConstMatrixView(v1.data(), heads, d)));
      append_us.push_back(MicrosSince(t0));
      model.Query(l, pos, q.data());

      client::StepStats stats;
      t0 = Clock::now();
      RETURN_IF_ERROR(seq->Attend(l, ConstMatrixView(q.data(), layout.num_q_heads, d),
                                  MatrixView(sparse.data(), layout.num_q_heads, d), &stats));
      const double us = MicrosSince(t0);
      (s == 0 ? first_step_sparse_us : sparse_us).push_back(us);
      Accumulate(stats, &totals);

      std::vector<gpu::AttentionTask> tasks(static_cast<size_t>(heads));
      for (int32_t h = 0; h < heads; ++h) {
        const size_t base = static_cast<size_t>(h) * capacity * d * esize;
        tasks[h].queries = ConstMatrixView(&q[static_cast<size_t>(h) * group * d], group, d);
        tasks[h].spans = {gpu::KvSpan{ConstMatrixView(&f.keys[base], layout.dtype, pos + 1, d),
                                      ConstMatrixView(&f.values[base], layout.dtype, pos + 1, d)}};
        tasks[h].scale = scale;
        tasks[h].out = MatrixView(&reference[static_cast<size_t>(h) * group * d], group, d);
      }
      t0 = Clock::now();
      RETURN_IF_ERROR(gpu::AttentionBatch(tasks, exec));
      full_us.push_back(MicrosSince(t0));
      error_sum += MeanRelativeError(sparse, reference, d);
    }
    std::cerr << "e2e: step " << s + 1 << "/" << cfg.steps << " done\n";
  }
  // With one step only, its (cold-cache) samples are all there is.
  if (sparse_us.empty()) sparse_us = first_step_sparse_us;
  const double samples = static_cast<double>(cfg.steps) * layout.num_layers;
  const double mean_error = error_sum / samples;
  if (!std::isfinite(mean_error)) return absl::InternalError("e2e: attention error not finite");
  const double hit_rate = seq->cache_hit_rate();
  RETURN_IF_ERROR(seq->Close(/*drop=*/true));
  seq.reset();
  client.reset();
  RETURN_IF_ERROR(daemon->Stop());

  // The baseline's samples cover every step; ours leave out the first (cold cache) step,
  // reported on its own.
  Json params = {{"context", cfg.context},
                 {"layers", layout.num_layers},
                 {"steps", cfg.steps},
                 {"budget", config.token_budget},
                 {"prefill_clusters", config.num_prefill_clusters},
                 {"sinks", config.num_sink_tokens},
                 {"recent_window", config.recluster_interval},
                 {"kv_heads", heads},
                 {"q_heads", layout.num_q_heads},
                 {"head_dim", d},
                 {"kv_dtype", "fp16"},
                 {"threads", threads},
                 {"dense_layers", "none (every layer sparse)"}};
  ResultRow row =
      TimeRow("clusterkv_e2e_step_cpu", std::move(params), "us",
              TimingStats::FromSamples(sparse_us), "full_attention_cpu",
              TimingStats::FromSamples(full_us));
  row.extra["timed_per"] = "one layer of one decode step (Sequence::Attend incl. gRPC fetch)";
  row.extra["first_step_excluded"] = cfg.steps > 1;
  row.extra["first_step_p50_us"] = Percentile(first_step_sparse_us, 0.5);
  row.extra["score_us_mean"] = static_cast<double>(totals.score_us) / samples;
  row.extra["select_us_mean"] = static_cast<double>(totals.select_us) / samples;
  row.extra["fetch_us_mean"] = static_cast<double>(totals.fetch_us) / samples;
  row.extra["attend_us_mean"] = static_cast<double>(totals.attend_us) / samples;
  row.extra["fetched_kib_mean"] = static_cast<double>(totals.bytes_fetched) / 1024.0 / samples;
  row.extra["blocks_fetched_mean"] = static_cast<double>(totals.blocks_fetched) / samples;
  row.extra["attended_tokens_mean"] = static_cast<double>(totals.attended_tokens) / samples;
  row.extra["cache_hit_rate"] = hit_rate;
  row.extra["append_us_p50"] = Percentile(append_us, 0.5);
  row.extra["attention_rel_error_mean"] = mean_error;
  row.extra["prefill_s"] = prefill_s;
  row.extra["text"] = source;
  row.extra["backend"] = "cpu";
  Report report("e2e");
  report.Add(std::move(row));
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
