#include "tools/clusterkv_llama/reuse_bench.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/connection.h"
#include "client/internal/client_internals.h"
#include "client/sequence.h"
#include "core/status_macros.h"
#include "gpu/backend.h"
#include "tools/clusterkv_llama/forward.h"
#include "tools/clusterkv_llama/local_window.h"

namespace clusterkv::llama {
namespace {

int32_t Argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

double MillisSince(absl::Time start) { return absl::ToDoubleMilliseconds(absl::Now() - start); }

// Bytes the daemon's tiers hold (host + SSD) and its blocks, from its Stats.
absl::StatusOr<std::pair<uint64_t, uint64_t>> TierUsage(client::Client& client) {
  client::Connection* conn = client::ClientInternals::connection(client);
  if (conn == nullptr) return absl::FailedPreconditionError("no daemon connection");
  ASSIGN_OR_RETURN(v1::StatsResponse s, conn->Stats());
  return std::pair{s.host().bytes() + s.ssd().bytes(), s.host().blocks() + s.ssd().blocks()};
}

// The rows [begin, end) of every global layer of `prefill` and its local windows as they are:
// what a sequence continuing at `begin` offloads.
PrefillResult RowsFrom(const ModelConfig& c, const PrefillResult& prefill, int64_t begin,
                       int64_t end) {
  PrefillResult out;
  out.tokens = end - begin;
  const int64_t kv = c.KvDim();
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const size_t i = static_cast<size_t>(l);
    if (c.IsLocalLayer(l)) {
      out.keys.push_back(prefill.keys[i]);
      out.values.push_back(prefill.values[i]);
      continue;
    }
    out.keys.emplace_back(prefill.keys[i].begin() + begin * kv, prefill.keys[i].begin() + end * kv);
    out.values.emplace_back(prefill.values[i].begin() + begin * kv,
                            prefill.values[i].begin() + end * kv);
  }
  return out;
}

// Greedy decode of `steps` tokens after `first` (already generated at position `pos`).
absl::StatusOr<std::vector<int32_t>> Generate(const DecoderModel& model,
                                              AttentionBackend& backend, int32_t first,
                                              int64_t pos, int32_t steps) {
  std::vector<int32_t> tokens = {first};
  std::vector<float> logits(static_cast<size_t>(model.config().vocab));
  for (int32_t s = 1; s < steps; ++s) {
    RETURN_IF_ERROR(model.DecodeStep(tokens.back(), pos + s - 1, backend, logits.data(), nullptr,
                                     nullptr));
    tokens.push_back(Argmax(logits));
  }
  return tokens;
}

}  // namespace

