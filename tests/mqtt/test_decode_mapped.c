/*
 * Known-answer tests for the mapped MQTT JSON scanner
 * (decode/decode_json_mapped.c), and the same inputs through the jansson
 * decoder it replaced (tests/fuzz/json_mapped_ref.c): both must agree on
 * every result, reason and event byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode/decode_json.h"
#include "sluice/v1/event.pb-c.h"
#include "tests/fuzz/json_mapped_ref.h"

static const sl_json_map_t map = {"value",   "time", 1000000,
                                  "quality", "unit", ""};

/* Decodes payload with map; returns the unpacked batch or NULL (reason). */
static Sluice__V1__EventBatch *decode(const char *payload,
                                      const sl_json_map_t *m, uint32_t max,
                                      int *rc, const char **reason) {
  sl_json_batch_t jb;
  char err[256];
  Sluice__V1__EventBatch *b = NULL;
  sl_json_batch_init(&jb);
  *reason = "";
  *rc = sl_json_decode_mapped(payload, strlen(payload), m, "src", NULL, 0, 7,
                              max, &jb, reason, err, sizeof(err));
  if (*rc == 0)
    b = sluice__v1__event_batch__unpack(NULL, jb.buf.len, jb.buf.data);
  else
    assert_int_equal(jb.count, 0);
  sl_json_batch_close(&jb);
  return b;
}

static void expect_reason(const char *payload, const char *want) {
  const char *reason;
  int rc;
  Sluice__V1__EventBatch *b = decode(payload, &map, 100, &rc, &reason);
  if (rc == 0)
    sluice__v1__event_batch__free_unpacked(b, NULL);
  if (!want) {
    if (rc != 0)
      fail_msg("%s: %s", payload, reason);
    return;
  }
  if (rc == 0 || strcmp(reason, want))
    fail_msg("%s: want %s, got rc %d %s", payload, want, rc, rc ? reason : "");
}

static void test_reading(void **state) {
  (void)state;
  const char *reason;
  int rc;
  Sluice__V1__EventBatch *b =
      decode("{\"value\":21.5,\"unit\":\"degC\",\"quality\":\"good\","
             "\"time\":1700000000123,\"seq\":1,\"site\":\"plant-1\"}",
             &map, 100, &rc, &reason);
  assert_int_equal(rc, 0);
  assert_int_equal(b->n_events, 1);
  Sluice__V1__Event *ev = b->events[0];
  assert_string_equal(ev->source, "src");
  assert_int_equal(ev->time_ns, 1700000000123000000ll);
  assert_int_equal(ev->reading->value_case,
                   SLUICE__V1__READING__VALUE_DOUBLE_VALUE);
  assert_true(ev->reading->double_value == 21.5);
  assert_string_equal(ev->reading->unit, "degC");
  assert_int_equal(ev->reading->quality, SLUICE__V1__QUALITY__QUALITY_GOOD);
  sluice__v1__event_batch__free_unpacked(b, NULL);

  /* An array, integers stay integers, escapes decoded, nested paths. */
  static const sl_json_map_t nested = {"data.v", "data.t", 1, "", "u", ""};
  b = decode("[{\"data\":{\"v\":-7,\"t\":5},\"u\":\"\\u00b0C\\n\"},"
             "{\"data\":{\"v\":\"on\\\"\"}},{\"data\":{\"v\":true}}]",
             &nested, 100, &rc, &reason);
  assert_int_equal(rc, 0);
  assert_int_equal(b->n_events, 3);
  assert_int_equal(b->events[0]->reading->int_value, -7);
  assert_int_equal(b->events[0]->time_ns, 5);
  assert_string_equal(b->events[0]->reading->unit, "\xc2\xb0"
                                                   "C\n");
  assert_string_equal(b->events[1]->reading->string_value, "on\"");
  assert_int_equal(b->events[1]->time_ns, 7);
  assert_true(b->events[2]->reading->bool_value);
  sluice__v1__event_batch__free_unpacked(b, NULL);

  /* A bare scalar with value "". */
  static const sl_json_map_t bare = {"", "", 1, "", "", ""};
  b = decode(" 1e-3 ", &bare, 100, &rc, &reason);
  assert_int_equal(rc, 0);
  assert_true(b->events[0]->reading->double_value == 1e-3);
  sluice__v1__event_batch__free_unpacked(b, NULL);
}

