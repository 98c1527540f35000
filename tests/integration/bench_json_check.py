#!/usr/bin/python3
"""Checks clusterkv_bench's command line and the structure of its JSON reports.

  bench_json_check.py run BENCH SUBCOMMAND JSON_FILE  run `BENCH SUBCOMMAND --quick --json FILE`
                                                      and check the report's structure
  bench_json_check.py cli BENCH                       --help exits 0; bad subcommands exit 2

Structure only: timings vary from run to run and are never asserted.
"""
import json
import math
import numbers
import os
import subprocess
import sys

ROW_FIELDS = ("variant", "params", "value", "unit", "baseline", "baseline_value", "ratio",
              "ratio_meaning", "p50_us", "p99_us")
MACHINE_FIELDS = ("cpu", "cores", "memory_gib", "openblas_coretype")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_report(path, bench):
    with open(path) as f:
        report = json.load(f)
    if report.get("bench") != bench:
        fail("bench is %r, expected %r" % (report.get("bench"), bench))
    machine = report.get("machine")
    if not isinstance(machine, dict):
        fail("machine is not an object")
    for key in MACHINE_FIELDS:
        if key not in machine:
            fail("machine lacks %r" % key)
    if machine["openblas_coretype"] != os.environ.get("OPENBLAS_CORETYPE"):
        fail("machine.openblas_coretype %r differs from the environment"
             % machine["openblas_coretype"])
    results = report.get("results")
    if not isinstance(results, list) or not results:
        fail("results is not a non-empty list")
    for i, row in enumerate(results):
        for key in ROW_FIELDS:
            if key not in row:
                fail("results[%d] lacks %r" % (i, key))
        if not isinstance(row["variant"], str) or not row["variant"]:
            fail("results[%d].variant is not a non-empty string" % i)
        if not isinstance(row["params"], dict) or not row["params"]:
            fail("results[%d].params is not a non-empty object" % i)
        for key in ("unit", "baseline", "ratio_meaning"):
            if not isinstance(row[key], str) or not row[key]:
                fail("results[%d].%s is not a non-empty string" % (i, key))
        for key in ("value", "baseline_value", "ratio"):
            if not is_number(row[key]):
                fail("results[%d].%s is not a finite number: %r" % (i, key, row[key]))
        for key in ("p50_us", "p99_us"):
            if row[key] is not None and not is_number(row[key]):
                fail("results[%d].%s is neither null nor a number" % (i, key))
    if bench == "kmeans":
        for row in results:
            if row["unit"] != "mean_cos" and "objective_diff_pct" not in row:
                fail("kmeans time row lacks objective_diff_pct")
    if bench == "storage":
        check_storage(results)
    if bench == "fetch":
        check_fetch(results)
    if bench == "e2e":
        check_e2e(results)
    if bench == "soak":
        check_soak(results)
    if bench == "remote":
        check_remote(results)
    if bench == "heat":
        check_heat(results)
    print("ok: %s, %d rows" % (bench, len(results)))


REMOTE_VARIANTS = ("remote_cold", "remote_cold_grpc_pull", "remote_cold_ucx_vs_grpc_pull",
                   "remote_warm", "remote_cold_request", "remote_warm_request")


def check_remote(results):
    """Per block size: cold (UCX pull), cold (gRPC pull), their ratio, warm, and the two
    latency rows; every row names its block size."""
    sizes = set(row["params"].get("block_bytes") for row in results)
    for size in sizes:
        seen = [row["variant"] for row in results if row["params"].get("block_bytes") == size]
        if sorted(seen) != sorted(REMOTE_VARIANTS):
            fail("remote rows for %r blocks are %r, expected %r" % (size, seen, REMOTE_VARIANTS))
    for i, row in enumerate(results):
        if not is_number(row["params"].get("block_bytes")):
            fail("remote results[%d].params lacks block_bytes" % i)


