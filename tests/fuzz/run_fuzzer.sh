#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded number of runs (CTest label fuzz): first over the
# committed seed corpus (seeds and regression inputs; a crash there fails at once), then
# mutating it. New inputs go to a scratch directory, never into the committed corpus; a crash
# leaves its input in WORK_DIR (crash-*) to add to the corpus once fixed.
# Usage: run_fuzzer.sh BINARY SEED_CORPUS WORK_DIR RUNS MAX_SECONDS
set -euo pipefail
binary=$1 seeds=$2 work=$3 runs=$4 seconds=$5
rm -rf "$work"
mkdir -p "$work/new"
exec "$binary" -seed=1 -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/new" "$seeds"
