/*
 * Budget policies (block, drop_oldest, evict_priority) on a tiny budget,
 * with their gap records and counters, and TTL expiry by event time.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/store.h"
#include "tests/store/helpers.h"

#define BUDGET (512u << 10)
#define LEN 4000
#define COUNT 10

static int64_t now_ns(void) {
  return sl_now_wall_ns();
}

static sl_store_t *open_tiny(const char *dir) {
  sl_store_opts_t o;

  sl_store_opts_init(&o);
  o.budget_bytes = BUDGET;
  o.map_size = 128u << 10;
  return th_open(dir, &o);
}

/* Sum of gap counts for stream and reason; checks ranges are sane. */
static uint64_t gap_events(sl_store_t *st, uint32_t stream,
                           sl_store_reason_t why, uint64_t *lo, uint64_t *hi) {
  sl_store_gap_t gaps[256];
  uint64_t sum = 0;
  size_t n;

  *lo = UINT64_MAX;
  *hi = 0;
  assert_int_equal(sl_store_gap_list(st, 0, gaps, 256, &n), 0);
  assert_true(n < 256);
  for (size_t i = 0; i < n; i++) {
    if (i)
      assert_true(gaps[i].seq > gaps[i - 1].seq);
    if (gaps[i].stream != stream || gaps[i].reason != why)
      continue;
    assert_true(gaps[i].count > 0);
    *lo = SL_MIN(*lo, gaps[i].first_offset);
    *hi = SL_MAX(*hi, gaps[i].first_offset + gaps[i].count);
    sum += gaps[i].count;
  }
  return sum;
}

