/*
 * The fast Publish decoder (wire/frame_fast.c) against protobuf-c: random
 * Publish frames, then byte mutations of them (flips, inserted and deleted
 * bytes, truncations, repeated spans). Whenever the fast decoder accepts,
 * protobuf-c must accept the same bytes and both structures must pack to the
 * same bytes; sl_frame_decode() must accept them too. Both outcomes must be
 * exercised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire/frame.h"
#include "wire/frame_int.h"

#define ARENA_BYTES (4u << 20)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static const char *const strs[] = {"",
                                   "plant1/line3/press07/temp",
                                   "°C",
                                   "bar",
                                   "seq",
                                   "12345",
                                   "k",
                                   "\xc3\xa9t\xc3\xa9",
                                   "very long attribute value with some words"};
static const char *const bad[] = {"\xff\xfe", "a\xe2\x82", "\xed\xa0\x80"};
#define NSTRS (sizeof(strs) / sizeof(strs[0]))

/* Now and then invalid UTF-8, which only protobuf-c's path may refuse. */
static char *rs(void) {
  return (char *)(rnd() % 200 ? strs[rnd() % NSTRS] : bad[rnd() % 3]);
}

/* A random Publish frame packed into buf; returns its length. */
static size_t gen_frame(uint8_t *buf, size_t cap) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
  Sluice__V1__Event ev[8], *evp[8];
  Sluice__V1__Reading rd[8];
  Sluice__V1__Attribute at[8][4], *atp[8][4];
  size_t n = 1 + rnd() % 8, len;

  pub.batch_id = rnd() % 4 ? rnd() >> (rnd() % 64) : 0;
  pub.stream = rnd() % 2 ? rs() : (char *)"";
  for (size_t i = 0; i < n; i++) {
    sluice__v1__event__init(&ev[i]);
    sluice__v1__reading__init(&rd[i]);
    ev[i].source = rs();
    ev[i].time_ns = (int64_t)rnd() >> (rnd() % 64);
    ev[i].ingest_time_ns = rnd() % 4 ? 0 : (int64_t)rnd();
    ev[i].body_case = SLUICE__V1__EVENT__BODY_READING;
    ev[i].reading = &rd[i];
    switch (rnd() % 6) {
    case 0:
      rd[i].value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      rd[i].double_value = (double)(int64_t)rnd() / 1e6;
      break;
    case 1:
      rd[i].value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
      rd[i].int_value = (int64_t)rnd() >> (rnd() % 64);
      break;
    case 2:
      rd[i].value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
      rd[i].bool_value = rnd() % 2;
      break;
    case 3:
      rd[i].value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
      rd[i].string_value = rs();
      break;
    case 4:
      rd[i].value_case = SLUICE__V1__READING__VALUE_UINT_VALUE;
      rd[i].uint_value = rnd();
      break;
    default:
      break;
    }
    rd[i].quality = (Sluice__V1__Quality)(rnd() % 3);
    rd[i].unit = rs();
    rd[i].status_code = rnd() % 2 ? (uint32_t)rnd() : 0;
    rd[i].datatype = (Sluice__V1__DataType)(rnd() % 16);
    ev[i].n_attributes = rnd() % 5;
    ev[i].attributes = atp[i];
    for (size_t k = 0; k < ev[i].n_attributes; k++) {
      sluice__v1__attribute__init(&at[i][k]);
      at[i][k].key = rs();
      at[i][k].value = rs();
      atp[i][k] = &at[i][k];
    }
    evp[i] = &ev[i];
  }
  pub.n_events = rnd() % 16 ? n : 0;
  pub.events = evp;
  fr.kind_case = SLUICE__V1__FRAME__KIND_PUBLISH;
  fr.publish = &pub;
  len = sluice__v1__frame__get_packed_size(&fr);
  assert_true(len <= cap);
  return sluice__v1__frame__pack(&fr, buf);
}