static void test_rejections(void **state) {
  (void)state;
  expect_reason("{\"value\":1}", NULL);
  expect_reason("", "bad_json");
  expect_reason("{\"value\":1", "bad_json");
  expect_reason("{\"value\":1} x", "bad_json");
  expect_reason("{\"value\":1,\"value\":2}", "bad_json");
  expect_reason("{\"value\":1,\"x\":{\"a\":1,\"a\":2}}", "bad_json");
  expect_reason("{\"value\":\"a\\u0000b\"}", "bad_json");
  expect_reason("{\"value\":\"\xc3\x28\"}", "bad_json");
  expect_reason("{\"value\":\"\xed\xa0\x80\"}", "bad_json");
  expect_reason("{\"value\":\"\\ud800\"}", "bad_json");
  expect_reason("{\"value\":NaN}", "bad_json");
  expect_reason("{\"value\":Infinity}", "bad_json");
  expect_reason("{\"value\":01}", "bad_json");
  expect_reason("{\"value\":1e999}", "bad_number");
  expect_reason("{\"value\":-1e999}", "bad_number");
  expect_reason("{\"value\":9223372036854775808}", "bad_number");
  expect_reason("{\"value\":-9223372036854775808}", NULL);
  expect_reason("{\"value\":null}", "bad_type");
  expect_reason("{\"value\":[1]}", "bad_type");
  expect_reason("{\"v\":1}", "no_value");
  expect_reason("[]", "no_value");
  expect_reason("{\"value\":1,\"time\":\"yesterday\"}", "bad_time");
  expect_reason("{\"value\":1,\"time\":9223372036854775}", "bad_time");
  /* Issue 14: a year past 2262 overflowed (wrapped, or an abort under
   * UBSan: a crash loop through QoS 1 redelivery); Feb 30 was Mar 2. */
  expect_reason("{\"value\":1,\"time\":\"9999-12-31T23:59:59Z\"}", "bad_time");
  expect_reason("{\"value\":1,\"time\":\"2026-02-30T00:00:00Z\"}", "bad_time");
  expect_reason("{\"value\":1,\"quality\":\"fine\"}", "bad_type");
  expect_reason("{\"value\":1,\"quality\":-1}", "bad_type");
  expect_reason("{\"value\":1,\"unit\":5}", "bad_type");
  /* A mapping error early, a syntax error later: the syntax error wins. */
  expect_reason("[{\"v\":1},{\"value\":1]", "bad_json");

  /* Nesting: 2048 values deep is jansson's limit. */
  char deep[5000];
  size_t n = 0;
  for (int i = 0; i < 2047; i++)
    deep[n++] = '[';
  deep[n++] = '1';
  for (int i = 0; i < 2047; i++)
    deep[n++] = ']';
  deep[n] = '\0';
  expect_reason(deep, "no_value");
  memmove(deep + 1, deep, n + 1);
  deep[0] = '[';
  deep[n + 1] = ']';
  deep[n + 2] = '\0';
  expect_reason(deep, "too_deep");

  /* More events than allowed. */
  const char *reason;
  int rc;
  decode("[{\"value\":1},{\"value\":2},{\"value\":3}]", &map, 2, &rc, &reason);
  assert_int_not_equal(rc, 0);
  assert_string_equal(reason, "too_many");
}

/* Many keys: the duplicate check switches to a hash table. */
static void test_many_keys(void **state) {
  (void)state;
  size_t cap = 200000, n = 0;
  char *p = malloc(cap);
  assert_non_null(p);
  n += (size_t)snprintf(p + n, cap - n, "{");
  for (int i = 0; i < 5000; i++)
    n += (size_t)snprintf(p + n, cap - n, "\"k%d\":%d,", i, i);
  n += (size_t)snprintf(p + n, cap - n, "\"value\":1}");
  expect_reason(p, NULL);
  /* The same key again, escaped: still a duplicate. */
  n -= 1;
  n += (size_t)snprintf(p + n, cap - n, ",\"k\\u0034999\":0}");
  expect_reason(p, "bad_json");
  free(p);
}

/* Both decoders on tricky inputs. */
static void test_same_as_jansson(void **state) {
  (void)state;
  static const char *const inputs[] = {
      "{\"value\":21.5,\"unit\":\"degC\",\"quality\":\"good\",\"time\":17}",
      "[{\"value\":1,\"time\":2.5},{\"value\":true,\"quality\":3221225472}]",
      "{\"d\":{\"v\":1.7976931348623157e308},\"t\":\"2026-11-27T02:00:00Z\"}",
      "{\"d\":{\"v\":4.9e-324},\"q\":{\"s\":\"bad\"}}",
      "{\"d\":{\"v\":123456789012345678901234567890}}",
      "{\"d\":{\"v\":0.1234567890123456789}, \"t\": -0.0}",
      "{\"v\":{\"t\":5,\"u\":\"x\"},\"a\":{\"\":{\"b\":\"good\"}}}",
      "{\"v\":{\"t\":5},\"v\":{}}",
      "[1,{\"value\":1}]",
      "[{\"value\":1},{\"value\":1},{\"value\":1}]",
      "\"str\"",
      "true",
      "null",
      "-0",
      "[{\"value\":1}] [",
      "{\"value\":1e999} x",
      "{\"value\":1} 1e999",
      "{\"\\u00e9\":1,\"\xc3\xa9\":2}",
      "{\"value\":\"\\ud83d\\ude00\"}",
      "{\"value\":\"\\ud83d\\u0041\"}",
      "{\"value\":\"\\/\\b\\f\\r\\t\"}",
      "{\"value\":tru}",
      "{\"value\":1.}",
      "{\"value\":1.e5}",
      "{\"value\":-}",
      "{\"value\":1E+2,\"time\":1e-400}",
      "\xef\xbb\xbf{\"value\":1}",
      "{\"value\":1}\xff",
  };
  char why[400];
  for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
    if (json_mapped_compare((const uint8_t *)inputs[i], strlen(inputs[i]), why,
                            sizeof(why)) < 0)
      fail_msg("%s: %s", inputs[i], why);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reading),
      cmocka_unit_test(test_rejections),
      cmocka_unit_test(test_many_keys),
      cmocka_unit_test(test_same_as_jansson),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
