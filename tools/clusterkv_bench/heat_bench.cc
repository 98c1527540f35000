// `clusterkv_bench heat`: the host tier's eviction policies on a real decode's recall pattern.
// A fetch trace recorded by clusterkvd --fetch_trace_file (server/fetch_trace.h) during a
// real-model decode (the default is the SmolLM2-135M trace in docs/results/) is replayed
// against two TieredStores with a real RocksDB SSD tier, in one process and on the same
// blocks: one evicting least recently recalled first (lru, the baseline) and one evicting
// coldest first by recall heat (heat). Each store's host tier holds --heat_host_fraction of
// the trace's block bytes, so the sequences do not fit and every policy has to choose.
//
// The replay does what the daemon does: B lines put blocks (write-back), each F line is one
// fetch request, recorded as a fetch (the heat) and served like the daemon's fetch path: the
// host-resident blocks pinned as one batch, the others pinned one by one (promoted from the SSD,
// evicting when the host tier is full). Eviction runs synchronously when an allocation finds the
// host tier full (no background thread), so both stores evict at the same points of the trace.
// Reported per policy: the host-tier hit rate over fetched blocks (a hit: resident when the
// fetch arrives), the fetch time p50/p99 and the total, SSD bytes read.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "storage/key_codec.h"
#include "storage/slab_allocator.h"
#include "storage/tiered_store.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_bench/bench_report.h"

namespace clusterkv::bench {
namespace {

using storage::BlockKey;
using storage::EvictionPolicy;
using storage::TieredStore;
using Clock = std::chrono::steady_clock;

// One line of the trace, in order.
struct TraceOp {
  bool fetch = false;
  int seq = 0;
  std::vector<ClusterId> clusters;  // a fetch's clusters, or the blocks of a B line
  std::vector<uint64_t> bytes;      // B: the size of each block
};

struct Trace {
  std::vector<TraceOp> ops;
  uint64_t block_bytes = 0;  // all blocks
  uint64_t blocks = 0;
  uint64_t fetches = 0;
  uint64_t recalls = 0;  // clusters named by fetches
  int sequences = 0;
};

absl::StatusOr<HeadId> ParseHead(absl::string_view text, int32_t* cluster) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  HeadId head;
  if (parts.size() != (cluster != nullptr ? 3u : 2u) || !absl::SimpleAtoi(parts[0], &head.layer) ||
      !absl::SimpleAtoi(parts[1], &head.kv_head) ||
      (cluster != nullptr && !absl::SimpleAtoi(parts[2], cluster))) {
    return absl::InvalidArgumentError(absl::StrCat("bad head '", text, "'"));
  }
  return head;
}

// Reads the format of server/fetch_trace.h, keeping at most `max_fetches` fetches (0: all).
absl::StatusOr<Trace> ReadTrace(const std::string& path, int64_t max_fetches) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the fetch trace ", path,
                                            " (record one with clusterkvd --fetch_trace_file)"));
  }
  Trace trace;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": ", why));
    };
    if (fields.size() < 3 || (fields[0] != "B" && fields[0] != "F")) return bad("unknown record");
    TraceOp op;
    op.fetch = fields[0] == "F";
    if (!absl::SimpleAtoi(fields[1], &op.seq) || op.seq < 0) return bad("bad sequence");
    trace.sequences = std::max(trace.sequences, op.seq + 1);
    if (!op.fetch) {
      int32_t first = 0;
      absl::StatusOr<HeadId> head = ParseHead(fields[2], &first);
      if (!head.ok() || fields.size() != 4) return bad("bad block line");
      for (absl::string_view b : absl::StrSplit(fields[3], ',')) {
        uint64_t bytes = 0;
        if (!absl::SimpleAtoi(b, &bytes) || bytes == 0) return bad("bad block size");
        op.clusters.push_back(ClusterId{*head, first + static_cast<int32_t>(op.bytes.size())});
        op.bytes.push_back(bytes);
        trace.block_bytes += bytes;
        ++trace.blocks;
      }
    } else {
      if (max_fetches > 0 && static_cast<int64_t>(trace.fetches) >= max_fetches) break;
      for (size_t i = 2; i < fields.size(); ++i) {
        std::pair<absl::string_view, absl::string_view> group = absl::StrSplit(fields[i], ':');
        absl::StatusOr<HeadId> head = ParseHead(group.first, nullptr);
        if (!head.ok()) return bad("bad fetch group");
        for (absl::string_view c : absl::StrSplit(group.second, ',')) {
          int32_t cluster = 0;
          if (!absl::SimpleAtoi(c, &cluster)) return bad("bad cluster");
          op.clusters.push_back(ClusterId{*head, cluster});
        }
      }
      ++trace.fetches;
      trace.recalls += op.clusters.size();
    }
    trace.ops.push_back(std::move(op));
  }
  if (trace.fetches == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no fetches"));
  return trace;
}

