#!/usr/bin/env bash
# Creates the reference environment: a Python virtual environment with the PyPI tools that
# produced the committed golden files under tests/data/llama/ (tests never need it; it is for
# regenerating or extending those files):
#   gguf + numpy          the gguf package's numpy dequantizers and reader
#                         (reference/make_quant_golden.py, reference/reference_logits.py)
#   llama-cpp-python      llama.cpp's tokenizer and forward pass (reference/
#                         make_tokenizer_golden.py, the cross-check in reference_logits.py);
#                         built from source for the CPU, which takes 20-40 minutes on 2 cores
#   unicodedata2          Unicode 15.1 tables, the version llama.cpp's tokenizer uses
#                         (reference/make_unicode_tables.py)
# Idempotent: packages already at these versions are kept.
# Usage: deploy/reference_venv.sh     venv: $CLUSTERKV_REFERENCE_VENV, default ~/.cache/clusterkv/venv
set -euo pipefail
VENV=${CLUSTERKV_REFERENCE_VENV:-$HOME/.cache/clusterkv/venv}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "reference: creating $VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  gguf==0.19.0 numpy==2.4.6 unicodedata2==15.1.0
CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
  "$VENV/bin/pip" install --quiet --disable-pip-version-check llama-cpp-python==0.3.36
echo "reference: ready ($VENV/bin/python)"