static size_t mutate(uint8_t *b, size_t len, size_t cap) {
  size_t at = len ? rnd() % len : 0;
  switch (rnd() % 6) {
  case 0: /* flip a byte */
    if (len)
      b[at] ^= (uint8_t)(1u << (rnd() % 8));
    return len;
  case 1: /* a random byte */
    if (len)
      b[at] = (uint8_t)rnd();
    return len;
  case 2: /* insert a byte */
    if (len + 1 > cap)
      return len;
    memmove(b + at + 1, b + at, len - at);
    b[at] = (uint8_t)rnd();
    return len + 1;
  case 3: /* delete a byte */
    if (!len)
      return len;
    memmove(b + at, b + at + 1, len - at - 1);
    return len - 1;
  case 4: /* truncate */
    return at;
  default: { /* repeat a span at the end */
    size_t n = len - at < 16 ? len - at : 16;
    if (len + n > cap)
      return len;
    memcpy(b + len, b + at, n);
    return len + n;
  }
  }
}

static size_t accepted, declined;

static void compare(sl_frame_arena_t *ar, const uint8_t *b, size_t len) {
  const Sluice__V1__Frame *fast;
  const Sluice__V1__Frame *dec;
  Sluice__V1__Frame *ref;
  char err[256];

  ar->used = 0;
  ar->exhausted = false;
  fast = wire__publish_fast(ar, b, len);
  if (!fast) {
    declined++;
    return;
  }
  accepted++;
  ref = sluice__v1__frame__unpack(NULL, len, b);
  assert_non_null(ref);
  {
    size_t n1 = sluice__v1__frame__get_packed_size(fast);
    size_t n2 = sluice__v1__frame__get_packed_size(ref);
    uint8_t *p1 = malloc(n1 + 1), *p2 = malloc(n2 + 1);
    assert_int_equal(n1, n2);
    sluice__v1__frame__pack(fast, p1);
    sluice__v1__frame__pack(ref, p2);
    assert_memory_equal(p1, p2, n1);
    free(p1);
    free(p2);
  }
  assert_int_equal(ref->publish->n_events, fast->publish->n_events);
  for (size_t i = 0; i < ref->publish->n_events; i++) {
    const Sluice__V1__Event *x = fast->publish->events[i],
                            *y = ref->publish->events[i];
    assert_string_equal(x->source, y->source);
    assert_int_equal(x->n_attributes, y->n_attributes);
    assert_int_equal(x->body_case, y->body_case);
    assert_int_equal(x->reading->value_case, y->reading->value_case);
    assert_string_equal(x->reading->unit, y->reading->unit);
  }
  sluice__v1__frame__free_unpacked(ref, NULL);
  /* And the decoder as the daemon calls it accepts it. */
  assert_int_equal(
      sl_frame_decode(ar, b, len, SL_FRAME_FROM_CLIENT, &dec, err, sizeof(err)),
      0);
}

static void test_fast_matches_protobuf_c(void **state) {
  sl_frame_arena_t *ar;
  static uint8_t buf[64 << 10];
  (void)state;
  assert_int_equal(sl_frame_arena_new(ARENA_BYTES, &ar), 0);
  for (int round = 0; round < 20000; round++) {
    size_t len = gen_frame(buf, sizeof(buf) / 2);
    compare(ar, buf, len);
    for (int m = 0; m < 4; m++) {
      len = mutate(buf, len, sizeof(buf));
      compare(ar, buf, len);
    }
  }
  sl_frame_arena_free(ar);
  print_message("fast decoder: %zu accepted, %zu left to protobuf-c\n",
                accepted, declined);
  assert_true(accepted > 10000);
  assert_true(declined > 10000);
}

/* Shapes the fast decoder must leave to protobuf-c, which gives the old
 * reasons: batch_id 0, no events, bad UTF-8. */
