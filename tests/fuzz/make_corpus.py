#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): a few small valid and
invalid inputs each. Standard library only: the protobuf wire format and GGUF are written by
hand.
Usage: tests/fuzz/make_corpus.py   (rewrites the seeds; regression inputs are kept)"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    return varint((num << 3) | 2) + varint(len(b)) + b


def packed_floats(num, values):
    return field_bytes(num, b"".join(struct.pack("<f", x) for x in values))


def packed_ints(num, values):
    return field_bytes(num, b"".join(varint(x) for x in values))


def layout(layers=4, q=8, kv=4, d=128, dtype=1):
    return (field_varint(1, layers) + field_varint(2, q) + field_varint(3, kv) +
            field_varint(4, d) + field_varint(5, dtype))


def ref(layer, head, cluster):
    return field_varint(1, layer) + field_varint(2, head) + field_varint(3, cluster)


def block(tokens, data_bytes, layer=0, head=0, cluster=0):
    return (field_bytes(1, ref(layer, head, cluster)) + field_varint(2, tokens) +
            field_bytes(3, bytes(data_bytes)))


def head_index(clusters, d=128, value=0.0884):
    return (field_varint(1, 0) + field_varint(2, 0) + packed_floats(3, [value] * (clusters * d)) +
            packed_ints(4, [7] * clusters))


SEQ = field_bytes(1, b"seq-1")
FP16_BLOCK_1 = 4 + 2 * 128 * 2  # one token: position + key + value

REQUESTS = {
    "open_valid": SEQ + field_bytes(2, layout()),
    "open_odd_head_dim": SEQ + field_bytes(2, layout(d=127)),
    "open_bad_gqa": SEQ + field_bytes(2, layout(q=6, kv=4)),
    "open_control_char_id": field_bytes(1, b"se\x01q") + field_bytes(2, layout()),
    "close_drop": SEQ + field_varint(2, 1),
    "put_valid_block": SEQ + field_bytes(2, block(1, FP16_BLOCK_1)),
    "put_short_block": SEQ + field_bytes(2, block(1, FP16_BLOCK_1 - 2)),
    "put_negative_ref": SEQ + field_bytes(2, block(1, FP16_BLOCK_1, layer=-1)),
    "put_index": SEQ + field_bytes(3, head_index(1)) + field_varint(4, 7),
    "put_index_nan": SEQ + field_bytes(3, head_index(1, value=float("nan"))),
    "fetch_refs": SEQ + field_bytes(2, ref(0, 0, 0)) + field_bytes(2, ref(3, 3, 99)) +
                  field_bytes(2, ref(4, 0, 0)),
    "select_valid": SEQ + field_varint(2, 1) + packed_floats(3, [0.5] * (8 * 128)) +
                    field_varint(4, 4),
    "select_wrong_count": SEQ + field_varint(2, 1) + packed_floats(3, [0.5] * 5) +
                          field_varint(4, 0),
    "empty": b"",
    "truncated_varint": b"\x08\xff\xff",
}


def wire(kind, request_id, session_id, count, status, text, entries, reserved=0):
    header = struct.pack("<IHHQQIiII", 0x55564B43, 1, kind, request_id, session_id, count,
                         status, len(text), reserved)
    return header + text + entries


REQ_ENTRY = struct.pack("<iiiiQ", 1, 2, 3, 16, 4096)
DONE_ENTRY = struct.pack("<iiQ", 0, 16, 8256)
UCX = {
    "request_valid": wire(1, 7, 42, 2, 0, b"seq-1", REQ_ENTRY * 2),
    "request_empty": wire(1, 1, 1, 0, 0, b"", b""),
    "request_count_mismatch": wire(1, 7, 42, 3, 0, b"seq-1", REQ_ENTRY * 2),
    "request_bad_version": wire(1, 7, 42, 0, 0, b"", b"").replace(b"\x01\x00\x01\x00", b"\x02\x00\x01\x00", 1),
    "completion_valid": wire(2, 7, 42, 1, 0, b"", DONE_ENTRY),
    "completion_error": wire(2, 7, 42, 0, 5, b"no sequence 'seq-1'", b""),
    "completion_reserved_set": wire(2, 7, 42, 0, 0, b"", b"", reserved=9),
    "short_header": wire(1, 7, 42, 0, 0, b"", b"")[:20],
}


