/* sl_clock_step(): wall-clock steps against the monotonic clock (issue 26:
 * the node's own clock stepping back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/clock_step.h"

#define S 1000000000LL

static void test_steps(void **state) {
  (void)state;
  sl_clock_ref_t ref = {0};
  const int64_t T = 1700000000LL * S;
  /* The first call only records. */
  assert_int_equal(sl_clock_step(&ref, T, 100 * S), 0);
  /* Both advance 10 s: no step. Small disagreement: slew, no step. */
  assert_int_equal(sl_clock_step(&ref, T + 10 * S, 110 * S), 0);
  assert_int_equal(sl_clock_step(&ref, T + 10 * S + S / 2, 110 * S), 0);
  /* -3 h while 1 s passed. */
  int64_t st = sl_clock_step(&ref, T + 10 * S - 3 * 3600 * S, 111 * S);
  assert_true(st < -3 * 3600 * S + 2 * S && st > -3 * 3600 * S - 2 * S);
  /* The new pair is the reference: the next call sees no step. */
  assert_int_equal(sl_clock_step(&ref, T + 15 * S - 3 * 3600 * S, 115 * S), 0);
  /* +1 h, then back. */
  assert_true(sl_clock_step(&ref, T + 16 * S - 2 * 3600 * S, 116 * S) >
              3599 * S);
  assert_true(sl_clock_step(&ref, T + 17 * S - 3 * 3600 * S, 117 * S) <
              -3599 * S);
  /* A day idle: 500 ppm of it (43 s) is slew, 60 s is a step. */
  int64_t w = T + 17 * S - 3 * 3600 * S;
  assert_int_equal(
      sl_clock_step(&ref, w + 86400 * S - 40 * S, 117 * S + 86400 * S), 0);
  assert_true(sl_clock_step(&ref, w + 2 * 86400 * S - 100 * S,
                            117 * S + 2 * 86400 * S) < 0);
  /* A monotonic clock that went back (never on Linux): no verdict. */
  assert_int_equal(sl_clock_step(&ref, T, 1 * S), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_steps)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
