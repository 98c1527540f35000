/* clusterkv.h: the C ABI of libclusterkv, for engines that are not C++ (or want a stable ABI).
 * It wraps clusterkv::client::Client and Sequence with opaque handles.
 *
 * Errors: every function returns an int status code with absl's (= gRPC's) numbering:
 * CKV_OK = 0, 3 = INVALID_ARGUMENT, 5 = NOT_FOUND, 9 = FAILED_PRECONDITION, 14 = UNAVAILABLE...
 * The message of the last failure is kept per handle (ckv_client_last_error,
 * ckv_sequence_last_error) until the next call on that handle. No C++ exception crosses this
 * boundary.
 *
 * Threads: a client handle may be used from several threads for ckv_sequence_open only when
 * the caller does not read its last error concurrently; each sequence handle belongs to one
 * thread at a time.
 *
 * Example:
 *   ckv_client* c;
 *   if (ckv_client_open("unix:/run/clusterkv/clusterkvd.sock", "engine-0", &c) != CKV_OK) ...
 *   ckv_sequence* s;
 *   int rc = ckv_sequence_open(c, "req-42", 32, 32, 8, 128, CKV_DTYPE_FP16, &s);
 *   if (rc != CKV_OK) fprintf(stderr, "%s\n", ckv_client_last_error(c));
 *   ckv_sequence_offload_prefill(s, layer, k, v, tokens);
 *   ckv_sequence_attend(s, layer, q, out);
 *   ckv_sequence_append_token(s, layer, k_new, v_new);
 *   ckv_sequence_close(s, 1);
 *   ckv_client_close(c);
 */
#ifndef CLUSTERKV_CLIENT_CLUSTERKV_H_
#define CLUSTERKV_CLIENT_CLUSTERKV_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckv_client ckv_client;
typedef struct ckv_sequence ckv_sequence;
/* A stored prefix found by ckv_client_find_prefix (a document and how much of it matches). */
typedef struct ckv_prefix ckv_prefix;

enum {
  CKV_OK = 0,
  CKV_INVALID_ARGUMENT = 3,
  CKV_NOT_FOUND = 5,
  CKV_ALREADY_EXISTS = 6,
  CKV_FAILED_PRECONDITION = 9,
  CKV_INTERNAL = 13,
  CKV_UNAVAILABLE = 14,
  CKV_DATA_LOSS = 15,
};

/* Element types of K/V (the sequence dtype). */
enum { CKV_DTYPE_FP16 = 0, CKV_DTYPE_BF16 = 1, CKV_DTYPE_FP32 = 2 };

/* Connects to the daemon at `target` ("unix:/path" or "host:port") as `tenant`, with the
 * default algorithm configuration and CPU compute. On success *client owns a handle to free
 * with ckv_client_close; on failure *client is NULL. */
int ckv_client_open(const char* target, const char* tenant, ckv_client** client);
/* Frees the handle (NULL is ignored). Every sequence of the client must be closed first. */
void ckv_client_close(ckv_client* client);
/* Message of the client's last failure; "" after a success. Valid until the next call on it. */
const char* ckv_client_last_error(const ckv_client* client);

/* Opens (or creates) a sequence; errors are recorded on `client`. */
int ckv_sequence_open(ckv_client* client, const char* sequence_id, int32_t num_layers,
                      int32_t num_q_heads, int32_t num_kv_heads, int32_t head_dim, int32_t dtype,
                      ckv_sequence** sequence);
/* k, v: [num_kv_heads, tokens, head_dim] contiguous, in the sequence dtype. */
int ckv_sequence_offload_prefill(ckv_sequence* sequence, int32_t layer, const void* k,
                                 const void* v, int64_t tokens);
/* q, out: [num_q_heads, head_dim] fp32 contiguous. */
int ckv_sequence_attend(ckv_sequence* sequence, int32_t layer, const float* q, float* out);
/* One decode step of `layer` for `count` distinct sequences in one call (continuous
 * batching): the device-cache misses of every sequence are recalled in one data-plane
 * request. q and out: [count, num_q_heads, head_dim] fp32 contiguous (every sequence must
 * have the same num_q_heads and head_dim). statuses (may be NULL): count codes, one per
 * sequence, each what ckv_sequence_attend would return (its message goes to that sequence's
 * last error). Returns CKV_OK when all succeeded, else the first failure's code;
 * INVALID_ARGUMENT for NULL arrays, count < 1, a NULL or repeated sequence or mismatched
 * shapes (then nothing runs and statuses are untouched). */
