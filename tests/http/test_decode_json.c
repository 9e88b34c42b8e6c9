/* Known-answer tests for the JSON event decoder (decode/decode_json.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode/decode_json.h"
#include "sluice/v1/event.pb-c.h"

#define DEF_T 1000

/* Decodes body and returns the unpacked batch (NULL on error, with err). */
static Sluice__V1__EventBatch *decode(const char *body, int *rc, char *err,
                                      size_t errlen, sl_json_batch_t *jb) {
  sl_json_batch_init(jb);
  *rc = sl_json_decode_body(body, strlen(body), DEF_T, 100, jb, err, errlen);
  if (*rc < 0)
    return NULL;
  return sluice__v1__event_batch__unpack(NULL, jb->buf.len, jb->buf.data);
}

static void test_reading_kinds(void **state) {
  (void)state;
  sl_json_batch_t jb;
  char err[256];
  int rc;
  Sluice__V1__EventBatch *b = decode(
      "{\"source\":\"a/b\",\"value\":61.5,\"unit\":\"C\",\"quality\":\"bad\","
      "\"time_ns\":5}\n"
      "{\"source\":\"a/c\",\"value\":true}\n"
      "{\"source\":\"a/d\",\"value\":\"RUNNING\",\"time\":\"1970-01-01T00:00:"
      "01.5Z\"}\n"
      "{\"source\":\"a/e\",\"int_value\":-7,\"quality\":1073741824,\"time\":2."
      "25}\n",
      &rc, err, sizeof(err), &jb);
  assert_int_equal(rc, 0);
  assert_non_null(b);
  assert_int_equal(jb.count, 4);
  assert_int_equal(b->n_events, 4);
  Sluice__V1__Event **e = b->events;
  assert_string_equal(e[0]->source, "a/b");
  assert_int_equal(e[0]->time_ns, 5);
  assert_int_equal(e[0]->reading->value_case,
                   SLUICE__V1__READING__VALUE_DOUBLE_VALUE);
  assert_true(e[0]->reading->double_value == 61.5);
  assert_string_equal(e[0]->reading->unit, "C");
  assert_int_equal(e[0]->reading->quality, SLUICE__V1__QUALITY__QUALITY_BAD);
  assert_int_equal(e[1]->time_ns, DEF_T); /* default time */
  assert_true(e[1]->reading->bool_value);
  assert_string_equal(e[2]->reading->string_value, "RUNNING");
  assert_int_equal(e[2]->time_ns, 1500000000);
  assert_int_equal(e[3]->reading->int_value, -7);
  assert_int_equal(e[3]->reading->quality,
                   SLUICE__V1__QUALITY__QUALITY_UNCERTAIN);
  assert_int_equal(e[3]->reading->status_code, 1073741824);
  assert_int_equal(e[3]->time_ns, 2250000000);
  assert_int_equal(jb.min_time_ns, 5);
  assert_int_equal(jb.max_time_ns, 2250000000);
  sluice__v1__event_batch__free_unpacked(b, NULL);
  sl_json_batch_close(&jb);
}

