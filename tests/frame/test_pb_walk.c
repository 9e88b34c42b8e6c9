/* sl_pb_next_field: every wire type, every truncation, no read past end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire/frame.h"

/* field 1 varint 300, field 2 fixed64, field 3 bytes "abc", field 4
 * fixed32, field 5 empty bytes. */
static const uint8_t msg[] = {0x08, 0xac, 0x02, 0x11, 1,    2, 3,    4,
                              5,    6,    7,    8,    0x1a, 3, 'a',  'b',
                              'c',  0x25, 9,    9,    9,    9, 0x2a, 0};

static void test_walk_all_types(void **state) {
  const uint8_t *p = msg, *end = msg + sizeof(msg), *val;
  uint64_t key;
  size_t vlen;
  (void)state;
  static const uint64_t keys[] = {0x08, 0x11, 0x1a, 0x25, 0x2a};
  for (int i = 0; i < 5; i++) {
    p = sl_pb_next_field(p, end, &key, &val, &vlen);
    assert_non_null(p);
    assert_int_equal(key, keys[i]);
    if (i == 2) {
      assert_int_equal(vlen, 3);
      assert_memory_equal(val, "abc", 3);
    } else if (i == 4) {
      assert_non_null(val);
      assert_int_equal(vlen, 0);
    } else {
      assert_null(val);
    }
  }
  assert_ptr_equal(p, end);
}

/* Every prefix that cuts a field is refused, and the walk never reads past
 * the end (the copy lives in a heap block of exactly that size, so ASan
 * catches an overread). */
static void test_every_truncation(void **state) {
  (void)state;
  static const size_t field_ends[] = {3, 12, 17, 22, 24};
  for (size_t n = 0; n < sizeof(msg); n++) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, msg, n);
    const uint8_t *p = copy, *end = copy + n, *val;
    uint64_t key;
    size_t vlen, fields = 0;
    while (p < end && (p = sl_pb_next_field(p, end, &key, &val, &vlen)))
      fields++;
    int on_boundary = 0;
    for (size_t i = 0; i < 5; i++)
      if (n == field_ends[i])
        on_boundary = 1;
    if (n == 0 || on_boundary)
      assert_non_null(p);
    else
      assert_null(p);
    free(copy);
  }
}

static void test_refused(void **state) {
  const uint8_t *val;
  uint64_t key;
  size_t vlen;
  (void)state;
  /* Group start (wire type 3) and end (4), wire types 6 and 7. */
  for (uint8_t wt = 3; wt <= 7; wt++) {
    if (wt == 5)
      continue;
    uint8_t b[] = {(uint8_t)(0x08 | wt), 0, 0, 0, 0, 0, 0, 0, 0};
    assert_null(sl_pb_next_field(b, b + sizeof(b), &key, &val, &vlen));
  }
  /* A length larger than what is left. */
  uint8_t big[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'};
  assert_null(sl_pb_next_field(big, big + sizeof(big), &key, &val, &vlen));
  /* An 11-byte varint. */
  uint8_t vv[] = {0x08, 0x80, 0x80, 0x80, 0x80, 0x80,
                  0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  assert_null(sl_pb_next_field(vv, vv + sizeof(vv), &key, &val, &vlen));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_walk_all_types),
      cmocka_unit_test(test_every_truncation),
      cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
