#include "tools/clusterkv_demo/demo.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/internal/client_internals.h"
#include "core/status_macros.h"
#include "core/tensor_view.h"
#include "gpu/attention.h"
#include "nlohmann/json.hpp"
#include "tools/clusterkv_demo/daemon_launcher.h"
#include "tools/clusterkv_demo/text_corpus.h"
#include "tools/clusterkv_demo/text_model.h"

namespace clusterkv::demo {
namespace {

double Mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// The full K/V of one layer in the sequence dtype, growing with decode tokens: the reference
// that full attention reads.
struct FullLayer {
  std::vector<uint8_t> keys;    // [kv_heads][capacity][d]
  std::vector<uint8_t> values;
};

struct StepTotals {
  double error_sum = 0;
  int64_t error_count = 0;
  client::StepStats stats;
  double full_ms = 0;
  double sparse_ms = 0;
};

void Accumulate(const client::StepStats& s, client::StepStats* total) {
  total->score_us += s.score_us;
  total->select_us += s.select_us;
  total->fetch_us += s.fetch_us;
  total->attend_us += s.attend_us;
  total->bytes_fetched += s.bytes_fetched;
  total->blocks_fetched += s.blocks_fetched;
  total->hit_tokens += s.hit_tokens;
  total->miss_tokens += s.miss_tokens;
  total->attended_tokens += s.attended_tokens;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& want, int64_t rows,
                     int d, double* count) {
  double sum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double num = 0, den = 0;
    for (int i = 0; i < d; ++i) {
      const double diff = double(got[r * d + i]) - want[r * d + i];
      num += diff * diff;
      den += double(want[r * d + i]) * want[r * d + i];
    }
    sum += den > 0 ? std::sqrt(num / den) : 0.0;
  }
  *count += static_cast<double>(rows);
  return sum;
}

absl::StatusOr<std::vector<std::string>> LoadWords(const DemoOptions& o, int64_t needed) {
  ASSIGN_OR_RETURN(std::vector<std::string> lines,
                   o.text_file.empty() ? ReadRLazyLoadStrings(kJaneAustenRdb)
                                       : ReadTextLines(o.text_file));
  std::vector<std::string> corpus = Words(lines);
  if (corpus.empty()) return absl::InvalidArgumentError("the text has no words");
  std::vector<std::string> words;
  words.reserve(static_cast<size_t>(needed));
  while (static_cast<int64_t>(words.size()) < needed) {  // cycle a short text
    for (const std::string& w : corpus) {
      if (static_cast<int64_t>(words.size()) == needed) break;
      words.push_back(w);
    }
  }
  return words;
}

}  // namespace

