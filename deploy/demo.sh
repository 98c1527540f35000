#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on embedded defaults: clusterkv_demo
# starts clusterkvd on a Unix socket and runs an inference-worker simulation against it
# (Llama-3-8B layout, 32k-token prefill driven by Jane Austen's novels, decode steps through
# libclusterkv compared with full attention). Then the quality evaluation prints ClusterKV vs
# Quest vs StreamingLLM vs oracle. Exits non-zero if anything fails.
# Usage: deploy/demo.sh [extra clusterkv_demo flags]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$JOBS" --target clusterkv_demo clusterkvd clusterkv_eval
build/tools/clusterkv_demo/clusterkv_demo --json build/demo.json "$@"
build/tools/clusterkv_eval/clusterkv_eval --json build/eval.json
echo "results: build/demo.json build/eval.json"
