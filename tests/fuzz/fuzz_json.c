/*
 * libFuzzer target: HTTP / MQTT JSON event bodies (decode/decode_json.c)
 * and mapped MQTT JSON payloads (decode/decode_json_mapped.c). Every input
 * goes through both, and each must agree exactly with the jansson tree
 * decoder it replaced: the body decoder with json_body_ref.c (result,
 * events, error message), the mapped scanner under several field maps with
 * json_mapped_ref.c (result, reason, events).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "decode/decode_json.h"
#include "tests/fuzz/json_body_ref.h"
#include "tests/fuzz/json_mapped_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_json_batch_t jb;
  char err[256], why[400];
  /* The ingest rules every path applies, with a node clock of 2026 and
   * the default bound, so clamping runs under the fuzzer too. */
  static const sl_ingest_rules_t rules = {.now_ns = 1795744800000000000LL,
                                          .max_future_ns = 300000000000LL};
  sl_json_batch_init(&jb);
  jb.rules = &rules;
  sl_json_decode_body((const char *)data, size, 0, 1000, &jb, err, sizeof(err));
  sl_json_batch_close(&jb);
  if (json_body_compare(data, size, why, sizeof(why)) < 0) {
    fprintf(stderr, "JSON body decoders disagree: %s\n", why);
    abort();
  }
  if (json_mapped_compare(data, size, why, sizeof(why)) < 0) {
    fprintf(stderr, "mapped JSON decoders disagree: %s\n", why);
    abort();
  }
  return 0;
}
