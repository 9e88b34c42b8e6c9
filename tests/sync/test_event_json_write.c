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

/* Strings from pieces: plain, escapes, control bytes, UTF-8, bad UTF-8
 * (not with valid_only: the first 12 pieces are valid UTF-8). */
static int valid_only;
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
    unsigned k = pick(10) < 8 || valid_only
                     ? pick(12)
                     : pick(sizeof(piece) / sizeof(*piece));
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

typedef void check_fn(sl_jbuf_t *out, int iter, const char *stream,
                      uint64_t offset, const Sluice__V1__Event *ev);

static void one(sl_jbuf_t *out, int iter, check_fn *check) {
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
  check(out, iter, stream, offset, &ev);
}

/* Both writers give the same bytes. */
static void same_bytes(sl_jbuf_t *out, int iter, const char *stream,
                       uint64_t offset, const Sluice__V1__Event *evp) {
  const Sluice__V1__Event ev = *evp;
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
    one(&out, i, same_bytes);
  free(out.p);
}

/* ---- the compact layout: expanded, it is the full layout's object -------- */

static json_t *get(json_t *o, const char *k) {
  return json_object_get(o, k);
}
static json_t *str_or(json_t *o, const char *k) {
  const char *v = json_string_value(get(o, k));
  return json_string(v ? v : "");
}
static json_t *int_or(json_t *o, const char *k) {
  return json_integer(json_integer_value(get(o, k)));
}
/* Label and box numbers are float32: read back through a float. */
static json_t *float_or(json_t *o, const char *k) {
  return json_real((double)(float)json_number_value(get(o, k)));
}

/* What a consumer of `json_layout: compact` does (docs/SCHEMAS.md): long
 * names and defaults back, stream and offset from the record's headers. */
static json_t *expand(json_t *c, const char *stream, uint64_t offset) {
  json_t *o = json_object(), *x;
  json_object_set_new(o, "stream", json_string(stream));
  json_object_set_new(o, "offset", json_integer((json_int_t)offset));
  json_object_set_new(o, "source", str_or(c, "s"));
  json_int_t t = json_integer_value(get(c, "t"));
  json_object_set_new(o, "time_ns", json_integer(t));
  json_object_set_new(o, "ingest_time_ns", int_or(c, "i"));
  if ((x = get(c, "r"))) {
    json_t *r = json_object();
    if (get(x, "v"))
      json_object_set(r, "value", get(x, "v"));
    if (get(x, "dt"))
      json_object_set(r, "datatype", get(x, "dt"));
    json_object_set_new(r, "quality",
                        get(x, "q") ? json_copy(get(x, "q"))
                                    : json_string("good"));
    if (get(x, "u"))
      json_object_set(r, "unit", get(x, "u"));
    if (get(x, "sc"))
      json_object_set(r, "status_code", get(x, "sc"));
    json_object_set_new(o, "reading", r);
  } else if ((x = get(c, "m"))) {
    json_t *m = json_object(), *ls = json_array(), *bs = json_array(), *e;
    size_t i;
    json_object_set_new(m, "model", str_or(x, "m"));
    json_object_set_new(m, "model_version", str_or(x, "mv"));
    json_array_foreach(get(x, "l"), i, e) {
      json_array_append_new(ls, json_pack("{s:o,s:o}", "name", str_or(e, "n"),
                                          "score", float_or(e, "s")));
    }
    json_array_foreach(get(x, "b"), i, e) {
      json_array_append_new(
          bs, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "x", float_or(e, "x"), "y",
                        float_or(e, "y"), "w", float_or(e, "w"), "h",
                        float_or(e, "h"), "label", str_or(e, "l"), "score",
                        float_or(e, "s")));
    }
    json_object_set_new(m, "labels", ls);
    json_object_set_new(m, "boxes", bs);
    json_object_set_new(m, "latency_us", int_or(x, "lat"));
    json_object_set_new(o, "inference", m);
  } else if ((x = get(c, "d"))) {
    json_object_set_new(o, "raw",
                        json_pack("{s:o,s:o}", "content_type", str_or(x, "ct"),
                                  "data_b64", str_or(x, "b64")));
  } else if ((x = get(c, "g"))) {
    json_object_set_new(
        o, "gap",
        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "stream", str_or(x, "st"),
                  "first_offset", int_or(x, "f"), "last_offset", int_or(x, "l"),
                  "count", int_or(x, "c"), "min_time_ns", int_or(x, "t0"),
                  "max_time_ns", int_or(x, "t1"), "reason", str_or(x, "why")));
  } else if ((x = get(c, "x"))) {
    json_object_set_new(o, "status",
                        json_pack("{s:o,s:o}", "state", str_or(x, "s"),
                                  "reason", str_or(x, "why")));
  }
  if (get(c, "a"))
    json_object_set(o, "attributes", get(c, "a"));
  return o;
}

