#!/usr/bin/env python3
"""Writes tests/data/llama/tokenizer_golden.json: token ids and decoded text from llama.cpp's
own tokenizer (through the PyPI package llama-cpp-python, vocabulary only) for the GGUF models
of deploy/models.sh, the reference that tests/unit/llama_tokenizer_test.cc checks
tools/clusterkv_llama/tokenizer.h against.

Each case is tokenized with llama_tokenize(text, add_special, parse_special) and its ids are
decoded with llama_detokenize(ids, remove_special=False, unparse_special=True/False). The
"smollm2-pre-default" and "smollm2-pre-gpt-2" entries run SmolLM2's vocabulary with
tokenizer.ggml.pre overridden (llama.cpp kv_overrides) to cover those pre-tokenizers.

The long passage is the opening of Pride and Prejudice, read from Debian's r-cran-janeaustenr
(its R lazy-load database: a sequence of zlib streams, each an R-serialized object; the
character vectors are the novels' lines).

Usage (llama-cpp-python installed, e.g. in /tmp/refvenv):
  /tmp/refvenv/bin/python tools/clusterkv_llama/reference/make_tokenizer_golden.py \
      [--model_dir DIR] [--out tests/data/llama/tokenizer_golden.json]
"""

import argparse
import ctypes
import json
import os
import struct
import sys
import zlib

import llama_cpp

JANE_AUSTEN_RDB = "/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
PASSAGE_START = "It is a truth universally acknowledged"
PASSAGE_MIN_CHARS = 5000

MODELS = [
    # (name, GGUF file, tokenizer.ggml.pre override or None, special-token text of the case)
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", None,
     "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"),
    ("gemma3", "gemma-3-270m-q4_k_m.gguf", None,
     "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"),
    ("smollm2-pre-default", "SmolLM2-135M-Instruct.Q4_1.gguf", "default",
     "<|im_start|>user\nHi there<|im_end|>\n"),
    ("smollm2-pre-gpt-2", "SmolLM2-135M-Instruct.Q4_1.gguf", "gpt-2",
     "<|im_start|>user\nHi there<|im_end|>\n"),
]


def r_strings(blob):
    """The elements of an R XDR-serialized character vector (empty list for other objects)."""
    if blob[:2] != b"X\n":
        raise ValueError("not an R XDR serialization")
    version = struct.unpack(">I", blob[2:6])[0]
    pos = 14
    if version == 3:
        pos += 4 + struct.unpack(">I", blob[pos:pos + 4])[0]
    flags, count = struct.unpack(">II", blob[pos:pos + 8])
    if flags & 0xFF != 16:  # STRSXP
        return []
    pos += 8
    out = []
    for _ in range(count):
        element_flags, length = struct.unpack(">Ii", blob[pos:pos + 8])
        pos += 8
        if element_flags & 0xFF != 9:  # CHARSXP
            raise ValueError("unexpected element type")
        if length < 0:
            out.append("")
            continue
        out.append(blob[pos:pos + length].decode("utf-8"))
        pos += length
    return out


def jane_austen_passage():
    data = open(JANE_AUSTEN_RDB, "rb").read()
    lines = []
    pos = 0
    while pos + 4 <= len(data):
        expected = struct.unpack(">I", data[pos:pos + 4])[0]
        d = zlib.decompressobj()
        blob = d.decompress(data[pos + 4:])
        if len(blob) != expected:
            raise ValueError("bad zlib stream at offset %d" % pos)
        pos += 4 + (len(data) - pos - 4 - len(d.unused_data))
        lines.extend(r_strings(blob))
    start = next(i for i, line in enumerate(lines) if line.startswith(PASSAGE_START))
    # Paragraphs: the novels' lines are wrapped text with "" between paragraphs.
    passage = []
    i = start
    while sum(len(x) + 1 for x in passage) < PASSAGE_MIN_CHARS:
        passage.append(lines[i])
        i += 1
    return "\n".join(passage)