STORAGE_VARIANTS = ("host_put", "host_get", "ssd_put", "ssd_get", "tiered_put_write_through",
                    "evict_to_low_watermark")


HEAT_VARIANTS = ("heat_host_hit_rate", "heat_fetch", "heat_fetch_total")
HEAT_POLICY_FIELDS = ("host_hit_rate", "host_hits", "host_misses", "fetch_p50_us",
                      "fetch_p99_us", "fetch_total_s", "evictions", "ssd_read_bytes")


def check_heat(results):
    """Heat eviction against LRU on the same trace: a hit-rate row carrying both policies'
    figures, a per-fetch time row and a total time row, all against lru."""
    seen = [row["variant"] for row in results]
    if seen != list(HEAT_VARIANTS):
        fail("heat variants are %r, expected %r" % (seen, HEAT_VARIANTS))
    for i, row in enumerate(results):
        if row["baseline"] != "lru":
            fail("heat results[%d] is not measured against lru" % i)
        for key in ("fetches", "blocks", "host_capacity_bytes", "half_life_fetches"):
            if not is_number(row["params"].get(key)):
                fail("heat results[%d].params lacks %s" % (i, key))
        if row["params"]["host_capacity_bytes"] >= row["params"]["block_bytes"]:
            fail("heat results[%d]: the host tier holds the whole trace" % i)
    hit = results[0]
    for policy in ("heat", "lru"):
        figures = hit.get(policy)
        if not isinstance(figures, dict):
            fail("heat hit-rate row lacks the %s figures" % policy)
        for key in HEAT_POLICY_FIELDS:
            if not is_number(figures.get(key)):
                fail("heat %s.%s is not a number" % (policy, key))
        if not 0.0 <= figures["host_hit_rate"] <= 1.0:
            fail("heat %s.host_hit_rate is not a fraction" % policy)
        if figures["host_hits"] + figures["host_misses"] != hit["params"]["recalls"]:
            fail("heat %s: hits + misses is not the number of recalled blocks" % policy)
    for key in ("p50_us", "p99_us", "baseline_p50_us", "baseline_p99_us"):
        if not is_number(results[1].get(key)):
            fail("heat_fetch.%s is not a number" % key)


def check_storage(results):
    """Every storage row is a bandwidth (higher is better) with its block size and latencies."""
    seen = set(row["variant"] for row in results)
    for variant in STORAGE_VARIANTS:
        if variant not in seen:
            fail("storage report lacks a %r row" % variant)
    for i, row in enumerate(results):
        if row["unit"] not in ("GB/s", "MB/s"):
            fail("storage results[%d].unit %r is not a bandwidth" % (i, row["unit"]))
        if not row["ratio_meaning"].startswith("value / baseline_value"):
            fail("storage results[%d] is not a higher-is-better row" % i)
        if not is_number(row["params"].get("block_bytes")):
            fail("storage results[%d].params lacks block_bytes" % i)
        for key in ("p50_us", "p99_us", "baseline_p50_us", "baseline_p99_us"):
            if not is_number(row.get(key)):
                fail("storage results[%d].%s is not a number" % (i, key))


