/* The jansson decoder sl_json_decode_body() replaced (json_body_ref.c). */
#ifndef SL_TESTS_JSON_BODY_REF_H
#define SL_TESTS_JSON_BODY_REF_H

#include "decode/decode_json.h"

/* Same contract as sl_json_decode_body(). */
int json_body_ref(const char *body, size_t len, int64_t default_time_ns,
                  uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                  size_t errlen);

/* Decodes data with both decoders (with and without the ingest rules, at
 * two event limits). Returns 0 when they agree on the result, every event
 * byte and the error message, else -1 with the difference in why. Syntax
 * errors agree when both messages are "line N: invalid JSON: ..." (the
 * text after it is jansson's own wording; the scanner has its own). */
int json_body_compare(const uint8_t *data, size_t size, char *why,
                      size_t whylen);

#endif
