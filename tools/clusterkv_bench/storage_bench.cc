// `clusterkv_bench storage`: the storage tiers (DESIGN.md section 6) against the raw costs under
// them, all in one process and on the same seeded random blocks:
//   host   TieredStore::PutBlock / ReadBlock (write-back, no background eviction) vs a cold
//          memcpy of the same bytes (source and destination rings of --storage_cold_bytes).
//   ssd    SsdTier::PutBlock (unsynced) / GetBlockInto vs a raw rocksdb::DB with the same
//          BlobDB options doing Put / Get (into a PinnableSlice, copied to the same buffer).
//   sync   TieredStore::PutBlock with write_through = true vs raw Put with WriteOptions.sync.
//   evict  TieredStore::EvictToLowWatermark() of a full host tier vs raw unsynced Put of the
//          same bytes.
// Bandwidth rows: ratio = value / baseline_value (> 1 is better). Per-op p50/p99 latencies are
// over every op of every timed pass; the eviction row's are over whole passes.
//
// Every database lives in a fresh scratch directory under --storage_dir, removed at the end.
// Reads come from the OS page cache (the data was just written; no O_DIRECT), for both sides.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/ids.h"
#include "core/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/internal/rocksdb_status.h"
#include "storage/key_codec.h"
#include "storage/ssd_tier.h"
#include "storage/tiered_store.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_buffers.h"
#include "tools/clusterkv_bench/bench_report.h"

namespace clusterkv::bench {
namespace {

using storage::BlockKey;
using storage::SsdTier;
using storage::TieredStore;
using Clock = std::chrono::steady_clock;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;
constexpr double kGB = 1e9;
constexpr double kMB = 1e6;
constexpr int64_t kRocksDbWriteBufferBytes = 64 * kMiB;  // SsdTierOptions' default
constexpr uint64_t kMinBlobBytes = 4096;                 // SsdTierOptions' default

// A raw rocksdb::DB (default column family) with the SSD tier's block-family options: BlobDB
// for values >= 4 KiB, no blob compression, the same write buffer. Owns the DB.
class RawDb {
 public:
  static absl::StatusOr<std::unique_ptr<RawDb>> Open(const std::string& path) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.write_buffer_size = static_cast<size_t>(kRocksDbWriteBufferBytes);
    options.enable_blob_files = true;
    options.min_blob_size = kMinBlobBytes;
    options.enable_blob_garbage_collection = true;
    options.blob_compression_type = rocksdb::kNoCompression;
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
    if (!s.ok()) {
      return storage::internal::FromRocksDbStatus(s, absl::StrCat("opening raw RocksDB at ", path));
    }
    return std::unique_ptr<RawDb>(new RawDb(std::unique_ptr<rocksdb::DB>(raw)));
  }

  absl::Status Put(const std::string& key, absl::Span<const uint8_t> value, bool sync) {
    rocksdb::WriteOptions w;
    w.sync = sync;
    const rocksdb::Slice v(reinterpret_cast<const char*>(value.data()), value.size());
    return storage::internal::FromRocksDbStatus(db_->Put(w, key, v), "raw RocksDB put");
  }
  // Reads the value into dst (its size must match).
  absl::Status GetInto(const std::string& key, absl::Span<uint8_t> dst) {
    rocksdb::PinnableSlice value;
    const rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), key, &value);
    if (!s.ok()) return storage::internal::FromRocksDbStatus(s, "raw RocksDB get");
    if (value.size() != dst.size()) return absl::InternalError("raw RocksDB: value size differs");
    std::memcpy(dst.data(), value.data(), dst.size());
    return absl::OkStatus();
  }
  absl::Status Flush() {
    return storage::internal::FromRocksDbStatus(db_->Flush(rocksdb::FlushOptions()),
                                                "raw RocksDB flush");
  }

 private:
  explicit RawDb(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
  std::unique_ptr<rocksdb::DB> db_;
};

// Timings of one variant at one parameter point.
struct Series {
  std::vector<double> op_us;       // every op of every timed pass
  std::vector<double> pass_rates;  // bytes per second / unit, one per timed pass
  std::vector<double> pass_us;     // wall time of each timed pass
};

// Runs op(i) for i in [0, n), timing each op and the pass; records into `out` unless null
// (an untimed warmup pass). Returns the first error of op.
absl::Status TimedPass(int64_t n, int64_t block_bytes, double unit_bytes,
                       const std::function<absl::Status(int64_t)>& op, Series* out) {
  std::vector<double> ops;
  ops.reserve(static_cast<size_t>(n));
  const Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    const Clock::time_point t0 = Clock::now();
    RETURN_IF_ERROR(op(i));
    ops.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  if (out != nullptr) {
    out->op_us.insert(out->op_us.end(), ops.begin(), ops.end());
    out->pass_us.push_back(us);
    out->pass_rates.push_back(static_cast<double>(n * block_bytes) / (us * 1e-6) / unit_bytes);
  }
  return absl::OkStatus();
}

