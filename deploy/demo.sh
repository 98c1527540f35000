#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on embedded defaults. Until the daemon
# lands (issue: clusterkvd), the main job is the quality evaluation: ClusterKV vs Quest vs
# StreamingLLM vs oracle at budgets 256-2048 on a 32k-token context, printed as a table and
# written to build/eval.json.
# Usage: deploy/demo.sh [extra clusterkv_eval flags]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$JOBS" --target clusterkv_eval
build/tools/clusterkv_eval/clusterkv_eval --json build/eval.json "$@"
echo "results: build/eval.json"