def ucx_string(b):
    return struct.pack("<H", len(b)) + b


def batch_text(ids):
    return struct.pack("<I", len(ids)) + b"".join(ucx_string(i) for i in ids)


def batch_entry(sequence, reserved=0):
    return REQ_ENTRY + struct.pack("<II", sequence, reserved)


def batch_done_text(message, results):
    return (ucx_string(message) + struct.pack("<I", len(results)) +
            b"".join(struct.pack("<i", code) + ucx_string(m) for code, m in results))


BATCH_IDS = batch_text([b"seq-1", b"", b"seq-3"])
UCX.update({
    "batch_request_valid": wire(3, 8, 42, 3, 0, BATCH_IDS,
                                batch_entry(0) + batch_entry(0) + batch_entry(2)),
    "batch_request_empty": wire(3, 8, 42, 0, 0, batch_text([]), b""),
    "batch_request_decreasing": wire(3, 8, 42, 2, 0, BATCH_IDS, batch_entry(2) + batch_entry(0)),
    "batch_request_out_of_range": wire(3, 8, 42, 1, 0, BATCH_IDS, batch_entry(3)),
    "batch_request_reserved_set": wire(3, 8, 42, 1, 0, BATCH_IDS, batch_entry(0, 1)),
    "batch_request_id_past_text": wire(3, 8, 42, 0, 0, BATCH_IDS[:-2], b""),
    "batch_completion_valid": wire(4, 8, 42, 3, 0,
                                   batch_done_text(b"", [(0, b""), (5, b"no sequence"), (0, b"")]),
                                   DONE_ENTRY + struct.pack("<iiQ", 5, 0, 0) + DONE_ENTRY),
    "batch_completion_error": wire(4, 8, 42, 0, 8, batch_done_text(b"pool full", []), b""),
    "batch_completion_error_with_results": wire(4, 8, 42, 1, 8, batch_done_text(b"x", [(0, b"")]),
                                                DONE_ENTRY),
})


def seq_prefix(tenant, seq):
    return tenant + b"\0" + seq + b"\0"


RECORDS = {
    "meta_valid": struct.pack("<BiiiiBq", 1, 4, 8, 4, 128, 0, 1234),
    "meta_bad_dtype": struct.pack("<BiiiiBq", 1, 4, 8, 4, 128, 7, 1234),
    "meta_bad_layout": struct.pack("<BiiiiBq", 1, 4, 8, 3, 128, 0, 1234),
    "index_valid": struct.pack("<Bii", 1, 2, 2) + struct.pack("<ii", 5, 6) +
                   struct.pack("<4f", 1, 0, 0, 1),
    "index_negative_size": struct.pack("<Bii", 1, 2, 1) + struct.pack("<i", -1) +
                           struct.pack("<2f", 1, 0),
    "index_huge_count": struct.pack("<Bii", 1, 0x7FFFFFFF, 0x7FFFFFFF),
    "block_key": seq_prefix(b"tenant-a", b"seq-1") + b"B" + struct.pack(">iii", 1, 2, 3),
    "directory_key": seq_prefix(b"tenant-a", b"seq-1") + b"D" + struct.pack(">iii", 1, 2, -3),
    "index_key": seq_prefix(b"t", b"s") + b"I" + struct.pack(">ii", 0, 0),
    "metadata_key": seq_prefix(b"t", b"s") + b"M",
    "key_no_terminator": b"tenant-only",
    "key_0xff": seq_prefix(b"\xff\xff", b"\xff") + b"B" + b"\xff" * 12,
}