absl::Status RunDemo(const DemoOptions& o, std::ostream& out) {
  RETURN_IF_ERROR(o.layout.Validate());
  RETURN_IF_ERROR(o.config.Validate());
  if (o.context <= o.config.num_sink_tokens + o.config.num_prefill_clusters) {
    return absl::InvalidArgumentError("context must exceed sinks + prefill clusters");
  }
  if (o.steps < 1) return absl::InvalidArgumentError("steps must be >= 1");
  const KvLayout& layout = o.layout;
  const int d = layout.head_dim;
  const int64_t capacity = o.context + o.steps;
  const size_t esize = DTypeSize(layout.dtype);

  // 1. Text and model.
  const absl::Time t0 = absl::Now();
  ASSIGN_OR_RETURN(std::vector<std::string> words, LoadWords(o, capacity));
  TextKvModel model(layout, words, o.seed);
  out << absl::StreamFormat("text: %d words (%d distinct) from %s\n", words.size(),
                            model.vocabulary(),
                            o.text_file.empty() ? "Jane Austen's novels (r-cran-janeaustenr)"
                                                : o.text_file);

  // 2. Daemon.
  std::unique_ptr<DaemonLauncher> daemon;
  std::string target = o.target;
  std::string work_dir = o.work_dir;
  bool remove_work_dir = false;
  if (target.empty()) {
    if (work_dir.empty()) {
      std::string pattern = (std::filesystem::temp_directory_path() / "clusterkv_demo_XXXXXX");
      if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
      work_dir = pattern;
      remove_work_dir = !o.keep_work_dir;
    }
    const std::string socket = work_dir + "/clusterkvd.sock";
    ASSIGN_OR_RETURN(daemon, DaemonLauncher::Start(
                                 o.daemon_binary,
                                 {"--socket=" + socket, "--data_dir=" + work_dir + "/data",
                                  absl::StrCat("--host_capacity_mib=", o.host_capacity_mib)}));
    out << daemon->banner();
    target = "unix:" + socket;
  }
  absl::Status result = [&]() -> absl::Status {
    client::ClientOptions copt;
    copt.target = target;
    copt.tenant = o.tenant;
    copt.config = o.config;
    copt.backend = o.backend;
    copt.threads = o.threads;
    ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, client::Client::Connect(copt));
    client::Connection* conn = client::ClientInternals::connection(*client);
    const gpu::ExecContext& exec = client::ClientInternals::sequence_options(*client).exec;
    ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> seq,
                     client->OpenSequence(absl::StrCat("demo-", getpid()), layout));
    out << "data plane: " << client->data_plane_name();
    if (!client->data_plane_status().ok()) out << " (" << client->data_plane_status() << ")";
    out << "\n";
    out << absl::StreamFormat("sequence %s: %s, %d-token prefill, %d decode steps, budget %d\n",
                              seq->id(), layout.DebugString(), o.context, o.steps,
                              o.config.token_budget);

    // 3. Prefill: generate, keep the reference copy, offload (clustering happens in the client).
    std::vector<FullLayer> full(layout.num_layers);
    std::vector<float> k32(static_cast<size_t>(layout.num_kv_heads) * o.context * d);
    std::vector<float> v32(k32.size());
    const absl::Time prefill_start = absl::Now();
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      const absl::Time layer_start = absl::Now();
      model.Fill(l, 0, o.context, k32.data(), v32.data(), exec.CpuThreads());
      FullLayer& f = full[l];
      f.keys.resize(static_cast<size_t>(layout.num_kv_heads) * capacity * d * esize);
      f.values.resize(f.keys.size());
      for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
        const size_t src = static_cast<size_t>(h) * o.context * d;
        const size_t dst = static_cast<size_t>(h) * capacity * d * esize;
        ConvertFromFloat(&k32[src], o.context * d, layout.dtype, &f.keys[dst]);
        ConvertFromFloat(&v32[src], o.context * d, layout.dtype, &f.values[dst]);
      }
      Tensor3View keys(f.keys.data(), layout.dtype, {layout.num_kv_heads, o.context, d});
      Tensor3View values(f.values.data(), layout.dtype, {layout.num_kv_heads, o.context, d});
      keys.strides = {capacity * d, d};
      values.strides = {capacity * d, d};
      const int64_t before = seq->bytes_offloaded();
      RETURN_IF_ERROR(seq->OffloadPrefill(l, keys, values));
      out << absl::StreamFormat("prefill layer %2d/%d: %s, %7.1f MiB offloaded, %5.2f s\n", l + 1,
                                layout.num_layers,
                                o.config.IsDenseLayer(l) ? "dense (kept whole)  "
                                                         : "clustered (K-means)",
                                Mib(seq->bytes_offloaded() - before),
                                absl::ToDoubleSeconds(absl::Now() - layer_start));
      out.flush();
    }
    out << absl::StreamFormat("prefill done: %.1f MiB offloaded in %.1f s\n",
                              Mib(seq->bytes_offloaded()),
                              absl::ToDoubleSeconds(absl::Now() - prefill_start));

    // 4. Decode: append the token, attend sparsely through libclusterkv, compare with full.
    StepTotals totals;
    std::vector<float> q(static_cast<size_t>(layout.num_q_heads) * d);
    std::vector<float> sparse(q.size()), reference(q.size());
    std::vector<float> k1(static_cast<size_t>(layout.num_kv_heads) * d), v1(k1.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    const int group = layout.GroupSize();
    out << "\n step  position  attn_err  hit_rate  fetched_MiB  score_ms select_ms fetch_ms "
           "attend_ms | full_ms\n";
    for (int32_t s = 0; s < o.steps; ++s) {
      const int64_t pos = o.context + s;
      seq->BeginStep();
      client::StepStats step;
      double step_error = 0, step_count = 0, step_full_ms = 0;
      for (int32_t l = 0; l < layout.num_layers; ++l) {
        model.Fill(l, pos, pos + 1, k1.data(), v1.data(), 1);
        FullLayer& f = full[l];
        for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
          const size_t at = (static_cast<size_t>(h) * capacity + pos) * d * esize;
          ConvertFromFloat(&k1[h * d], d, layout.dtype, &f.keys[at]);
          ConvertFromFloat(&v1[h * d], d, layout.dtype, &f.values[at]);
        }
        RETURN_IF_ERROR(seq->AppendToken(l, ConstMatrixView(k1.data(), layout.num_kv_heads, d),
                                         ConstMatrixView(v1.data(), layout.num_kv_heads, d)));
        model.Query(l, pos, q.data());
        client::StepStats layer_stats;
        RETURN_IF_ERROR(seq->Attend(l, ConstMatrixView(q.data(), layout.num_q_heads, d),
                                    MatrixView(sparse.data(), layout.num_q_heads, d),
                                    &layer_stats));
        Accumulate(layer_stats, &step);
        // Reference: full attention over every token of the layer.
        std::vector<gpu::AttentionTask> tasks(layout.num_kv_heads);
        for (int32_t h = 0; h < layout.num_kv_heads; ++h) {
          const size_t base = static_cast<size_t>(h) * capacity * d * esize;
          tasks[h].queries = ConstMatrixView(&q[static_cast<size_t>(h) * group * d], group, d);
          tasks[h].spans = {gpu::KvSpan{
              ConstMatrixView(&f.keys[base], layout.dtype, pos + 1, d),
              ConstMatrixView(&f.values[base], layout.dtype, pos + 1, d)}};
          tasks[h].scale = scale;
          tasks[h].out = MatrixView(&reference[static_cast<size_t>(h) * group * d], group, d);
        }
        const absl::Time full_start = absl::Now();
        RETURN_IF_ERROR(gpu::AttentionBatch(tasks, exec));
        step_full_ms += absl::ToDoubleMilliseconds(absl::Now() - full_start);
        step_error += RelativeError(sparse, reference, layout.num_q_heads, d, &step_count);
      }
      const double hit = step.hit_tokens + step.miss_tokens == 0
                             ? 0.0
                             : double(step.hit_tokens) / double(step.hit_tokens + step.miss_tokens);
      out << absl::StreamFormat(
          " %4d  %8d  %8.4f  %7.1f%%  %11.2f  %8.2f %9.2f %8.2f %9.2f | %7.1f\n", s + 1, pos,
          step_error / step_count, 100 * hit, Mib(step.bytes_fetched), step.score_us / 1e3,
          step.select_us / 1e3, step.fetch_us / 1e3, step.attend_us / 1e3, step_full_ms);
      out.flush();
      totals.error_sum += step_error;
      totals.error_count += static_cast<int64_t>(step_count);
      totals.full_ms += step_full_ms;
      totals.sparse_ms +=
          (step.score_us + step.select_us + step.fetch_us + step.attend_us) / 1e3;
      Accumulate(step, &totals.stats);
    }

    // 5. Summary and the daemon's view.
    const double mean_error = totals.error_sum / static_cast<double>(totals.error_count);
    if (!std::isfinite(mean_error)) return absl::InternalError("attention error is not finite");
    ASSIGN_OR_RETURN(v1::StatsResponse stats, conn->Stats());
    out << absl::StreamFormat(
        "\nsummary: %d steps x %d layers; mean relative attention-output error vs full attention "
        "%.4f; device-cache hit rate %.1f%%; %.1f MiB fetched; per step: sparse path %.1f ms "
        "(score %.1f, select %.1f, fetch %.1f, attend %.1f), full attention %.1f ms\n",
        o.steps, layout.num_layers, mean_error, 100 * seq->cache_hit_rate(),
        Mib(totals.stats.bytes_fetched), totals.sparse_ms / o.steps,
        totals.stats.score_us / 1e3 / o.steps, totals.stats.select_us / 1e3 / o.steps,
        totals.stats.fetch_us / 1e3 / o.steps, totals.stats.attend_us / 1e3 / o.steps,
        totals.full_ms / o.steps);
    out << absl::StreamFormat(
        "daemon tiers: host %.1f MiB in %d blocks (capacity %.0f MiB, %d hits, %d misses); "
        "ssd %.1f MiB in %d blocks (%d hits); %d evictions, %d promotions, slab fragmentation "
        "%.1f%%\n",
        Mib(stats.host().bytes()), stats.host().blocks(), Mib(stats.host_capacity_bytes()),
        stats.host().hits(), stats.host().misses(), Mib(stats.ssd().bytes()),
        stats.ssd().blocks(), stats.ssd().hits(), stats.evictions(), stats.promotions(),
        100 * stats.slab_fragmentation());
    if (!o.json_path.empty()) {
      nlohmann::ordered_json j;
      j["bench"] = "demo";
      j["params"] = {{"context", o.context}, {"steps", o.steps}, {"layers", layout.num_layers},
                     {"budget", o.config.token_budget}};
      j["mean_attention_error"] = mean_error;
      j["cache_hit_rate"] = seq->cache_hit_rate();
      j["bytes_fetched"] = totals.stats.bytes_fetched;
      j["bytes_offloaded"] = seq->bytes_offloaded();
      j["sparse_step_ms"] = totals.sparse_ms / o.steps;
      j["full_attention_step_ms"] = totals.full_ms / o.steps;
      j["breakdown_ms"] = {{"score", totals.stats.score_us / 1e3 / o.steps},
                           {"select", totals.stats.select_us / 1e3 / o.steps},
                           {"fetch", totals.stats.fetch_us / 1e3 / o.steps},
                           {"attend", totals.stats.attend_us / 1e3 / o.steps}};
      j["daemon"] = {{"host_bytes", stats.host().bytes()}, {"ssd_bytes", stats.ssd().bytes()},
                     {"evictions", stats.evictions()}, {"promotions", stats.promotions()}};
      std::ofstream(o.json_path) << j.dump(2) << "\n";
    }
    RETURN_IF_ERROR(seq->Close(/*drop=*/true));
    out << absl::StreamFormat("total %.1f s\n", absl::ToDoubleSeconds(absl::Now() - t0));
    return absl::OkStatus();
  }();

  if (daemon != nullptr) {
    absl::StatusOr<int> exit_code = daemon->Stop();
    if (result.ok() && !exit_code.ok()) result = exit_code.status();
    if (result.ok() && *exit_code != 0) {
      result = absl::InternalError(absl::StrCat("clusterkvd exited with status ", *exit_code));
    }
    if (result.ok()) out << "clusterkvd stopped cleanly\n";
  }
  if (remove_work_dir) {
    std::error_code ec;
    std::filesystem::remove_all(work_dir, ec);
  }
  return result;
}

}  // namespace clusterkv::demo
