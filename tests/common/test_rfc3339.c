/*
 * sl_rfc3339_parse: the defects of issue 14 (years outside int64 ns wrapped,
 * Feb 30 became Mar 2) and a sweep against glibc's timegm for valid dates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"

static int parse(const char *s, int64_t *t) {
  return sl_rfc3339_parse(s, strlen(s), t);
}

static void test_out_of_range_years(void **state) {
  (void)state;
  int64_t t = 42;
  /* Was stored as 1816 in a release build, an abort under UBSan. */
  assert_int_equal(parse("9999-12-31T23:59:59Z", &t), SL_ERANGE);
  assert_int_equal(parse("2262-04-12T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("1677-09-21T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("0000-01-01T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(t, 42); /* untouched on failure */
  /* The last and first representable whole seconds. */
  assert_int_equal(parse("2262-04-11T23:47:16.854775807Z", &t), 0);
  assert_true(t == INT64_MAX);
  assert_int_equal(parse("2262-04-11T23:47:16.854775808Z", &t), SL_ERANGE);
  assert_int_equal(parse("1677-09-21T00:12:43.145224192Z", &t), 0);
  assert_true(t == INT64_MIN);
  assert_int_equal(parse("1677-09-21T00:12:43.145224191Z", &t), SL_ERANGE);
  /* An offset that pushes a representable local time out of range. */
  assert_int_equal(parse("2262-04-11T23:47:16-01:00", &t), SL_ERANGE);
}

static void test_impossible_dates(void **state) {
  (void)state;
  int64_t t;
  assert_int_equal(parse("2026-02-30T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-02-29T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2100-02-29T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2000-02-29T00:00:00Z", &t), 0);
  assert_int_equal(parse("2024-02-29T00:00:00Z", &t), 0);
  assert_int_equal(parse("2026-04-31T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-13-01T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-00-01T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-01-00T00:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-01-01T24:00:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-01-01T00:60:00Z", &t), SL_ERANGE);
  assert_int_equal(parse("2026-01-01T00:00:61Z", &t), SL_ERANGE);
}

static void test_syntax(void **state) {
  (void)state;
  int64_t t;
  const char *bad[] = {"",
                       "2026-01-01",
                       "2026-01-01T00:00:00",
                       "2026-01-01T00:00:00.Z",
                       "2026-1-01T00:00:00Z",
                       "+026-01-01T00:00:00Z",
                       "2026-01-01T 0:00:00Z",
                       "2026-01-01T00:00:00+1:00",
                       "2026-01-01T00:00:00+01:0",
                       "2026-01-01T00:00:00+24:00",
                       "2026-01-01T00:00:00Zjunk",
                       "2026-01-01X00:00:00Z",
                       "20260101T000000Z"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(parse(bad[i], &t), SL_EPROTO);
  /* Only len bytes are read: a NUL inside the length is refused. */
  assert_int_equal(sl_rfc3339_parse("2026-01-01T00:00:00Z\0x", 22, &t),
                   SL_EPROTO);
  assert_int_equal(sl_rfc3339_parse("2026-01-01T00:00:00Zxyz", 20, &t), 0);
}

static void test_values(void **state) {
  (void)state;
  int64_t t;
  assert_int_equal(parse("1970-01-01T00:00:00Z", &t), 0);
  assert_true(t == 0);
  assert_int_equal(parse("1969-12-31T23:59:59.999999999Z", &t), 0);
  assert_true(t == -1);
  assert_int_equal(parse("2026-11-27T02:00:00.123456789123Z", &t), 0);
  assert_true(t == 1795744800123456789LL);
  assert_int_equal(parse("2026-11-27T03:30:00.5+01:30", &t), 0);
  assert_true(t == 1795744800500000000LL);
  assert_int_equal(parse("2026-11-27t02:00:00z", &t), 0);
  assert_true(t == 1795744800000000000LL);
  assert_int_equal(parse("2016-12-31T23:59:60Z", &t), 0); /* leap second */
  assert_true(t == 1483228800000000000LL);
}

/* Every day from 1678 to 2261 at a varying time of day, against timegm. */
static void test_sweep_against_timegm(void **state) {
  (void)state;
  char s[40];
  int n = 0;
  for (int y = 1678; y <= 2261; y++)
    for (int m = 1; m <= 12; m++)
      for (int d = 1; d <= 31; d++) {
        struct tm tm = {.tm_year = y - 1900,
                        .tm_mon = m - 1,
                        .tm_mday = d,
                        .tm_hour = (d * 7) % 24,
                        .tm_min = (d * 13) % 60,
                        .tm_sec = (y + d) % 60};
        time_t want = timegm(&tm);
        int64_t t;
        snprintf(s, sizeof(s), "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d,
                 (d * 7) % 24, (d * 13) % 60, (y + d) % 60);
        int rc = parse(s, &t);
        if (tm.tm_mday != d) { /* timegm normalised a day that does not exist */
          assert_int_equal(rc, SL_ERANGE);
          continue;
        }
        assert_int_equal(rc, 0);
        assert_true(t == (int64_t)want * 1000000000);
        n++;
      }
  assert_true(n > 584 * 365);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_out_of_range_years),
      cmocka_unit_test(test_impossible_dates),
      cmocka_unit_test(test_syntax),
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_sweep_against_timegm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