int ckv_attend_batch(ckv_sequence* const* sequences, int32_t count, int32_t layer,
                     const float* q, float* out, int* statuses);
/* Starts recalling in the background what ckv_sequence_attend(layer) would select for the
 * predicted queries q_guess ([num_q_heads, head_dim] fp32 contiguous, e.g. the layer's Wq
 * applied to an earlier layer's input); the layer's next attend waits for it and fetches only
 * what its real queries add. q_guess is not used after the call returns. OK on a dense layer.
 * A failed background fetch is not reported here: the next attend fetches everything. */
int ckv_sequence_prefetch(ckv_sequence* sequence, int32_t layer, const float* q_guess);
/* k, v: [num_kv_heads, head_dim] contiguous, in the sequence dtype. */
int ckv_sequence_append_token(ckv_sequence* sequence, int32_t layer, const void* k, const void* v);
/* The share of attention mass the last successful ckv_sequence_attend is estimated to have
 * attended (from centroids and cluster statistics; 1 on a dense layer): the mean over the
 * layer's kv heads, or with minimum != 0 the lowest head's. 1 before any attend; NaN for NULL. */
double ckv_sequence_estimated_recall(const ckv_sequence* sequence, int minimum);
/* Tokens of the sequence (0 for NULL). */
int64_t ckv_sequence_num_tokens(const ckv_sequence* sequence);

/* ---- Resumable sessions and shared documents (client/sequence.h) ----
 * ckv_client_open uses the default configuration (prefill_segment_tokens 2048): prompts are
 * clustered in segments of 2048 tokens, so ckv_client_find_prefix finds any 2048-aligned prefix
 * of a document published through this ABI (and its whole length). */
/* Writes to the daemon what a resume needs beyond the clusters (sinks, dense layers, recent
 * windows, position); afterwards ckv_sequence_resume continues the sequence as it stands now,
 * in any process. Call it at a step boundary. */
int ckv_sequence_checkpoint(ckv_sequence* sequence);
/* ckv_sequence_checkpoint that also saves `bytes` bytes at `state` with the checkpoint, opaque:
 * what the engine keeps beside the sequence (e.g. the windows of sliding-window layers, which
 * never reach the daemon), handed back by ckv_sequence_engine_state after a resume. Each
 * checkpoint replaces the previous one's state (bytes 0: none; state may then be NULL).
 * INVALID_ARGUMENT: state NULL with bytes > 0. The bytes are not used after the call. */
int ckv_sequence_checkpoint_with_state(ckv_sequence* sequence, const void* state, size_t bytes);
/* Seals the prefilled sequence as a document whose token ids are tokens[0..count) (its whole
 * length) for `model` (a name of the weights); a prompt starting with the same tokens then
 * finds it (ckv_client_find_prefix) and the sequence becomes read-only. FAILED_PRECONDITION
 * after decode tokens, on a fork, or when count differs from its tokens. */
int ckv_sequence_publish(ckv_sequence* sequence, const int32_t* tokens, int64_t count,
                         const char* model);
/* ckv_sequence_publish whose checkpoint saves `bytes` bytes at `state` (as
 * ckv_sequence_checkpoint_with_state): a fork of the WHOLE document receives them from
 * ckv_sequence_engine_state; a fork of fewer segments receives none. */
int ckv_sequence_publish_with_state(ckv_sequence* sequence, const int32_t* tokens, int64_t count,
                                    const char* model, const void* state, size_t bytes);
/* Lets `tenant` find and fork this published document: its ckv_client_find_prefix answers with
 * ckv_prefix_owner set to this sequence's tenant. The blocks stay accounted to this tenant.
 * Without a grant another tenant sees nothing of a document (ckv_client_find_prefix finds no
 * prefix, ckv_sequence_open_from answers NOT_FOUND). FAILED_PRECONDITION: not published;
 * INVALID_ARGUMENT: NULL, a bad tenant name, or this sequence's own tenant. */
