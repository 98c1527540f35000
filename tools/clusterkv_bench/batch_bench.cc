// `clusterkv_bench batch`: decode throughput of a batch of sequences through libclusterkv
// against full attention, on the CPU. A real clusterkvd holds every sequence's blocks (over the
// UCX data plane where it is available); the demo's text model makes the K/V (Llama-3-8B
// geometry by default, every layer sparse), each sequence reading its own stretch of the
// text. Per decode step and layer, for the first b sequences (b in --batch_sizes):
//   batched    one Sequence::AttendBatch over the b sequences (one data-plane request for all
//              their misses),
//   unbatched  Sequence::Attend once per sequence, on a second set of sequences holding the
//              same K/V and receiving the same tokens and queries (so both sets stay in the
//              same state and their outputs must agree bit for bit; a disagreement fails the
//              bench), and
//   full       gpu::AttentionBatch over every token of each sequence (the same fp16 K/V),
// with the same threads. Throughput = b tokens per step / the step's summed attention time
// (the appends, identical in every variant, are left out), median over the steps after the
// first (cold cache). Rows: batched vs full and batched vs unbatched, per batch size.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
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

absl::StatusOr<KvLayout> BatchLayout(const BatchBenchConfig& cfg) {
  KvLayout layout = KvLayout::Llama3_8B();
  if (cfg.geometry == "smollm2") {  // SmolLM2-135M: 9 q heads over 3 kv heads of 64
    layout.num_q_heads = 9;
    layout.num_kv_heads = 3;
    layout.head_dim = 64;
  } else if (cfg.geometry == "gemma3") {  // Gemma 3 270M: 4 q heads over 1 kv head of 256
    layout.num_q_heads = 4;
    layout.num_kv_heads = 1;
    layout.head_dim = 256;
  } else if (cfg.geometry != "llama3_8b") {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch: --batch_geometry must be llama3_8b, smollm2 or gemma3, got '", cfg.geometry, "'"));
  }
  layout.num_layers = cfg.layers;
  RETURN_IF_ERROR(layout.Validate());
  return layout;
}

// One sequence's full fp16 K/V per layer, [kv_heads][capacity][d], growing with decode tokens.
struct FullKv {
  std::vector<std::vector<uint8_t>> keys, values;  // per layer
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

absl::Status RunBatchBench(const BenchOptions& options) {
  const BatchBenchConfig& cfg = options.batch;
  ASSIGN_OR_RETURN(const KvLayout layout, BatchLayout(cfg));
  if (cfg.batch_sizes.empty() || cfg.steps < 2 || cfg.context < 1) {
    return absl::InvalidArgumentError("batch: need batch sizes, steps >= 2 and a context");
  }
  const int32_t most = *std::max_element(cfg.batch_sizes.begin(), cfg.batch_sizes.end());
  if (*std::min_element(cfg.batch_sizes.begin(), cfg.batch_sizes.end()) < 1) {
    return absl::InvalidArgumentError("batch: batch sizes must be >= 1");
  }
  ClusterKvConfig config;
  config.dense_layers.clear();  // every layer sparse: each timed layer recalls clusters
  config.num_prefill_clusters = cfg.centroids;
  config.kmeans_iterations = cfg.kmeans_iterations;
  config.token_budget = cfg.budget;
  RETURN_IF_ERROR(config.Validate());
  if (cfg.context <= config.num_sink_tokens + config.num_prefill_clusters + config.token_budget) {
    return absl::InvalidArgumentError("batch: context must exceed sinks + clusters + budget");
  }
  const int threads = ResolveThreads(options.threads);
  const int d = layout.head_dim, heads = layout.num_kv_heads, group = layout.GroupSize();
  // Every batch size continues the same sequences: room for all their decode tokens.
  const int64_t capacity =
      cfg.context + int64_t{cfg.steps} * static_cast<int64_t>(cfg.batch_sizes.size());
  const size_t esize = DTypeSize(layout.dtype);

  // Text: sequence i reads words [i * capacity, (i + 1) * capacity).
  absl::StatusOr<std::vector<std::string>> lines =
      demo::ReadRLazyLoadStrings(demo::kJaneAustenRdb);
  RETURN_IF_ERROR(lines.status());
  std::vector<std::string> corpus = demo::Words(*lines);
  if (corpus.empty()) return absl::FailedPreconditionError("batch: the novels have no words");
  std::vector<std::string> words;
  while (static_cast<int64_t>(words.size()) < capacity * most) {
    for (const std::string& w : corpus) {
      if (static_cast<int64_t>(words.size()) == capacity * most) break;
      words.push_back(w);
    }
  }
  demo::TextKvModel model(layout, words, options.seed);

  const int64_t stored = static_cast<int64_t>(storage::ClusterBlockBytes(cfg.context, d,
                                                                        layout.dtype)) *
                         heads * layout.num_layers * most * 2;
  const int64_t host_mib = std::max<int64_t>(cfg.host_capacity_mib, 2 * (stored >> 20) + 64);
  ASSIGN_OR_RETURN(std::unique_ptr<BenchDaemon> daemon,
                   BenchDaemon::Start(options.daemon, "batch", host_mib));
  client::ClientOptions co;
  co.target = daemon->target();
  co.tenant = "bench";
  co.config = config;
  co.backend = "cpu";
  co.threads = threads;
  co.call_timeout = absl::Seconds(120);
  // Room in the registered region for every sequence's device caches (per layer: each kv
  // head's 2B tokens plus its largest clusters, sized generously), so none falls back to
  // ordinary memory and the gRPC path.
  const size_t per_layer = static_cast<size_t>(heads) * (2 * cfg.budget + 1024) * 2 * d * esize;
  co.ucx_region_bytes = std::max<size_t>(
      co.ucx_region_bytes, per_layer * layout.num_layers * most * 2 + (size_t{64} << 20));
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, client::Client::Connect(co));
  ASSIGN_OR_RETURN(gpu::ExecContext exec, gpu::MakeExecContext("cpu", threads));
  const std::string plane = client->data_plane_name();
  std::cerr << "batch: data plane " << plane << ", " << most << " x 2 sequences of "
            << cfg.context << " tokens, " << layout.num_layers << " layers\n";

