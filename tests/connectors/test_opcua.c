/* Unit tests: sluice-opcua's config (connectors/opcua/schema.c), browse
 * paths, and the value -> reading mapping (deliver.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "connectors/opcua/opcua_int.h"

static int load(const char *yaml, sl_opcua_config_t **cfg, char *err,
                size_t len) {
  char path[] = "/tmp/sl_test_opcua_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
  close(fd);
  int rc = sl_opcua_config_load(path, cfg, err, len);
  unlink(path);
  return rc;
}

#define HEAD                                                                   \
  "address: \"127.0.0.1:7400\"\n"                                              \
  "servers:\n"                                                                 \
  "  - name: plc\n"                                                            \
  "    url: opc.tcp://10.0.0.1:4840\n"

static void test_config_ok(void **state) {
  sl_opcua_config_t *cfg;
  char err[4096];
  (void)state;
  assert_int_equal(
      load(HEAD "    items:\n"
                "      - {name: t, node: \"ns=2;s=T\", deadband: percent, "
                "deadband_value: 2.5}\n"
                "      - {name: p, path: \"2:Plant/2:P\", mode: periodic, "
                "interval: 250ms}\n",
           &cfg, err, sizeof(err)),
      0);
  assert_int_equal(cfg->nservers, 1);
  assert_string_equal(cfg->servers[0].source, "plc");
  assert_int_equal(cfg->servers[0].nitems, 2);
  assert_int_equal(cfg->servers[0].items[0].deadband_type, SL_OPCUA_DB_PERCENT);
  assert_int_equal(cfg->servers[0].items[1].mode, SL_OPCUA_PERIODIC);
  assert_int_equal(cfg->servers[0].items[1].interval_ms, 250);
  assert_false(cfg->servers[0].allow_plaintext_password);
  sl_opcua_config_free(cfg);
}

static void expect_error(const char *yaml, const char *want) {
  sl_opcua_config_t *cfg = NULL;
  char err[4096] = "";
  assert_int_equal(load(yaml, &cfg, err, sizeof(err)), SL_ECONFIG);
  if (!strstr(err, want))
    fail_msg("error \"%s\" lacks \"%s\"", err, want);
  assert_null(cfg);
}

static void test_config_errors(void **state) {
  (void)state;
  /* A password over policy None needs the explicit opt-in. */
  expect_error(HEAD "    user: op\n    password: x\n"
                    "    items: [{name: t, node: \"i=85\"}]\n",
               "allow_plaintext_password");
  expect_error(HEAD "    items: [{name: t, node: \"i=85\", path: \"2:A\"}]\n",
               "exactly one of node and path");
  expect_error(HEAD "    items: [{name: t}]\n", "exactly one of node and path");
  expect_error(HEAD "    items: [{name: t, node: \"ns=2;q=1\"}]\n",
               "is not a NodeId");
  expect_error(HEAD "    items: [{name: t, path: \"2:A//B\"}]\n",
               "is not a browse path");
  expect_error(HEAD "    items: [{name: t, node: \"i=1\"}, {name: t, node: "
                    "\"i=2\"}]\n",
               "used twice");
  expect_error(HEAD "    security: basic256sha256\n"
                    "    items: [{name: t, node: \"i=1\"}]\n",
               "security");
  expect_error("address: x\nservers:\n  - name: a\n    url: http://x\n"
               "    items: [{name: t, node: \"i=1\"}]\n",
               "opc.tcp://");
  expect_error(HEAD "    items: [{name: t, node: \"i=1\", mode: periodic, "
                    "deadband: absolute, deadband_value: 1}]\n",
               "a deadband needs mode change");
  expect_error(HEAD "    keepalive_count: 100\n    lifetime_count: 200\n"
                    "    items: [{name: t, node: \"i=1\"}]\n",
               "3 x keepalive_count");
}

static void test_path_parse(void **state) {
  sl_ua_qname_t el[8];
  char buf[128];
  (void)state;
  assert_int_equal(
      sl_opcua_path_parse("2:Plant/Line 1/3:a\\/b", el, 8, buf, sizeof(buf)),
      3);
  assert_int_equal(el[0].ns, 2);
  assert_true(sl_ua_str_eq(el[0].name, "Plant"));
  assert_int_equal(el[1].ns, 0);
  assert_true(sl_ua_str_eq(el[1].name, "Line 1"));
  assert_int_equal(el[2].ns, 3);
  assert_true(sl_ua_str_eq(el[2].name, "a/b"));
  assert_int_equal(sl_opcua_path_parse("", el, 8, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(sl_opcua_path_parse("a/", el, 8, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(sl_opcua_path_parse("99999:a", el, 8, buf, sizeof(buf)),
                   -EINVAL);
  assert_int_equal(sl_opcua_path_parse("a/b/c", el, 2, buf, sizeof(buf)),
                   -EINVAL);
}

static void test_mapping(void **state) {
  sl_ua_datavalue_t dv;
  pending_t p;
  sl_ua_variant_t arr[2];
  (void)state;
  memset(&dv, 0, sizeof(dv));
  dv.value.type = UA_UINT64;
  dv.value.v.u = UINT64_MAX;
  dv.source_ts = 133000000000000000ll;
  ua_pending_from_dv(NULL, 0, &dv, &p);
  assert_int_equal(p.value_case, SLUICE__V1__READING__VALUE_UINT_VALUE);
  assert_int_equal(p.datatype, SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT64);
  assert_true(p.v.u == UINT64_MAX);
  assert_true(p.time_ns == sl_ua_ticks_to_unix_ns(133000000000000000ll));
  free(p.str);

  /* Uncertain keeps its value; bad has none, only the status name. */
  dv.value.type = UA_INT16;
  dv.value.v.i = -3;
  dv.status = 0x40920000u;
  ua_pending_from_dv(NULL, 0, &dv, &p);
  assert_int_equal(p.quality, SLUICE__V1__QUALITY__QUALITY_UNCERTAIN);
  assert_int_equal(p.value_case, SLUICE__V1__READING__VALUE_INT_VALUE);
  assert_true(p.v.i == -3);
  free(p.str);
  dv.status = UA_BAD_NODE_ID_UNKNOWN;
  ua_pending_from_dv(NULL, 0, &dv, &p);
  assert_int_equal(p.quality, SLUICE__V1__QUALITY__QUALITY_BAD);
  assert_int_equal(p.value_case, SLUICE__V1__READING__VALUE__NOT_SET);
  assert_string_equal(p.str, "BadNodeIdUnknown");
  free(p.str);

  /* Arrays: a JSON array of their elements. */
  memset(arr, 0, sizeof(arr));
  arr[0].type = arr[1].type = UA_STRING;
  arr[0].v.s = (sl_ua_str_t){"a\"b", 3};
  arr[1].v.s = (sl_ua_str_t){"", 0};
  memset(&dv, 0, sizeof(dv));
  dv.value.type = UA_STRING;
  dv.value.is_array = true;
  dv.value.n = 2;
  dv.value.arr = arr;
  ua_pending_from_dv(NULL, 0, &dv, &p);
  assert_int_equal(p.value_case, SLUICE__V1__READING__VALUE_STRING_VALUE);
  assert_string_equal(p.str, "[\"a\\\"b\",\"\"]");
  assert_true(p.time_ns > 0); /* no timestamps: the read time */
  free(p.str);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_ok),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_path_parse),
      cmocka_unit_test(test_mapping),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