def check_fetch(results):
    """gRPC recall rows per block size against cold memcpy, with a memcpy_stream row (the
    daemon's streaming copy) and a grpc_minimal row (a minimal raw-bytes gRPC stream) for each,
    and grpc_fetch against grpc_minimal; our UCX recall rows when the build has the UCX data
    plane; ucx_perftest rows when that tool exists."""
    grpc = [row for row in results if row["variant"] == "grpc_fetch"]
    if not grpc:
        fail("fetch report lacks grpc_fetch rows")
    ucx = [row for row in results if row["variant"] == "ucx_perftest_put"]
    if os.access("/usr/bin/ucx_perftest", os.X_OK) and len(ucx) != len(grpc):
        fail("fetch report has %d ucx_perftest_put rows for %d block sizes"
             % (len(ucx), len(grpc)))
    stream = [row for row in results if row["variant"] == "memcpy_stream"]
    if len(stream) != len(grpc):
        fail("fetch report has %d memcpy_stream rows for %d block sizes"
             % (len(stream), len(grpc)))
    for variant in ("grpc_minimal", "grpc_fetch_vs_minimal"):
        rows = [row for row in results if row["variant"] == variant]
        if len(rows) != len(grpc):
            fail("fetch report has %d %s rows for %d block sizes" % (len(rows), variant, len(grpc)))
    for i, row in enumerate(grpc):
        for key in ("grpc_minimal_gbps", "ratio_to_grpc_minimal"):
            if not is_number(row.get(key)):
                fail("grpc_fetch row %d: %s is not a number" % (i, key))
    for i, row in enumerate(results):
        if row["variant"] in ("grpc_fetch", "grpc_minimal"):
            for key in ("client_cpu_us_per_request", "server_cpu_us_per_request", "cpu_s_per_gb"):
                if not is_number(row.get(key)):
                    fail("%s row %d: %s is not a number" % (row["variant"], i, key))
        if row["variant"] == "grpc_fetch_vs_minimal":
            if not is_number(row.get("cpu_ratio_minimal_over_fetch")):
                fail("grpc_fetch_vs_minimal row %d lacks cpu_ratio_minimal_over_fetch" % i)
    for i, row in enumerate(results):
        if row["variant"] not in ("grpc_fetch", "grpc_minimal", "grpc_fetch_vs_minimal", "ucx",
                                  "ucx_perftest_put", "memcpy_stream"):
            fail("fetch results[%d] has unknown variant %r" % (i, row["variant"]))
        baseline = "grpc_minimal" if row["variant"] == "grpc_fetch_vs_minimal" else "memcpy_cold"
        if row["unit"] != "GB/s" or row["baseline"] != baseline:
            fail("fetch results[%d] is not a GB/s row against %s" % (i, baseline))
        if not row["ratio_meaning"].startswith("value / baseline_value"):
            fail("fetch results[%d] is not a higher-is-better row" % i)
        for key in ("block_bytes", "block_bytes_target", "tokens_per_block"):
            if not is_number(row["params"].get(key)):
                fail("fetch results[%d].params lacks %s" % (i, key))
    ours = [row for row in results
            if row["variant"] in ("grpc_fetch", "grpc_minimal", "grpc_fetch_vs_minimal", "ucx",
                                  "memcpy_stream")]
    for i, row in enumerate(ours):
        if not is_number(row["params"].get("clusters_per_request")):
            fail("%s row %d lacks params.clusters_per_request" % (row["variant"], i))
        for key in ("p50_us", "p99_us", "baseline_p50_us", "baseline_p99_us"):
            if not is_number(row.get(key)):
                fail("%s row %d: %s is not a number" % (row["variant"], i, key))
    for i, row in enumerate(ucx):
        if not isinstance(row.get("note"), str) or not row["note"]:
            fail("ucx_perftest_put row %d lacks its note (a peer tool, not our path)" % i)


E2E_EXTRA = ("score_us_mean", "select_us_mean", "fetch_us_mean", "attend_us_mean",
             "cache_hit_rate", "attention_rel_error_mean")


def check_e2e(results):
    """One time row: sparse decode step per layer vs full attention, with its breakdown."""
    for i, row in enumerate(results):
        if row["unit"] != "us" or row["baseline"] != "full_attention_cpu":
            fail("e2e results[%d] is not a time row against full_attention_cpu" % i)
        if not row["ratio_meaning"].startswith("baseline_value / value"):
            fail("e2e results[%d] is not a time-ratio row" % i)
        for key in ("context", "layers", "steps", "budget"):
            if not is_number(row["params"].get(key)):
                fail("e2e results[%d].params lacks %s" % (i, key))
        for key in ("p50_us", "p99_us") + E2E_EXTRA:
            if not is_number(row.get(key)):
                fail("e2e results[%d].%s is not a number" % (i, key))
        if not 0.0 <= row["cache_hit_rate"] <= 1.0:
            fail("e2e results[%d].cache_hit_rate %r is not a fraction" % (i, row["cache_hit_rate"]))