  // Prefill: every sequence twice (the batched and the unbatched set).
  std::vector<std::unique_ptr<client::Sequence>> batched(most), single(most);
  std::vector<FullKv> full(most);
  {
    std::vector<float> k32(static_cast<size_t>(heads) * cfg.context * d), v32(k32.size());
    for (int32_t i = 0; i < most; ++i) {
      ASSIGN_OR_RETURN(batched[i], client->OpenSequence(absl::StrCat("batched-", i), layout));
      ASSIGN_OR_RETURN(single[i], client->OpenSequence(absl::StrCat("single-", i), layout));
      full[i].keys.resize(layout.num_layers);
      full[i].values.resize(layout.num_layers);
      for (int32_t l = 0; l < layout.num_layers; ++l) {
        model.Fill(l, i * capacity, i * capacity + cfg.context, k32.data(), v32.data(), threads);
        std::vector<uint8_t>& fk = full[i].keys[l];
        std::vector<uint8_t>& fv = full[i].values[l];
        fk.resize(static_cast<size_t>(heads) * capacity * d * esize);
        fv.resize(fk.size());
        for (int32_t h = 0; h < heads; ++h) {
          const size_t src = static_cast<size_t>(h) * cfg.context * d;
          const size_t dst = static_cast<size_t>(h) * capacity * d * esize;
          ConvertFromFloat(&k32[src], cfg.context * d, layout.dtype, &fk[dst]);
          ConvertFromFloat(&v32[src], cfg.context * d, layout.dtype, &fv[dst]);
        }
        Tensor3View keys(fk.data(), layout.dtype, {heads, cfg.context, d});
        Tensor3View values(fv.data(), layout.dtype, {heads, cfg.context, d});
        keys.strides = {capacity * d, d};
        values.strides = {capacity * d, d};
        RETURN_IF_ERROR(batched[i]->OffloadPrefill(l, keys, values));
        RETURN_IF_ERROR(single[i]->OffloadPrefill(l, keys, values));
      }
      std::cerr << "batch: sequence " << i + 1 << "/" << most << " prefilled\n";
    }
  }

