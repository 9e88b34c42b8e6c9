/*
 * Unit tests of sync/'s pure parts: the checkpoint value codec, slicing
 * Events out of an EventBatch, and the token bucket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/v1/event.pb-c.h"
#include "sync/sync.h"

static void test_ckpt_roundtrip(void **state) {
  sl_sync_ckpt_t c = {.backlog_next = 10, .live_start = 500, .live_next = 777};
  sl_sync_ckpt_t d;
  uint8_t buf[SL_SYNC_CKPT_BYTES];
  (void)state;
  strcpy(c.store_id, "0123456789abcdef0123456789abcdef");
  sl_sync_ckpt_encode(&c, buf);
  assert_int_equal(sl_sync_ckpt_decode(buf, sizeof(buf), &d), 0);
  assert_int_equal(d.backlog_next, 10);
  assert_int_equal(d.live_start, 500);
  assert_int_equal(d.live_next, 777);
  assert_string_equal(d.store_id, c.store_id);
  /* Every flipped bit is caught. */
  for (size_t i = 0; i < sizeof(buf) * 8; i++) {
    buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    assert_int_not_equal(sl_sync_ckpt_decode(buf, sizeof(buf), &d), 0);
    buf[i / 8] ^= (uint8_t)(1u << (i % 8));
  }
  assert_int_equal(sl_sync_ckpt_decode(buf, sizeof(buf) - 1, &d), SL_ECORRUPT);
  /* Inconsistent ranges are refused even with a valid checksum. */
  c.backlog_next = 600;
  sl_sync_ckpt_encode(&c, buf);
  assert_int_equal(sl_sync_ckpt_decode(buf, sizeof(buf), &d), SL_ECORRUPT);
}

static void test_event_slicing(void **state) {
  Sluice__V1__Event e[3] = {SLUICE__V1__EVENT__INIT, SLUICE__V1__EVENT__INIT,
                            SLUICE__V1__EVENT__INIT};
  Sluice__V1__Event *ep[3] = {&e[0], &e[1], &e[2]};
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__EventBatch b = SLUICE__V1__EVENT_BATCH__INIT;
  uint8_t buf[512];
  (void)state;
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = 1.5;
  e[0].source = "a/b";
  e[0].time_ns = 5;
  e[0].body_case = SLUICE__V1__EVENT__BODY_READING;
  e[0].reading = &rd;
  e[1].source = "";
  e[1].ingest_time_ns = 99;
  e[2].source = "source-three";
  b.events = ep;
  b.n_events = 3;
  size_t len = sluice__v1__event_batch__pack(&b, buf);
  size_t pos = 0;
  sl_sync_event_t ev;
  assert_int_equal(sl_sync_event_next(buf, len, &pos, &ev), 0);
  assert_int_equal(ev.source_len, 3);
  assert_memory_equal(ev.source, "a/b", 3);
  assert_int_equal(ev.has_ingest_time, 0);
  Sluice__V1__Event *back = sluice__v1__event__unpack(NULL, ev.len, ev.data);
  assert_non_null(back);
  assert_true(back->reading->double_value == 1.5);
  sluice__v1__event__free_unpacked(back, NULL);
  assert_int_equal(sl_sync_event_next(buf, len, &pos, &ev), 0);
  assert_int_equal(ev.has_ingest_time, 1);
  assert_int_equal(sl_sync_event_next(buf, len, &pos, &ev), 0);
  assert_int_equal(ev.source_len, strlen("source-three"));
  assert_int_equal(sl_sync_event_next(buf, len, &pos, &ev), SL_ENOTFOUND);
  /* Every truncation either ends cleanly or is reported corrupt. */
  for (size_t cut = 0; cut < len; cut++) {
    size_t p = 0;
    int rc;
    while ((rc = sl_sync_event_next(buf, cut, &p, &ev)) == 0)
      assert_true(p <= cut);
    assert_true(rc == SL_ENOTFOUND || rc == SL_ECORRUPT);
  }
}

static void test_bucket(void **state) {
  sl_sync_bucket_t b;
  uint64_t t = 1000000000ull, sent = 0;
  (void)state;
  sl_sync_bucket_init(&b, 100000, 10000, t); /* 100 kB/s */
  /* Simulate 10 s of 1 kB records as fast as the bucket allows. */
  while (t < 11000000000ull) {
    uint64_t w = sl_sync_bucket_wait_ns(&b, 1000, t);
    if (w) {
      t += w;
      continue;
    }
    sl_sync_bucket_take(&b, 1000);
    sent += 1000;
  }
  /* 10 s at 100 kB/s plus the initial burst, within 1%. */
  assert_true(sent >= 1000000 && sent <= 1010000 + 10000);
  sl_sync_bucket_init(&b, 0, 0, t);
  assert_int_equal(sl_sync_bucket_wait_ns(&b, 1e9, t), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ckpt_roundtrip),
      cmocka_unit_test(test_event_slicing),
      cmocka_unit_test(test_bucket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