// A higher-is-better bandwidth row: value = median pass rate of ours, baseline_value = the
// baseline's; p50/p99 = ours per op, the baseline's in extra.
ResultRow BandwidthRow(std::string variant, Json params, std::string unit, const Series& ours,
                       std::string baseline, const Series& base) {
  ResultRow row =
      HigherBetterRow(std::move(variant), std::move(params), Percentile(ours.pass_rates, 0.5),
                      std::move(unit), std::move(baseline), Percentile(base.pass_rates, 0.5));
  row.p50_us = Percentile(ours.op_us, 0.5);
  row.p99_us = Percentile(ours.op_us, 0.99);
  row.extra["baseline_p50_us"] = Percentile(base.op_us, 0.5);
  row.extra["baseline_p99_us"] = Percentile(base.op_us, 0.99);
  row.extra["repeats"] = ours.pass_rates.size();
  return row;
}

BlockKey MakeKey(const SequenceKey& sequence, int64_t i) {
  BlockKey key;
  key.sequence = sequence;
  key.cluster.head = HeadId{0, 0};
  key.cluster.cluster = static_cast<int32_t>(i);
  return key;
}

SequenceKey PassSequence(absl::string_view phase, int64_t block_bytes, int pass) {
  return SequenceKey{"bench", absl::StrCat(phase, "-", block_bytes, "-", pass)};
}

