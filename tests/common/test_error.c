#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

static void test_every_code_has_text(void **state) {
  (void)state;
  for (int e = SL__EFIRST + 1; e < SL__ELAST; e++) {
    assert_non_null(sl_strerror(e));
    assert_string_not_equal(sl_strerror(e), "unknown error");
    assert_memory_equal(sl_errname(e), "SL_E", 4);
  }
}

static void test_errno_and_unknown(void **state) {
  (void)state;
  assert_string_equal(sl_strerror(0), "success");
  assert_string_equal(sl_errname(0), "OK");
  assert_string_equal(sl_strerror(-ENOSPC), strerror(ENOSPC));
  assert_string_equal(sl_errname(-ENOSPC), "ENOSPC");
  assert_string_equal(sl_errname(SL_ECORRUPT), "SL_ECORRUPT");
  assert_string_equal(sl_strerror(SL__ELAST), "unknown error");
  assert_string_equal(sl_strerror(12345), "unknown error");
}

static void test_be_roundtrip(void **state) {
  (void)state;
  uint8_t b[8];
  sl_put_be64(b, 0x0102030405060708ull);
  assert_int_equal(b[0], 1);
  assert_int_equal(b[7], 8);
  assert_true(sl_get_be64(b) == 0x0102030405060708ull);
  sl_put_be32(b, 0xdeadbeefu);
  assert_true(sl_get_be32(b) == 0xdeadbeefu);
}

static void test_clocks_move(void **state) {
  (void)state;
  uint64_t a = sl_now_mono_ns();
  uint64_t b = sl_now_mono_ns();
  assert_true(b >= a);
  assert_true(sl_now_wall_ns() > 1600000000ll * 1000000000ll);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_has_text),
      cmocka_unit_test(test_errno_and_unknown),
      cmocka_unit_test(test_be_roundtrip),
      cmocka_unit_test(test_clocks_move),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