SequenceKey TraceSequence(int seq) { return SequenceKey{"bench", absl::StrCat("trace-", seq)}; }

struct ReplayResult {
  std::vector<double> fetch_us;  // one per fetch
  double total_s = 0;
  uint64_t hits = 0;    // fetched blocks resident in the host tier when the fetch arrived
  uint64_t misses = 0;  // fetched blocks read from the SSD
  storage::StoreStats stats;
  double HitRate() const {
    return hits + misses > 0 ? static_cast<double>(hits) / static_cast<double>(hits + misses) : 0;
  }
};

absl::StatusOr<ReplayResult> Replay(const Trace& trace, EvictionPolicy policy,
                                    uint64_t host_bytes, const HeatBenchConfig& c,
                                    const std::string& dir) {
  storage::TieredStoreOptions o;
  o.path = dir;
  o.host_capacity_bytes = host_bytes;
  o.huge_pages = false;
  o.background_eviction = false;  // evict when an allocation finds the tier full: same points
  o.eviction_policy = policy;
  o.heat.half_life_fetches = c.half_life_fetches;
  o.heat.put_score = c.put_score;
  ASSIGN_OR_RETURN(std::unique_ptr<TieredStore> store, TieredStore::Open(o));
  ReplayResult out;
  out.fetch_us.reserve(trace.fetches);
  std::vector<uint8_t> payload;
  const Clock::time_point start = Clock::now();
  for (const TraceOp& op : trace.ops) {
    const SequenceKey sequence = TraceSequence(op.seq);
    if (!op.fetch) {
      for (size_t i = 0; i < op.clusters.size(); ++i) {
        payload.assign(op.bytes[i], static_cast<uint8_t>(op.clusters[i].cluster));
        RETURN_IF_ERROR(store->PutBlock(BlockKey{sequence, op.clusters[i]}, payload));
      }
      continue;
    }
    const Clock::time_point t0 = Clock::now();
    store->RecordFetch(sequence, op.clusters);
    storage::PinnedBlockSet batch = store->PinResident(sequence, op.clusters);
    std::vector<storage::PinnedBlock> promoted;
    for (size_t i = 0; i < op.clusters.size(); ++i) {
      if (batch.data(i) != nullptr) {
        ++out.hits;
        continue;
      }
      ++out.misses;
      absl::StatusOr<storage::PinnedBlock> pin = store->Pin(BlockKey{sequence, op.clusters[i]});
      if (pin.ok()) {
        promoted.push_back(*std::move(pin));
      } else if (absl::IsResourceExhausted(pin.status())) {
        RETURN_IF_ERROR(store->GetBlock(BlockKey{sequence, op.clusters[i]}).status());
      } else {
        return pin.status();
      }
    }
    promoted.clear();
    out.fetch_us.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  out.total_s = std::chrono::duration<double>(Clock::now() - start).count();
  out.stats = store->Stats();
  RETURN_IF_ERROR(store->Close());
  return out;
}

Json PolicyJson(const ReplayResult& r) {
  const TimingStats t = TimingStats::FromSamples(r.fetch_us);
  double fetch_total_us = 0;
  for (double us : r.fetch_us) fetch_total_us += us;
  return Json{{"host_hit_rate", r.HitRate()},
              {"host_hits", r.hits},
              {"host_misses", r.misses},
              {"fetch_p50_us", t.p50_us},
              {"fetch_p99_us", t.p99_us},
              {"fetch_total_s", fetch_total_us / 1e6},
              {"replay_total_s", r.total_s},
              {"evictions", r.stats.evictions},
              {"evictions_never_recalled", r.stats.heat_evictions_never_recalled},
              {"promotions", r.stats.promotions},
              {"ssd_read_bytes", r.stats.ssd_io.bytes_read}};
}

}  // namespace