  // Decode: each batch size continues the same sequences for cfg.steps more tokens.
  Report report("batch");
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  int64_t position = cfg.context;  // next decode position of every sequence
  for (int32_t b : cfg.batch_sizes) {
    std::vector<double> batched_us, single_us, full_us;
    int64_t blocks = 0, bytes = 0;
    double fetch_b = 0, fetch_s = 0;  // fetch time summed over the timed steps, us
    double plan_b = 0, plan_s = 0, attend_b = 0, attend_s = 0;  // score + select; attend
    std::vector<float> q(static_cast<size_t>(b) * layout.num_q_heads * d);
    std::vector<float> out_b(q.size()), out_s(q.size()), out_f(q.size());
    std::vector<float> k1(static_cast<size_t>(heads) * d), v1(k1.size());
    std::vector<client::StepStats> stats(b);
    for (int32_t s = 0; s < cfg.steps; ++s, ++position) {
      if (position >= capacity) {
        return absl::InvalidArgumentError("batch: steps x batch sizes exceed the capacity");
      }
      double step_b = 0, step_s = 0, step_f = 0;
      for (int32_t i = 0; i < b; ++i) {
        batched[i]->BeginStep();
        single[i]->BeginStep();
      }
      for (int32_t l = 0; l < layout.num_layers; ++l) {
        std::vector<client::BatchAttendItem> items(b);
        for (int32_t i = 0; i < b; ++i) {
          model.Fill(l, i * capacity + position, i * capacity + position + 1, k1.data(),
                     v1.data(), 1);
          for (int32_t h = 0; h < heads; ++h) {
            const size_t at = (static_cast<size_t>(h) * capacity + position) * d * esize;
            ConvertFromFloat(&k1[static_cast<size_t>(h) * d], d, layout.dtype,
                             &full[i].keys[l][at]);
            ConvertFromFloat(&v1[static_cast<size_t>(h) * d], d, layout.dtype,
                             &full[i].values[l][at]);
          }
          const ConstMatrixView kv(k1.data(), heads, d), vv(v1.data(), heads, d);
          RETURN_IF_ERROR(batched[i]->AppendToken(l, kv, vv));
          RETURN_IF_ERROR(single[i]->AppendToken(l, kv, vv));
          float* qi = &q[static_cast<size_t>(i) * layout.num_q_heads * d];
          model.Query(l, i * capacity + position, qi);
          items[i].sequence = batched[i].get();
          items[i].queries = ConstMatrixView(qi, layout.num_q_heads, d);
          items[i].out = MatrixView(&out_b[static_cast<size_t>(i) * layout.num_q_heads * d],
                                    layout.num_q_heads, d);
          items[i].stats = &stats[i];
        }
        // The two variants alternate which runs first, step by step.
        auto run_batched = [&]() -> absl::Status {
          const Clock::time_point t0 = Clock::now();
          RETURN_IF_ERROR(client::Sequence::AttendBatch(l, absl::MakeSpan(items)));
          step_b += MicrosSince(t0);
          for (int32_t i = 0; i < b; ++i) {
            blocks += stats[i].blocks_fetched;
            bytes += stats[i].bytes_fetched;
            if (s > 0) fetch_b += stats[i].fetch_us / static_cast<double>(b);
            if (s > 0) plan_b += stats[i].score_us + stats[i].select_us;
            if (s > 0) attend_b += stats[i].attend_us;
          }
          return absl::OkStatus();
        };
        auto run_single = [&]() -> absl::Status {
          const Clock::time_point t0 = Clock::now();
          for (int32_t i = 0; i < b; ++i) {
            const size_t at = static_cast<size_t>(i) * layout.num_q_heads * d;
            client::StepStats one;
            RETURN_IF_ERROR(single[i]->Attend(l, ConstMatrixView(&q[at], layout.num_q_heads, d),
                                              MatrixView(&out_s[at], layout.num_q_heads, d),
                                              &one));
            if (s > 0) fetch_s += one.fetch_us;
            if (s > 0) plan_s += one.score_us + one.select_us;
            if (s > 0) attend_s += one.attend_us;
          }
          step_s += MicrosSince(t0);
          return absl::OkStatus();
        };
        if (s % 2 == 0) {
          RETURN_IF_ERROR(run_batched());
          RETURN_IF_ERROR(run_single());
        } else {
          RETURN_IF_ERROR(run_single());
          RETURN_IF_ERROR(run_batched());
        }
        Clock::time_point t0 = Clock::now();
        for (int32_t i = 0; i < b; ++i) {
          std::vector<gpu::AttentionTask> tasks(static_cast<size_t>(heads));
          for (int32_t h = 0; h < heads; ++h) {
            const size_t base = static_cast<size_t>(h) * capacity * d * esize;
            const size_t qa = (static_cast<size_t>(i) * layout.num_q_heads + h * group) * d;
            tasks[h].queries = ConstMatrixView(&q[qa], group, d);
            tasks[h].spans = {gpu::KvSpan{
                ConstMatrixView(&full[i].keys[l][base], layout.dtype, position + 1, d),
                ConstMatrixView(&full[i].values[l][base], layout.dtype, position + 1, d)}};
            tasks[h].scale = scale;
            tasks[h].out = MatrixView(&out_f[qa], group, d);
          }
          RETURN_IF_ERROR(gpu::AttentionBatch(tasks, exec));
        }
        step_f += MicrosSince(t0);
        if (std::memcmp(out_b.data(), out_s.data(),
                        static_cast<size_t>(b) * layout.num_q_heads * d * sizeof(float)) != 0) {
          return absl::InternalError(absl::StrCat("batch: batched and unbatched outputs differ ",
                                                  "at batch ", b, ", layer ", l));
        }
      }
      if (s > 0) {  // the first step of a batch size fills the device caches
        batched_us.push_back(step_b);
        single_us.push_back(step_s);
        full_us.push_back(step_f);
      }
    }
    const double tps_b = b * 1e6 / Median(batched_us);
    const double tps_s = b * 1e6 / Median(single_us);
    const double tps_f = b * 1e6 / Median(full_us);
    Json params = {{"geometry", cfg.geometry},
                   {"batch", b},
                   {"context", cfg.context},
                   {"layers", layout.num_layers},
                   {"budget", cfg.budget},
                   {"kv_heads", heads},
                   {"q_heads", layout.num_q_heads},
                   {"head_dim", d},
                   {"threads", threads},
                   {"data_plane", plane},
                   {"steps_timed", static_cast<int>(batched_us.size())}};
    ResultRow vs_full = HigherBetterRow(absl::StrCat("clusterkv_batched_b", b), params, tps_b,
                                        "tokens/s", absl::StrCat("full_attention_b", b), tps_f);
    vs_full.extra["timed"] = "attention of every layer of one decode step (appends left out)";
    vs_full.extra["blocks_fetched_per_step"] =
        static_cast<double>(blocks) / static_cast<double>(cfg.steps);
    vs_full.extra["bytes_fetched_per_step"] =
        static_cast<double>(bytes) / static_cast<double>(cfg.steps);
    report.Add(std::move(vs_full));
    ResultRow vs_single =
        HigherBetterRow(absl::StrCat("clusterkv_batched_b", b), params, tps_b, "tokens/s",
                        absl::StrCat("clusterkv_unbatched_b", b), tps_s);
    const double timed = static_cast<double>(batched_us.size());
    vs_single.extra["fetch_ms_per_step_batched"] = fetch_b / timed / 1000.0;
    vs_single.extra["fetch_ms_per_step_unbatched"] = fetch_s / timed / 1000.0;
    vs_single.extra["fetch_meaning"] =
        "batched: each layer's shared fetch once; unbatched: every sequence's own fetch, summed";
    report.Add(std::move(vs_single));
    std::cerr << "batch: " << b << " sequences: batched " << tps_b << " tok/s, unbatched "
              << tps_s << ", full attention " << tps_f << "; fetch ms/step batched "
              << fetch_b / static_cast<double>(batched_us.size()) / 1000.0 << ", unbatched "
              << fetch_s / static_cast<double>(batched_us.size()) / 1000.0 << "; score+select "
              << plan_b / static_cast<double>(batched_us.size()) / 1000.0 << " / "
              << plan_s / static_cast<double>(batched_us.size()) / 1000.0 << ", attend "
              << attend_b / static_cast<double>(batched_us.size()) / 1000.0 << " / "
              << attend_s / static_cast<double>(batched_us.size()) / 1000.0 << "\n";
  }
  for (int32_t i = 0; i < most; ++i) {
    RETURN_IF_ERROR(batched[i]->Close(/*drop=*/true));
    RETURN_IF_ERROR(single[i]->Close(/*drop=*/true));
  }
  batched.clear();
  single.clear();
  client.reset();
  RETURN_IF_ERROR(daemon->Stop());
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