static void test_inference_raw_attributes_array(void **state) {
  (void)state;
  sl_json_batch_t jb;
  char err[256];
  int rc;
  Sluice__V1__EventBatch *b = decode(
      "[{\"source\":\"cam1\",\"time\":\"2026-11-27T02:00:00+01:00\","
      "\"inference\":{\"model\":\"yolo\",\"model_version\":\"8.1\","
      "\"latency_us\":1200,\"labels\":[{\"name\":\"scratch\",\"score\":0.75}],"
      "\"boxes\":[{\"x\":0.1,\"y\":0.2,\"w\":0.3,\"h\":0.4,\"label\":"
      "\"scratch\",\"score\":0.5}]},\"attributes\":{\"line\":\"3\"}},"
      " {\"source\":\"blob\",\"raw\":{\"data\":\"aGVsbG8=\",\"content_type\":"
      "\"text/plain\"}}]",
      &rc, err, sizeof(err), &jb);
  assert_int_equal(rc, 0);
  assert_non_null(b);
  assert_int_equal(b->n_events, 2);
  Sluice__V1__Event *e = b->events[0];
  /* 2026-11-27T02:00:00Z is 1795744800 s; +01:00 is an hour earlier. */
  assert_int_equal(e->time_ns, (1795744800ll - 3600) * 1000000000ll);
  assert_string_equal(e->inference->model, "yolo");
  assert_string_equal(e->inference->model_version, "8.1");
  assert_int_equal(e->inference->latency_us, 1200);
  assert_int_equal(e->inference->n_labels, 1);
  assert_string_equal(e->inference->labels[0]->name, "scratch");
  assert_true(e->inference->labels[0]->score == 0.75f);
  assert_int_equal(e->inference->n_boxes, 1);
  assert_true(e->inference->boxes[0]->h == 0.4f);
  assert_int_equal(e->n_attributes, 1);
  assert_string_equal(e->attributes[0]->key, "line");
  assert_string_equal(e->attributes[0]->value, "3");
  e = b->events[1];
  assert_int_equal(e->raw->data.len, 5);
  assert_memory_equal(e->raw->data.data, "hello", 5);
  assert_string_equal(e->raw->content_type, "text/plain");
  sluice__v1__event_batch__free_unpacked(b, NULL);
  sl_json_batch_close(&jb);
}

/* Every bad input is refused with a reason naming the problem, and leaves
 * nothing in the batch. */
