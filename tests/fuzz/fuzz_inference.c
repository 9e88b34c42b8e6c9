/*
 * libFuzzer target: the inference decoders (decode/decode_inference.c).
 * Every input goes through the inference JSON mapping and through the OIP
 * v2 response decoder under each task, with one decoder kept across inputs
 * (its reused tree is part of what is tested). Checks: no crash; a success
 * packs a batch that unpacks to as many inference events as counted; a
 * failure leaves the batch empty and says why.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "decode/decode_inference.h"
#include "sluice/v1/event.pb-c.h"

static void check(int rc, const sl_json_batch_t *jb, const char *err) {
  if (rc < 0) {
    if (jb->count != 0 || !err[0]) {
      fprintf(stderr, "failed decode left %u events or no message\n",
              jb->count);
      abort();
    }
    return;
  }
  Sluice__V1__EventBatch *b =
      sluice__v1__event_batch__unpack(NULL, jb->buf.len, jb->buf.data);
  if (!b || b->n_events != jb->count) {
    fprintf(stderr, "decoded batch does not unpack to %u events\n", jb->count);
    abort();
  }
  for (size_t i = 0; i < b->n_events; i++)
    if (b->events[i]->body_case != SLUICE__V1__EVENT__BODY_INFERENCE) {
      fprintf(stderr, "event %zu is not an inference\n", i);
      abort();
    }
  sluice__v1__event_batch__free_unpacked(b, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sl_infer_dec_t *d;
  static const char *const labels[] = {"a", "b", "c", "d"};
  static const sl_ingest_rules_t rules = {.now_ns = 1795744800000000000LL,
                                          .max_future_ns = 300000000000LL};
  sl_json_batch_t jb;
  char err[256];
  int rc;
  if (!d && sl_infer_dec_new(&d) < 0)
    abort();
  sl_json_batch_init(&jb);
  jb.rules = &rules;
  err[0] = '\0';
  rc = sl_infer_decode_json(d, (const char *)data, size, "src", 0, 1000, &jb,
                            err, sizeof(err));
  check(rc, &jb, err);
  for (int task = 0; task <= 4; task++) {
    sl_oip_map_t m = {.model = "m",
                      .task = task,
                      .labels = task == 1 ? labels : NULL,
                      .nlabels = task == 1 ? 4 : 0,
                      .score_threshold = 0.1f,
                      .top_k = 3};
    err[0] = '\0';
    rc = sl_infer_decode_oip(d, (const char *)data, size, &m, "src", 0, &jb,
                             err, sizeof(err));
    check(rc, &jb, err);
  }
  sl_json_batch_close(&jb);
  return 0;
}
