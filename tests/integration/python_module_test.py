#!/usr/bin/python3
"""The clusterkv Python module against a real clusterkvd (CTest label integration).

    PYTHONPATH=<build>/python python3 python_module_test.py --daemon=<clusterkvd> \
        --example=<client/python/examples/select_and_fetch.py> [unittest args]

Checks: prefill + attend at a budget covering every token equals numpy's full attention (fp32
tightly, fp16 within fp16 rounding of the inputs), also after decode appends that re-cluster;
select() returns every clustered token exactly once at full budget and a best-first subset at a
small one; numpy dtype / shape / stride errors raise TypeError or InvalidArgumentError; another
tenant's sequence is NOT_FOUND (clusterkv.NotFoundError, a LookupError); a closed sequence and
an absent daemon give FailedPreconditionError and UnavailableError; concurrent Python threads
work with the GIL released; the example script runs and exits 0. Resumable sessions: a
sequence checkpointed mid-decode and resumed by a fresh client attends exactly as an
uninterrupted twin, before and after further decode steps. Shared documents: a published
prompt is found by a longer prompt sharing whole segments (prefill_segment_tokens), a fork of
it reads the document's keys and values back (as stored: fp16-rounded) and, once prefilled
with the rest of its prompt, attends as full attention over the whole prompt. Engine state:
the bytes given to checkpoint come back from the resumed sequence's engine_state (and those
given to publish from a fork of the whole document). Grants: another tenant finds a document
only once its owner granted it (StoredPrefix.owner names the owner), its fork reads the
document back and attends bit-identically to its own unshared sequence over the same K/V, and
a revoke hides the document again. The C ABI's engine-state and grant calls, through ctypes.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import threading
import unittest

import numpy as np

import clusterkv
from python_daemon import Daemon

ARGS = None  # set in __main__: --daemon, --example

SINKS = 4


def full_attention(q, keys, values):
    """softmax(q K^T / sqrt(d)) V per query head, GQA; float64 reference."""
    q_heads, d = q.shape
    group = q_heads // keys.shape[0]
    out = np.empty((q_heads, d))
    for h in range(q_heads):
        k = keys[h // group].astype(np.float64)
        v = values[h // group].astype(np.float64)
        s = k @ q[h].astype(np.float64) / np.sqrt(d)
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ v
    return out


def structured_kv(rng, kv_heads, tokens, d, dtype=np.float32, topics=12):
    centers = rng.standard_normal((kv_heads, topics, d))
    centers /= np.linalg.norm(centers, axis=-1, keepdims=True)
    topic_of = rng.integers(topics, size=tokens)
    keys = 3.0 * centers[:, topic_of, :] + 0.5 * rng.standard_normal((kv_heads, tokens, d))
    values = rng.standard_normal((kv_heads, tokens, d))
    # Fancy indexing left the token axis outermost in memory: make both row-major.
    return np.ascontiguousarray(keys, dtype=dtype), np.ascontiguousarray(values, dtype=dtype)


def vars_of(prefix):
    """A StoredPrefix's fields, for comparisons."""
    return (prefix.document, prefix.segments, prefix.tokens, prefix.layout, prefix.owner)


def stored(a):
    """What an fp16 layout stores, widened back to float32."""
    return a.astype(np.float16).astype(np.float32)


def token_major(a):
    """[kv_heads, n, d] -> read_tokens' [n, kv_heads, d]."""
    return np.ascontiguousarray(a.transpose(1, 0, 2))


class ModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(ARGS.daemon).start()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        if status != 0:
            raise AssertionError("clusterkvd exited with %s:\n%s" % (status, cls.daemon.output()))

    def connect(self, tenant="tenant-a", **options):
        defaults = dict(num_sink_tokens=SINKS, num_prefill_clusters=16, token_budget=4096,
                        dense_layers=[0], recluster_interval=32, clusters_per_recluster=4,
                        threads=1, ucx_region_bytes=32 << 20)
        defaults.update(options)
        return clusterkv.Client.connect(self.daemon.target, tenant, **defaults)

    def layout(self, dtype="fp32"):
        return clusterkv.KvLayout(num_layers=3, num_q_heads=8, num_kv_heads=2, head_dim=64,
                                  dtype=dtype)

    def open_with_prefill(self, client, name, tokens=600, dtype="fp32", seed=1):
        rng = np.random.default_rng(seed)
        np_dtype = np.float16 if dtype == "fp16" else np.float32
        seq = client.open_sequence(name, self.layout(dtype))
        kv = []
        for layer in range(3):
            keys, values = structured_kv(rng, 2, tokens, 64, np_dtype)
            seq.offload_prefill(layer, keys, values)
            kv.append((keys, values))
        return seq, kv, rng

    # ---- numerics ---------------------------------------------------------------------------
    def test_attend_at_full_budget_matches_full_attention_fp32(self):
        client = self.connect()
        seq, kv, rng = self.open_with_prefill(client, "full-fp32")
        self.assertEqual(seq.num_tokens, 600)
        self.assertGreater(seq.bytes_offloaded, 0)
        for step in range(2):
            for layer in range(3):  # layer 0 dense (local), 1-2 clustered (fetched)
                q = rng.standard_normal((8, 64)).astype(np.float32)
                out, stats = seq.attend(layer, q, return_stats=True)
                self.assertEqual(out.dtype, np.float32)
                self.assertEqual(out.shape, (8, 64))
                np.testing.assert_allclose(out, full_attention(q, *kv[layer]), rtol=1e-4,
                                           atol=1e-5, err_msg="layer %d step %d" % (layer, step))
                self.assertEqual(stats["attended_tokens"], 2 * 600)
                if layer > 0 and step == 0:
                    self.assertGreater(stats["blocks_fetched"], 0)
                    self.assertEqual(stats["hit_clusters"], 0)
                if layer > 0 and step == 1:  # the same whole selection: all resident (R = 1)
                    self.assertEqual(stats["miss_clusters"], 0)
                    self.assertGreater(stats["hit_clusters"], 0)
        self.assertAlmostEqual(seq.cache_hit_rate, 0.5)
        self.assertGreater(seq.bytes_fetched, 0)
        self.assertEqual(seq.cache_stats["hit_rate"], seq.cache_hit_rate)
        seq.close(drop=True)

    def test_attend_fp16_inputs(self):
        client = self.connect()
        seq, kv, rng = self.open_with_prefill(client, "full-fp16", dtype="fp16")
        q = rng.standard_normal((8, 64)).astype(np.float16)
        out = seq.attend(2, q)
        # Blocks hold exactly the fp16 inputs; compute accumulates in fp32.
        np.testing.assert_allclose(out, full_attention(q, *kv[2]), rtol=1e-3, atol=1e-4)
        seq.close(drop=True)

    def test_out_argument_and_strided_inputs(self):
        client = self.connect()
        rng = np.random.default_rng(5)
        seq = client.open_sequence("strided", self.layout())
        big_k, big_v = structured_kv(rng, 2, 400, 64)
        keys, values = big_k[:, :300], big_v[:, :300]  # strided token axis
        self.assertFalse(keys.flags["C_CONTIGUOUS"])
        seq.offload_prefill(1, keys, values)
        q_rows = rng.standard_normal((16, 64)).astype(np.float32)[::2]  # strided rows
        out = np.full((8, 64), np.nan, dtype=np.float32)
        result = seq.attend(1, q_rows, out=out)
        self.assertIs(result, out)
        np.testing.assert_allclose(out, full_attention(q_rows, keys, values), rtol=1e-4,
                                   atol=1e-5)
        seq.close(drop=True)

    def test_append_tokens_recluster_and_still_match(self):
        client = self.connect()
        seq, kv, rng = self.open_with_prefill(client, "append")
        keys, values = kv[1]
        for _ in range(70):  # two windows of 32 re-clustered and appended, 6 in the window
            k, v = structured_kv(rng, 2, 1, 64)
            seq.append_token(1, k[:, 0], v[:, 0])
            keys = np.concatenate([keys, k], axis=1)
            values = np.concatenate([values, v], axis=1)
        self.assertEqual(seq.layer_tokens(1), 670)
        self.assertFalse(seq.has_pending_offload(1))
        self.assertEqual(len(seq.index(1, 0)["sizes"]), 16 + 2 * 4)
        q = rng.standard_normal((8, 64)).astype(np.float32)
        np.testing.assert_allclose(seq.attend(1, q), full_attention(q, keys, values), rtol=1e-4,
                                   atol=1e-5)
        seq.close(drop=True)

    # ---- selection --------------------------------------------------------------------------
    def test_select_full_budget_covers_every_clustered_token(self):
        client = self.connect()
        seq, _, rng = self.open_with_prefill(client, "select-full")
        q = rng.standard_normal((8, 64)).astype(np.float32)
        selection = seq.select(1, q, positions=True)
        self.assertEqual(len(selection), 2)
        for kv_head, sel in enumerate(selection):
            index = seq.index(1, kv_head)
            self.assertEqual(sel["total_tokens"], 600 - SINKS)
            self.assertEqual(int(sel["tokens"].sum()), 600 - SINKS)
            self.assertEqual(sorted(sel["positions"].tolist()), list(range(SINKS, 600)))
            self.assertTrue(np.all(np.diff(sel["scores"]) <= 0), "best score first")
            np.testing.assert_array_equal(np.sort(sel["clusters"]),
                                          np.flatnonzero(index["sizes"] > 0))
            self.assertEqual(int((sel["ranges"][:, 1] - sel["ranges"][:, 0]).sum()), 600 - SINKS)
            self.assertEqual(index["centroids"].shape, (16, 64))
            np.testing.assert_allclose(np.linalg.norm(index["centroids"], axis=1), 1.0,
                                       rtol=1e-4)
        self.assertEqual(seq.step, 0, "select does not advance the decode step")
        self.assertEqual(seq.bytes_fetched, 0, "select does not touch the device cache")
        seq.close(drop=True)

    def test_select_small_budget_is_a_best_first_subset(self):
        client = self.connect(token_budget=100)
        seq, kv, rng = self.open_with_prefill(client, "select-small")
        keys = kv[2][0]
        # A query aimed at the keys of token 300's topic.
        q = np.repeat(keys[:, 300:301, :] * 4.0, 4, axis=0).reshape(8, 64).astype(np.float32)
        selection = seq.select(2, q, positions=True)
        for kv_head, sel in enumerate(selection):
            self.assertEqual(sel["total_tokens"], 100)
            self.assertEqual(len(sel["positions"]), 100)
            self.assertEqual(len(set(sel["positions"].tolist())), 100)
            self.assertTrue(np.all(sel["positions"] >= SINKS))
            self.assertTrue(np.all(sel["tokens"][:-1] == seq.index(2, kv_head)["sizes"][
                sel["clusters"][:-1]]), "only the last cluster may be truncated")
        self.assertIn(300, selection[0]["positions"].tolist())
        out, stats = seq.attend(2, q, return_stats=True)
        self.assertEqual(stats["attended_tokens"], 2 * (SINKS + 100))
        self.assertEqual(stats["selected_tokens"], 2 * 100)
        self.assertEqual(stats["selected_heads"], 2)
        with self.assertRaises(clusterkv.FailedPreconditionError):
            seq.select(0, q)  # dense layer
        seq.close(drop=True)

    def test_prefetch_then_attend_fetches_nothing_more_and_matches(self):
        client = self.connect(token_budget=100)
        seq, kv, rng = self.open_with_prefill(client, "prefetch")
        plain, _, _ = self.open_with_prefill(client, "prefetch-plain")
        q = rng.standard_normal((8, 64)).astype(np.float32)
        seq.prefetch(2, q)
        seq.wait_for_prefetch(2)
        out, stats = seq.attend(2, q, return_stats=True)
        want, plain_stats = plain.attend(2, q, return_stats=True)
        np.testing.assert_array_equal(out, want)
        self.assertEqual(stats["miss_tokens"], 0)
        self.assertEqual(stats["prefetched_tokens"], plain_stats["miss_tokens"])
        self.assertEqual(stats["prefetch_used_tokens"], stats["hit_tokens"])
        self.assertEqual(stats["prefetch_failures"], 0)
        seq.prefetch(0, q)  # dense layer: nothing to recall
        with self.assertRaises(clusterkv.InvalidArgumentError):
            seq.prefetch(2, np.zeros((4, 64), np.float32))
        seq.close(drop=True)
        plain.close(drop=True)

    def test_attend_batch_matches_attend_per_sequence(self):
        client = self.connect(token_budget=100)
        batched = [self.open_with_prefill(client, "batch-%d" % i, seed=10 + i)[0]
                   for i in range(3)]
        single = [self.open_with_prefill(client, "single-%d" % i, seed=10 + i)[0]
                  for i in range(3)]
        rng = np.random.default_rng(5)
        for layer in (0, 2):
            queries = [rng.standard_normal((8, 64)).astype(np.float32) for _ in range(3)]
            results = clusterkv.attend_batch(layer, batched, queries, return_stats=True)
            self.assertEqual(len(results), 3)
            for seq, q, (out, stats) in zip(single, queries, results):
                want, want_stats = seq.attend(layer, q, return_stats=True)
                np.testing.assert_array_equal(out, want)
                self.assertEqual(stats["miss_tokens"], want_stats["miss_tokens"])
        with self.assertRaises(clusterkv.InvalidArgumentError):
            clusterkv.attend_batch(2, [batched[0], batched[0]], queries[:2])
        with self.assertRaises(clusterkv.InvalidArgumentError):
            clusterkv.attend_batch(2, batched, queries[:2])
        for seq in batched + single:
            seq.close(drop=True)

    def test_adaptive_budget_spends_at_most_the_cap(self):
        # A target every head reaches without a cluster: each head takes B_min.
        client = self.connect(token_budget=100, recall_target=1e-9, min_token_budget=10)
        self.assertEqual(client.config.recall_target, 1e-9)
        seq, kv, rng = self.open_with_prefill(client, "adaptive")
        q = rng.standard_normal((8, 64)).astype(np.float32)
        out, stats = seq.attend(2, q, return_stats=True)
        self.assertEqual(stats["selected_tokens"], 2 * 10)
        self.assertEqual(stats["attended_tokens"], 2 * (SINKS + 10))
        seq.close(drop=True)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            self.connect(token_budget=100, recall_target=1.5)

    # ---- resumable sessions and shared documents ----------------------------------------
    def decode_step(self, sequences, rng):
        """One decode token for every layer of every sequence (the same token and queries for
        each): append, then attend. Returns the outputs, per sequence, per layer."""
        outs = [[] for _ in sequences]
        for layer in range(3):
            k, v = structured_kv(rng, 2, 1, 64)
            q = rng.standard_normal((8, 64)).astype(np.float32)
            for i, seq in enumerate(sequences):
                seq.append_token(layer, k[:, 0], v[:, 0])
                outs[i].append(seq.attend(layer, q))
        return outs

    def test_checkpoint_then_resume_in_a_fresh_client_attends_identically(self):
        client = self.connect(token_budget=100)
        seq, _, _ = self.open_with_prefill(client, "resume", seed=21)
        twin, _, _ = self.open_with_prefill(client, "resume-twin", seed=21)  # never interrupted
        rng = np.random.default_rng(22)
        for _ in range(40):  # one window of 32 re-clustered and appended, 8 in the window
            self.decode_step([seq, twin], rng)
        seq.checkpoint()
        with self.assertRaises(clusterkv.FailedPreconditionError):
            client.resume_sequence("resume-twin")  # never checkpointed
        with self.assertRaises(clusterkv.NotFoundError):
            client.resume_sequence("no-such-sequence")

        # A fresh client (as a new process would): no prefill, the state comes from the daemon.
        resumed = self.connect(token_budget=100).resume_sequence("resume")
        self.assertEqual(resumed.layout, seq.layout)
        self.assertEqual(resumed.num_tokens, 640)
        for layer in range(3):
            self.assertEqual(resumed.layer_tokens(layer), seq.layer_tokens(layer))
        self.assertEqual(resumed.base_document, "")
        self.assertEqual(resumed.base_tokens, 0)
        q = rng.standard_normal((8, 64)).astype(np.float32)
        for layer in range(3):
            np.testing.assert_array_equal(resumed.attend(layer, q), seq.attend(layer, q),
                                          err_msg="layer %d at the checkpoint" % layer)
        # Decoding on: the next window re-clusters at the same token as the twin's.
        for step in range(30):
            got, want = self.decode_step([resumed, twin], rng)
            for layer in range(3):
                np.testing.assert_array_equal(got[layer], want[layer],
                                              err_msg="layer %d, step %d" % (layer, step))
        self.assertEqual(resumed.num_tokens, twin.num_tokens)
        self.assertEqual(len(resumed.index(1, 0)["sizes"]), len(twin.index(1, 0)["sizes"]))
        resumed.close(drop=True)
        twin.close(drop=True)

    def test_publish_find_prefix_fork_and_read_tokens(self):
        segment = 64
        client = self.connect(prefill_segment_tokens=segment, prefill_segment_clusters=4)
        self.assertEqual(client.config.prefill_segment_tokens, segment)
        self.assertEqual(client.config.prefill_segment_clusters, 4)
        layout = self.layout("fp16")
        rng = np.random.default_rng(31)
        doc_tokens = 320  # five segments
        doc_ids = rng.integers(0, 32000, size=doc_tokens, dtype=np.int64)
        doc_kv = [structured_kv(rng, 2, doc_tokens, 64) for _ in range(3)]  # float32 inputs

        doc = client.open_sequence("doc", layout)
        for layer in range(3):
            doc.offload_prefill(layer, *doc_kv[layer])
        with self.assertRaises(clusterkv.FailedPreconditionError):
            doc.publish(doc_ids[:-1], "test-model")  # not the sequence's length
        with self.assertRaises(TypeError):
            doc.publish("not token ids", "test-model")
        with self.assertRaises(TypeError):
            doc.publish(doc_ids.astype(np.float32), "test-model")
        with self.assertRaises(clusterkv.InvalidArgumentError):
            doc.publish(doc_ids.reshape(2, -1), "test-model")
        with self.assertRaises(clusterkv.InvalidArgumentError):
            doc.publish([1 << 40] * doc_tokens, "test-model")
        doc.publish(doc_ids.tolist(), "test-model")
        for layer in range(3):  # layer 0 dense
            keys, values = doc.read_tokens(layer, 0, doc_tokens)
            self.assertEqual(keys.dtype, np.float32)
            self.assertEqual(keys.shape, (doc_tokens, 2, 64))
            np.testing.assert_array_equal(keys, token_major(stored(doc_kv[layer][0])))
            np.testing.assert_array_equal(values, token_major(stored(doc_kv[layer][1])))

        # A prompt sharing the document's first 200 tokens: three whole segments.
        shared, own = 200, 100
        prompt_ids = np.concatenate([doc_ids[:shared],
                                     rng.integers(0, 32000, size=own, dtype=np.int64)])
        self.assertIsNone(client.find_prefix(prompt_ids, "other-model", layout))
        self.assertIsNone(client.find_prefix(prompt_ids[:segment - 1], "test-model", layout))
        self.assertIsNone(client.find_prefix(prompt_ids + 1, "test-model", layout))
        prefix = client.find_prefix(prompt_ids, "test-model", layout)
        self.assertIsInstance(prefix, clusterkv.StoredPrefix)
        self.assertEqual(prefix.document, "doc")
        self.assertEqual(prefix.segments, 3)
        self.assertEqual(prefix.tokens, 3 * segment)
        self.assertEqual(prefix.layout, layout)
        base = prefix.tokens
        self.assertEqual(  # a list and an int32 array find the same prefix
            vars_of(client.find_prefix(prompt_ids.astype(np.int32).tolist(), "test-model",
                                       layout)), vars_of(prefix))

        fork = client.open_sequence_from("fork", prefix)
        self.assertEqual(fork.base_document, "doc")
        self.assertEqual(fork.base_tokens, base)
        self.assertEqual(fork.num_tokens, base)
        with self.assertRaises(clusterkv.AlreadyExistsError):
            client.open_sequence_from("fork", prefix)
        # The prompt's keys and values: the document's for the shared tokens, its own after.
        prompt_kv = []
        for layer in range(3):
            own_k, own_v = structured_kv(rng, 2, own, 64)
            prompt_kv.append((np.concatenate([doc_kv[layer][0][:, :shared], own_k], axis=1),
                              np.concatenate([doc_kv[layer][1][:, :shared], own_v], axis=1)))
            keys, values = fork.read_tokens(layer, 0, base)
            self.assertEqual(keys.shape, (base, 2, 64))
            np.testing.assert_array_equal(keys, token_major(stored(doc_kv[layer][0][:, :base])))
            np.testing.assert_array_equal(values,
                                          token_major(stored(doc_kv[layer][1][:, :base])))
            keys, values = fork.read_tokens(layer, 10, 20)  # a range inside the prefix
            np.testing.assert_array_equal(keys, token_major(stored(doc_kv[layer][0][:, 10:20])))
        with self.assertRaises(clusterkv.InvalidArgumentError):
            fork.read_tokens(1, 20, 10)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            fork.read_tokens(1, 0, base + 1)  # past the fork's tokens

        # The rest of the prompt: the fork then holds and attends over all of it.
        for layer in range(3):
            fork.offload_prefill(layer, np.ascontiguousarray(prompt_kv[layer][0][:, base:]),
                                 np.ascontiguousarray(prompt_kv[layer][1][:, base:]))
        self.assertEqual(fork.num_tokens, shared + own)
        for layer in range(3):
            keys, values = fork.read_tokens(layer, 0, shared + own)
            np.testing.assert_array_equal(keys, token_major(stored(prompt_kv[layer][0])))
            np.testing.assert_array_equal(values, token_major(stored(prompt_kv[layer][1])))
            q = rng.standard_normal((8, 64)).astype(np.float32)
            want = full_attention(q, stored(prompt_kv[layer][0]), stored(prompt_kv[layer][1]))
            np.testing.assert_allclose(fork.attend(layer, q), want, rtol=1e-3, atol=1e-4,
                                       err_msg="layer %d" % layer)
        # The document's own content is untouched by the fork.
        keys, _ = doc.read_tokens(2, 0, doc_tokens)
        np.testing.assert_array_equal(keys, token_major(stored(doc_kv[2][0])))
        fork.close(drop=True)
        doc.close(drop=True)

    def test_checkpoint_engine_state_comes_back_on_resume(self):
        client = self.connect(token_budget=100)
        seq, _, _ = self.open_with_prefill(client, "engine-state", tokens=200, seed=41)
        rng = np.random.default_rng(42)
        for _ in range(3):
            self.decode_step([seq], rng)
        self.assertEqual(seq.engine_state, b"")  # a sequence of its own, never resumed
        # Opaque bytes, NULs included, larger than one 4 MiB piece of the checkpoint stream.
        state = bytes(range(256)) * ((4 << 20) // 256) + b"\0engine at step 3\0"
        seq.checkpoint(engine_state=state)
        resumed = self.connect(token_budget=100).resume_sequence("engine-state")
        self.assertIsInstance(resumed.engine_state, bytes)
        self.assertEqual(resumed.engine_state, state)
        self.assertEqual(resumed.num_tokens, seq.num_tokens)
        q = rng.standard_normal((8, 64)).astype(np.float32)
        for layer in range(3):
            np.testing.assert_array_equal(resumed.attend(layer, q), seq.attend(layer, q))
        resumed.close()

        # Each checkpoint replaces the previous one's state; any bytes-like object is taken.
        self.decode_step([seq], rng)
        seq.checkpoint(bytearray(b"step 4"))
        self.assertEqual(self.connect().resume_sequence("engine-state").engine_state, b"step 4")
        seq.checkpoint(engine_state=memoryview(b"xxstep 4x")[2:8])
        self.assertEqual(self.connect().resume_sequence("engine-state").engine_state, b"step 4")
        seq.checkpoint()  # none
        self.assertEqual(self.connect().resume_sequence("engine-state").engine_state, b"")
        with self.assertRaises(TypeError):
            seq.checkpoint(engine_state="text is not bytes")
        with self.assertRaises(clusterkv.InvalidArgumentError):  # a strided buffer
            seq.checkpoint(engine_state=np.zeros(8, np.uint8)[::2])
        seq.close(drop=True)

    def test_grant_shares_a_document_with_another_tenant_until_revoked(self):
        segment = 64
        options = dict(prefill_segment_tokens=segment, prefill_segment_clusters=4,
                       token_budget=100)
        a = self.connect("tenant-a", **options)
        b = self.connect("tenant-b", **options)
        layout = self.layout("fp16")
        rng = np.random.default_rng(51)
        doc_tokens, own = 2 * segment, 40
        prompt_ids = rng.integers(0, 32000, size=doc_tokens + own, dtype=np.int64)
        prompt_kv = [structured_kv(rng, 2, doc_tokens + own, 64) for _ in range(3)]
        state = b"engine windows\0" * 1000

        doc = a.open_sequence("granted-doc", layout)
        for layer in range(3):
            doc.offload_prefill(layer, np.ascontiguousarray(prompt_kv[layer][0][:, :doc_tokens]),
                                np.ascontiguousarray(prompt_kv[layer][1][:, :doc_tokens]))
        doc.publish(prompt_ids[:doc_tokens], "grant-model", engine_state=state)
        mine = a.find_prefix(prompt_ids, "grant-model", layout)
        self.assertEqual(mine.owner, "")  # the tenant's own document
        named = clusterkv.StoredPrefix("granted-doc", 2, doc_tokens, layout, owner="tenant-a")
        self.assertEqual(named.owner, "tenant-a")
        self.assertIn("owner='tenant-a'", repr(named))
        self.assertEqual(clusterkv.StoredPrefix("d", 1, segment, layout).owner, "")

        # Before a grant tenant b sees nothing, even naming the owner.
        self.assertIsNone(b.find_prefix(prompt_ids, "grant-model", layout))
        with self.assertRaises(clusterkv.NotFoundError):
            b.open_sequence_from("early", named)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            doc.grant("tenant-a")  # its own tenant

        doc.grant("tenant-b")
        found = b.find_prefix(prompt_ids, "grant-model", layout)
        self.assertIsNotNone(found)
        self.assertEqual(vars_of(found), vars_of(named))
        self.assertIsNone(self.connect("tenant-c", **options).find_prefix(
            prompt_ids, "grant-model", layout))  # the grant names one tenant
        fork = b.open_sequence_from("granted-fork", found)
        self.assertEqual(fork.base_document, "granted-doc")
        self.assertEqual(fork.base_tokens, doc_tokens)
        self.assertEqual(fork.engine_state, state)  # it shares the whole document
        for layer in range(3):
            keys, values = fork.read_tokens(layer, 0, doc_tokens)
            np.testing.assert_array_equal(
                keys, token_major(stored(prompt_kv[layer][0][:, :doc_tokens])))
            np.testing.assert_array_equal(
                values, token_major(stored(prompt_kv[layer][1][:, :doc_tokens])))
            fork.offload_prefill(layer, np.ascontiguousarray(prompt_kv[layer][0][:, doc_tokens:]),
                                 np.ascontiguousarray(prompt_kv[layer][1][:, doc_tokens:]))

        # Tenant b's own sequence over the same keys and values, prefilled whole.
        unshared = b.open_sequence("granted-unshared", layout)
        for layer in range(3):
            unshared.offload_prefill(layer, *prompt_kv[layer])
        q = rng.standard_normal((8, 64)).astype(np.float32)
        for layer in range(3):
            np.testing.assert_array_equal(fork.attend(layer, q), unshared.attend(layer, q),
                                          err_msg="layer %d after the prefill" % layer)
        for step in range(10):  # one window of 32 is not reached; the budget selects
            got, want = self.decode_step([fork, unshared], rng)
            for layer in range(3):
                np.testing.assert_array_equal(got[layer], want[layer],
                                              err_msg="layer %d, step %d" % (layer, step))

        # A revoke stops new finds and forks, not the fork that exists.
        doc.revoke("tenant-b")
        self.assertIsNone(b.find_prefix(prompt_ids, "grant-model", layout))
        with self.assertRaises(clusterkv.NotFoundError):
            b.open_sequence_from("late", found)
        got, want = self.decode_step([fork, unshared], rng)
        np.testing.assert_array_equal(got[2], want[2])
        fork.close(drop=True)
        unshared.close(drop=True)
        doc.close(drop=True)

    def test_c_abi_engine_state_and_grants(self):
        # The C ABI's engine-state and grant calls against the daemon, through ctypes: the
        # extension links libclusterkv, so its handle resolves the ckv_* symbols.
        lib = ctypes.CDLL(clusterkv._clusterkv.__file__)
        self.assertTrue(hasattr(lib, "ckv_sequence_grant"),
                        "the extension must link libclusterkv's C ABI dynamically")
        P, S, I32, I64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_int64
        Str = ctypes.c_char_p
        for name, args, result in [
                ("ckv_client_open", [Str, Str, ctypes.POINTER(P)], ctypes.c_int),
                ("ckv_client_close", [P], None),
                ("ckv_client_last_error", [P], Str),
                ("ckv_sequence_open", [P, Str, I32, I32, I32, I32, I32, ctypes.POINTER(P)],
                 ctypes.c_int),
                ("ckv_sequence_offload_prefill", [P, I32, P, P, I64], ctypes.c_int),
                ("ckv_sequence_checkpoint_with_state", [P, P, S], ctypes.c_int),
                ("ckv_sequence_publish_with_state", [P, P, I64, Str, P, S], ctypes.c_int),
                ("ckv_sequence_grant", [P, Str], ctypes.c_int),
                ("ckv_sequence_revoke", [P, Str], ctypes.c_int),
                ("ckv_sequence_engine_state", [P, ctypes.POINTER(P), ctypes.POINTER(S)],
                 ctypes.c_int),
                ("ckv_sequence_resume", [P, Str, ctypes.POINTER(P)], ctypes.c_int),
                ("ckv_sequence_open_from", [P, Str, P, ctypes.POINTER(P)], ctypes.c_int),
                ("ckv_sequence_last_error", [P], Str),
                ("ckv_sequence_close", [P, ctypes.c_int], ctypes.c_int),
                ("ckv_client_find_prefix", [P, P, I64, Str, I32, I32, I32, I32, I32,
                                            ctypes.POINTER(P)], ctypes.c_int),
                ("ckv_prefix_owner", [P], Str),
                ("ckv_prefix_tokens", [P], I64),
                ("ckv_prefix_free", [P], None)]:
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = result
        OK, INVALID, NOT_FOUND, FAILED_PRECONDITION = 0, 3, 5, 9
        target = self.daemon.target.encode()
        shape = (2, 4, 2, 16, 2)  # layers (both dense by default), q and kv heads, dim, fp32

        def open_client(tenant):
            client = P()
            self.assertEqual(lib.ckv_client_open(target, tenant, ctypes.byref(client)), OK)
            return client

        def engine_state(seq):
            data, size = P(), S(99)
            self.assertEqual(lib.ckv_sequence_engine_state(seq, ctypes.byref(data),
                                                           ctypes.byref(size)), OK)
            return ctypes.string_at(data, size.value)

        a, b = open_client(b"c-tenant-a"), open_client(b"c-tenant-b")
        kv = np.random.default_rng(61).standard_normal((2, 64, 16)).astype(np.float32)
        ids = np.arange(100, 164, dtype=np.int32)
        seq = P()
        self.assertEqual(lib.ckv_sequence_open(a, b"c-doc", *shape, ctypes.byref(seq)), OK,
                         lib.ckv_client_last_error(a))
        for layer in range(2):
            self.assertEqual(lib.ckv_sequence_offload_prefill(seq, layer, kv.ctypes.data,
                                                              kv.ctypes.data, 64), OK)
        state = b"c engine\0state"
        self.assertEqual(lib.ckv_sequence_checkpoint_with_state(seq, None, 3), INVALID)
        self.assertIn(b"engine state", lib.ckv_sequence_last_error(seq))
        self.assertEqual(lib.ckv_sequence_checkpoint_with_state(seq, state, len(state)), OK,
                         lib.ckv_sequence_last_error(seq))
        resumed = P()
        self.assertEqual(lib.ckv_sequence_resume(a, b"c-doc", ctypes.byref(resumed)), OK,
                         lib.ckv_client_last_error(a))
        self.assertEqual(engine_state(resumed), state)
        self.assertEqual(engine_state(seq), b"")  # never resumed
        self.assertEqual(lib.ckv_sequence_close(resumed, 0), OK)

        self.assertEqual(lib.ckv_sequence_grant(seq, b"c-tenant-b"),
                         FAILED_PRECONDITION)  # not published yet
        self.assertEqual(lib.ckv_sequence_publish_with_state(seq, ids.ctypes.data, 64, b"c-model",
                                                             None, 1), INVALID)
        self.assertEqual(lib.ckv_sequence_publish_with_state(seq, ids.ctypes.data, 64, b"c-model",
                                                             state, len(state)), OK,
                         lib.ckv_sequence_last_error(seq))
        self.assertEqual(lib.ckv_sequence_grant(seq, None), INVALID)
        self.assertEqual(lib.ckv_sequence_revoke(seq, None), INVALID)
        self.assertEqual(lib.ckv_sequence_grant(seq, b"c-tenant-a"), INVALID)  # its own

        def find(client):
            prefix = P(1)
            self.assertEqual(lib.ckv_client_find_prefix(client, ids.ctypes.data, 64, b"c-model",
                                                        *shape, ctypes.byref(prefix)), OK,
                             lib.ckv_client_last_error(client))
            return prefix

        self.assertFalse(find(b))  # NULL: no grant yet
        mine = find(a)
        self.assertEqual(lib.ckv_prefix_owner(mine), b"")
        lib.ckv_prefix_free(mine)
        self.assertEqual(lib.ckv_sequence_grant(seq, b"c-tenant-b"), OK,
                         lib.ckv_sequence_last_error(seq))
        theirs = find(b)
        self.assertTrue(theirs)
        self.assertEqual(lib.ckv_prefix_owner(theirs), b"c-tenant-a")
        self.assertEqual(lib.ckv_prefix_tokens(theirs), 64)
        fork = P()
        self.assertEqual(lib.ckv_sequence_open_from(b, b"c-fork", theirs, ctypes.byref(fork)),
                         OK, lib.ckv_client_last_error(b))
        self.assertEqual(engine_state(fork), state)  # the whole document is shared
        self.assertEqual(lib.ckv_sequence_revoke(seq, b"c-tenant-b"), OK)
        self.assertFalse(find(b))
        late = P()
        self.assertEqual(lib.ckv_sequence_open_from(b, b"c-late", theirs, ctypes.byref(late)),
                         NOT_FOUND)
        lib.ckv_prefix_free(theirs)
        self.assertEqual(lib.ckv_sequence_close(fork, 1), OK)
        self.assertEqual(lib.ckv_sequence_close(seq, 1), OK)
        lib.ckv_client_close(a)
        lib.ckv_client_close(b)

    # ---- argument validation ----------------------------------------------------------------
    def test_bad_dtype_shape_and_strides(self):
        client = self.connect()
        seq = client.open_sequence("bad-args", self.layout())
        good = np.zeros((2, 50, 64), dtype=np.float32)
        with self.assertRaisesRegex(TypeError, "float32 or float16, got float64"):
            seq.offload_prefill(1, good.astype(np.float64), good)
        with self.assertRaisesRegex(TypeError, "int32"):
            seq.offload_prefill(1, good, good.astype(np.int32))
        with self.assertRaises(clusterkv.InvalidArgumentError) as e:
            seq.offload_prefill(1, np.zeros((3, 50, 64), np.float32), good)
        self.assertIsInstance(e.exception, ValueError)
        self.assertEqual(e.exception.code_name, "INVALID_ARGUMENT")
        self.assertEqual(e.exception.code, 3)
        self.assertIn("[2, n, 64]", str(e.exception))
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, "3 dimensions"):
            seq.offload_prefill(1, good[0], good)
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, "last axis"):
            seq.offload_prefill(1, np.zeros((2, 50, 128), np.float32)[:, :, ::2], good)
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, "50 tokens"):
            seq.offload_prefill(1, good, np.zeros((2, 49, 64), np.float32))
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, "layer"):
            seq.offload_prefill(7, good, good)
        nan = good.copy()
        nan[1, 10, 3] = np.nan
        with self.assertRaises(clusterkv.InvalidArgumentError):
            seq.offload_prefill(1, nan, good)
        rng = np.random.default_rng(3)
        keys, values = structured_kv(rng, 2, 100, 64)
        seq.offload_prefill(1, keys, values)
        seq.append_token(1, np.zeros((2, 64), np.float32), np.zeros((2, 64), np.float32))
        with self.assertRaises(clusterkv.FailedPreconditionError):
            seq.offload_prefill(1, keys, values)  # no more prompt once a layer decodes
        q = np.zeros((8, 64), np.float32)
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, r"\[8, 64\]"):
            seq.attend(1, np.zeros((4, 64), np.float32))
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, "row-major"):
            seq.offload_prefill(1, np.zeros((50, 2, 64), np.float32).transpose(1, 0, 2), good)
        with self.assertRaises(TypeError):
            seq.attend(1, [[0.0] * 64] * 8)  # numpy arrays only
        with self.assertRaisesRegex(TypeError, "out must be float32"):
            seq.attend(1, q, out=np.zeros((8, 64), np.float16))
        with self.assertRaisesRegex(clusterkv.InvalidArgumentError, "read-only"):
            ro = np.zeros((8, 64), np.float32)
            ro.flags.writeable = False
            seq.attend(1, q, out=ro)
        q_nan = q.copy()
        q_nan[0, 0] = np.inf
        with self.assertRaises(clusterkv.InvalidArgumentError):
            seq.attend(1, q_nan)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            seq.append_token(1, np.zeros((2, 32), np.float32), np.zeros((2, 64), np.float32))
        with self.assertRaisesRegex(TypeError, "unknown option 'budget'"):
            clusterkv.Client.connect(self.daemon.target, "t", budget=3)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            clusterkv.Client.connect(self.daemon.target, "t", token_budget=0)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            clusterkv.KvLayout(1, 8, 3, 64)
        with self.assertRaises(clusterkv.InvalidArgumentError):
            clusterkv.KvLayout(1, 8, 2, 64, dtype="int8")
        seq.close(drop=True)

    # ---- tenants, lifecycle, errors ---------------------------------------------------------
    def test_other_tenant_cannot_reopen(self):
        owner = self.connect("tenant-a")
        seq, _, _ = self.open_with_prefill(owner, "private-seq", tokens=200)
        other = self.connect("tenant-b")
        with self.assertRaises(clusterkv.NotFoundError) as e:
            other.reopen_sequence("private-seq")
        self.assertIsInstance(e.exception, LookupError)
        self.assertIsInstance(e.exception, clusterkv.Error)
        self.assertEqual(e.exception.code, 5)
        self.assertEqual(e.exception.code_name, "NOT_FOUND")
        self.assertTrue(str(e.exception).startswith("NOT_FOUND: "))
        # The owner can: same layout, centroid indexes restored from the daemon.
        again = self.connect("tenant-a").reopen_sequence("private-seq")
        self.assertEqual(again.layout, seq.layout)
        np.testing.assert_array_equal(again.index(1, 1)["sizes"], seq.index(1, 1)["sizes"])
        np.testing.assert_allclose(again.index(1, 1)["centroids"], seq.index(1, 1)["centroids"])
        seq.close(drop=True)
        with self.assertRaises(clusterkv.NotFoundError):
            owner.reopen_sequence("private-seq")

    def test_closed_sequence_and_context_manager(self):
        client = self.connect()
        with client.open_sequence("ctx", self.layout()) as seq:
            self.assertEqual(seq.id, "ctx")
        with self.assertRaises(clusterkv.FailedPreconditionError):
            seq.offload_prefill(1, *structured_kv(np.random.default_rng(0), 2, 50, 64))
        self.assertEqual(seq.num_tokens, 0)  # accessors stay usable
        client.reopen_sequence("ctx").close(drop=True)  # close() kept it; drop deletes it
        with self.assertRaises(clusterkv.NotFoundError):
            client.reopen_sequence("ctx")
        with self.assertRaises(clusterkv.FailedPreconditionError):
            client.open_sequence("ctx", self.layout()).attend(1, np.zeros((8, 64), np.float32))

    def test_absent_daemon_is_unavailable(self):
        client = clusterkv.Client.connect("unix:/tmp/clusterkv-no-such-daemon.sock", "t",
                                          retry_attempts=1, call_timeout=5.0, data_plane="grpc")
        self.assertEqual(client.data_plane, "grpc")
        with self.assertRaises(clusterkv.UnavailableError) as e:
            client.open_sequence("x", self.layout())
        self.assertIsInstance(e.exception, ConnectionError)
        self.assertEqual(e.exception.code, 14)

    def test_threads_share_a_client_and_a_sequence(self):
        client = self.connect()
        seq, kv, _ = self.open_with_prefill(client, "threads")
        errors = []

        def work(seed):
            try:
                rng = np.random.default_rng(seed)
                for _ in range(5):
                    layer = int(rng.integers(3))
                    q = rng.standard_normal((8, 64)).astype(np.float32)
                    np.testing.assert_allclose(seq.attend(layer, q),
                                               full_attention(q, *kv[layer]), rtol=1e-4,
                                               atol=1e-5)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        seq.close(drop=True)

    def test_module_metadata(self):
        self.assertEqual(clusterkv.__version__, clusterkv.HEADER_VERSION)
        self.assertTrue(issubclass(clusterkv.UnavailableError, ConnectionError))
        self.assertTrue(issubclass(clusterkv.DeadlineExceededError, TimeoutError))
        self.assertTrue(issubclass(clusterkv.PermissionDeniedError, PermissionError))
        self.assertEqual(clusterkv.KvLayout.llama3_8b().head_dim, 128)
        config = clusterkv.Config()
        config.token_budget = 77
        client = clusterkv.Client.connect(self.daemon.target, "t", config=config,
                                          num_sink_tokens=8)
        self.assertEqual(client.config.token_budget, 77)
        self.assertEqual(client.config.num_sink_tokens, 8)
        self.assertIn(client.data_plane, ("ucx", "grpc"))
        self.assertEqual(config.centroid_scoring, "unit")
        config.centroid_scoring = "key_norm"
        self.assertEqual(config.centroid_scoring, "key_norm")
        with self.assertRaises(ValueError):
            config.centroid_scoring = "mean"
        scored = clusterkv.Client.connect(self.daemon.target, "t", centroid_scoring="key_norm")
        self.assertEqual(scored.config.centroid_scoring, "key_norm")

    # ---- the example ------------------------------------------------------------------------
    def test_example_runs(self):
        env = dict(os.environ)
        help_run = subprocess.run([sys.executable, ARGS.example, "--help"], env=env,
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(help_run.returncode, 0, help_run.stderr)
        self.assertIn("--target", help_run.stdout)
        run = subprocess.run(
            [sys.executable, ARGS.example, "--target=" + self.daemon.target, "--tenant=example",
             "--tokens=2048", "--steps=2"],
            env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("cache hit rate", run.stdout)
        self.assertIn("of full-attention mass attended", run.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemon", required=True)
    parser.add_argument("--example", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