static void test_bad_inputs(void **state) {
  static const struct {
    const char *body;
    int rc;
    const char *reason;
  } cases[] = {
      {"", SL_EPROTO, "no events"},
      {"   \n ", SL_EPROTO, "no events"},
      {"{", SL_EPROTO, "invalid JSON"},
      {"42", SL_EPROTO, "invalid JSON"},
      {"[]", SL_EPROTO, "empty array"},
      {"[1]", SL_EPROTO, "must be a JSON object"},
      {"{\"value\":1}", SL_EPROTO, "\"source\""},
      {"{\"source\":\"\",\"value\":1}", SL_EPROTO, "\"source\""},
      {"{\"source\":5,\"value\":1}", SL_EPROTO, "\"source\""},
      {"{\"source\":\"s\"}", SL_EPROTO, "exactly one of"},
      {"{\"source\":\"s\",\"value\":1,\"raw\":{\"data\":\"\"}}", SL_EPROTO,
       "exactly one of"},
      {"{\"source\":\"s\",\"vaule\":1}", SL_EPROTO, "unknown key \"vaule\""},
      {"{\"source\":\"s\",\"value\":[1]}", SL_EPROTO, "\"value\" must be"},
      {"{\"source\":\"s\",\"value\":null}", SL_EPROTO, "\"value\" must be"},
      {"{\"source\":\"s\",\"value\":1,\"int_value\":1}", SL_EPROTO, "not both"},
      {"{\"source\":\"s\",\"int_value\":1.5}", SL_EPROTO, "integer"},
      {"{\"source\":\"s\",\"value\":1,\"quality\":\"meh\"}", SL_EPROTO,
       "quality"},
      {"{\"source\":\"s\",\"value\":1,\"quality\":-1}", SL_EPROTO, "quality"},
      {"{\"source\":\"s\",\"value\":1,\"unit\":7}", SL_EPROTO, "\"unit\""},
      {"{\"source\":\"s\",\"unit\":\"C\",\"raw\":{\"data\":\"\"}}", SL_EPROTO,
       "belong to a reading"},
      {"{\"source\":\"s\",\"value\":1,\"time\":\"yesterday\"}", SL_EPROTO,
       "RFC 3339"},
      {"{\"source\":\"s\",\"value\":1,\"time\":\"2026-13-01T00:00:00Z\"}",
       SL_EPROTO, "not a real date"},
      /* Issue 14: years past 2262 wrapped (9999 was stored as 1816). */
      {"{\"source\":\"s\",\"value\":1,\"time\":\"9999-12-31T23:59:59Z\"}",
       SL_EPROTO,
       "\"time\" \"9999-12-31T23:59:59Z\" is not a real date or is "
       "outside 1677-09-22..2262-04-11"},
      {"{\"source\":\"s\",\"value\":1,\"time\":\"1600-01-01T00:00:00Z\"}",
       SL_EPROTO, "outside"},
      /* Feb 30 was accepted as Mar 2. */
      {"{\"source\":\"s\",\"value\":1,\"time\":\"2026-02-30T00:00:00Z\"}",
       SL_EPROTO, "not a real date"},
      {"{\"source\":\"s\",\"value\":1,\"time\":\"2026-01-01T00:00:00Z\","
       "\"time_ns\":5}",
       SL_EPROTO, "given together"},
      {"{\"source\":\"s\",\"value\":1,\"time\":1e300}", SL_EPROTO,
       "out of range"},
      {"{\"source\":\"s\",\"value\":1,\"time_ns\":1.5}", SL_EPROTO,
       "\"time_ns\""},
      {"{\"source\":\"s\",\"value\":1,\"value\":2}", SL_EPROTO,
       "invalid JSON"}, /* duplicate keys */
      {"{\"source\":\"s\",\"value\":NaN}", SL_EPROTO, "invalid JSON"},
      {"{\"source\":\"s\",\"inference\":{}}", SL_EPROTO, "model"},
      {"{\"source\":\"s\",\"inference\":{\"model\":\"m\",\"labels\":[1]}}",
       SL_EPROTO, "labels[0]"},
      {"{\"source\":\"s\",\"inference\":{\"model\":\"m\",\"x\":1}}", SL_EPROTO,
       "unknown key \"x\" in inference"},
      {"{\"source\":\"s\",\"raw\":{\"data\":\"abc\"}}", SL_EPROTO, "base64"},
      {"{\"source\":\"s\",\"raw\":{\"data\":\"@@@@\"}}", SL_EPROTO, "base64"},
      {"{\"source\":\"s\",\"value\":1,\"attributes\":{\"k\":1}}", SL_EPROTO,
       "attribute \"k\""},
      {"{\"source\":\"s\",\"value\":1}\n{\"source\":\"s\"}", SL_EPROTO,
       "line 2"},
      {"[{\"source\":\"s\",\"value\":1}] [{\"source\":\"s\",\"value\":1}]",
       SL_EPROTO, "whole body"},
      {"{\"source\":\"s\",\"value\":1}\n[{\"source\":\"s\",\"value\":1}]",
       SL_EPROTO, "whole body"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sl_json_batch_t jb;
    char err[256] = "";
    sl_json_batch_init(&jb);
    int rc = sl_json_decode_body(cases[i].body, strlen(cases[i].body), DEF_T,
                                 100, &jb, err, sizeof(err));
    if (rc != cases[i].rc || !strstr(err, cases[i].reason)) {
      fprintf(stderr, "case %zu %s: rc %d err '%s', want '%s'\n", i,
              cases[i].body, rc, err, cases[i].reason);
      fail();
    }
    assert_int_equal(jb.count, 0);
    assert_int_equal(jb.buf.len, 0);
    sl_json_batch_close(&jb);
  }
}

static void test_event_limit(void **state) {
  (void)state;
  sl_json_batch_t jb;
  char err[256], body[4096] = "";
  for (int i = 0; i < 11; i++)
    strcat(body, "{\"source\":\"s\",\"value\":1}\n");
  sl_json_batch_init(&jb);
  assert_int_equal(
      sl_json_decode_body(body, strlen(body), DEF_T, 10, &jb, err, sizeof(err)),
      SL_ETOOBIG);
  assert_non_null(strstr(err, "more than 10"));
  assert_int_equal(jb.count, 0);
  assert_int_equal(
      sl_json_decode_body(body, strlen(body), DEF_T, 11, &jb, err, sizeof(err)),
      0);
  assert_int_equal(jb.count, 11);
  sl_json_batch_close(&jb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reading_kinds),
      cmocka_unit_test(test_inference_raw_attributes_array),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_event_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
