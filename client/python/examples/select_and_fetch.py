#!/usr/bin/python3
"""ClusterKV from Python against a running clusterkvd: offload a synthetic prefill, then run a
few decode steps of selection + fetch + attention, and compare with full attention in numpy.

The prompt's keys come from a handful of "topics" (directions in key space) that recur in runs
scattered over the whole sequence, as related passages of a long document do. Each decode
step's query points at one topic; ClusterKV should select that topic's clusters, wherever their
tokens sit, and its output should be close to full attention over every token. Two consecutive
steps share a topic, so the second one finds its clusters in the device cache.

    clusterkvd --socket=/tmp/ckv.sock --data_dir=/tmp/ckv-data --auth=none &
    PYTHONPATH=build/python python3 client/python/examples/select_and_fetch.py \\
        --target=unix:/tmp/ckv.sock --tenant=demo
"""

import argparse
import os
import sys

import numpy as np

import clusterkv


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--target", default="unix:/run/clusterkv/clusterkvd.sock",
                   help="daemon address: unix:/path or host:port")
    p.add_argument("--tenant", default="example",
                   help="tenant (used by daemons running --auth=none)")
    p.add_argument("--tokens", type=int, default=4096, help="prompt tokens")
    p.add_argument("--q_heads", type=int, default=8)
    p.add_argument("--kv_heads", type=int, default=2)
    p.add_argument("--head_dim", type=int, default=64)
    p.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16",
                   help="storage dtype (numpy inputs are float16 / float32 to match)")
    p.add_argument("--topics", type=int, default=24, help="key directions of the prompt")
    p.add_argument("--clusters", type=int, default=64, help="prefill clusters per kv head (C0)")
    p.add_argument("--budget", type=int, default=512, help="token budget B per kv head")
    p.add_argument("--steps", type=int, default=4, help="decode steps")
    p.add_argument("--data_plane", choices=["auto", "ucx", "grpc"], default="auto")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sequence", default="select-and-fetch-%d" % os.getpid(),
                   help="sequence id (dropped at the end)")
    return p.parse_args()


def make_prompt(rng, args):
    """Keys [kv_heads, T, d] from topic runs; returns (keys, values, topic_of_token, topics)."""
    d = args.head_dim
    topics = rng.standard_normal((args.kv_heads, args.topics, d)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=-1, keepdims=True)
    # Runs of 16-128 tokens, each of a random topic: every topic recurs all over the prompt.
    topic_of = np.empty(args.tokens, dtype=np.int64)
    at = 0
    while at < args.tokens:
        n = int(rng.integers(16, 129))
        topic_of[at:at + n] = rng.integers(args.topics)
        at += n
    keys = 3.0 * topics[:, topic_of, :] + 0.35 * rng.standard_normal((args.kv_heads, args.tokens, d))
    values = rng.standard_normal((args.kv_heads, args.tokens, d))
    np_dtype = np.float16 if args.dtype == "fp16" else np.float32
    return (np.ascontiguousarray(keys, dtype=np_dtype), np.ascontiguousarray(values, dtype=np_dtype),
            topic_of, topics)


