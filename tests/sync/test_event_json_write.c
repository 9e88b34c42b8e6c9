/*
 * sl_event_json_write() (Kafka values in `format: json`, straight from the
 * event) against today's writer, json_dumpb(sl_event_json(...),
 * JSON_COMPACT), over 50,000 random events: every body, every value case and
 * datatype (NaN, infinities, -0, uint64 extremes: issue 25), strings with
 * escapes, control characters, UTF-8 and invalid UTF-8, repeated attribute
 * keys. The bytes must be identical.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "schemas/event_json.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static unsigned pick(unsigned n) {
  return (unsigned)(rnd() % n);
}

/* Strings from pieces: plain, escapes, control bytes, UTF-8, bad UTF-8. */
static char *rstr(char *buf, size_t cap) {
  static const char *const piece[] = {
      "a",    "plant/line-1", "\"",       "\\", "/", "\n",   "\t",
      "\x01", "\x1f",         "\x7f",     "é",  "€", "😀",    "\xff",
      "\xc3", "\xed\xa0\x80", "\xc0\xaf", " ",  "k", "temp", "\b\f\r"};
  size_t n = 0;
  unsigned parts = pick(5);
  buf[0] = '\0';
  for (unsigned i = 0; i < parts; i++) {
    /* Mostly valid strings, so most events keep every member. */
    unsigned k = pick(10) < 8 ? pick(12) : pick(sizeof(piece) / sizeof(*piece));
    size_t l = strlen(piece[k]);
    if (n + l + 1 >= cap)
      break;
    memcpy(buf + n, piece[k], l + 1);
    n += l;
  }
  return buf;
}

static double rdouble(void) {
  switch (pick(10)) {
  case 0:
    return NAN;
  case 1:
    return pick(2) ? INFINITY : -INFINITY;
  case 2:
    return -0.0;
  case 3:
    return 5e-324;
  case 4:
    return 1.7976931348623157e308;
  case 5:
    return (double)(int64_t)rnd();
  case 6:
    return 1e21 * (double)pick(1000);
  default: {
    double d;
    uint64_t u = rnd();
    memcpy(&d, &u, sizeof(d));
    return pick(2) ? d : (double)pick(100000) / 7.0;
  }
  }
}

static float rfloat(void) {
  return (float)rdouble();
}

typedef struct strs {
  char s[40][64];
  int n;
} strs_t;
static char *S(strs_t *p) {
  return rstr(p->s[p->n++ % 40], 64);
}

