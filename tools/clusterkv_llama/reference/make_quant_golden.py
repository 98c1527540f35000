#!/usr/bin/env python3
"""Writes tests/data/llama/quant_golden.bin: GGML quantized blocks and their fp32 values as an
independent decoder (the PyPI `gguf` package's numpy dequantizer) computes them, for
tests/unit/llama_quant_test.cc to compare the engine's decoders (ggml_quant.h) against.

Two parts:
  * synthetic: for every block type the engine decodes, seeded random blocks (random bytes, the
    fp16 scale fields replaced by random finite fp16 values, subnormals included) and their
    values from gguf.quants.dequantize. The gguf package has no Q8_K decoder (ggml uses Q8_K
    only for intermediate dot products); its values are computed here from the format's
    definition, fp32 d times int8 q.
  * real: the first rows of a few tensors of each type in the two models deploy/setup.sh puts
    in the model cache, as gguf.GGUFReader + gguf.quants.dequantize read them.

File layout, little-endian:
  "CKQG" u32 version(=1)
  u32 n_synthetic, then per entry: u32 ggml_type, u32 n_blocks, raw bytes (n_blocks x block
      bytes), f32 values (n_blocks x block elements)
  u32 n_real, then per entry: u16 len + model file name, u16 len + tensor name, u32 ggml_type,
      u32 count, f32 values[count] (the tensor's first `count` elements, row-major)

Usage: /tmp/refvenv/bin/python tools/clusterkv_llama/reference/make_quant_golden.py
       [--model_dir DIR]  (default $CLUSTERKV_MODEL_DIR or ~/.cache/clusterkv/models)
Needs numpy and gguf (pip install gguf numpy)."""
import argparse
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "llama", "quant_golden.bin")
SEED = 20240611

# type -> (blocks to write, byte offsets of its fp16 scale fields)
SYNTHETIC = {
    T.Q4_0: (16, [0]),
    T.Q4_1: (16, [0, 2]),
    T.Q5_0: (16, [0]),
    T.Q5_1: (16, [0, 2]),
    T.Q8_0: (16, [0]),
    T.Q2_K: (3, [80, 82]),
    T.Q3_K: (3, [108]),
    T.Q4_K: (3, [0, 2]),
    T.Q5_K: (3, [0, 2]),
    T.Q6_K: (3, [208]),
    T.Q8_K: (3, []),
}

# Real tensors: per model, the tensor types to sample; per type the first TENSORS_PER_TYPE
# tensors of that type in file order with at most MAX_TENSOR_ELEMENTS elements (the test
# decodes them whole), and of each the first two rows, at most MAX_VALUES values.
MODELS = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": [T.Q4_1, T.F32],
    "gemma-3-270m-q4_k_m.gguf": [T.Q5_0, T.Q4_K, T.Q6_K, T.Q8_0, T.F32],
}
TENSORS_PER_TYPE = 2
MAX_TENSOR_ELEMENTS = 4 << 20
MAX_VALUES = 1024


def random_finite_halves(rng, n):
    """fp16 bit patterns with every sign and finite exponent, subnormals and zero included."""
    sign = rng.integers(0, 2, n, dtype=np.uint16) << 15
    exponent = rng.integers(0, 31, n, dtype=np.uint16) << 10
    mantissa = rng.integers(0, 1024, n, dtype=np.uint16)
    return (sign | exponent | mantissa).astype("<u2")


def synthetic_blocks(rng, qtype, n_blocks, half_offsets):
    block_elements, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    for off in half_offsets:
        raw[:, off:off + 2] = random_finite_halves(rng, n_blocks).view(np.uint8).reshape(-1, 2)
    if qtype == T.Q8_K:
        d = (rng.standard_normal(n_blocks) * 2.0 ** rng.integers(-20, 8, n_blocks))
        raw[:, 0:4] = d.astype("<f4").view(np.uint8).reshape(-1, 4)
        q = raw[:, 4:4 + block_elements].view(np.int8).astype(np.float32)
        values = raw[:, 0:4].copy().view("<f4").astype(np.float32) * q
    else:
        values = gguf.quants.dequantize(raw.reshape(1, -1), qtype)
    values = np.asarray(values, dtype="<f4").reshape(-1)
    assert values.size == n_blocks * block_elements
    assert np.all(np.isfinite(values)), qtype.name
    return raw.tobytes(), values.tobytes()


def real_tensors(model_dir):
    out = []
    for model, types in MODELS.items():
        path = os.path.join(model_dir, model)
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run deploy/setup.sh first")
        reader = gguf.GGUFReader(path)
        for qtype in types:
            picked = [t for t in reader.tensors
                      if t.tensor_type == qtype and int(t.n_elements) <= MAX_TENSOR_ELEMENTS]
            for t in picked[:TENSORS_PER_TYPE]:
                rows = np.asarray(t.data)
                rows = rows.reshape(-1, rows.shape[-1])[:2]  # the first two rows, raw
                if qtype == T.F32:
                    values = rows.astype(np.float32)
                else:
                    values = gguf.quants.dequantize(rows, qtype)
                values = np.asarray(values, dtype="<f4").reshape(-1)[:MAX_VALUES]
                out.append((model, t.name, int(qtype), values))
    return out


def pack_name(s):
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("CLUSTERKV_MODEL_DIR",
                                 os.path.expanduser("~/.cache/clusterkv/models"))
    parser.add_argument("--model_dir", default=default_dir)
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    blob = bytearray(b"CKQG" + struct.pack("<I", 1))
    blob += struct.pack("<I", len(SYNTHETIC))
    for qtype, (n_blocks, half_offsets) in SYNTHETIC.items():
        raw, values = synthetic_blocks(rng, qtype, n_blocks, half_offsets)
        blob += struct.pack("<II", int(qtype), n_blocks) + raw + values
    real = real_tensors(args.model_dir)
    blob += struct.pack("<I", len(real))
    for model, name, qtype, values in real:
        blob += pack_name(model) + pack_name(name)
        blob += struct.pack("<II", qtype, values.size) + values.tobytes()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(blob)
    print(f"wrote {OUT}: {len(blob)} bytes, {len(SYNTHETIC)} synthetic types, "
          f"{len(real)} real tensors")


if __name__ == "__main__":
    main()