absl::StatusOr<nlohmann::ordered_json> RunReuseBench(const ModelWeights& weights,
                                                     const std::vector<int32_t>& prompt,
                                                     const ReuseBenchOptions& o,
                                                     std::ostream& out) {
  const ModelConfig& c = weights.config;
  const std::vector<int32_t> global = c.GlobalLayers();
  const bool has_local = static_cast<int32_t>(global.size()) != c.n_layers;
  const int64_t g = o.config.prefill_segment_tokens;
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (g <= 0) return absl::InvalidArgumentError("--mode=reuse needs --prefill_segment_tokens");
  const int64_t shared = (n - 1) / g * g;  // at least one token left to run
  if (shared == 0) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt's ", n, " tokens hold no whole ",
                                                   g, "-token segment before its last token"));
  }
  const int threads = o.threads;
  DecoderModel model(&weights, threads);
  const KvLayout layout = c.ToKvLayout(o.kv_dtype);
  auto say = [&](const std::string& line) {
    if (o.progress != nullptr) *o.progress << line << "\n" << std::flush;
  };
  // The engine's own state: the local layers' windows (none for a model without local layers).
  auto windows_of = [&](AttentionBackend& backend) -> std::string {
    auto* local = dynamic_cast<LocalWindowBackend*>(&backend);
    return local != nullptr ? local->SaveWindows() : std::string();
  };

  // Full prefill: the baseline.
  say(absl::StrCat("full prefill of ", n, " tokens"));
  absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(PrefillResult prefill,
                   model.Prefill(prompt, nullptr, nullptr, nullptr, /*window_snapshot=*/shared));
  ASSIGN_OR_RETURN(ClusterKvSession full, OpenClusterKv(c, o, o.budget, "reuse-full", threads));
  RETURN_IF_ERROR(LoadPrefillInto(c, prefill, *full.backend));
  const int32_t full_first = Argmax(prefill.last_logits);
  const double full_ms = MillisSince(start);
  ASSIGN_OR_RETURN(std::vector<int32_t> full_tokens,
                   Generate(model, *full.backend, full_first, n, o.steps));
  // Parked: checkpointed with the engine's windows, then left.
  RETURN_IF_ERROR(full.sparse->sequence().Checkpoint(windows_of(*full.backend)));
  const std::string full_id = full.sparse->sequence().id();
  ASSIGN_OR_RETURN(const auto before_doc, TierUsage(*full.client));

  // The stored document: the prompt's first `shared` tokens, published with the local
  // windows at its end. Attention is causal, so its rows are the full prefill's, and its local
  // windows the prefill's snapshot at `shared`.
  say(absl::StrCat("publishing a document of ", shared, " tokens"));
  PrefillResult doc_prefill = RowsFrom(c, prefill, 0, shared);
  doc_prefill.tokens = shared;
  for (int32_t l = 0; l < c.n_layers && has_local; ++l) {
    if (!c.IsLocalLayer(l)) continue;
    doc_prefill.keys[static_cast<size_t>(l)] = prefill.snapshot_keys[static_cast<size_t>(l)];
    doc_prefill.values[static_cast<size_t>(l)] = prefill.snapshot_values[static_cast<size_t>(l)];
  }
  start = absl::Now();
  ASSIGN_OR_RETURN(ClusterKvSession doc, OpenClusterKv(c, o, o.budget, "reuse-doc", threads));
  RETURN_IF_ERROR(LoadPrefillInto(c, doc_prefill, *doc.backend));
  RETURN_IF_ERROR(doc.sparse->sequence().Publish(
      absl::MakeConstSpan(prompt.data(), static_cast<size_t>(shared)), o.model_name,
      has_local ? EncodeLocalWindows(c, doc_prefill) : std::string()));
  const double publish_ms = MillisSince(start);
  doc_prefill = PrefillResult();
  ASSIGN_OR_RETURN(const auto with_doc, TierUsage(*full.client));

  // Reuse: find the prefix, fork it, read it back, run only the rest.
  say("second request over the same document");
  struct Fork {
    ClusterKvSession session;
    int32_t first = 0;
    double ttft_ms = 0, read_ms = 0;
  };
  auto fork_request = [&](const std::string& name) -> absl::StatusOr<Fork> {
    Fork f;
    const absl::Time begin = absl::Now();
    ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client,
                     client::Client::Connect(ClientOptionsFor(c, o, o.budget, threads, 1)));
    ASSIGN_OR_RETURN(std::optional<client::Client::StoredPrefix> found,
                     client->FindPrefix(absl::MakeConstSpan(prompt.data(), prompt.size() - 1),
                                        o.model_name, layout));
    if (!found.has_value()) return absl::InternalError("the published document was not found");
    ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> seq,
                     client->OpenSequenceFrom(
                         absl::StrCat(o.sequence_prefix, "-", getpid(), "-", name), *found));
    const int64_t m = found->tokens;
    const absl::Time read_begin = absl::Now();
    PrefillResult prefix;
    prefix.tokens = m;
    prefix.keys.resize(static_cast<size_t>(c.n_layers));
    prefix.values.resize(prefix.keys.size());
    if (has_local) {
      if (seq->engine_state().empty()) {
        return absl::FailedPreconditionError("the document's local windows did not come back");
      }
      RETURN_IF_ERROR(DecodeLocalWindows(c, seq->engine_state(), &prefix));
    }
    for (size_t i = 0; i < global.size(); ++i) {
      std::vector<float>& k = prefix.keys[static_cast<size_t>(global[i])];
      std::vector<float>& v = prefix.values[static_cast<size_t>(global[i])];
      k.resize(static_cast<size_t>(m * c.KvDim()));
      v.resize(k.size());
      RETURN_IF_ERROR(seq->ReadTokens(static_cast<int32_t>(i), 0, m, k.data(), v.data()));
    }
    f.read_ms = MillisSince(read_begin);
    ASSIGN_OR_RETURN(PrefillResult rest,
                     model.Prefill(absl::MakeConstSpan(prompt.data() + m,
                                                       static_cast<size_t>(n - m)),
                                   nullptr, nullptr, &prefix));
    f.session = WrapClusterKv(c, std::move(client), std::move(seq), name);
    RETURN_IF_ERROR(LoadPrefillInto(c, RowsFrom(c, rest, m, n), *f.session.backend));
    f.first = Argmax(rest.last_logits);
    f.ttft_ms = MillisSince(begin);
    return f;
  };
  ASSIGN_OR_RETURN(Fork reuse, fork_request("reuse-fork"));
  ASSIGN_OR_RETURN(std::vector<int32_t> reuse_tokens,
                   Generate(model, *reuse.session.backend, reuse.first, n, o.steps));
  ASSIGN_OR_RETURN(const auto with_fork, TierUsage(*full.client));
  // Three more requests over the document: memory grows by their own tokens only.
  std::vector<Fork> more;
  for (int i = 0; i < 3; ++i) {
    ASSIGN_OR_RETURN(Fork f, fork_request(absl::StrCat("reuse-fork-", i)));
    more.push_back(std::move(f));
  }
  ASSIGN_OR_RETURN(const auto with_forks, TierUsage(*full.client));

  // Resume: the full run's sequence, left after its checkpoint, continued by a new client.
  say("resuming the parked full-prefill sequence");
  std::vector<float> logits(static_cast<size_t>(c.vocab));
  const int64_t next_pos = n + o.steps - 1;
  RETURN_IF_ERROR(model.DecodeStep(full_tokens.back(), next_pos, *full.backend, logits.data(),
                                   nullptr, nullptr));
  const int32_t want_next = Argmax(logits);
  start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<client::Client> resumer,
                   client::Client::Connect(ClientOptionsFor(c, o, o.budget, threads, 1)));
  ASSIGN_OR_RETURN(std::unique_ptr<client::Sequence> resumed, resumer->ResumeSequence(full_id));
  const std::string windows = resumed->engine_state();
  ClusterKvSession parked = WrapClusterKv(c, std::move(resumer), std::move(resumed), "resumed");
  if (auto* local = dynamic_cast<LocalWindowBackend*>(parked.backend.get()); local != nullptr) {
    RETURN_IF_ERROR(local->RestoreWindows(windows));
  }
  RETURN_IF_ERROR(model.DecodeStep(full_tokens.back(), next_pos, *parked.backend, logits.data(),
                                   nullptr, nullptr));
  const int32_t resumed_next = Argmax(logits);
  const double resume_ms = MillisSince(start);

  int32_t agree = 0;
  for (int32_t s = 0; s < o.steps; ++s) agree += full_tokens[s] == reuse_tokens[s];
  constexpr double kMiB = 1024.0 * 1024.0;
  const double doc_mib = (with_doc.first - before_doc.first) / kMiB;
  const double fork_mib = (with_fork.first - with_doc.first) / kMiB;
  const double forks_mib = (with_forks.first - with_fork.first) / kMiB / 3.0;
  char line[256];
  out << "reuse bench: " << n << "-token prompt, document of " << shared << " tokens, B="
      << o.budget << ", segments of " << g << " tokens\n";
  out << "run      time to first token   vs full prefill   greedy tokens equal to full\n";
  std::snprintf(line, sizeof(line), "full     %10.1f ms            1.00x\n", full_ms);
  out << line;
  std::snprintf(line, sizeof(line), "reuse    %10.1f ms        %8.2fx   %d/%d (read %.1f ms)\n",
                reuse.ttft_ms, full_ms / reuse.ttft_ms, agree, o.steps, reuse.read_ms);
  out << line;
  std::snprintf(line, sizeof(line), "resume   %10.1f ms        %8.2fx   next token %s\n",
                resume_ms, full_ms / resume_ms, resumed_next == want_next ? "equal" : "DIFFERS");
  out << line;
  std::snprintf(line, sizeof(line),
                "tiers: document %.1f MiB, first fork +%.2f MiB, 3 more forks +%.2f MiB each "
                "(own tokens only)\n",
                doc_mib, fork_mib, forks_mib);
  out << line;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  nlohmann::ordered_json common = {{"model", o.model_name}, {"prompt_tokens", n},
                                   {"shared_tokens", shared}, {"budget", o.budget},
                                   {"segment_tokens", g}};
  auto row = [&](const std::string& name, double ms) {
    nlohmann::ordered_json r = common;
    r["name"] = name;
    r["ttft_ms"] = ms;
    r["ratio_vs_full_prefill"] = full_ms / ms;
    return r;
  };
  rows.push_back(row("full_prefill", full_ms));
  nlohmann::ordered_json r = row("shared_document", reuse.ttft_ms);
  r["read_prefix_ms"] = reuse.read_ms;
  r["greedy_tokens_equal"] = agree;
  r["greedy_tokens"] = o.steps;
  double more_ms = 0;
  for (const Fork& f : more) more_ms += f.ttft_ms;
  r["later_forks_mean_ttft_ms"] = more_ms / static_cast<double>(more.size());
  rows.push_back(std::move(r));
  r = row("resume", resume_ms);
  r["next_token_equal"] = resumed_next == want_next;
  rows.push_back(std::move(r));
  r = common;
  r["name"] = "memory";
  r["document_tier_bytes"] = with_doc.first - before_doc.first;
  r["first_fork_tier_bytes"] = with_fork.first - with_doc.first;
  r["later_fork_tier_bytes_each"] = (with_forks.first - with_fork.first) / 3;
  r["publish_ms"] = publish_ms;
  rows.push_back(std::move(r));
  return rows;
}

}  // namespace clusterkv::llama
