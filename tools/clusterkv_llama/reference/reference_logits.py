#!/usr/bin/env python3
"""Golden logits for clusterkv_llama's correctness test, from an independent implementation.

For one GGUF model and one prompt text this script
  1. tokenizes the text with llama.cpp's own tokenizer (PyPI llama-cpp-python, vocab only),
  2. runs a plain numpy forward pass in float64 over weights dequantized by the PyPI `gguf`
     package (its numpy decoders, not clusterkv's), written from the architectures' published
     definitions (Llama; Gemma 3 with QK-norm, post-norms, GeGLU, sliding-window local layers),
  3. cross-checks that forward pass against llama.cpp's own logits for the same tokens, and
  4. writes a compact JSON golden: the token ids, and per prompt position the top-k token ids and
     logits, the log-sum-exp of all logits and the logit of the next prompt token; plus a strided
     sample of the last position's full logit vector and the cross-check summary.

tests/unit/llama_reference_test.cc (clusterkv_llama's full-attention prefill) compares against it.
Run it in the reference environment (deploy/setup.sh --reference creates it):
  ~/.cache/clusterkv/venv/bin/python tools/clusterkv_llama/reference/reference_logits.py \
      --model ~/.cache/clusterkv/models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --text tests/data/llama/pride_and_prejudice_ch1.txt \
      --out tests/data/llama/logits_smollm2.json
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


class Weights:
    def __init__(self, path):
        self.reader = GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, name):
        t = self.tensors[name]
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(
            [int(d) for d in reversed(t.shape.tolist())])

    def has(self, name):
        return name in self.tensors


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, positions, base, interleaved):
    """x: [tokens, heads, hd]. Interleaved pairs (2i, 2i+1) as llama.cpp's normal RoPE,
    otherwise (i, i + hd/2) as its NEOX RoPE."""
    hd = x.shape[-1]
    half = hd // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2.0 / hd)
    ang = positions[:, None].astype(np.float64) * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        a, b = x[..., :half], x[..., half:]
    ra, rb = a * cos - b * sin, b * cos + a * sin
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., :half], out[..., half:] = ra, rb
    return out


def attention(q, k, v, scale, window):
    """q: [T, H, hd], k/v: [T, KV, hd]; causal, optionally the last `window` keys only."""
    t, h, hd = q.shape
    kv = k.shape[1]
    group = h // kv
    out = np.empty_like(q)
    pos = np.arange(t)
    mask = pos[None, :] > pos[:, None]
    if window:
        mask |= (pos[:, None] - pos[None, :]) >= window
    for head in range(h):
        g = head // group
        s = q[:, head, :] @ k[:, g, :].T * scale
        s[mask] = -np.inf
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        out[:, head, :] = p @ v[:, g, :]
    return out


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(path, tokens, log):
    w = Weights(path)
    r = w.reader
    arch = field(r, "general.architecture")
    p = arch + "."
    dim = int(field(r, p + "embedding_length"))
    n_layers = int(field(r, p + "block_count"))
    n_heads = int(field(r, p + "attention.head_count"))
    n_kv = int(field(r, p + "attention.head_count_kv", n_heads))
    hd = int(field(r, p + "attention.key_length", dim // n_heads))
    eps = float(field(r, p + "attention.layer_norm_rms_epsilon"))
    base = float(field(r, p + "rope.freq_base", 10000.0))
    gemma = arch == "gemma3"
    if arch not in ("llama", "gemma3"):
        raise SystemExit(f"unsupported architecture {arch}")
    window = int(field(r, p + "attention.sliding_window", 0)) if gemma else 0
    # Gemma 3: every 6th layer is global; local layers use RoPE base 10000 (the architecture's
    # fixed values; this file does not carry them).
    local = [gemma and (l + 1) % 6 != 0 for l in range(n_layers)]
    scale = 1.0 / math.sqrt(hd)
    tokens = np.asarray(tokens)
    t = len(tokens)
    pos = np.arange(t)
    embed = w.get("token_embd.weight")
    x = embed[tokens]
    if gemma:
        x = x * math.sqrt(dim)
    for l in range(n_layers):
        b = f"blk.{l}."
        h = rms_norm(x, w.get(b + "attn_norm.weight"), eps)
        q = (h @ w.get(b + "attn_q.weight").T).reshape(t, n_heads, hd)
        k = (h @ w.get(b + "attn_k.weight").T).reshape(t, n_kv, hd)
        v = (h @ w.get(b + "attn_v.weight").T).reshape(t, n_kv, hd)
        if gemma:
            q = rms_norm(q, w.get(b + "attn_q_norm.weight"), eps)
            k = rms_norm(k, w.get(b + "attn_k_norm.weight"), eps)
        layer_base = 10000.0 if local[l] else base
        q = rope(q, pos, layer_base, interleaved=not gemma)
        k = rope(k, pos, layer_base, interleaved=not gemma)
        a = attention(q, k, v, scale, window if local[l] else 0).reshape(t, n_heads * hd)
        o = a @ w.get(b + "attn_output.weight").T
        if gemma:
            o = rms_norm(o, w.get(b + "post_attention_norm.weight"), eps)
        x = x + o
        h = rms_norm(x, w.get(b + "ffn_norm.weight"), eps)
        gate = h @ w.get(b + "ffn_gate.weight").T
        up = h @ w.get(b + "ffn_up.weight").T
        act = gelu_tanh(gate) if gemma else silu(gate)
        d = (act * up) @ w.get(b + "ffn_down.weight").T
        if gemma:
            d = rms_norm(d, w.get(b + "post_ffw_norm.weight"), eps)
        x = x + d
        log(f"  layer {l + 1}/{n_layers}")
    x = rms_norm(x, w.get("output_norm.weight"), eps)
    head = w.get("output.weight") if w.has("output.weight") else embed
    return x @ head.T


def llama_cpp_logits(path, tokens):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=max(512, len(tokens) + 8), logits_all=True,
                          n_threads=os.cpu_count(), n_batch=512, verbose=False)
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float64), llama_cpp.__version__


def tokenize(path, text, add_bos):
    import llama_cpp
    vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    return vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True, help="UTF-8 prompt file")
    ap.add_argument("--out", required=True)
    ap.add_argument("--top_k", type=int, default=10)
    ap.add_argument("--sample_stride", type=int, default=97,
                    help="stride of the last position's full-logit sample")
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)
    text = open(args.text, encoding="utf-8").read()
    reader = GGUFReader(args.model)
    add_bos = bool(field(reader, "tokenizer.ggml.add_bos_token", False))
    del reader
    tokens = tokenize(args.model, text, add_bos)
    log(f"{len(tokens)} tokens (add_bos={add_bos})")
    t0 = time.time()
    logits = forward(args.model, tokens, log)
    log(f"numpy forward: {time.time() - t0:.1f} s")
    t0 = time.time()
    cpp, cpp_version = llama_cpp_logits(args.model, tokens)
    log(f"llama.cpp forward: {time.time() - t0:.1f} s")
    diff = np.abs(cpp - logits)
    top1_agree = float(np.mean(np.argmax(cpp, axis=1) == np.argmax(logits, axis=1)))
    lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
    nll = -(logits[np.arange(len(tokens) - 1), tokens[1:]] - lse[:-1])
    lse_cpp = np.log(np.exp(cpp - cpp.max(axis=1, keepdims=True)).sum(axis=1)) + cpp.max(axis=1)
    nll_cpp = -(cpp[np.arange(len(tokens) - 1), tokens[1:]] - lse_cpp[:-1])
    positions = []
    for i in range(len(tokens)):
        row = logits[i]
        top = np.argsort(-row, kind="stable")[: args.top_k]
        positions.append({
            "top_ids": [int(j) for j in top],
            "top_logits": [round(float(row[j]), 6) for j in top],
            "logsumexp": round(float(lse[i]), 6),
            "next_logit": round(float(row[tokens[i + 1]]), 6) if i + 1 < len(tokens) else None,
        })
    last = logits[-1]
    sample_ids = list(range(0, len(last), args.sample_stride))
    golden = {
        "model_file": os.path.basename(args.model),
        "model_sha256": sha256(args.model),
        "prompt_file": os.path.relpath(args.text, os.path.dirname(os.path.abspath(args.out))),
        "tokenizer": f"llama-cpp-python {cpp_version} (llama.cpp's tokenizer, vocab_only)",
        "reference": "numpy float64 forward pass over weights dequantized by gguf-py "
                     "(tools/clusterkv_llama/reference/reference_logits.py)",
        "token_ids": [int(t) for t in tokens],
        "top_k": args.top_k,
        "positions": positions,
        "perplexity": float(np.exp(nll.mean())),
        "last_logits_sample": {"stride": args.sample_stride,
                               "values": [round(float(last[j]), 6) for j in sample_ids]},
        "llama_cpp_crosscheck": {
            "version": cpp_version,
            "note": "llama.cpp computes with quantized activations (Q8 dot products), so its "
                    "logits differ from the float64 reference by more than clusterkv's fp32 do",
            "top1_agreement": top1_agree,
            "max_abs_logit_diff": float(diff.max()),
            "mean_abs_logit_diff": float(diff.mean()),
            "perplexity": float(np.exp(nll_cpp.mean())),
        },
    }
    with open(args.out, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    log(f"wrote {args.out}: perplexity {golden['perplexity']:.3f} (llama.cpp "
        f"{golden['llama_cpp_crosscheck']['perplexity']:.3f}), llama.cpp top-1 agreement "
        f"{top1_agree:.3f}, max |diff| {diff.max():.3f}")


if __name__ == "__main__":
    main()