static void test_block(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = open_tiny(dir);
  uint32_t s = th_stream(st, "b", SL_STORE_POLICY_BLOCK, 0, 0);
  sl_store_stream_stats_t before, after;
  sl_store_info_t info;
  uint64_t lo, hi;
  int i, rc = 0;

  for (i = 0; i < 1000 && rc == 0; i++)
    rc = th_append(st, s, (uint64_t)i, LEN, COUNT, now_ns(), NULL);
  assert_int_equal(rc, SL_EBACKPRESSURE);
  assert_true(i > 20);
  assert_int_equal(sl_store_stream_stats(st, s, &before), 0);
  assert_int_equal(th_append(st, s, 1, LEN, COUNT, now_ns(), NULL),
                   SL_EBACKPRESSURE);
  assert_int_equal(sl_store_stream_stats(st, s, &after), 0);
  assert_int_equal(after.next_offset, before.next_offset);
  assert_int_equal(after.first_offset, 0);
  for (int r = 0; r < SL_STORE_REASON_COUNT; r++)
    assert_int_equal(after.evicted_events[r], 0);
  assert_int_equal(gap_events(st, s, SL_STORE_REASON_DROP_OLDEST, &lo, &hi), 0);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_true(info.used_bytes <= info.budget_bytes);
  assert_true(info.file_bytes <= BUDGET);
  /* Cursor commits are tiny and still go through when the log is full. */
  assert_int_equal(sl_store_consumer_commit(st, "k", s, after.next_offset), 0);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_drop_oldest(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = open_tiny(dir);
  uint32_t s = th_stream(st, "d", SL_STORE_POLICY_DROP_OLDEST, 0, 0);
  sl_store_stream_stats_t ss;
  sl_store_info_t info;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t lo, hi, gapped, cut;

  for (int i = 0; i < 300; i++)
    assert_int_equal(th_append(st, s, (uint64_t)i, LEN, COUNT, now_ns(), NULL),
                     0);
  assert_int_equal(sl_store_stream_stats(st, s, &ss), 0);
  assert_int_equal(ss.next_offset, 300 * COUNT);
  assert_true(ss.first_offset > 0);
  assert_int_equal(ss.first_offset + ss.events, ss.next_offset);
  assert_int_equal(ss.evicted_events[SL_STORE_REASON_DROP_OLDEST],
                   ss.first_offset);
  assert_true(ss.evicted_bytes[SL_STORE_REASON_DROP_OLDEST] > 0);
  /* No consumer: everything evicted was undelivered, so gaps cover it. */
  gapped = gap_events(st, s, SL_STORE_REASON_DROP_OLDEST, &lo, &hi);
  assert_int_equal(gapped, ss.first_offset);
  assert_int_equal(lo, 0);
  assert_int_equal(hi, ss.first_offset);
  assert_int_equal(sl_store_env_info(st, &info), 0);
  assert_true(info.file_bytes <= BUDGET);

  /* A reader left behind sees the hole as SL_EEVICTED. */
  assert_int_equal(sl_store_cursor_open(st, s, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.status, SL_EEVICTED);
  assert_int_equal(rec.first_offset, 0);
  assert_int_equal(rec.count, ss.first_offset);
  assert_int_equal(sl_store_cursor_next(cur, &rec), 0);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.first_offset, ss.first_offset);
  sl_store_cursor_close(cur);

  /* Acknowledge the gaps; then deliver up to cut: evicting delivered
   * events writes no gap, only the undelivered part does. */
  assert_int_equal(sl_store_gap_ack(st, UINT64_MAX), 0);
  assert_int_equal(gap_events(st, s, SL_STORE_REASON_DROP_OLDEST, &lo, &hi), 0);
  cut = ss.next_offset - 50;
  assert_int_equal(sl_store_consumer_commit(st, "kafka", s, cut), 0);
  for (int i = 0; i < 200; i++)
    assert_int_equal(th_append(st, s, (uint64_t)i, LEN, COUNT, now_ns(), NULL),
                     0);
  gapped = gap_events(st, s, SL_STORE_REASON_DROP_OLDEST, &lo, &hi);
  assert_true(gapped > 0);
  assert_true(lo >= cut);
  assert_int_equal(sl_store_stream_stats(st, s, &ss), 0);
  assert_int_equal(hi, ss.first_offset);
  assert_int_equal(gapped, ss.first_offset - cut);
  sl_store_env_close(st);
  th_cleanup(dir);
}

static void test_evict_priority(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_t *st = open_tiny(dir);
  uint32_t low = th_stream(st, "low", SL_STORE_POLICY_EVICT_PRIORITY, 1, 0);
  uint32_t mid = th_stream(st, "mid", SL_STORE_POLICY_EVICT_PRIORITY, 3, 0);
  uint32_t high = th_stream(st, "high", SL_STORE_POLICY_EVICT_PRIORITY, 6, 0);
  sl_store_stream_stats_t sl, sm, sh;
  uint64_t lo, hi;
  int rc = 0, i;

  for (i = 0; i < 40; i++) {
    assert_int_equal(
        th_append(st, low, (uint64_t)i, LEN, COUNT, now_ns(), NULL), 0);
    assert_int_equal(
        th_append(st, mid, (uint64_t)i, LEN, COUNT, now_ns(), NULL), 0);
  }
  /* High priority appends evict the lowest class first... */
  for (i = 0; i < 70; i++)
    assert_int_equal(
        th_append(st, high, (uint64_t)i, LEN, COUNT, now_ns(), NULL), 0);
  assert_int_equal(sl_store_stream_stats(st, low, &sl), 0);
  assert_int_equal(sl_store_stream_stats(st, mid, &sm), 0);
  assert_int_equal(sl_store_stream_stats(st, high, &sh), 0);
  assert_true(sl.evicted_events[SL_STORE_REASON_EVICT_PRIORITY] > 0);
  assert_int_equal(sh.first_offset, 0);
  assert_int_equal(sh.events, 70 * COUNT);
  /* ...and mid only once low is empty. */
  if (sm.first_offset > 0)
    assert_int_equal(sl.events, 0);
  assert_int_equal(
      gap_events(st, low, SL_STORE_REASON_EVICT_PRIORITY, &lo, &hi),
      sl.evicted_events[SL_STORE_REASON_EVICT_PRIORITY]);
  /* Once the lower classes are empty, high evicts its own oldest (it is
   * now the lowest class holding data); it never blocks. */
  for (i = 0; i < 200 && rc == 0; i++)
    rc = th_append(st, high, (uint64_t)i, LEN, COUNT, now_ns(), NULL);
  assert_int_equal(rc, 0);
  assert_int_equal(sl_store_stream_stats(st, low, &sl), 0);
  assert_int_equal(sl_store_stream_stats(st, mid, &sm), 0);
  assert_int_equal(sl_store_stream_stats(st, high, &sh), 0);
  assert_int_equal(sl.events, 0);
  assert_int_equal(sm.events, 0);
  assert_true(sh.evicted_events[SL_STORE_REASON_EVICT_PRIORITY] > 0);
  /* Low may only evict its own class or below: nothing left, so it gets
   * backpressure instead of touching higher classes. */
  assert_int_equal(th_append(st, low, 1, LEN, COUNT, now_ns(), NULL),
                   SL_EBACKPRESSURE);
  sl_store_env_close(st);
  th_cleanup(dir);
}

typedef struct ttl_wait {
  sl_store_t *st;
  uint32_t s;
  uint64_t want_first;
} ttl_wait_t;

static int ttl_done(void *arg) {
  ttl_wait_t *w = arg;
  sl_store_stream_stats_t ss;

  return sl_store_stream_stats(w->st, w->s, &ss) == 0 &&
         ss.first_offset >= w->want_first;
}

/* Old event times expire; times in the future or in 1970 fall back to the
 * append time and neither expire at once nor stay forever. */
static void test_ttl(void **state) {
  (void)state;
  char *dir = th_tmpdir();
  sl_store_opts_t o;
  sl_store_t *st;
  const int64_t hour = 3600ll * 1000000000ll;
  int64_t now = now_ns();
  sl_store_stream_stats_t ss;
  uint64_t lo, hi;
  uint32_t s;

  sl_store_opts_init(&o);
  o.maintenance_ms = 5;
  st = th_open(dir, &o);
  s = th_stream(st, "t", SL_STORE_POLICY_BLOCK, 0, hour);
  assert_int_equal(th_append(st, s, 1, 100, 5, now - 3 * hour, NULL), 0);
  assert_int_equal(th_append(st, s, 2, 100, 5, now - 2 * hour, NULL), 0);
  assert_int_equal(th_append(st, s, 3, 100, 5, now + 24 * hour, NULL), 0);
  assert_int_equal(th_append(st, s, 4, 100, 5, 1000, NULL), 0);
  assert_int_equal(th_append(st, s, 5, 100, 5, now, NULL), 0);
  ttl_wait_t w = {st, s, 10};
  assert_true(th_wait(ttl_done, &w, 5000));
  /* Give the sweeper a few more periods: nothing else may go. */
  w.want_first = 11;
  assert_false(th_wait(ttl_done, &w, 50));
  assert_int_equal(sl_store_stream_stats(st, s, &ss), 0);
  assert_int_equal(ss.first_offset, 10);
  assert_int_equal(ss.events, 15);
  assert_int_equal(ss.evicted_events[SL_STORE_REASON_TTL], 10);
  assert_int_equal(gap_events(st, s, SL_STORE_REASON_TTL, &lo, &hi), 10);
  assert_int_equal(lo, 0);
  assert_int_equal(hi, 10);
  sl_store_env_close(st);
  th_cleanup(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_block),
      cmocka_unit_test(test_drop_oldest),
      cmocka_unit_test(test_evict_priority),
      cmocka_unit_test(test_ttl),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
