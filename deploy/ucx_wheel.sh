#!/usr/bin/env bash
# Fetches UCX 1.22 as RAPIDS builds it for CUDA 13 (the PyPI wheel libucx-cu13: shared
# libraries, transport modules, headers and CMake config inside) and unpacks it into a prefix
# outside the repository, for `cmake -DCLUSTERKV_UCX_PREFIX=<prefix>` (README, "UCX 1.22 from
# PyPI"). Debian's UCX 1.13 stays the default; nothing here touches the system.
# Idempotent: a prefix that holds the pinned wheel's unpacked tree (same sha256) is kept.
# Usage: deploy/ucx_wheel.sh [--print-prefix]
#   CLUSTERKV_UCX_PREFIX   where to unpack (default ~/.cache/clusterkv/ucx-1.22)
#   CLUSTERKV_UCX_WHEEL_FILE  use this already downloaded wheel instead of `pip download`
#                             (its sha256 is checked all the same)
# The prefix then holds libucx/ (lib, lib/ucx modules, include, lib/cmake/ucx, bin/ucx_info)
# and libucx_cu13.libs/ (the CUDA runtime the cuda modules load through their RPATH).
set -euo pipefail

UCX_WHEEL_VERSION=1.22.0
UCX_WHEEL_NAME=libucx_cu13-1.22.0-py3-none-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
UCX_WHEEL_SHA256=c6e0aaa82dc6e49dc3ddaac465b530e014f48b6c1c6b5ae74fbdd199d824351b

PREFIX="${CLUSTERKV_UCX_PREFIX:-$HOME/.cache/clusterkv/ucx-1.22}"
if [[ "${1:-}" == "--print-prefix" ]]; then echo "$PREFIX"; exit 0; fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0; fi
if [[ -n "${1:-}" ]]; then echo "ucx_wheel: unknown argument $1 (see --help)" >&2; exit 2; fi

STAMP="$PREFIX/.clusterkv-wheel-sha256"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$UCX_WHEEL_SHA256" &&
      -f "$PREFIX/libucx/lib/libucp.so" && -f "$PREFIX/libucx/lib/cmake/ucx/ucx-config.cmake" ]]; then
  echo "ucx_wheel: UCX $UCX_WHEEL_VERSION present in $PREFIX"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n "${CLUSTERKV_UCX_WHEEL_FILE:-}" ]]; then
  wheel="$CLUSTERKV_UCX_WHEEL_FILE"
else
  echo "ucx_wheel: downloading libucx-cu13==$UCX_WHEEL_VERSION"
  /usr/bin/python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "$work" "libucx-cu13==$UCX_WHEEL_VERSION"
  wheel="$work/$UCX_WHEEL_NAME"
fi
if [[ ! -f "$wheel" ]]; then
  echo "ucx_wheel: $wheel not found (pip fetched: $(ls "$work"))" >&2
  exit 1
fi
actual="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [[ "$actual" != "$UCX_WHEEL_SHA256" ]]; then
  echo "ucx_wheel: sha256 mismatch for $wheel: $actual, expected $UCX_WHEEL_SHA256" >&2
  exit 1
fi

# Unpack beside the prefix and swap it in, so an interrupted run never leaves a half tree.
mkdir -p "$(dirname "$PREFIX")"
staging="$PREFIX.partial"
rm -rf "$staging"
mkdir -p "$staging"
/usr/bin/python3 - "$wheel" "$staging" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        top = info.filename.split("/", 1)[0]
        if top not in ("libucx", "libucx_cu13.libs"):
            continue  # the .dist-info metadata is pip's, not ours
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
EOF
echo "$UCX_WHEEL_SHA256" > "$staging/.clusterkv-wheel-sha256"
rm -rf "$PREFIX"
mv "$staging" "$PREFIX"
echo "ucx_wheel: UCX $UCX_WHEEL_VERSION unpacked into $PREFIX"