static void test_refusals_keep_their_reasons(void **state) {
  sl_frame_arena_t *ar;
  sl_frame_buf_t b;
  const Sluice__V1__Frame *fr;
  char err[256];
  const uint8_t *body;
  size_t consumed, blen;
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT, *evp = &ev;
  (void)state;
  assert_int_equal(sl_frame_arena_new(ARENA_BYTES, &ar), 0);
  sl_frame_buf_init(&b);
  ev.source = (char *)"s\xff";
  assert_int_equal(sl_frame_encode_publish(&b, 7, "", &evp, 1, 1 << 20), 0);
  assert_int_equal(
      sl_frame_parse(b.data, b.len, 1 << 20, &consumed, &body, &blen), 0);
  assert_null(wire__publish_fast(ar, body, blen));
  assert_int_equal(sl_frame_decode(ar, body, blen, SL_FRAME_FROM_CLIENT, &fr,
                                   err, sizeof(err)),
                   SL_EPROTO);
  assert_string_equal(err, "invalid UTF-8 in Event.source at byte 1");
  b.len = 0;
  ev.source = (char *)"s";
  assert_int_equal(sl_frame_encode_publish(&b, 0, "", &evp, 1, 1 << 20), 0);
  assert_int_equal(
      sl_frame_parse(b.data, b.len, 1 << 20, &consumed, &body, &blen), 0);
  assert_null(wire__publish_fast(ar, body, blen));
  assert_int_equal(sl_frame_decode(ar, body, blen, SL_FRAME_FROM_CLIENT, &fr,
                                   err, sizeof(err)),
                   SL_EPROTO);
  assert_string_equal(err, "publish with batch_id 0");
  sl_frame_buf_close(&b);
  sl_frame_arena_free(ar);
}

/* The fields wire/frame_fast.c decodes, as the schema declares them: a
 * change of a field's number, type or label here fails this test, so the
 * fast decoder cannot silently read a field the old way. */
static void test_schema_is_what_the_fast_decoder_knows(void **state) {
  static const struct {
    const ProtobufCMessageDescriptor *d;
    unsigned n_fields;
    unsigned id;
    ProtobufCType type;
    ProtobufCLabel label;
  } want[] = {
      {&sluice__v1__frame__descriptor, 7, 3, PROTOBUF_C_TYPE_MESSAGE,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__publish__descriptor, 3, 1, PROTOBUF_C_TYPE_UINT64,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__publish__descriptor, 3, 2, PROTOBUF_C_TYPE_STRING,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__publish__descriptor, 3, 3, PROTOBUF_C_TYPE_MESSAGE,
       PROTOBUF_C_LABEL_REPEATED},
      {&sluice__v1__event__descriptor, 9, 1, PROTOBUF_C_TYPE_STRING,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__event__descriptor, 9, 2, PROTOBUF_C_TYPE_SINT64,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__event__descriptor, 9, 3, PROTOBUF_C_TYPE_SINT64,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__event__descriptor, 9, 4, PROTOBUF_C_TYPE_MESSAGE,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__event__descriptor, 9, 9, PROTOBUF_C_TYPE_MESSAGE,
       PROTOBUF_C_LABEL_REPEATED},
      {&sluice__v1__reading__descriptor, 9, 1, PROTOBUF_C_TYPE_DOUBLE,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 2, PROTOBUF_C_TYPE_SINT64,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 3, PROTOBUF_C_TYPE_BOOL,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 4, PROTOBUF_C_TYPE_STRING,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 5, PROTOBUF_C_TYPE_ENUM,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 6, PROTOBUF_C_TYPE_STRING,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 7, PROTOBUF_C_TYPE_UINT32,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 8, PROTOBUF_C_TYPE_UINT64,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__reading__descriptor, 9, 9, PROTOBUF_C_TYPE_ENUM,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__attribute__descriptor, 2, 1, PROTOBUF_C_TYPE_STRING,
       PROTOBUF_C_LABEL_NONE},
      {&sluice__v1__attribute__descriptor, 2, 2, PROTOBUF_C_TYPE_STRING,
       PROTOBUF_C_LABEL_NONE},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(want[i].d, want[i].id);
    assert_int_equal(want[i].d->n_fields, want[i].n_fields);
    assert_non_null(f);
    assert_int_equal(f->type, want[i].type);
    assert_int_equal(f->label, want[i].label);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fast_matches_protobuf_c),
      cmocka_unit_test(test_refusals_keep_their_reasons),
      cmocka_unit_test(test_schema_is_what_the_fast_decoder_knows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