absl::Status CheckSlot(Ring& got, Ring& want, int64_t i, int64_t block, absl::string_view what) {
  if (std::memcmp(got.Slot(i, block), want.Slot(i, block), static_cast<size_t>(block)) != 0) {
    return absl::InternalError(absl::StrCat("storage: ", what, " returned different bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const StorageBenchConfig& c) {
  auto positive = [](const std::vector<int64_t>& v) {
    return !v.empty() && std::all_of(v.begin(), v.end(), [](int64_t b) { return b > 0; });
  };
  if (!positive(c.host_block_bytes) || !positive(c.ssd_block_bytes) || c.evict_block_bytes <= 0) {
    return absl::InvalidArgumentError("storage: block sizes must be positive and non-empty");
  }
  int64_t largest = c.evict_block_bytes;
  for (int64_t b : c.host_block_bytes) largest = std::max(largest, b);
  for (int64_t b : c.ssd_block_bytes) largest = std::max(largest, b);
  if (c.cold_bytes < largest) {
    return absl::InvalidArgumentError("storage: cold_bytes must hold the largest block");
  }
  if (c.host_total_bytes < largest || c.ssd_total_bytes < largest || c.sync_total_bytes < largest) {
    return absl::InvalidArgumentError("storage: every total must hold at least one block");
  }
  if (c.evict_capacity_bytes < 4 * c.evict_block_bytes) {
    return absl::InvalidArgumentError("storage: evict_capacity must hold >= 4 blocks");
  }
  return absl::OkStatus();
}

// Everything a phase needs.
struct Context {
  const BenchOptions& options;
  const StorageBenchConfig& cfg;
  const ScratchDir& dir;
  Ring& pool;  // the blocks' bytes (seeded random)
  Ring& ring;  // destination of reads and of the memcpy baseline
  Report& report;
  int passes() const { return options.warmup + options.repeats; }
  bool timed(int pass) const { return pass >= options.warmup; }
};

// 1. Host tier put/get vs cold memcpy.
absl::Status RunHostPhase(Context& ctx) {
  storage::TieredStoreOptions so;
  so.path = ctx.dir.Sub("host");
  // Room for every block of a pass without eviction (passes drop their blocks).
  so.host_capacity_bytes =
      static_cast<uint64_t>(std::max<int64_t>(1024 * kMiB, 2 * ctx.cfg.host_total_bytes));
  so.background_eviction = false;
  so.write_through = false;
  ASSIGN_OR_RETURN(std::unique_ptr<TieredStore> store, TieredStore::Open(so));
  for (int64_t bs : ctx.cfg.host_block_bytes) {
    const int64_t n = ctx.cfg.host_total_bytes / bs;
    std::cerr << "storage: host tier, " << SizeText(bs) << " blocks x " << n << "\n";
    Series put, get, copy;
    for (int pass = 0; pass < ctx.passes(); ++pass) {
      const SequenceKey seq = PassSequence("host", bs, pass);
      Series* sink = ctx.timed(pass) ? &put : nullptr;
      RETURN_IF_ERROR(TimedPass(
          n, bs, kGB,
          [&](int64_t i) {
            return store->PutBlock(MakeKey(seq, i), absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs));
          },
          sink));
      RETURN_IF_ERROR(TimedPass(
          n, bs, kGB,
          [&](int64_t i) -> absl::Status {
            ASSIGN_OR_RETURN(
                uint64_t size,
                store->ReadBlock(MakeKey(seq, i), absl::MakeSpan(ctx.ring.Slot(i, bs), bs)));
            if (static_cast<int64_t>(size) != bs) return absl::InternalError("size differs");
            return absl::OkStatus();
          },
          ctx.timed(pass) ? &get : nullptr));
      RETURN_IF_ERROR(CheckSlot(ctx.ring, ctx.pool, n - 1, bs, "host ReadBlock"));
      RETURN_IF_ERROR(TimedPass(
          n, bs, kGB,
          [&](int64_t i) {
            std::memcpy(ctx.ring.Slot(i, bs), ctx.pool.Slot(i, bs), static_cast<size_t>(bs));
            return absl::OkStatus();
          },
          ctx.timed(pass) ? &copy : nullptr));
      RETURN_IF_ERROR(store->DropSequence(seq));
    }
    const storage::StoreStats stats = store->Stats();
    if (stats.spilled_puts != 0 || stats.evictions != 0) {
      return absl::InternalError("storage: host phase spilled or evicted; capacity too small");
    }
    Json params = {{"block_bytes", bs},
                   {"blocks", n},
                   {"total_bytes", n * bs},
                   {"host_capacity_bytes", so.host_capacity_bytes},
                   {"cold_bytes", ctx.cfg.cold_bytes}};
    ResultRow p = BandwidthRow("host_put", params, "GB/s", put, "memcpy_cold", copy);
    p.extra["page_kind"] = std::string(store->arena().page_kind());
    ctx.report.Add(std::move(p));
    ctx.report.Add(BandwidthRow("host_get", params, "GB/s", get, "memcpy_cold", copy));
  }
  return store->Close();
}

// 2a. SSD tier put/get vs raw RocksDB, unsynced.
absl::Status RunSsdPhase(Context& ctx) {
  for (int64_t bs : ctx.cfg.ssd_block_bytes) {
    const int64_t n = ctx.cfg.ssd_total_bytes / bs;
    std::cerr << "storage: SSD tier vs raw RocksDB, " << SizeText(bs) << " blocks x " << n << "\n";
    const std::string ours_dir = absl::StrCat("ssd-", bs);
    const std::string raw_dir = absl::StrCat("raw-", bs);
    Series put, get, raw_put, raw_get;
    {
      storage::SsdTierOptions so;
      so.path = ctx.dir.Sub(ours_dir);
      so.min_blob_bytes = kMinBlobBytes;
      so.write_buffer_bytes = kRocksDbWriteBufferBytes;
      ASSIGN_OR_RETURN(std::unique_ptr<SsdTier> ssd, SsdTier::Open(so));
      ASSIGN_OR_RETURN(std::unique_ptr<RawDb> raw, RawDb::Open(ctx.dir.Sub(raw_dir)));
      for (int pass = 0; pass < ctx.passes(); ++pass) {
        const SequenceKey seq = PassSequence("ssd", bs, pass);
        const bool timed = ctx.timed(pass);
        // Each side's background flush finishes before the other side runs.
        RETURN_IF_ERROR(TimedPass(
            n, bs, kMB,
            [&](int64_t i) {
              return ssd->PutBlock(MakeKey(seq, i), absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs),
                                   /*sync=*/false);
            },
            timed ? &put : nullptr));
        RETURN_IF_ERROR(ssd->Flush());
        RETURN_IF_ERROR(TimedPass(
            n, bs, kMB,
            [&](int64_t i) {
              return raw->Put(storage::EncodeBlockKey(MakeKey(seq, i)),
                              absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs), /*sync=*/false);
            },
            timed ? &raw_put : nullptr));
        RETURN_IF_ERROR(raw->Flush());
        RETURN_IF_ERROR(TimedPass(
            n, bs, kMB,
            [&](int64_t i) {
              return ssd->GetBlockInto(MakeKey(seq, i), absl::MakeSpan(ctx.ring.Slot(i, bs), bs));
            },
            timed ? &get : nullptr));
        RETURN_IF_ERROR(CheckSlot(ctx.ring, ctx.pool, n - 1, bs, "SsdTier::GetBlockInto"));
        RETURN_IF_ERROR(TimedPass(
            n, bs, kMB,
            [&](int64_t i) {
              return raw->GetInto(storage::EncodeBlockKey(MakeKey(seq, i)),
                                  absl::MakeSpan(ctx.ring.Slot(i, bs), bs));
            },
            timed ? &raw_get : nullptr));
      }
    }
    ctx.dir.RemoveSub(ours_dir);
    ctx.dir.RemoveSub(raw_dir);
    Json params = {{"block_bytes", bs}, {"blocks", n}, {"total_bytes", n * bs}, {"sync", false}};
    ctx.report.Add(BandwidthRow("ssd_put", params, "MB/s", put, "rocksdb_put", raw_put));
    ResultRow g = BandwidthRow("ssd_get", params, "MB/s", get, "rocksdb_get", raw_get);
    g.extra["read_source"] = "OS page cache (after flush)";
    ctx.report.Add(std::move(g));
  }
  return absl::OkStatus();
}