static void one(sl_jbuf_t *out, int iter) {
  strs_t st = {0};
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Inference inf = SLUICE__V1__INFERENCE__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  Sluice__V1__Gap gap = SLUICE__V1__GAP__INIT;
  Sluice__V1__Status stat = SLUICE__V1__STATUS__INIT;
  Sluice__V1__Label lab[4], *plab[4];
  Sluice__V1__Box box[4], *pbox[4];
  Sluice__V1__Attribute at[6], *pat[6];
  uint8_t bytes[40];

  ev.source = S(&st);
  ev.time_ns = (int64_t)rnd();
  ev.ingest_time_ns = pick(2) ? 0 : (int64_t)rnd();
  switch (pick(5)) {
  case 0:
  case 1:
    ev.body_case = SLUICE__V1__EVENT__BODY_READING;
    ev.reading = &rd;
    rd.datatype = (Sluice__V1__DataType)(pick(8) ? pick(16) : 99);
    static const int cases[] = {SLUICE__V1__READING__VALUE__NOT_SET,
                                SLUICE__V1__READING__VALUE_DOUBLE_VALUE,
                                SLUICE__V1__READING__VALUE_DOUBLE_VALUE,
                                SLUICE__V1__READING__VALUE_INT_VALUE,
                                SLUICE__V1__READING__VALUE_BOOL_VALUE,
                                SLUICE__V1__READING__VALUE_STRING_VALUE,
                                SLUICE__V1__READING__VALUE_UINT_VALUE,
                                SLUICE__V1__READING__VALUE_UINT_VALUE};
    rd.value_case = (Sluice__V1__Reading__ValueCase)cases[pick(8)];
    rd.double_value = rdouble();
    rd.int_value = pick(2) ? (int64_t)rnd() : (int64_t)pick(300) - 150;
    rd.uint_value = pick(2) ? UINT64_MAX : rnd();
    rd.bool_value = pick(2);
    rd.string_value = S(&st);
    rd.quality = (Sluice__V1__Quality)pick(4);
    rd.unit = pick(2) ? S(&st) : "";
    rd.status_code = pick(2) ? (uint32_t)rnd() : 0;
    break;
  case 2:
    ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
    ev.inference = &inf;
    inf.model = S(&st);
    inf.model_version = S(&st);
    inf.latency_us = (uint32_t)rnd();
    inf.n_labels = pick(4);
    inf.n_boxes = pick(4);
    for (int i = 0; i < 4; i++) {
      sluice__v1__label__init(&lab[i]);
      lab[i].name = S(&st);
      lab[i].score = rfloat();
      plab[i] = &lab[i];
      sluice__v1__box__init(&box[i]);
      box[i].x = rfloat();
      box[i].y = (float)pick(1000) / 3;
      box[i].w = rfloat();
      box[i].h = 0.5f;
      box[i].score = (float)pick(100) / 100;
      box[i].label = S(&st);
      pbox[i] = &box[i];
    }
    inf.labels = plab;
    inf.boxes = pbox;
    break;
  case 3:
    ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
    ev.raw = &raw;
    raw.content_type = S(&st);
    raw.data.len = pick(sizeof(bytes));
    for (size_t i = 0; i < sizeof(bytes); i++)
      bytes[i] = (uint8_t)rnd();
    raw.data.data = bytes;
    break;
  default:
    if (pick(2)) {
      ev.body_case = SLUICE__V1__EVENT__BODY_GAP;
      ev.gap = &gap;
      gap.stream = S(&st);
      gap.first_offset = rnd();
      gap.last_offset = rnd();
      gap.count = rnd();
      gap.min_time_ns = (int64_t)rnd();
      gap.max_time_ns = (int64_t)rnd();
      gap.reason = S(&st);
    } else {
      ev.body_case = SLUICE__V1__EVENT__BODY_STATUS;
      ev.status = &stat;
      stat.state = S(&st);
      stat.reason = S(&st);
    }
  }
  ev.n_attributes = pick(7);
  for (size_t i = 0; i < 6; i++) {
    static const char *const keys[] = {"k", "line", "k", "unit"};
    sluice__v1__attribute__init(&at[i]);
    at[i].key = pick(2) ? (char *)keys[pick(4)] : S(&st);
    at[i].value = S(&st);
    pat[i] = &at[i];
  }
  ev.attributes = pat;

  const char *stream = iter % 3 ? "readings" : "s/\"x\"";
  uint64_t offset = iter % 5 ? (uint64_t)iter : rnd();
  json_t *o = sl_event_json(stream, offset, &ev, 1795744800000000000LL);
  assert_non_null(o);
  char *want = json_dumps(o, JSON_COMPACT);
  assert_non_null(want);
  long n = sl_event_json_write(out, stream, offset, &ev, 1795744800000000000LL);
  if (n != (long)strlen(want) || memcmp(out->p, want, (size_t)n)) {
    fprintf(stderr, "event %d:\n jansson %s\n direct  %.*s\n", iter, want,
            (int)(n > 0 ? n : 0), out->p);
    fail();
  }
  free(want);
  json_decref(o);
}

static void test_random_events(void **state) {
  sl_jbuf_t out = {0};
  (void)state;
  for (int i = 0; i < 50000; i++)
    one(&out, i);
  free(out.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_events),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
