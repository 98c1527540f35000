#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every CTest label (unit, integration, fault,
# fuzz, gpu; gpu tests skip with a message when no CUDA device is present), then rebuilds the
# unit tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs them again.
# Usage: deploy/test.sh          (CLUSTERKV_SANITIZE_UNIT=0 skips the sanitizer pass)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 900

if [[ "${CLUSTERKV_SANITIZE_UNIT:-1}" != 0 ]]; then
  echo "== unit tests under ASan + UBSan =="
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCLUSTERKV_SANITIZE=ON \
    -DCLUSTERKV_CUDA=OFF
  cmake --build build-asan -j "$JOBS" --target unit_tests
  ctest --test-dir build-asan -L unit --output-on-failure -j "$JOBS" --timeout 900
fi
