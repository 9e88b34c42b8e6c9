/* Unit tests: Modbus decoding, request planning, config errors, durations. */
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

#include "common/common.h"
#include "common/textparse.h"
#include "connectors/common/conn.h"
#include "connectors/modbus/modbus.h"
#include "tests/connectors/modbus_values.h"

static sl_modbus_point_t pt(int type, int word, int byte, double scale,
                            double offset) {
  sl_modbus_point_t p;
  memset(&p, 0, sizeof(p));
  p.type = type;
  p.word_order = word;
  p.byte_order = byte;
  p.scale = scale;
  p.offset = offset;
  return p;
}

static void test_decode(void **state) {
  uint16_t hr[TV_NREGS] = {0}, ir[TV_NREGS] = {0};
  uint8_t co[TV_NBITS] = {0}, di[TV_NBITS] = {0};
  sl_modbus_point_t p;
  double v;
  (void)state;
  tv_fill(1, hr, ir, co, di);

  p = pt(SL_MODBUS_INT16, 0, 0, 0.1, 0);
  assert_int_equal(sl_modbus_decode(&p, &hr[0], &v), 0);
  assert_true(v == (double)-123 * 0.1);
  p = pt(SL_MODBUS_UINT16, 0, 0, 0.01, 0);
  assert_int_equal(sl_modbus_decode(&p, &hr[1], &v), 0);
  assert_true(v == 50.0);
  p = pt(SL_MODBUS_INT32, SL_MODBUS_BIG, 0, 1, 0);
  assert_int_equal(sl_modbus_decode(&p, &hr[2], &v), 0);
  assert_true(v == -100000.0);
  /* The same registers read in the wrong word order give another value. */
  p.word_order = SL_MODBUS_LITTLE;
  assert_int_equal(sl_modbus_decode(&p, &hr[2], &v), 0);
  assert_true(v != -100000.0);
  p = pt(SL_MODBUS_UINT32, SL_MODBUS_LITTLE, 0, 1, 0);
  assert_int_equal(sl_modbus_decode(&p, &hr[4], &v), 0);
  assert_true(v == 3000000000.0);
  p = pt(SL_MODBUS_FLOAT32, 0, 0, 1, 0);
  assert_int_equal(sl_modbus_decode(&p, &hr[6], &v), 0);
  assert_true(v == 21.5);
  p = pt(SL_MODBUS_FLOAT32, 0, SL_MODBUS_LITTLE, 1, 0);
  assert_int_equal(sl_modbus_decode(&p, &hr[8], &v), 0);
  assert_true(v == -3.25);
  p = pt(SL_MODBUS_FLOAT64, 0, 0, 2, 1);
  assert_int_equal(sl_modbus_decode(&p, &hr[10], &v), 0);
  assert_true(v == 12345.678 * 2 + 1);
  /* float64 little word order, little byte order: fully reversed bytes. */
  {
    uint16_t r[4];
    uint64_t w;
    double d = -0.125;
    memcpy(&w, &d, 8);
    for (int i = 0; i < 4; i++) {
      uint16_t x = (uint16_t)(w >> (16 * i)); /* least significant first */
      r[i] = (uint16_t)((x >> 8) | (x << 8));
    }
    p = pt(SL_MODBUS_FLOAT64, SL_MODBUS_LITTLE, SL_MODBUS_LITTLE, 1, 0);
    assert_int_equal(sl_modbus_decode(&p, r, &v), 0);
    assert_true(v == -0.125);
  }
  /* NaN cannot be published. */
  {
    uint16_t nan[2] = {0x7fc0, 0};
    p = pt(SL_MODBUS_FLOAT32, 0, 0, 1, 0);
    assert_int_equal(sl_modbus_decode(&p, nan, &v), -ERANGE);
  }
  p = pt(SL_MODBUS_BOOL, 0, 0, 1, 0);
  {
    uint16_t one = 1;
    assert_int_equal(sl_modbus_decode(&p, &one, &v), 0);
    assert_true(v == 1.0);
  }
}

