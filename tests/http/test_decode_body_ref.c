/*
 * The HTTP JSON body decoder (decode/decode_json.c, on the json_scan.c
 * scanner) against the jansson tree decoder it replaced
 * (tests/fuzz/json_body_ref.c) on tricky inputs: same result, same events
 * byte for byte, same error message (tests/fuzz/fuzz_json.c runs the same
 * check on fuzzed inputs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode/decode_json.h"
#include "tests/fuzz/json_body_ref.h"

static const char *const cases[] = {
    "",
    " \n\t\r\n",
    "{",
    "[",
    "42",
    "\"s\"",
    "[]",
    "[1]",
    "{}",
    "nul",
    "{\"source\":\"s\",\"value\":1}",
    "{\"source\":\"s\",\"value\":1}{\"source\":\"t\",\"value\":2}",
    "{\"source\":\"s\",\"value\":1}\n\n{\"source\":\"t\",\"value\":2}\n",
    "{\"source\":\"s\",\"value\":1}\n{\"source\":\"t\"}\n",
    "{\"source\":\"s\",\"value\":1}\n{\"source\":\"t\",\n\"value\":}\n",
    "{\"source\":\"s\",\"value\":1}\n{\"source\":\"t\",\"value\":1}\n[]",
    "[{\"source\":\"s\",\"value\":1}]\n{\"source\":\"t\",\"value\":2}",
    "[{\"source\":\"s\",\"value\":1}] [{\"source\":\"s\",\"value\":1}]",
    "{\"source\":\"s\",\"value\":1}\n[{\"source\":\"s\",\"value\":1}]",
    "[{\"source\":\"s\"},{\"source\":\"s\",\"value\":1},]",
    "[{\"source\":\"s\"},{\"source\":\"s\",\"value\":1}",
    "[{\"source\":\"s\",\"value\":1},{\"source\":\"s\",\"value\":1},"
    "{\"source\":\"s\",\"value\":1}]",
    "[{\"source\":\"s\",\"value\":1},{\"source\":\"s\",\"value\":1},"
    "{\"source\":\"s\",\"value\":1},{\"source\":\"s\",\"value\":1,\"x\":1}]",
    "{\"source\":\"s\",\"value\":1,\"value\":2}",
    "{\"source\":\"s\",\"value\":NaN}",
    "{\"source\":\"s\",\"value\":1e999}",
    "{\"source\":\"s\",\"int_value\":9223372036854775808}",
    "{\"source\":\"s\",\"int_value\":-9223372036854775808}",
    "{\"source\":\"s\",\"value\":\"a\\u0000b\"}",
    "{\"source\":\"s\",\"val\\u0000ue\":1}",
    "{\"source\":\"s\\ud800\",\"value\":1}",
    "{\"source\":\"s\\ud83d\\ude00\",\"value\":\"\\u00e9\\n\\t\\\"\"}",
    "{\"sou\\u0072ce\":\"s\",\"value\":1}",
    "{\"source\":\"s\",\"value\":\"line\nbreak\"}",
    "{\"source\":\"\xff\",\"value\":1}",
    "{\"source\":\"s\",\"value\":1}\xc3",
    "{\"source\":\"s\",\"value\":1,\"time\":\"2026-01-01T00:00:00Z\"}",
    "{\"source\":\"s\",\"value\":1,\"time\":1.5e9}",
    "{\"source\":\"s\",\"value\":1,\"time\":17}",
    "{\"source\":\"s\",\"value\":1,\"time\":1e300}",
    "{\"source\":\"s\",\"value\":1,\"time\":true}",
    "{\"source\":\"s\",\"value\":1,\"time_ns\":1.5}",
    "{\"source\":\"s\",\"value\":1,\"time_ns\":5,\"time\":5}",
    "{\"source\":\"s\",\"value\":1,\"time_ns\":9223372036854775807}",
    "{\"source\":\"s\",\"value\":1,\"quality\":3221225472}",
    "{\"source\":\"s\",\"value\":1,\"quality\":4294967296}",
    "{\"source\":\"s\",\"value\":1,\"quality\":\"uncertain\",\"unit\":\"C\"}",
    "{\"source\":\"s\",\"unit\":\"C\",\"raw\":{\"data\":\"\"}}",
    "{\"source\":\"s\",\"value\":\"NaN\",\"datatype\":\"double\"}",
    "{\"source\":\"s\",\"value\":\"-Infinity\",\"datatype\":\"float\"}",
    "{\"source\":\"s\",\"value\":\"18446744073709551615\","
    "\"datatype\":\"uint64\"}",
    "{\"source\":\"s\",\"int_value\":255,\"datatype\":\"uint8\"}",
    "{\"source\":\"s\",\"int_value\":256,\"datatype\":\"uint8\"}",
    "{\"source\":\"s\",\"value\":5,\"datatype\":\"int16\"}",
    "{\"source\":\"s\",\"value\":5}",
    "{\"source\":\"s\",\"value\":true,\"datatype\":\"boolean\"}",
    "{\"source\":\"s\",\"value\":1,\"datatype\":\"complex\"}",
    "{\"source\":\"s\",\"value\":1,\"datatype\":7}",
    "{\"source\":\"s\",\"value\":\"x\",\"datatype\":\"uuid\"}",
    "{\"source\":\"s\",\"inference\":{\"model\":\"m\",\"model_version\":\"2\","
    "\"latency_us\":7,\"labels\":[{\"name\":\"cat\",\"score\":0.5,\"x\":1}],"
    "\"boxes\":[{\"x\":1,\"y\":2,\"w\":3,\"h\":4,\"score\":1,\"label\":\"c\"},"
    "{}]},\"attributes\":{\"a\":\"1\",\"b\":\"2\"}}",
    "{\"source\":\"s\",\"inference\":{\"model\":\"m\",\"labels\":[1]}}",
    "{\"source\":\"s\",\"inference\":{\"model\":\"m\",\"boxes\":[{\"x\":\"1\"}]"
    "}}",
    "{\"source\":\"s\",\"inference\":{\"model\":\"m\",\"latency_us\":-1}}",
    "{\"source\":\"s\",\"inference\":{\"model\":\"\"}}",
    "{\"source\":\"s\",\"inference\":[]}",
    "{\"source\":\"s\",\"raw\":{\"data\":\"aGVsbG8=\",\"content_type\":\"t\"}}",
    "{\"source\":\"s\",\"raw\":{\"data\":\"aGVsbA==\"}}",
    "{\"source\":\"s\",\"raw\":{\"data\":\"abc\"}}",
    "{\"source\":\"s\",\"raw\":{\"data\":\"@@@@\"}}",
    "{\"source\":\"s\",\"raw\":{\"data\":\"\",\"more\":1}}",
    "{\"source\":\"s\",\"raw\":\"x\"}",
    "{\"source\":\"s\",\"value\":1,\"attributes\":{\"k\":1}}",
    "{\"source\":\"s\",\"value\":1,\"attributes\":[]}",
    "{\"source\":\"s\",\"value\":1,\"attributes\":{\"\":\"v\"}}",
    "{\"source\":\"s\",\"value\":1,\"attributes\":{\"sluice.identity\":\"x\","
    "\"k\":\"v\"}}",
    "{\"source\":\"s\",\"value\":1,\"time_ns\":4000000000000000000}",
    "{\"source\":\"s\",\"value\":null,\"quality\":\"bad\"}",
    "{\"source\":\"s\",\"value\":[1,{\"a\":[]}]}",
    "{\"source\":\"s\",\"value\":1,\"unit\":{\"a\":1,\"a\":2}}",
    "{\"source\" : \"s\" , \"value\" : 1 }\r\n",
    "\n\n  {\"source\":\"s\",\"value\":1,}",
    "\n\n  {\"source\":\"s\",\"value\":1\n\n",
    "\n{\"source\":\"s\",\"value\":01}",
    "\n{\"source\":\"s\",\"value\":-}",
    "\n{\"source\":\"s\",\"value\":1.}",
    "\n{\"source\":\"s\",\"value\":tru}",
    /* jansson counts a newline it read inside a bad escape. */
    "{\"source\":\"s\\\n\"}",
    "{\"source\":\"s\\ud8\n{\"source\"",
    "{\"source\":\"s\\u\n\"}",
    "{\"source\":\"s\\ud800\\u\n\"}",
};

