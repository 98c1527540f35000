"""clusterkv: Python bindings of libclusterkv, the ClusterKV KV-cache offload client.

A Client talks to the local clusterkvd; a Sequence runs the ClusterKV algorithm for one
sequence of one model: the prompt's keys are clustered and stored in the daemon, and each decode
step recalls only the clusters closest to the query, within a token budget.

    import numpy as np
    import clusterkv

    client = clusterkv.Client.connect("unix:/run/clusterkv/clusterkvd.sock", "engine-0",
                                      token_budget=1024)
    layout = clusterkv.KvLayout(num_layers=32, num_q_heads=32, num_kv_heads=8,
                                head_dim=128, dtype="fp16")
    with client.open_sequence("req-42", layout) as seq:
        seq.offload_prefill(layer, keys, values)    # [kv_heads, tokens, head_dim]
        out = seq.attend(layer, queries)            # [q_heads, head_dim] -> float32
        seq.append_token(layer, k_new, v_new)       # [kv_heads, head_dim]
        print(seq.select(layer, queries)[0]["clusters"], seq.cache_hit_rate)

Resumable sessions and shared documents:

    seq.checkpoint(engine_state=b"...")             # at a step boundary; engine bytes opaque
    seq = client.resume_sequence("req-42")          # any process: continues from there
    state = seq.engine_state                        # the checkpoint's engine bytes
    doc.publish(token_ids, "llama3-8b")             # seal a prefilled prompt as a document
    doc.grant("tenant-b")                           # tenant-b may find and fork it (revoke)
    prefix = client.find_prefix(prompt_ids, "llama3-8b", layout)    # StoredPrefix or None
    fork = client.open_sequence_from("req-43", prefix)  # shares prefix.tokens tokens
    keys, values = fork.read_tokens(layer, 0, prefix.tokens)  # [n, kv_heads, head_dim] float32
    fork.offload_prefill(layer, rest_keys, rest_values)       # the tokens after the prefix

Arrays are numpy float32 or float16 (TypeError otherwise); shapes and strides are checked
(InvalidArgumentError, a ValueError). Errors from the library raise clusterkv.Error subclasses
named after the status code, each also deriving from the matching builtin where there is one:
InvalidArgumentError (ValueError), NotFoundError (LookupError), UnavailableError
(ConnectionError), DeadlineExceededError (TimeoutError), PermissionDeniedError and
UnauthenticatedError (PermissionError), OutOfRangeError (IndexError), UnimplementedError
(NotImplementedError); FailedPreconditionError, ResourceExhaustedError, DataLossError, ...
derive from Error only. Every error carries .code, .code_name and .message.

Blocking calls release the GIL; one Sequence serialises calls from several threads.
"""

from ._clusterkv import (  # noqa: F401  (re-exported API)
    HEADER_VERSION,
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    Client,
    Config,
    DataLossError,
    DeadlineExceededError,
    Error,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    KvLayout,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    Sequence,
    StoredPrefix,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    __version__,
    attend_batch,
)


def connect(target, tenant, **options):
    """Shorthand for Client.connect(target, tenant, **options)."""
    return Client.connect(target, tenant, **options)


__all__ = [name for name in dir() if not name.startswith("_")] + ["__version__"]