// 2b. Write-through TieredStore puts vs raw RocksDB synced puts.
absl::Status RunSyncPhase(Context& ctx) {
  for (int64_t bs : ctx.cfg.ssd_block_bytes) {
    const int64_t n = ctx.cfg.sync_total_bytes / bs;
    std::cerr << "storage: write-through vs raw synced RocksDB, " << SizeText(bs) << " blocks x "
              << n << "\n";
    const std::string ours_dir = absl::StrCat("sync-", bs);
    const std::string raw_dir = absl::StrCat("rawsync-", bs);
    Series put, raw_put;
    {
      storage::TieredStoreOptions so;
      so.path = ctx.dir.Sub(ours_dir);
      so.host_capacity_bytes =
          static_cast<uint64_t>(std::max<int64_t>(64 * kMiB, 2 * ctx.cfg.sync_total_bytes));
      so.background_eviction = false;
      so.write_through = true;
      ASSIGN_OR_RETURN(std::unique_ptr<TieredStore> store, TieredStore::Open(so));
      ASSIGN_OR_RETURN(std::unique_ptr<RawDb> raw, RawDb::Open(ctx.dir.Sub(raw_dir)));
      for (int pass = 0; pass < ctx.passes(); ++pass) {
        const SequenceKey seq = PassSequence("sync", bs, pass);
        const bool timed = ctx.timed(pass);
        RETURN_IF_ERROR(TimedPass(
            n, bs, kMB,
            [&](int64_t i) {
              return store->PutBlock(MakeKey(seq, i), absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs),
                                     /*write_through=*/true);
            },
            timed ? &put : nullptr));
        RETURN_IF_ERROR(TimedPass(
            n, bs, kMB,
            [&](int64_t i) {
              return raw->Put(storage::EncodeBlockKey(MakeKey(seq, i)),
                              absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs), /*sync=*/true);
            },
            timed ? &raw_put : nullptr));
        RETURN_IF_ERROR(store->DropSequence(seq));
      }
      RETURN_IF_ERROR(store->Close());
    }
    ctx.dir.RemoveSub(ours_dir);
    ctx.dir.RemoveSub(raw_dir);
    Json params = {{"block_bytes", bs}, {"blocks", n}, {"total_bytes", n * bs}, {"sync", true}};
    ctx.report.Add(BandwidthRow("tiered_put_write_through", std::move(params), "MB/s", put,
                                "rocksdb_put_sync", raw_put));
  }
  return absl::OkStatus();
}

