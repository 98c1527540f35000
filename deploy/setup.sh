#!/usr/bin/env bash
# Installs every Debian 12 package that clusterkv's build, tests, benchmarks and demos need.
# Idempotent: packages already present are skipped; safe to run on every build.
# Usage: deploy/setup.sh            (as root, or through sudo)
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
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
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
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
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