int ckv_sequence_grant(ckv_sequence* sequence, const char* tenant);
/* Withdraws a grant: `tenant` no longer finds or forks the document; its existing forks keep
 * working. Errors as ckv_sequence_grant. */
int ckv_sequence_revoke(ckv_sequence* sequence, const char* tenant);
/* The stored keys and values of positions [begin, end) of `layer`, written as fp32 in
 * token-major order [end - begin, num_kv_heads, head_dim] (an engine's KV cache) into keys and
 * values, e.g. to prefill the rest of a prompt after a shared prefix. INVALID_ARGUMENT: NULL
 * buffers or a bad range; DATA_LOSS: a position is missing. */
int ckv_sequence_read_tokens(ckv_sequence* sequence, int32_t layer, int64_t begin, int64_t end,
                             float* keys, float* values);
/* A fork's base: the document id ("" for a sequence of its own, or NULL) and the tokens it
 * shares (0). The string lives as long as the handle. */
const char* ckv_sequence_base_document(const ckv_sequence* sequence);
int64_t ckv_sequence_base_tokens(const ckv_sequence* sequence);
/* The engine state of the checkpoint this sequence was resumed from, or of the document this
 * fork shares whole: *data and *bytes (bytes 0 when there is none). The bytes live as long as
 * the handle. INVALID_ARGUMENT for a NULL argument (then the outputs given are NULL and 0). */
int ckv_sequence_engine_state(const ckv_sequence* sequence, const void** data, size_t* bytes);

/* Rebuilds a checkpointed sequence from the daemon alone, exactly as it was at its last
 * checkpoint (no prefill); errors are recorded on `client`. NOT_FOUND: no such sequence;
 * FAILED_PRECONDITION: never checkpointed. */
int ckv_sequence_resume(ckv_client* client, const char* sequence_id, ckv_sequence** sequence);
/* The longest stored prefix of tokens[0..count) for `model` and the layout among this
 * tenant's documents and those other tenants granted it (ckv_sequence_grant). On success
 * *prefix is a handle to free with ckv_prefix_free, or NULL when no document matches (still
 * CKV_OK); on failure NULL. Errors are recorded on `client`. */
int ckv_client_find_prefix(ckv_client* client, const int32_t* tokens, int64_t count,
                           const char* model, int32_t num_layers, int32_t num_q_heads,
                           int32_t num_kv_heads, int32_t head_dim, int32_t dtype,
                           ckv_prefix** prefix);
/* The document holding the prefix ("" for NULL), its segments and tokens (0 for NULL). */
const char* ckv_prefix_document(const ckv_prefix* prefix);
int32_t ckv_prefix_segments(const ckv_prefix* prefix);
int64_t ckv_prefix_tokens(const ckv_prefix* prefix);
/* The document's tenant when another tenant granted it to this one; "" for this tenant's own
 * document (or NULL). ckv_sequence_open_from forks from that tenant's document. */
const char* ckv_prefix_owner(const ckv_prefix* prefix);
/* Frees the handle (NULL is ignored); sequences opened from it do not need it. */
void ckv_prefix_free(ckv_prefix* prefix);
/* Creates `sequence_id` as a fork of `prefix`: it holds the prefix's tokens, shared with the
 * document (no copy, no prefill); ckv_sequence_offload_prefill with the keys and values of the
 * tokens after the prefix then adds the rest of the prompt. Errors are recorded on `client`;
 * ALREADY_EXISTS: the id is taken; FAILED_PRECONDITION: the document is gone. */
int ckv_sequence_open_from(ckv_client* client, const char* sequence_id, const ckv_prefix* prefix,
                           ckv_sequence** sequence);
/* Closes the sequence on the daemon (drop != 0 deletes it) and frees the handle, whatever the
 * result (NULL is INVALID_ARGUMENT). */
int ckv_sequence_close(ckv_sequence* sequence, int drop);
const char* ckv_sequence_last_error(const ckv_sequence* sequence);

/* Canonical name of a status code ("OK", "INVALID_ARGUMENT", ...); "UNKNOWN" when unknown. */
const char* ckv_status_message(int code);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CLUSTERKV_CLIENT_CLUSTERKV_H_ */