def cases(special_text, passage):
    """(name, text, [(add_special, parse_special), ...])."""
    both = [(False, False), (True, True)]
    every = [(False, False), (False, True), (True, False), (True, True)]
    return [
        ("empty", "", every),
        ("plain", "Hello world! This is a simple English sentence.", both),
        ("austen", passage, both),
        ("numbers", "1234567 3.14", both),
        ("more_numbers", "Call 555-0199 or 1,000,000.50 now; the 42nd of 2024-06-01 at 10:30",
         both),
        ("punctuation",
         "Hello, world!!! (yes) [no] {maybe}... \"quoted\" -- dash; semi: colon? `tick` ~t~ "
         "$5 + 3 = 8 <tag> a|b ^c_d @at #hash %pct &amp *star /slash \\back", both),
        ("contractions", "don't I'll we're they've she'd it's I'm DON'T You'RE 'quoted'", both),
        ("apostrophes", "'s 'S it''s rock'n'roll ' 'll 've x' 'd'm 're", both),
        ("spaces_and_newlines", "a \n b  \n\n  c \t\n", both),
        ("marker_characters", "a\u2581b \u2581\u2581 \u0120c \u010a\u0120", both),
        ("fullwidth", "\uff21\uff22\uff23\u3000\uff11\uff12\uff13 abc123def 12.34.56", both),
        ("spaces_before_punct", "Wait , what ? Yes ! No . it ' s ok, I 'm sure they 're , we 've",
         both),
        ("whitespace_runs", "a  b   c    d     e" + " " * 12 + "f", both),
        ("tabs", "\ttab\tseparated\t\tcolumns\t", both),
        ("newline", "line one\nline two", both),
        ("double_newline", "paragraph one\n\nparagraph two", both),
        ("triple_newline", "a\n\n\nb", both),
        ("mixed_whitespace", " \n \t \r\n mixed\r\n", both),
        ("leading_spaces", "   leading spaces", both),
        ("trailing_spaces", "trailing spaces   ", both),
        ("only_spaces", "     ", both),
        ("long_runs", " " * 40 + "x" + "\n" * 40 + "y" + "\t" * 9, both),
        ("accents", "Café naïve façade résumé Ångström Øre œuvre São Paulo Zürich", both),
        ("greek", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.", both),
        ("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю.", both),
        ("cjk", "我爱自然语言处理。日本語のテキストです。한국어 텍스트", both),
        ("emoji", "I love 🍕 and 🚀! 👩‍💻 👍🏽 ❤️ 🇫🇷", both),
        ("unicode_numbers", "١٢٣ ٤٥٦ Ⅻ ½ x² ³ ۴", both),
        ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u2028e\u0085f", both),
        ("rare_characters", "𓀀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010FFFD \uE000 \u0378 ꙮ", both),
        ("control_characters", "a\x00b\x1bc\x7fd", both),
        ("code", "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n"
                 "\tprint(f(3))\n", both),
        ("url", "https://example.com/a?b=c&d=e#frag user@example.org", both),
        ("special_tokens", special_text, every),
        ("special_tokens_inline", "say" + special_text + "done", every),
        ("other_specials", "<|endoftext|> <eos> <pad> <unk> <mask> </s> <s> [multimodal]",
         every),
    ]


def detokenize(vocab, ids, unparse_special):
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    size = 1024
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, unparse_special)
        if n >= 0:
            return buf.raw[:n]
        size = -n + 1


def text_field(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def model_entry(name, path, pre, special_text, passage):
    overrides = {"tokenizer.ggml.pre": pre} if pre else None
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False,
                          kv_overrides=overrides)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    entry = {
        "name": name,
        "file": os.path.basename(path),
        "pre_override": pre,
        "vocab_size": n_vocab,
        "bos": llama_cpp.llama_vocab_bos(vocab),
        "eos": llama_cpp.llama_vocab_eos(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "eog": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "control": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_control(vocab, i)],
        "cases": [],
    }
    if len(entry["control"]) > 64:  # Gemma's thousands of <unusedN>: keep the count only
        entry["control_count"] = len(entry["control"])
        entry["control"] = entry["control"][:64]
    for case_name, text, variants in cases(special_text, passage):
        if pre and case_name == "austen":
            continue  # the pre-tokenizer variants keep the file small
        for add_special, parse_special in variants:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
            case = {
                "name": case_name,
                "text": text,
                "add_special": add_special,
                "parse_special": parse_special,
                "ids": ids,
            }
            for key, unparse in (("decoded", True), ("decoded_plain", False)):
                raw = detokenize(vocab, ids, unparse)
                if text_field(raw) is None:
                    case[key + "_hex"] = raw.hex()
                else:
                    case[key] = raw.decode("utf-8")
            entry["cases"].append(case)
    return entry


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    default_dir = os.environ.get("CLUSTERKV_MODEL_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "clusterkv", "models")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=default_dir)
    parser.add_argument("--out", default=os.path.join(root, "tests", "data", "llama",
                                                      "tokenizer_golden.json"))
    args = parser.parse_args()

    passage = jane_austen_passage()
    golden = {
        "reference": "llama-cpp-python %s (llama.cpp's llama_tokenize / llama_detokenize, "
                     "vocab_only)" % llama_cpp.__version__,
        "passage": "Pride and Prejudice from \"%s\", %d characters (%s)" % (
            PASSAGE_START, len(passage), JANE_AUSTEN_RDB),
        "models": [],
    }
    for name, file, pre, special_text in MODELS:
        path = os.path.join(args.model_dir, file)
        if not os.path.exists(path):
            sys.exit("missing %s: run deploy/setup.sh" % path)
        golden["models"].append(model_entry(name, path, pre, special_text, passage))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