def full_attention(q, keys, values):
    """Reference: softmax(q K^T / sqrt(d)) V per query head (GQA), float64. Also returns each
    query head's attention probabilities over all tokens."""
    q_heads, d = q.shape
    group = q_heads // keys.shape[0]
    out = np.empty((q_heads, d))
    probs = []
    for h in range(q_heads):
        k = keys[h // group].astype(np.float64)
        v = values[h // group].astype(np.float64)
        s = k @ q[h].astype(np.float64) / np.sqrt(d)
        p = np.exp(s - s.max())
        p /= p.sum()
        out[h] = p @ v
        probs.append(p)
    return out, probs


def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    keys, values, topic_of, topics = make_prompt(rng, args)
    np_dtype = keys.dtype

    client = clusterkv.Client.connect(
        args.target, args.tenant, token_budget=args.budget, num_prefill_clusters=args.clusters,
        dense_layers=[], data_plane=args.data_plane)
    layout = clusterkv.KvLayout(num_layers=1, num_q_heads=args.q_heads,
                                num_kv_heads=args.kv_heads, head_dim=args.head_dim,
                                dtype=args.dtype)
    sinks = client.config.num_sink_tokens
    print("clusterkv %s, daemon %s, data plane %s, %s" %
          (clusterkv.__version__, args.target, client.data_plane, layout))

    seq = client.open_sequence(args.sequence, layout)
    try:
        seq.offload_prefill(0, keys, values)
        print("prefill: %d tokens, %d bytes offloaded, %d clusters per kv head (budget %d)" %
              (seq.num_tokens, seq.bytes_offloaded, len(seq.index(0, 0)["sizes"]), args.budget))

        group = args.q_heads // args.kv_heads
        worst_error = 0.0
        for step in range(args.steps):
            topic = (step // 2 * 7) % args.topics  # steps 2i and 2i+1 ask about the same topic
            q = np.empty((args.q_heads, args.head_dim), dtype=np.float32)
            for h in range(args.q_heads):
                q[h] = 16.0 * topics[h // group, topic] + 0.3 * rng.standard_normal(args.head_dim)

            selection = seq.select(0, q, positions=True)
            out, stats = seq.attend(0, q, return_stats=True)

            ref, probs = full_attention(q, keys, values)
            error = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
            worst_error = max(worst_error, error)
            # Attention mass of full attention that falls on the attended tokens (sinks, the
            # selected clusters and the decode tokens appended so far).
            mass = []
            for h in range(args.q_heads):
                sel = selection[h // group]
                attended = np.zeros(len(probs[h]), dtype=bool)
                attended[:sinks] = True
                attended[sel["positions"]] = True
                attended[args.tokens:] = True
                mass.append(probs[h][attended].sum())

            print("step %d (topic %d): %.1f%% of full-attention mass attended, output error "
                  "%.2e vs full attention; fetched %d blocks (%d bytes), cache hits %d/%d "
                  "clusters" % (step, topic, 100 * np.mean(mass), error, stats["blocks_fetched"],
                                stats["bytes_fetched"], stats["hit_clusters"],
                                stats["hit_clusters"] + stats["miss_clusters"]))
            topic_tokens = np.flatnonzero(topic_of[sinks:] == topic) + sinks
            for kv, sel in enumerate(selection):
                pos = np.sort(sel["positions"])
                found = np.isin(topic_tokens, pos).sum()
                print("  kv head %d: %d clusters %s..., %d tokens at positions %d..%d; they "
                      "hold %d of the topic's %d tokens" %
                      (kv, len(sel["clusters"]), sel["clusters"][:6].tolist(),
                       sel["total_tokens"], pos[0], pos[-1], found, len(topic_tokens)))

            # Decode: the new token joins the recent window (and the numpy reference).
            k_new = (3.0 * topics[:, topic] + 0.35 * rng.standard_normal(
                (args.kv_heads, args.head_dim))).astype(np_dtype)
            v_new = rng.standard_normal((args.kv_heads, args.head_dim)).astype(np_dtype)
            seq.append_token(0, k_new, v_new)
            keys = np.concatenate([keys, k_new[:, None, :]], axis=1)
            values = np.concatenate([values, v_new[:, None, :]], axis=1)

        print("done: %d steps, cache hit rate %.2f, %d bytes fetched (%d blocks over UCX, %d "
              "over gRPC), worst output error %.2e" %
              (args.steps, seq.cache_hit_rate, seq.bytes_fetched, seq.blocks_fetched_direct,
               seq.blocks_fetched_grpc, worst_error))
        if not np.isfinite(worst_error):
            return 1
    finally:
        seq.close(drop=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