def npy(descr, shape, data, fortran=False, major=1):
    shape_text = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = ("{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }"
              % (descr, "True" if fortran else "False", shape_text)).encode()
    length_bytes = 2 if major == 1 else 4
    total = (6 + 2 + length_bytes + len(header) + 1 + 63) // 64 * 64
    header += b" " * (total - 6 - 2 - length_bytes - len(header) - 1) + b"\n"
    length = struct.pack("<H" if major == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + length + header + data


NPY = {
    "f4_2x3": npy("<f4", [2, 3], struct.pack("<6f", *range(6))),
    "f2_1x1x4": npy("<f2", [1, 1, 4], b"\x00\x3c" * 4),
    "u2_bf16_4": npy("<u2", [4], b"\x80\x3f" * 4),
    "v2_version2": npy("|V2", [2], b"\x80\x3f" * 2, major=2),
    "scalar_f4": npy("<f4", [], struct.pack("<f", 1.5)),
    "fortran": npy("<f4", [1], struct.pack("<f", 1.0), fortran=True),
    "big_endian": npy(">f4", [1], struct.pack(">f", 1.0)),
    "truncated_data": npy("<f4", [4], struct.pack("<f", 1.0)),
    "huge_shape": npy("<f4", [1 << 40, 1 << 40], b""),
    "bad_magic": b"\x93NUMPZ\x01\x00",
}


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


# GGML type ids and (block elements, block bytes).
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
        "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
        "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176),
        "Q6_K": (14, 256, 210), "Q8_K": (15, 256, 292), "IQ2_XXS": (16, 256, 66),
        "I32": (26, 1, 4), "BF16": (30, 1, 2)}


def pattern(n, salt):
    """Deterministic bytes that look random enough to reach every nibble and bit plane."""
    return bytes((i * 167 + salt * 61 + (i >> 3) * 13) & 0xFF for i in range(n))


def gguf(tensors, metadata=(), version=3, alignment=32):
    """tensors: (name, type name, shape outermost first); metadata: (key, u32 type, value
    bytes). The data of each tensor is pattern() bytes of its size."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, vtype, value in metadata:
        head += gguf_string(key) + struct.pack("<I", vtype) + value
    data = b""
    for salt, (name, tname, shape) in enumerate(tensors):
        type_id, block_elements, block_bytes = GGML[tname]
        elements = 1
        for d in shape:
            elements *= d
        size = elements // block_elements * block_bytes
        head += gguf_string(name) + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        head += struct.pack("<IQ", type_id, len(data))
        data += pattern(size, salt)
        data += b"\0" * (-len(data) % alignment)
    head += b"\0" * (-len(head) % alignment)
    return head + data


ARCH = [("general.architecture", 8, gguf_string("llama"))]
K_QUANTS = gguf([("q2k", "Q2_K", [1, 256]), ("q3k", "Q3_K", [1, 256]), ("q4k", "Q4_K", [1, 256]),
                 ("q5k", "Q5_K", [1, 256]), ("q6k", "Q6_K", [1, 256]), ("q8k", "Q8_K", [256])],
                ARCH)
GGUF = {
    "q4_0_q8_0": gguf([("a", "Q4_0", [2, 32]), ("b", "Q8_0", [64])], ARCH),
    "q4_1_q5": gguf([("a", "Q4_1", [1, 64]), ("b", "Q5_0", [2, 32]), ("c", "Q5_1", [32])], ARCH),
    "k_quants": K_QUANTS,
    "floats": gguf([("f", "F32", [2, 3]), ("h", "F16", [4]), ("b", "BF16", [1, 1, 2])]),
    "unsupported_iq2_i32": gguf([("iq", "IQ2_XXS", [1, 256]), ("i", "I32", [3])], ARCH),
    "metadata_arrays_align64": gguf(
        [("w", "Q4_0", [1, 32])],
        [("general.alignment", 4, struct.pack("<I", 64)),
         ("tokens", 9, struct.pack("<IQ", 8, 2) + gguf_string("a") + gguf_string("bc")),
         ("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 6, 2) +
          struct.pack("<2f", 1.0, -2.0))], alignment=64),
    "version2": gguf([("w", "Q8_0", [32])], ARCH, version=2),
    "truncated_data": K_QUANTS[:len(K_QUANTS) - 100],
    "truncated_header": K_QUANTS[:150],
    "bad_inner_dim": gguf([("w", "Q4_0", [2, 48])], ARCH)[:-1],
    "bad_magic": b"GGUG" + struct.pack("<IQQ", 3, 0, 0),
}


def write(target, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("fuzz_request_validation", REQUESTS)
    write("fuzz_ucx_wire", UCX)
    write("fuzz_records", RECORDS)
    write("fuzz_npy", NPY)
    write("fuzz_gguf", GGUF)
