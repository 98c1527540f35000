/* External consumer of the installed C ABI (<clusterkv/clusterkv.h>): offloads a prompt to a
 * dense layer (the C ABI's default configuration keeps layers 0-1 dense), attends, appends a
 * token and closes, checking the output against full attention computed here. Prints
 * "consumer_c: ok" on success.
 *
 *   consumer_c                  version and error handling only (no daemon)
 *   consumer_c unix:/path.sock  the round trip against that daemon (--auth=none) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <clusterkv/clusterkv.h>
#include <clusterkv/version.h>

enum { kTokens = 64, kDim = 16, kQHeads = 2 };

static float frand(unsigned* state) {
  *state = *state * 1664525u + 1013904223u;
  return (float)((*state >> 8) & 0xffff) / 65536.0f - 0.5f;
}

int main(int argc, char** argv) {
  printf("consumer_c: headers %s, library %s\n", CLUSTERKV_VERSION_STRING, ckv_version());
  if (strcmp(CLUSTERKV_VERSION_STRING, ckv_version()) != 0) return 1;
  if (ckv_client_open(NULL, "t", NULL) != CKV_INVALID_ARGUMENT) return 1;
  printf("consumer_c: status 5 is %s\n", ckv_status_message(CKV_NOT_FOUND));
  if (argc < 2) {
    printf("consumer_c: ok (no daemon)\n");
    return 0;
  }

  ckv_client* client = NULL;
  int rc = ckv_client_open(argv[1], "external-consumer-c", &client);
  if (rc != CKV_OK) {
    fprintf(stderr, "consumer_c: open client: %s\n", ckv_status_message(rc));
    return 1;
  }
  char id[64];
  snprintf(id, sizeof(id), "consumer-c-%d", (int)getpid());
  ckv_sequence* seq = NULL;
  rc = ckv_sequence_open(client, id, 1, kQHeads, 1, kDim, CKV_DTYPE_FP32, &seq);
  if (rc != CKV_OK) {
    fprintf(stderr, "consumer_c: open sequence: %s\n", ckv_client_last_error(client));
    return 1;
  }
  static float k[kTokens + 1][kDim], v[kTokens + 1][kDim], q[kQHeads][kDim], out[kQHeads][kDim];
  unsigned state = 7;
  for (int t = 0; t <= kTokens; ++t) {
    for (int d = 0; d < kDim; ++d) {
      k[t][d] = frand(&state);
      v[t][d] = frand(&state);
    }
  }
  for (int h = 0; h < kQHeads; ++h)
    for (int d = 0; d < kDim; ++d) q[h][d] = 4 * frand(&state);

  int ok = ckv_sequence_offload_prefill(seq, 0, k, v, kTokens) == CKV_OK &&
           ckv_sequence_append_token(seq, 0, k[kTokens], v[kTokens]) == CKV_OK &&
           ckv_sequence_prefetch(seq, 0, &q[0][0]) == CKV_OK &&
           ckv_sequence_attend(seq, 0, &q[0][0], &out[0][0]) == CKV_OK;
  if (!ok) {
    fprintf(stderr, "consumer_c: %s\n", ckv_sequence_last_error(seq));
    return 1;
  }
  /* The same step again as a batch of one: the clusters are resident now, the output equal. */
  static float again[kQHeads][kDim];
  int batch_status = -1;
  if (ckv_attend_batch(&seq, 1, 0, &q[0][0], &again[0][0], &batch_status) != CKV_OK ||
      batch_status != CKV_OK || memcmp(again, out, sizeof(out)) != 0) {
    fprintf(stderr, "consumer_c: batch of one differs: %s\n", ckv_sequence_last_error(seq));
    return 1;
  }
  const long long tokens = (long long)ckv_sequence_num_tokens(seq);
  double max_err = 0;
  for (int h = 0; h < kQHeads; ++h) {
    double p[kTokens + 1], top = -1e300, sum = 0;
    for (int t = 0; t <= kTokens; ++t) {
      double dot = 0;
      for (int d = 0; d < kDim; ++d) dot += q[h][d] * k[t][d];
      p[t] = dot / sqrt((double)kDim);
      if (p[t] > top) top = p[t];
    }
    for (int t = 0; t <= kTokens; ++t) sum += (p[t] = exp(p[t] - top));
    for (int d = 0; d < kDim; ++d) {
      double o = 0;
      for (int t = 0; t <= kTokens; ++t) o += p[t] / sum * v[t][d];
      if (fabs(o - out[h][d]) > max_err) max_err = fabs(o - out[h][d]);
    }
  }
  /* The budget covers every token, so every cluster is attended: the estimate is exactly 1. */
  const double recall = ckv_sequence_estimated_recall(seq, 1);
  rc = ckv_sequence_close(seq, 1);
  ckv_client_close(client);
  printf("consumer_c: %lld tokens, max |error| vs full attention %.2e, estimated recall %.6f\n",
         tokens, max_err, recall);
  if (rc != CKV_OK || tokens != kTokens + 1 || !(max_err < 1e-5) || !(fabs(recall - 1) < 1e-6)) {
    return 1;
  }
  printf("consumer_c: ok\n");
  return 0;
}