static void test_plan(void **state) {
  sl_modbus_point_t pts[6];
  sl_modbus_device_t dev;
  sl_modbus_block_t *b;
  size_t n;
  (void)state;
  memset(&dev, 0, sizeof(dev));
  /* holding 10 (f32, 10..11), 12 (u16) contiguous; 15 with a 2-register
   * gap; 200 far; input 0; holding 12 again at another interval. */
  pts[0] = pt(SL_MODBUS_FLOAT32, 0, 0, 1, 0);
  pts[0].address = 10;
  pts[1] = pt(SL_MODBUS_UINT16, 0, 0, 1, 0);
  pts[1].address = 12;
  pts[2] = pt(SL_MODBUS_UINT16, 0, 0, 1, 0);
  pts[2].address = 15;
  pts[3] = pt(SL_MODBUS_UINT16, 0, 0, 1, 0);
  pts[3].address = 200;
  pts[4] = pt(SL_MODBUS_UINT16, 0, 0, 1, 0);
  pts[4].address = 0;
  pts[4].table = SL_MODBUS_INPUT;
  pts[5] = pt(SL_MODBUS_UINT16, 0, 0, 1, 0);
  pts[5].address = 12;
  for (int i = 0; i < 6; i++)
    pts[i].interval_ms = i == 5 ? 5000 : 1000;
  dev.points = pts;
  dev.npoints = 6;

  assert_int_equal(sl_modbus_plan(&dev, &b, &n), 0);
  assert_int_equal(n, 5); /* 10..12, 15, 200, 12@5s, input 0 */
  assert_int_equal(b[0].address, 10);
  assert_int_equal(b[0].count, 3);
  assert_int_equal(b[0].npoints, 2);
  assert_int_equal(b[1].address, 15);
  sl_modbus_plan_free(b, n);

  dev.max_gap = 2; /* 13, 14 unused: merged into one request */
  assert_int_equal(sl_modbus_plan(&dev, &b, &n), 0);
  assert_int_equal(n, 4);
  assert_int_equal(b[0].address, 10);
  assert_int_equal(b[0].count, 6);
  assert_int_equal(b[0].npoints, 3);
  sl_modbus_plan_free(b, n);

  /* A request never exceeds 125 registers. */
  dev.max_gap = 100;
  pts[3].address = 130;
  assert_int_equal(sl_modbus_plan(&dev, &b, &n), 0);
  for (size_t i = 0; i < n; i++)
    assert_true(b[i].count <= 125);
  sl_modbus_plan_free(b, n);
}

static char path[64];

static int load(const char *yaml, sl_modbus_config_t **cfg, char *err,
                size_t len) {
  FILE *f;
  snprintf(path, sizeof(path), "/tmp/sl-modbus-cfg.%d.yaml", (int)getpid());
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(yaml, f);
  fclose(f);
  int rc = sl_modbus_config_load(path, cfg, err, len);
  unlink(path);
  return rc;
}

static void expect_error(const char *yaml, const char *where) {
  sl_modbus_config_t *cfg = NULL;
  char err[512], want[128];
  assert_int_equal(load(yaml, &cfg, err, sizeof(err)), SL_ECONFIG);
  assert_null(cfg);
  snprintf(want, sizeof(want), "%s:%s", path, where);
  if (!strstr(err, want)) {
    fprintf(stderr, "error \"%s\" does not contain \"%s\"\n", err, want);
    fail();
  }
}

static const char *const good =
    "address: 127.0.0.1:7000\n"
    "devices:\n"
    "  - name: press07\n"
    "    host: 10.0.0.7\n"
    "    points:\n"
    "      - name: temp\n"
    "        address: 100\n"
    "        type: int16\n"
    "        scale: 0.1\n"
    "        unit: C\n"
    "      - {name: run, table: coil, address: 3, interval: 250ms}\n";