static uint64_t full_bytes, compact_bytes;

/* The compact value parses and, with valid strings, expands to the full
 * layout's object; counts both sizes. */
static void compact_equal(sl_jbuf_t *out, int iter, const char *stream,
                          uint64_t offset, const Sluice__V1__Event *ev) {
  json_error_t je;
  long n = sl_event_json_write_compact(out, ev, 1795744800000000000LL);
  assert_true(n > 0);
  json_t *c = json_loadb(out->p, (size_t)n, 0, &je);
  if (!c) {
    fprintf(stderr, "event %d: compact value is not JSON (%s): %.*s\n", iter,
            je.text, (int)n, out->p);
    fail();
  }
  json_t *want = sl_event_json(stream, offset, ev, 1795744800000000000LL);
  assert_non_null(want);
  json_t *got = expand(c, stream, offset);
  if (valid_only && !json_equal(want, got)) {
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    fprintf(stderr, "event %d:\n compact  %.*s\n expanded %s\n full     %s\n",
            iter, (int)n, out->p, g, w);
    fail();
  }
  full_bytes += (uint64_t)sl_event_json_write(out, stream, offset, ev,
                                              1795744800000000000LL);
  compact_bytes += (uint64_t)n;
  json_decref(c);
  json_decref(got);
  json_decref(want);
}

static void test_compact_random(void **state) {
  sl_jbuf_t out = {0};
  (void)state;
  valid_only = 1;
  for (int i = 0; i < 50000; i++)
    one(&out, i, compact_equal);
  valid_only = 0; /* invalid UTF-8 too: still JSON */
  for (int i = 0; i < 20000; i++)
    one(&out, i, compact_equal);
  free(out.p);
}

/* Typical readings, as a gateway sends them (`sync_test` publishes these):
 * the compact value's size against the full one's. */
static void test_compact_ratio(void **state) {
  sl_jbuf_t out = {0};
  (void)state;
  uint64_t full = 0, compact = 0;
  char src[32];
  for (int i = 0; i < 10000; i++) {
    Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
    Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
    snprintf(src, sizeof(src), "plant/line-%d/temp", i % 16);
    ev.source = src;
    ev.time_ns = 1795744800000000000LL + (int64_t)i * 1000000;
    ev.ingest_time_ns = ev.time_ns + 1500000 + (int64_t)pick(1000000);
    ev.body_case = SLUICE__V1__EVENT__BODY_READING;
    ev.reading = &rd;
    rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd.double_value = (double)(200 + (int)pick(100)) / 10; /* 20.0 .. 29.9 */
    rd.unit = "C";
    long n = sl_event_json_write(&out, "readings", (uint64_t)i, &ev, 0);
    assert_true(n > 0);
    full += (uint64_t)n;
    n = sl_event_json_write_compact(&out, &ev, 0);
    assert_true(n > 0);
    compact += (uint64_t)n;
  }
  double ratio = (double)compact / (double)full;
  printf("typical readings: full %.1f bytes, compact %.1f bytes per event, "
         "ratio %.3f\n",
         (double)full / 10000, (double)compact / 10000, ratio);
  assert_true(ratio < 0.55); /* measured 0.493 */
  free(out.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_events),
      cmocka_unit_test(test_compact_random),
      cmocka_unit_test(test_compact_ratio),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