// 3. EvictToLowWatermark of a full host tier vs raw unsynced puts of the same bytes.
absl::Status RunEvictPhase(Context& ctx) {
  const StorageBenchConfig& cfg = ctx.cfg;
  const int64_t bs = cfg.evict_block_bytes;
  // Fill to ~98% of capacity: the slab allocator then has room for every block, so the fill
  // itself never evicts (checked below).
  const int64_t fill = cfg.evict_capacity_bytes * 98 / 100 / bs;
  // EvictDownTo frees least recently recalled blocks while host bytes exceed the target.
  const int64_t low_bytes =
      static_cast<int64_t>(0.5 * static_cast<double>(cfg.evict_capacity_bytes));
  const int64_t expected_blocks = std::max<int64_t>(0, fill - low_bytes / bs);
  if (expected_blocks == 0) return absl::InvalidArgumentError("storage: nothing to evict");
  std::cerr << "storage: eviction of a " << SizeText(cfg.evict_capacity_bytes) << " host tier, "
            << SizeText(bs) << " blocks x " << fill << "\n";
  Series evict, raw_put;
  uint64_t fill_evictions = 0;
  uint64_t evicted_total = 0;
  {
    storage::TieredStoreOptions so;
    so.path = ctx.dir.Sub("evict");
    so.host_capacity_bytes = static_cast<uint64_t>(cfg.evict_capacity_bytes);
    so.high_watermark = 0.9;
    so.low_watermark = 0.5;
    so.background_eviction = false;
    so.write_through = false;
    ASSIGN_OR_RETURN(std::unique_ptr<TieredStore> store, TieredStore::Open(so));
    ASSIGN_OR_RETURN(std::unique_ptr<RawDb> raw, RawDb::Open(ctx.dir.Sub("raw-evict")));
    for (int pass = 0; pass < ctx.passes(); ++pass) {
      const SequenceKey seq = PassSequence("evict", bs, pass);
      const bool timed = ctx.timed(pass);
      // The baseline first (then flushed, so its background work is over): the blocks the
      // eviction will move, i.e. the least recently put ones down to the low watermark.
      RETURN_IF_ERROR(TimedPass(
          expected_blocks, bs, kGB,
          [&](int64_t i) {
            return raw->Put(storage::EncodeBlockKey(MakeKey(seq, i)),
                            absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs), /*sync=*/false);
          },
          timed ? &raw_put : nullptr));
      RETURN_IF_ERROR(raw->Flush());
      const storage::StoreStats before_fill = store->Stats();
      for (int64_t i = 0; i < fill; ++i) {
        RETURN_IF_ERROR(
            store->PutBlock(MakeKey(seq, i), absl::MakeConstSpan(ctx.pool.Slot(i, bs), bs)));
      }
      const storage::StoreStats before = store->Stats();
      fill_evictions += before.evictions - before_fill.evictions;
      const Clock::time_point t0 = Clock::now();
      RETURN_IF_ERROR(store->EvictToLowWatermark());
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      const uint64_t evicted = store->Stats().evicted_bytes - before.evicted_bytes;
      if (evicted != static_cast<uint64_t>(expected_blocks * bs)) {
        return absl::InternalError(absl::StrCat("storage: eviction moved ", evicted,
                                                " bytes, expected ", expected_blocks * bs));
      }
      if (timed) {
        evict.pass_us.push_back(us);
        evict.pass_rates.push_back(static_cast<double>(evicted) / (us * 1e-6) / kGB);
        evicted_total += evicted;
      }
      // Empty the host tier for the next pass.
      RETURN_IF_ERROR(store->DropSequence(seq));
    }
    RETURN_IF_ERROR(store->Close());
  }
  ctx.dir.RemoveSub("evict");
  ctx.dir.RemoveSub("raw-evict");
  Json params = {{"block_bytes", bs},
                 {"host_capacity_bytes", cfg.evict_capacity_bytes},
                 {"filled_blocks", fill},
                 {"high_watermark", 0.9},
                 {"low_watermark", 0.5}};
  ResultRow row = HigherBetterRow("evict_to_low_watermark", std::move(params),
                                  Percentile(evict.pass_rates, 0.5), "GB/s", "rocksdb_put",
                                  Percentile(raw_put.pass_rates, 0.5));
  row.p50_us = Percentile(evict.pass_us, 0.5);
  row.p99_us = Percentile(evict.pass_us, 0.99);
  row.extra["p50_p99_of"] = "whole EvictToLowWatermark pass";
  row.extra["baseline_p50_us"] = Percentile(raw_put.pass_us, 0.5);
  row.extra["baseline_p99_us"] = Percentile(raw_put.pass_us, 0.99);
  row.extra["evicted_bytes_per_pass"] =
      evict.pass_rates.empty() ? 0 : evicted_total / evict.pass_rates.size();
  row.extra["fill_evictions"] = fill_evictions;
  row.extra["repeats"] = evict.pass_rates.size();
  ctx.report.Add(std::move(row));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunStorageBench(const BenchOptions& options) {
  const StorageBenchConfig& cfg = options.storage;
  RETURN_IF_ERROR(ValidateConfig(cfg));
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> dir, ScratchDir::Create(cfg.dir, "storage"));
  std::cerr << "storage: preparing " << SizeText(cfg.cold_bytes) << " of seeded random blocks\n";
  Ring pool(cfg.cold_bytes);
  pool.FillRandom(options.seed);
  Ring ring(cfg.cold_bytes);
  Report report("storage");
  Context ctx{options, cfg, *dir, pool, ring, report};
  RETURN_IF_ERROR(RunHostPhase(ctx));
  RETURN_IF_ERROR(RunSsdPhase(ctx));
  RETURN_IF_ERROR(RunSyncPhase(ctx));
  RETURN_IF_ERROR(RunEvictPhase(ctx));
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