static void test_config(void **state) {
  sl_modbus_config_t *cfg = NULL;
  char err[512];
  (void)state;
  assert_int_equal(load(good, &cfg, err, sizeof(err)), 0);
  assert_int_equal(cfg->ndevices, 1);
  assert_string_equal(cfg->devices[0].source, "press07"); /* default */
  assert_int_equal(cfg->devices[0].port, 502);
  assert_int_equal(cfg->devices[0].npoints, 2);
  assert_true(cfg->devices[0].points[0].scale == 0.1);
  assert_int_equal(cfg->devices[0].points[0].interval_ms, 1000);
  assert_int_equal(cfg->devices[0].points[1].type, SL_MODBUS_BOOL);
  assert_int_equal(cfg->devices[0].points[1].interval_ms, 250);
  assert_int_equal(cfg->retry_buffer, 10000);
  sl_modbus_config_free(cfg);

  /* Each error names line:column and the key. */
  expect_error("address: x\ndevices:\n  - name: a\n    host: h\n"
               "    prot: 502\n",
               "5:5: devices[0].prot: unknown key");
  expect_error("address: x\ndevices:\n  - name: a\n    host: h\n"
               "    port: 70000\n    points: [{name: t, type: int16, "
               "address: 1}]\n",
               "5:11: devices[0].port: 70000 is out of range");
  expect_error("address: x\ndevices:\n  - name: a\n    host: h\n"
               "    points:\n      - {name: t, address: 1}\n",
               "6:9: devices[0].points[0]: type is required");
  expect_error("address: x\ndevices:\n  - name: a\n    host: h\n"
               "    points:\n      - {name: t, table: coil, type: float32, "
               "address: 1}\n",
               "6:9: devices[0].points[0]: type float32 does not fit");
  expect_error("address: x\ndevices:\n  - name: a\n    host: h\n"
               "    points:\n      - {name: t, type: int16, address: 1, "
               "interval: soon}\n",
               "6:54: devices[0].points[0].interval: \"soon\" is not a "
               "duration");
  expect_error("address: x\ndevices:\n  - name: a\n    host: h\n"
               "    points:\n      - {name: t, type: int17, address: 1}\n",
               "6:25: devices[0].points[0].type: \"int17\" is not one of");
  expect_error("devices: []\n", "1:10: devices: at least one device");
  expect_error("address: x\ndevices:\n  - name: a\n    points: []\n",
               "4:13: devices[0].points: a device needs at least one point");
  expect_error("address: [x\n", "2:1:"); /* syntax error */
}

/* The connectors' older duration spellings stay valid in their files, and
 * every error of a file is reported at once. */
static void test_config_legacy(void **state) {
  sl_modbus_config_t *cfg = NULL;
  char err[2048];
  (void)state;
  assert_int_equal(load("address: x\ndevices:\n  - name: a\n    host: h\n"
                        "    backoff_min: 40\n"
                        "    points: [{name: t, type: int16, address: 1, "
                        "interval: 1.5s}]\n",
                        &cfg, err, sizeof(err)),
                   0);
  assert_int_equal(cfg->devices[0].backoff_min_ms, 40);
  assert_int_equal(cfg->devices[0].points[0].interval_ms, 1500);
  sl_modbus_config_free(cfg);
  cfg = NULL;
  assert_int_equal(load("address: x\ndevices:\n  - name: a\n    host: h\n"
                        "    port: 0\n    unit_id: 300\n"
                        "    points: [{name: t, address: 1}]\n",
                        &cfg, err, sizeof(err)),
                   SL_ECONFIG);
  assert_null(cfg);
  assert_non_null(strstr(err, "devices[0].port: 0 is out of range"));
  assert_non_null(strstr(err, "devices[0].unit_id: 300 is out of range"));
  assert_non_null(strstr(err, "devices[0].points[0]: type is required"));
}

/* The connectors' legacy spellings of the one duration parser. */
static void test_duration(void **state) {
  uint64_t ms;
  (void)state;
  assert_int_equal(sl_duration_parse("250ms", SL_DURATION_LEGACY, &ms), 0);
  assert_int_equal(ms, 250);
  assert_int_equal(sl_duration_parse("1.5s", SL_DURATION_LEGACY, &ms), 0);
  assert_int_equal(ms, 1500);
  assert_int_equal(sl_duration_parse("2m", SL_DURATION_LEGACY, &ms), 0);
  assert_int_equal(ms, 120000);
  assert_int_equal(sl_duration_parse("40", SL_DURATION_LEGACY, &ms), 0);
  assert_int_equal(ms, 40);
  assert_int_not_equal(sl_duration_parse("-1s", SL_DURATION_LEGACY, &ms), 0);
  assert_int_not_equal(sl_duration_parse("3 days", SL_DURATION_LEGACY, &ms), 0);
  assert_int_not_equal(sl_duration_parse("", SL_DURATION_LEGACY, &ms), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode),   cmocka_unit_test(test_plan),
      cmocka_unit_test(test_config),   cmocka_unit_test(test_config_legacy),
      cmocka_unit_test(test_duration),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
