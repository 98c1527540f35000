#!/usr/bin/env bash
# Installs what is missing (Debian packages and the real models), builds, and runs the main job
# on embedded defaults: clusterkv_llama --mode=demo starts clusterkvd on a Unix socket, prefills
# the first 4096 tokens of Jane Austen's Emma with the real SmolLM2-135M-Instruct model,
# offloads them through libclusterkv to the daemon over the UCX data plane (the run fails rather
# than fall back to gRPC), generates a continuation with ClusterKV (B = 1024) beside full
# attention, and prints both texts, the per-step breakdown, the device-cache hit rate, the
# daemon's tiers and the perplexity gap on the text's own next 128 tokens. Exits non-zero if
# anything fails. About 2 minutes on 2 cores after the build.
# Usage: deploy/demo.sh [extra clusterkv_llama flags, e.g. --model=PATH.gguf --budget=512]
#        deploy/demo.sh --synthetic [clusterkv_demo flags]   the Llama-3-8B-shaped simulation
#                                                            (32k tokens, text-driven K/V) and
#                                                            clusterkv_eval's quality table
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [[ "${1:-}" == "--synthetic" ]]; then
  shift
  cmake --build build -j "$JOBS" --target clusterkv_demo clusterkvd clusterkv_eval
  build/tools/clusterkv_demo/clusterkv_demo --json build/demo.json "$@"
  build/tools/clusterkv_eval/clusterkv_eval --json build/eval.json
  echo "results: build/demo.json build/eval.json"
  exit 0
fi
cmake --build build -j "$JOBS" --target clusterkv_llama clusterkvd
build/tools/clusterkv_llama/clusterkv_llama --mode=demo --data_plane=ucx --json build/demo.json "$@"
echo "results: build/demo.json"