SOAK_VARIANTS = ("open", "put", "fetch", "fetch_missing", "close", "all")
SOAK_MIXED = ("mixed_host_fetch_p99", "mixed_paced_host_fetch_p99")


def check_soak(results):
    """One requests/s row per operation type and one for all, each against 1 client, with the
    N-client latencies and the baseline's; then the mixed workload's host-tier fetch p99 row
    against the same fetches alone."""
    seen = [row["variant"] for row in results]
    if sorted(seen) != sorted(SOAK_VARIANTS + SOAK_MIXED):
        fail("soak variants are %r, expected %r" % (seen, SOAK_VARIANTS + SOAK_MIXED))
    for i, row in enumerate(results):
        if not row["ratio_meaning"].startswith("value / baseline_value"):
            fail("soak results[%d] is not a higher-is-better row" % i)
        if row["variant"] in SOAK_MIXED:
            if row["baseline"] != "host_fetch_alone":
                fail("soak results[%d] is not measured against host_fetch_alone" % i)
            for key in ("hot_clients", "fetches_per_client", "blocks_per_fetch", "host_tier_mib"):
                if not is_number(row["params"].get(key)):
                    fail("soak results[%d].params lacks %s" % (i, key))
            for key in ("p50_us", "p99_us", "baseline_p50_us", "baseline_p99_us",
                        "p99_mixed_over_alone", "ssd_fetches", "appends", "slow_fetches"):
                if not is_number(row.get(key)):
                    fail("soak results[%d].%s is not a number" % (i, key))
            continue
        if row["unit"] != "req/s" or row["baseline"] != "1_client":
            fail("soak results[%d] is not a req/s row against 1_client" % i)
        for key in ("clients", "iterations_per_client", "blocks_per_sequence", "block_bytes"):
            if not is_number(row["params"].get(key)):
                fail("soak results[%d].params lacks %s" % (i, key))
        for key in ("p50_us", "p99_us", "baseline_p50_us", "baseline_p99_us", "requests"):
            if not is_number(row.get(key)):
                fail("soak results[%d].%s is not a number" % (i, key))


def run(bench_bin, sub, json_path):
    if os.path.exists(json_path):
        os.remove(json_path)
    proc = subprocess.run([bench_bin, sub, "--quick", "--json", json_path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(proc.stdout)
    if proc.returncode != 0:
        fail("%s exited %d" % (sub, proc.returncode))
    check_report(json_path, sub)


def cli(bench_bin):
    def call(*args):
        return subprocess.run([bench_bin] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)

    proc = call("--help")
    if proc.returncode != 0 or "kmeans" not in proc.stdout:
        fail("--help exited %d or lacks the subcommands" % proc.returncode)
    for sub in ("kmeans", "select", "decode", "storage", "fetch", "e2e", "soak"):
        proc = call(sub, "--help")
        if proc.returncode != 0 or sub not in proc.stdout:
            fail("%s --help exited %d" % (sub, proc.returncode))
    proc = call("no_such_subcommand")
    if proc.returncode != 2 or "unknown subcommand" not in proc.stderr:
        fail("unknown subcommand exited %d, expected 2" % proc.returncode)
    proc = call()
    if proc.returncode != 2:
        fail("missing subcommand exited %d, expected 2" % proc.returncode)
    print("ok: cli")


def main(argv):
    if len(argv) == 5 and argv[1] == "run":
        run(argv[2], argv[3], argv[4])
    elif len(argv) == 3 and argv[1] == "cli":
        cli(argv[2])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
