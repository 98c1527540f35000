/* The C ABI of libclusterkv, compiled as C: every bad argument is answered with an error code
 * and a message, without a daemon (the client connects lazily). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "client/clusterkv.h"

static int failures = 0;

#define EXPECT_EQ_INT(actual, expected)                                                    \
  do {                                                                                     \
    int a_ = (actual), e_ = (expected);                                                    \
    if (a_ != e_) {                                                                        \
      fprintf(stderr, "%s:%d: %s = %d (%s), expected %d (%s)\n", __FILE__, __LINE__,      \
              #actual, a_, ckv_status_message(a_), e_, ckv_status_message(e_));            \
      ++failures;                                                                          \
    }                                                                                      \
  } while (0)

#define EXPECT_TRUE(cond)                                                   \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);   \
      ++failures;                                                           \
    }                                                                       \
  } while (0)

int main(void) {
  ckv_client* client = NULL;
  ckv_sequence* seq = NULL;
  float q[8] = {0};
  float out[8] = {0};

  EXPECT_TRUE(strcmp(ckv_status_message(0), "OK") == 0);
  EXPECT_TRUE(strcmp(ckv_status_message(3), "INVALID_ARGUMENT") == 0);
  EXPECT_TRUE(strcmp(ckv_status_message(14), "UNAVAILABLE") == 0);
  EXPECT_TRUE(strcmp(ckv_status_message(99), "UNKNOWN") == 0);

  EXPECT_EQ_INT(ckv_client_open(NULL, "tenant", &client), CKV_INVALID_ARGUMENT);
  EXPECT_TRUE(client == NULL);
  EXPECT_EQ_INT(ckv_client_open("unix:/nonexistent/clusterkv.sock", NULL, &client),
                CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_client_open("unix:/nonexistent/clusterkv.sock", "tenant", NULL),
                CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_client_open("unix:/nonexistent/clusterkv.sock", "", &client),
                CKV_INVALID_ARGUMENT);
  EXPECT_TRUE(client == NULL);

  /* Connecting is lazy: this succeeds with no daemon. */
  EXPECT_EQ_INT(ckv_client_open("unix:/nonexistent/clusterkv.sock", "tenant", &client), CKV_OK);
  EXPECT_TRUE(client != NULL);
  if (client == NULL) return 1;
  EXPECT_TRUE(strcmp(ckv_client_last_error(client), "") == 0);

  /* Bad layouts and arguments fail before any RPC. */
  EXPECT_EQ_INT(ckv_sequence_open(NULL, "s", 2, 4, 2, 16, CKV_DTYPE_FP32, &seq),
                CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_open(client, NULL, 2, 4, 2, 16, CKV_DTYPE_FP32, &seq),
                CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_open(client, "s", 2, 4, 2, 16, CKV_DTYPE_FP32, NULL),
                CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_open(client, "s", 2, 4, 2, 16, 7, &seq), CKV_INVALID_ARGUMENT);
  EXPECT_TRUE(strlen(ckv_client_last_error(client)) > 0);
  EXPECT_EQ_INT(ckv_sequence_open(client, "s", 0, 4, 2, 16, CKV_DTYPE_FP32, &seq),
                CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_open(client, "s", 2, 3, 2, 16, CKV_DTYPE_FP32, &seq),
                CKV_INVALID_ARGUMENT); /* q heads not a multiple of kv heads */
  EXPECT_EQ_INT(ckv_sequence_open(client, "", 2, 4, 2, 16, CKV_DTYPE_FP32, &seq),
                CKV_INVALID_ARGUMENT);
  EXPECT_TRUE(seq == NULL);

  /* Null sequence handles. */
  EXPECT_EQ_INT(ckv_sequence_offload_prefill(NULL, 0, q, q, 1), CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_attend(NULL, 0, q, out), CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_prefetch(NULL, 0, q), CKV_INVALID_ARGUMENT);
  {
    ckv_sequence* none[2] = {NULL, NULL};
    int statuses[2] = {-1, -1};
    EXPECT_EQ_INT(ckv_attend_batch(NULL, 1, 0, q, out, statuses), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_attend_batch(none, 2, 0, q, out, statuses), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_attend_batch(none, 0, 0, q, out, statuses), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(statuses[0], -1); /* untouched */
  }
  EXPECT_EQ_INT(ckv_sequence_append_token(NULL, 0, q, q), CKV_INVALID_ARGUMENT);
  EXPECT_EQ_INT(ckv_sequence_close(NULL, 0), CKV_INVALID_ARGUMENT);
  EXPECT_TRUE(ckv_sequence_num_tokens(NULL) == 0);

  /* Resumable sessions and shared documents: NULL handles and arguments, before any RPC. */
  {
    const int32_t ids[3] = {1, 2, 3};
    ckv_prefix* prefix = (ckv_prefix*)&failures; /* must be reset to NULL on failure */
    EXPECT_EQ_INT(ckv_sequence_checkpoint(NULL), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_sequence_publish(NULL, ids, 3, "m"), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_sequence_read_tokens(NULL, 0, 0, 1, q, out), CKV_INVALID_ARGUMENT);
    EXPECT_TRUE(strcmp(ckv_sequence_base_document(NULL), "") == 0);
    EXPECT_TRUE(ckv_sequence_base_tokens(NULL) == 0);

    /* Engine state, grants. */
    {
      const char state[4] = {'a', 0, 'b', 'c'};
      const void* data = state; /* must be reset to NULL / 0 on failure */
      size_t bytes = 7;
      EXPECT_EQ_INT(ckv_sequence_checkpoint_with_state(NULL, state, sizeof(state)),
                    CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_checkpoint_with_state(NULL, NULL, 0), CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_publish_with_state(NULL, ids, 3, "m", state, sizeof(state)),
                    CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_engine_state(NULL, &data, &bytes), CKV_INVALID_ARGUMENT);
      EXPECT_TRUE(data == NULL);
      EXPECT_TRUE(bytes == 0);
      EXPECT_EQ_INT(ckv_sequence_engine_state(NULL, NULL, &bytes), CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_engine_state(NULL, &data, NULL), CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_grant(NULL, "tenant-b"), CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_grant(NULL, NULL), CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_revoke(NULL, "tenant-b"), CKV_INVALID_ARGUMENT);
      EXPECT_EQ_INT(ckv_sequence_revoke(NULL, NULL), CKV_INVALID_ARGUMENT);
      EXPECT_TRUE(strcmp(ckv_prefix_owner(NULL), "") == 0);
    }

    seq = (ckv_sequence*)&failures;
    EXPECT_EQ_INT(ckv_sequence_resume(NULL, "s", &seq), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_sequence_resume(client, NULL, &seq), CKV_INVALID_ARGUMENT);
    EXPECT_TRUE(seq == NULL);
    EXPECT_TRUE(strlen(ckv_client_last_error(client)) > 0);
    EXPECT_EQ_INT(ckv_sequence_resume(client, "s", NULL), CKV_INVALID_ARGUMENT);

    EXPECT_EQ_INT(ckv_client_find_prefix(NULL, ids, 3, "m", 2, 4, 2, 16, CKV_DTYPE_FP32, &prefix),
                  CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_client_find_prefix(client, ids, 3, "m", 2, 4, 2, 16, CKV_DTYPE_FP32, NULL),
                  CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_client_find_prefix(client, NULL, 3, "m", 2, 4, 2, 16, CKV_DTYPE_FP32,
                                         &prefix),
                  CKV_INVALID_ARGUMENT);
    EXPECT_TRUE(prefix == NULL);
    EXPECT_EQ_INT(ckv_client_find_prefix(client, ids, -1, "m", 2, 4, 2, 16, CKV_DTYPE_FP32,
                                         &prefix),
                  CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_client_find_prefix(client, ids, 3, NULL, 2, 4, 2, 16, CKV_DTYPE_FP32,
                                         &prefix),
                  CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_client_find_prefix(client, ids, 3, "m", 2, 4, 2, 16, 7, &prefix),
                  CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_client_find_prefix(client, ids, 3, "m", 2, 3, 2, 16, CKV_DTYPE_FP32,
                                         &prefix),
                  CKV_INVALID_ARGUMENT); /* q heads not a multiple of kv heads */
    EXPECT_TRUE(prefix == NULL);
    EXPECT_TRUE(strlen(ckv_client_last_error(client)) > 0);
    EXPECT_TRUE(strcmp(ckv_prefix_document(NULL), "") == 0);
    EXPECT_TRUE(ckv_prefix_segments(NULL) == 0);
    EXPECT_TRUE(ckv_prefix_tokens(NULL) == 0);
    ckv_prefix_free(NULL);

    seq = (ckv_sequence*)&failures;
    EXPECT_EQ_INT(ckv_sequence_open_from(NULL, "s", NULL, &seq), CKV_INVALID_ARGUMENT);
    EXPECT_EQ_INT(ckv_sequence_open_from(client, "s", NULL, &seq), CKV_INVALID_ARGUMENT);
    EXPECT_TRUE(seq == NULL);
    EXPECT_EQ_INT(ckv_sequence_open_from(client, "s", NULL, NULL), CKV_INVALID_ARGUMENT);
  }
  EXPECT_TRUE(isnan(ckv_sequence_estimated_recall(NULL, 0)));
  EXPECT_TRUE(strlen(ckv_sequence_last_error(NULL)) > 0);

  ckv_client_close(client);
  ckv_client_close(NULL);
  if (failures == 0) printf("client_c_api_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