absl::Status RunHeatBench(const BenchOptions& options) {
  const HeatBenchConfig& c = options.heat;
  if (!(c.host_fraction > 0 && c.host_fraction < 1)) {
    return absl::InvalidArgumentError("--heat_host_fraction must be in (0, 1)");
  }
  if (!(c.half_life_fetches >= 1) || !(c.put_score >= 0)) {
    return absl::InvalidArgumentError(
        "--heat_half_life_fetches must be >= 1 and --heat_put_score >= 0");
  }
  ASSIGN_OR_RETURN(Trace trace, ReadTrace(c.trace, c.max_fetches));
  const uint64_t host_bytes = std::max<uint64_t>(
      4 * storage::SlabAllocator::kSlabBytes,
      static_cast<uint64_t>(c.host_fraction * static_cast<double>(trace.block_bytes)));
  std::cerr << "heat: " << trace.sequences << " sequences, " << trace.blocks << " blocks ("
            << SizeText(static_cast<int64_t>(trace.block_bytes)) << "), " << trace.fetches
            << " fetches recalling " << trace.recalls << " blocks; host tier "
            << SizeText(static_cast<int64_t>(host_bytes)) << "\n";
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch, ScratchDir::Create(c.dir, "heat"));
  // Each policy on a fresh store; the order alternates over repeats so neither always runs on
  // a warmer page cache. The reported run is the last of each.
  ReplayResult lru, heat;
  const int repeats = std::max(1, options.repeats);
  for (int r = 0; r < repeats; ++r) {
    for (int k = 0; k < 2; ++k) {
      const bool heat_now = (k == 0) == (r % 2 == 1);
      const std::string name = absl::StrCat(heat_now ? "heat" : "lru", r);
      ASSIGN_OR_RETURN(ReplayResult result,
                       Replay(trace, heat_now ? EvictionPolicy::kHeat : EvictionPolicy::kLru,
                              host_bytes, c, scratch->Sub(name)));
      scratch->RemoveSub(name);
      (heat_now ? heat : lru) = std::move(result);
    }
  }
  const Json params = {{"trace", c.trace},
                       {"sequences", trace.sequences},
                       {"blocks", trace.blocks},
                       {"block_bytes", trace.block_bytes},
                       {"fetches", trace.fetches},
                       {"recalls", trace.recalls},
                       {"host_capacity_bytes", host_bytes},
                       {"host_fraction", c.host_fraction},
                       {"half_life_fetches", c.half_life_fetches},
                       {"put_score", c.put_score}};
  Report report("heat");
  ResultRow hit = HigherBetterRow("heat_host_hit_rate", params, heat.HitRate(), "ratio", "lru",
                                  lru.HitRate());
  hit.extra["heat"] = PolicyJson(heat);
  hit.extra["lru"] = PolicyJson(lru);
  report.Add(std::move(hit));
  const TimingStats heat_t = TimingStats::FromSamples(heat.fetch_us);
  const TimingStats lru_t = TimingStats::FromSamples(lru.fetch_us);
  ResultRow per_fetch = TimeRow("heat_fetch", params, "us", heat_t, "lru", lru_t);
  per_fetch.extra["repeats"] = repeats;
  report.Add(std::move(per_fetch));
  double heat_total = 0, lru_total = 0;
  for (double us : heat.fetch_us) heat_total += us;
  for (double us : lru.fetch_us) lru_total += us;
  ResultRow total;
  total.variant = "heat_fetch_total";
  total.params = params;
  total.value = heat_total / 1e6;
  total.unit = "s";
  total.baseline = "lru";
  total.baseline_value = lru_total / 1e6;
  total.ratio = heat_total > 0 ? lru_total / heat_total : 0.0;
  total.ratio_meaning = std::string(kTimeRatioMeaning);
  report.Add(std::move(total));
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
