/* The config engine (config/cfg.h) on a table of its own, as a connector
 * uses it: no environment prefix, element positions in finish hooks,
 * legacy durations, bare range messages, file loading, docs of a table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/cfg.h"

typedef struct item {
  char *name;
  uint64_t size;
} item_t;

typedef struct top {
  char *address;
  uint64_t wait_ms;
  uint64_t port;
  struct {
    item_t *v;
    size_t n;
  } items;
} top_t;

static void item_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  item_t *it = obj;
  (void)prefix;
  if (!sl_cfg_given(errs, "size"))
    sl_cfg_errf_at(errs, NULL, "size is required here");
  else if (it->size == 13)
    sl_cfg_errf_at(errs, "size", "13 is unlucky");
}

static const sl_cfg_opt_t item_opts[] = {
    {.name = "name",
     .type = SL_CFG_STRING,
     .off = offsetof(item_t, name),
     .flags = SL_CFG_REQUIRED,
     .desc = "Name."},
    {.name = "size",
     .type = SL_CFG_UINT,
     .off = offsetof(item_t, size),
     .def = "1",
     .desc = "Size."},
};
static const sl_cfg_section_t item_sec = {
    .name = "items",
    .opts = item_opts,
    .n_opts = 2,
    .size = sizeof(item_t),
    .finish = item_finish,
};

static void top_finish(void *obj, sl_cfg_errs_t *errs, const char *prefix) {
  top_t *t = obj;
  (void)prefix;
  if (!t->items.n && sl_cfg_given(errs, "items"))
    sl_cfg_errf_at(errs, "items", "needs an item");
}

static const sl_cfg_opt_t top_opts[] = {
    {.name = "address",
     .type = SL_CFG_STRING,
     .off = offsetof(top_t, address),
     .flags = SL_CFG_REQUIRED,
     .desc = "Where."},
    {.name = "wait",
     .type = SL_CFG_DURATION,
     .off = offsetof(top_t, wait_ms),
     .def = "1s",
     .max = "1h",
     .flags = SL_CFG_LEGACY_DURATION,
     .desc = "How long."},
    {.name = "port",
     .type = SL_CFG_UINT,
     .off = offsetof(top_t, port),
     .def = "1",
     .min = "1",
     .max = "65535",
     .flags = SL_CFG_RELOAD,
     .desc = "Port."},
    {.name = "items",
     .type = SL_CFG_SECTION_LIST,
     .off = offsetof(top_t, items),
     .sub = &item_sec,
     .desc = "Items."},
};
static top_t *load(const sl_cfg_section_t *sec, const char *yaml,
                   char *const *envp, char *err, size_t len, int *rc) {
  void *obj = NULL;
  *rc = sl_cfg_load(sec, "t.yaml", yaml, strlen(yaml), envp, &obj, err, len);
  return obj;
}

static const sl_cfg_section_t bare = {
    .name = "",
    .opts = top_opts,
    .n_opts = 4,
    .size = sizeof(top_t),
    .finish = top_finish,
    .flags = SL_CFG_SEC_BARE_RANGE,
};

static void expect(const char *err, const char *want) {
  if (!strstr(err, want)) {
    fprintf(stderr, "errors:\n%s\ndo not contain: %s\n", err, want);
    fail();
  }
}

static void test_connector_style(void **state) {
  char err[2048];
  int rc;
  top_t *t;
  char *envp[] = {"ADDRESS=env", "SLUICE_ADDRESS=env", NULL};
  (void)state;

  /* Legacy durations on a LEGACY row; no environment without a prefix. */
  t = load(&bare, "address: a\nwait: 1.5s\nitems: [{name: x, size: 2}]\n", envp,
           err, sizeof(err), &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(t->address, "a");
  assert_int_equal(t->wait_ms, 1500);
  assert_int_equal(t->items.n, 1);
  assert_int_equal(t->items.v[0].size, 2);
  sl_cfg_obj_free(&bare, t);
  free(t);
  t = load(&bare, "address: a\nwait: 40\n", NULL, err, sizeof(err), &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(t->wait_ms, 40);
  sl_cfg_obj_free(&bare, t);
  free(t);

  /* Every error at once: bare range, element and row positions. */
  t = load(&bare,
           "port: 70000\n"
           "items:\n"
           "  - {name: x}\n"
           "  - {name: y, size: 13}\n",
           NULL, err, sizeof(err), &rc);
  assert_int_equal(rc, SL_ECONFIG);
  assert_null(t);
  expect(err, "t.yaml:1:7: port: 70000 is out of range (expected 1..65535)");
  expect(err, "t.yaml:3:5: items[0]: size is required here");
  expect(err, "t.yaml:4:21: items[1].size: 13 is unlucky");
  expect(err, "t.yaml: address: required key is missing");
  assert_null(strstr(err, "set it or")); /* no environment: no variable */
  t = load(&bare, "address: a\nitems: []\n", NULL, err, sizeof(err), &rc);
  assert_int_equal(rc, SL_ECONFIG);
  expect(err, "t.yaml:2:8: items: needs an item");
}

static void test_daemon_style(void **state) {
  sl_cfg_section_t sec = bare;
  char err[2048];
  int rc;
  top_t *t;
  char *envp[] = {"X_ADDRESS=from-env", NULL};
  (void)state;
  sec.flags = 0;
  sec.env_prefix = "X_";
  t = load(&sec, "port: 0\nwait: 40\n", NULL, err, sizeof(err), &rc);
  assert_int_equal(rc, SL_ECONFIG);
  expect(err, "port: \"0\" is out of range");
  expect(err, "address: required key is missing (set it or X_ADDRESS)");
  t = load(&sec, "wait: 2s\n", envp, err, sizeof(err), &rc);
  assert_int_equal(rc, 0);
  assert_string_equal(t->address, "from-env");
  sl_cfg_obj_free(&sec, t);
  free(t);
  /* Without the flag a duration takes the one format only. */
  sl_cfg_opt_t strict = top_opts[1];
  sl_cfg_val_t v;
  char why[128];
  strict.flags = 0;
  assert_int_equal(sl_cfg_parse(&strict, "1.5s", &v, why, sizeof(why)), -1);
  assert_int_equal(sl_cfg_parse(&strict, "40", &v, why, sizeof(why)), -1);
  assert_int_equal(sl_cfg_parse(&top_opts[1], "40", &v, why, sizeof(why)), 0);
  assert_int_equal(v.u, 40);
}

static void test_file_and_docs(void **state) {
  char path[64], err[512], *buf = NULL;
  size_t len = 0;
  void *obj = NULL;
  sl_cfg_section_t sec = bare;
  FILE *f;
  (void)state;
  snprintf(path, sizeof(path), "/tmp/sl-cfg-engine.%d.yaml", (int)getpid());
  assert_int_equal(sl_cfg_load_file(&sec, "/nonexistent/x.yaml", NULL, &obj,
                                    err, sizeof(err)),
                   -ENOENT);
  expect(err, "/nonexistent/x.yaml: cannot open:");
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("address: a\n", f);
  fclose(f);
  chmod(path, 0666);
  assert_int_equal(sl_cfg_load_file(&sec, path, NULL, &obj, err, sizeof(err)),
                   0);
  sl_cfg_obj_free(&sec, obj);
  free(obj);
  sec.flags |= SL_CFG_SEC_PRIVATE_FILE;
  assert_int_equal(sl_cfg_load_file(&sec, path, NULL, &obj, err, sizeof(err)),
                   SL_ECONFIG);
  expect(err, "writable by group or others");
  unlink(path);

  f = open_memstream(&buf, &len);
  sl_cfg_doc_table(f, &bare, "", NULL, false);
  fclose(f);
  expect(buf, "| Key | Type | Default | Range / values | Description |\n");
  expect(buf, "| `port` | uint | `1` | 1 .. 65535 | Port. |\n");
  free(buf);
  f = open_memstream(&buf, &len);
  sl_cfg_doc_table(f, &bare, "", "X_", true);
  fclose(f);
  expect(buf, "| `port` | uint | `1` | 1 .. 65535 | yes | `X_PORT` | Port. |");
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connector_style),
      cmocka_unit_test(test_daemon_style),
      cmocka_unit_test(test_file_and_docs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