static void test_agree(void **state) {
  char why[400];
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (json_body_compare((const uint8_t *)cases[i], strlen(cases[i]), why,
                          sizeof(why)) < 0) {
      fprintf(stderr, "case %zu %s: %s\n", i, cases[i], why);
      fail();
    }
  }
}

/* Big bodies: many events (the limit), many keys (the hash-table duplicate
 * check), deep nesting (jansson's depth limit). */
static void test_agree_big(void **state) {
  size_t cap = 1 << 20, n;
  char *b = malloc(cap), why[400];
  (void)state;
  assert_non_null(b);
  /* 1,001 events in an array and as lines: over the limit of 1,000. */
  for (int form = 0; form < 2; form++) {
    n = 0;
    if (form)
      b[n++] = '[';
    for (int i = 0; i < 1001; i++)
      n += (size_t)snprintf(b + n, cap - n,
                            "%s{\"source\":\"s%d\",\"value\":%d.5}%s",
                            form && i ? "," : "", i, i, form ? "" : "\n");
    if (form)
      b[n++] = ']';
    assert_int_equal(json_body_compare((uint8_t *)b, n, why, sizeof(why)), 0);
  }
  /* 300 attributes, then the same with a duplicate key at the end. */
  for (int dup = 0; dup < 2; dup++) {
    n = (size_t)snprintf(b, cap,
                         "{\"source\":\"s\",\"value\":1,"
                         "\"attributes\":{");
    for (int i = 0; i < 300; i++)
      n += (size_t)snprintf(b + n, cap - n, "%s\"k%d\":\"v\"", i ? "," : "", i);
    n += (size_t)snprintf(b + n, cap - n, "%s}}", dup ? ",\"k7\":\"w\"" : "");
    if (json_body_compare((uint8_t *)b, n, why, sizeof(why)) < 0) {
      fprintf(stderr, "attributes dup %d: %s\n", dup, why);
      fail();
    }
  }
  /* Nesting 2047 and 2049 values deep inside "value". */
  for (int depth = 2046; depth <= 2049; depth += 3) {
    n = (size_t)snprintf(b, cap, "{\"source\":\"s\",\"value\":");
    for (int i = 0; i < depth; i++)
      b[n++] = '[';
    for (int i = 0; i < depth; i++)
      b[n++] = ']';
    b[n++] = '}';
    if (json_body_compare((uint8_t *)b, n, why, sizeof(why)) < 0) {
      fprintf(stderr, "depth %d: %s\n", depth, why);
      fail();
    }
  }
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_agree),
      cmocka_unit_test(test_agree_big),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
