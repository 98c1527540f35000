#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every CTest label (unit, integration, fault,
# fuzz, gpu; gpu tests skip with a message when no CUDA device is present), then rebuilds what
# the unit and integration labels run with AddressSanitizer + UndefinedBehaviorSanitizer and
# runs those labels again. Compiles go through ccache (installed by deploy/setup.sh), so a
# second clone on the same machine rebuilds from the cache. CLUSTERKV_SANITIZE_THREAD=1 runs the storage concurrency tests under TSan, which
# reports false races with Debian's uninstrumented Abseil (docs/decisions.md D21).
# Usage: deploy/test.sh   (CLUSTERKV_SANITIZE_UNIT=0 skips the ASan pass;
#                          CLUSTERKV_SANITIZE_INTEGRATION=0 limits it to the unit label)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 900

if [[ "${CLUSTERKV_SANITIZE_UNIT:-1}" != 0 ]]; then
  # The unit and integration labels again, every binary (daemon, tools, tests) built with
  # AddressSanitizer + UndefinedBehaviorSanitizer. CLUSTERKV_SANITIZE_INTEGRATION=0 keeps it to
  # the unit label (and its faster build).
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCLUSTERKV_SANITIZE=address \
    -DCLUSTERKV_CUDA=OFF
  if [[ "${CLUSTERKV_SANITIZE_INTEGRATION:-1}" != 0 ]]; then
    echo "== unit and integration tests under ASan + UBSan =="
    # What those labels run (their test binaries and the tools they start), not the fault and
    # gpu binaries this pass does not run.
    cmake --build build-asan -j "$JOBS" --target unit_tests integration_tests
    ctest --test-dir build-asan -L 'unit|integration' --output-on-failure -j "$JOBS" --timeout 900
  else
    echo "== unit tests under ASan + UBSan =="
    cmake --build build-asan -j "$JOBS" --target unit_tests
    ctest --test-dir build-asan -L unit --output-on-failure -j "$JOBS" --timeout 900
  fi
fi

if [[ "${CLUSTERKV_SANITIZE_THREAD:-0}" != 0 ]]; then
  echo "== storage and client-prefetch concurrency tests under TSan =="
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCLUSTERKV_SANITIZE=thread \
    -DCLUSTERKV_CUDA=OFF
  cmake --build build-tsan -j "$JOBS" --target storage_tiered_test storage_slab_test \
    client_prefetch_test client_batch_test
  # UCX's memory hooks (libucm, loaded with the client library) crash TSan's interceptors at
  # thread exit; the tests do not need them.
  UCX_MEM_EVENTS=no UCX_MEM_MALLOC_HOOKS=no \
    ctest --test-dir build-tsan -R '^(TieredStoreTest|SlabAllocatorTest|PrefetchTest|BatchTest)\.' \
    -L unit --output-on-failure -j "$JOBS" --timeout 900
fi
