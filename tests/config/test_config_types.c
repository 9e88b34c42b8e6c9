/*
 * Type parsers and the option table: known-answer tables for every type
 * (good and bad values, units, ranges) and checks that every table row is
 * well formed (defaults parse, ranges parse, sections contiguous).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config_int.h"

/* A struct with a field of every type, for synthetic rows. */
typedef struct all {
  bool b;
  int64_t i;
  uint64_t u;
  double d;
  int e;
  uint32_t mask;
  char *s;
  sl_config_strlist_t l;
} all_t;

static const char *const colors[] = {"red", "green", "blue", NULL};

#define ROW(type_, field_, ...)                                                \
  {                                                                            \
    .name = "k", .type = SL_CFG_##type_, .off = offsetof(all_t, field_),       \
    .def = "", .desc = "", __VA_ARGS__                                         \
  }

typedef struct {
  const char *in;
  bool ok;
  uint64_t want; /* for unsigned types */
} ucase_t;

static void run_ucases(const sl_cfg_opt_t *o, const ucase_t *c, size_t n) {
  for (size_t k = 0; k < n; k++) {
    sl_cfg_val_t v;
    char why[256] = "";
    int rc = sl_cfg_parse(o, c[k].in, &v, why, sizeof(why));
    if ((rc == 0) != c[k].ok)
      fail_msg("\"%s\": rc %d, why \"%s\"", c[k].in, rc, why);
    if (c[k].ok && v.u != c[k].want)
      fail_msg("\"%s\": got %llu want %llu", c[k].in, (unsigned long long)v.u,
               (unsigned long long)c[k].want);
    if (!c[k].ok)
      assert_true(why[0] != '\0');
  }
}

static void test_size(void **state) {
  (void)state;
  const sl_cfg_opt_t o = ROW(SIZE, u);
  const ucase_t c[] = {
      {"0", true, 0},
      {"4096", true, 4096},
      {"512MiB", true, 512ull << 20},
      {"512mib", true, 512ull << 20},
      {"1GiB", true, 1ull << 30},
      {"2GB", true, 2000000000ull},
      {"3KB", true, 3000},
      {"3KiB", true, 3072},
      {"5Mi", true, 5ull << 20},
      {"1TiB", true, 1ull << 40},
      {"7 MiB", true, 7ull << 20},
      {"12B", true, 12},
      {"16777215TiB", true, 16777215ull << 40},
      {"16777216TiB", false, 0}, /* overflows 64 bits */
      {"99999999999999999999", false, 0},
      {"12XB", false, 0},
      {"", false, 0},
      {"MiB", false, 0},
      {"-1MiB", false, 0},
      {"1.5GiB", false, 0},
      {"1GiBx", false, 0},
      {" 1GiB", false, 0},
  };
  run_ucases(&o, c, SL_ARRAY_SIZE(c));
}

static void test_duration(void **state) {
  (void)state;
  const sl_cfg_opt_t o = ROW(DURATION, u);
  const ucase_t c[] = {
      {"0", true, 0},
      {"250ms", true, 250},
      {"5s", true, 5000},
      {"1m", true, 60000},
      {"1h", true, 3600000},
      {"1h30m", true, 5400000},
      {"2d", true, 172800000},
      {"1m1ms", true, 60001},
      {"5", false, 0},
      {"", false, 0},
      {"5sec", false, 0},
      {"1.5s", false, 0},
      {"-1s", false, 0},
      {"s", false, 0},
      {"5us", false, 0},
      {"99999999999999999999d", false, 0},
      {"213503982335d", false, 0}, /* ms overflow */
  };
  run_ucases(&o, c, SL_ARRAY_SIZE(c));
}

static void test_uint_and_range(void **state) {
  (void)state;
  const sl_cfg_opt_t o = ROW(UINT, u, .min = "1", .max = "65535");
  const ucase_t c[] = {
      {"1", true, 1},      {"65535", true, 65535}, {"0", false, 0},
      {"65536", false, 0}, {"-1", false, 0},       {"+5", false, 0},
      {"0x10", false, 0},  {"12a", false, 0},      {"", false, 0},
  };
  run_ucases(&o, c, SL_ARRAY_SIZE(c));
  sl_cfg_val_t v;
  char why[128];
  assert_int_equal(sl_cfg_parse(&o, "70000", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "is out of range (expected 1..65535)");
  const sl_cfg_opt_t lo = ROW(SIZE, u, .min = "1MiB");
  assert_int_equal(sl_cfg_parse(&lo, "1KiB", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "is out of range (minimum 1MiB)");
  const sl_cfg_opt_t hi = ROW(DURATION, u, .max = "24h");
  assert_int_equal(sl_cfg_parse(&hi, "25h", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "is out of range (maximum 24h)");
  assert_int_equal(sl_cfg_parse(&hi, "1d", &v, why, sizeof(why)), 0);
}

static void test_int(void **state) {
  (void)state;
  const sl_cfg_opt_t o = ROW(INT, i, .min = "-10", .max = "10");
  const sl_cfg_opt_t wide = ROW(INT, i);
  const struct {
    const sl_cfg_opt_t *o;
    const char *in;
    bool ok;
    int64_t want;
  } c[] = {
      {&o, "-10", true, -10},
      {&o, "+7", true, 7},
      {&o, "0", true, 0},
      {&o, "11", false, 0},
      {&o, "-11", false, 0},
      {&o, "1e1", false, 0},
      {&o, "-", false, 0},
      {&wide, "-9223372036854775808", true, INT64_MIN},
      {&wide, "9223372036854775807", true, INT64_MAX},
      {&wide, "9223372036854775808", false, 0},
      {&wide, "-9223372036854775809", false, 0},
  };
  for (size_t k = 0; k < SL_ARRAY_SIZE(c); k++) {
    sl_cfg_val_t v;
    char why[128];
    int rc = sl_cfg_parse(c[k].o, c[k].in, &v, why, sizeof(why));
    if ((rc == 0) != c[k].ok)
      fail_msg("\"%s\": rc %d", c[k].in, rc);
    if (c[k].ok)
      assert_true(v.i == c[k].want);
  }
}

static void test_double(void **state) {
  (void)state;
  const sl_cfg_opt_t o = ROW(DOUBLE, d, .min = "0", .max = "1");
  const struct {
    const char *in;
    bool ok;
    double want;
  } c[] = {
      {"0.5", true, 0.5},    {"1", true, 1.0},   {"0", true, 0.0},
      {"1e-3", true, 0.001}, {"1.5", false, 0},  {"-0.1", false, 0},
      {"nan", false, 0},     {"inf", false, 0},  {"0x1p-2", false, 0},
      {"", false, 0},        {"0.5x", false, 0}, {" 0.5", false, 0},
  };
  for (size_t k = 0; k < SL_ARRAY_SIZE(c); k++) {
    sl_cfg_val_t v;
    char why[128];
    int rc = sl_cfg_parse(&o, c[k].in, &v, why, sizeof(why));
    if ((rc == 0) != c[k].ok)
      fail_msg("\"%s\": rc %d", c[k].in, rc);
    if (c[k].ok)
      assert_true(v.d == c[k].want);
  }
}

static void test_bool_and_enum(void **state) {
  (void)state;
  const sl_cfg_opt_t b = ROW(BOOL, b);
  const sl_cfg_opt_t e = ROW(ENUM, e, .enums = colors);
  const struct {
    const char *in;
    int want; /* -1 = error */
  } bc[] = {{"true", 1}, {"False", 0}, {"yes", 1}, {"no", 0},     {"on", 1},
            {"OFF", 0},  {"1", -1},    {"", -1},   {"truthy", -1}},
    ec[] = {{"red", 0}, {"blue", 2}, {"Red", -1}, {"", -1}, {"purple", -1}};
  sl_cfg_val_t v;
  char why[128];
  for (size_t k = 0; k < SL_ARRAY_SIZE(bc); k++) {
    int rc = sl_cfg_parse(&b, bc[k].in, &v, why, sizeof(why));
    assert_int_equal(rc, bc[k].want < 0 ? -1 : 0);
    if (!rc)
      assert_int_equal(v.b, bc[k].want);
  }
  for (size_t k = 0; k < SL_ARRAY_SIZE(ec); k++) {
    int rc = sl_cfg_parse(&e, ec[k].in, &v, why, sizeof(why));
    assert_int_equal(rc, ec[k].want < 0 ? -1 : 0);
    if (!rc)
      assert_int_equal(v.e, ec[k].want);
  }
  assert_int_equal(sl_cfg_parse(&e, "purple", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "is not one of red, green, blue");
}

static const char *no_x(const char *s) {
  return strchr(s, 'x') ? "must not contain x" : NULL;
}

static void test_string_path_list_flags(void **state) {
  (void)state;
  const sl_cfg_opt_t s = ROW(STRING, s, .check = no_x);
  const sl_cfg_opt_t p = ROW(PATH, s);
  const sl_cfg_opt_t l = ROW(LIST, l, .max = "3");
  const sl_cfg_opt_t f = ROW(FLAGS, mask, .enums = colors);
  sl_cfg_val_t v;
  char why[256];

  assert_int_equal(sl_cfg_parse(&s, "abc", &v, why, sizeof(why)), 0);
  assert_string_equal(v.s, "abc");
  sl_cfg_val_free(&s, &v);
  assert_int_equal(sl_cfg_parse(&s, "xyz", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "must not contain x");

  assert_int_equal(sl_cfg_parse(&p, "/var/lib", &v, why, sizeof(why)), 0);
  sl_cfg_val_free(&p, &v);
  assert_int_equal(sl_cfg_parse(&p, "", &v, why, sizeof(why)), 0);
  sl_cfg_val_free(&p, &v);
  assert_int_equal(sl_cfg_parse(&p, "rel/dir", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "is not an absolute path");

  assert_int_equal(sl_cfg_parse(&l, " a, b ,c", &v, why, sizeof(why)), 0);
  assert_int_equal(v.l.n, 3);
  assert_string_equal(v.l.v[0], "a");
  assert_string_equal(v.l.v[1], "b");
  assert_string_equal(v.l.v[2], "c");
  sl_cfg_val_free(&l, &v);
  assert_int_equal(sl_cfg_parse(&l, "", &v, why, sizeof(why)), 0);
  assert_int_equal(v.l.n, 0);
  sl_cfg_val_free(&l, &v);
  assert_int_equal(sl_cfg_parse(&l, "a,,b", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "has an empty item");
  assert_int_equal(sl_cfg_parse(&l, "a,b,c,d", &v, why, sizeof(why)), -1);
  assert_string_equal(why, "has too many items (maximum 3)");

  assert_int_equal(sl_cfg_parse(&f, "red,blue", &v, why, sizeof(why)), 0);
  assert_int_equal(v.mask, 5);
  assert_int_equal(sl_cfg_parse(&f, "all", &v, why, sizeof(why)), 0);
  assert_int_equal(v.mask, 7);
  const char *items[] = {"green"};
  assert_int_equal(sl_cfg_parse_items(&f, items, 1, &v, why, sizeof(why)), 0);
  assert_int_equal(v.mask, 2);
  assert_int_equal(sl_cfg_parse(&f, "red,pink", &v, why, sizeof(why)), -1);
  assert_non_null(strstr(why, "unknown item \"pink\""));
}

/* format() output parses back to the same value, for every type. */
static void test_format_roundtrip(void **state) {
  (void)state;
  const sl_cfg_opt_t rows[] = {ROW(SIZE, u),
                               ROW(DURATION, u),
                               ROW(UINT, u),
                               ROW(INT, i),
                               ROW(DOUBLE, d),
                               ROW(BOOL, b),
                               ROW(ENUM, e, .enums = colors),
                               ROW(FLAGS, mask, .enums = colors)};
  const char *in[] = {"3GiB", "90s", "77",    "-5",
                      "0.1",  "yes", "green", "blue,red"};
  const char *want[] = {"3GiB", "90s",  "77",    "-5",
                        "0.1",  "true", "green", "[red, blue]"};
  for (size_t k = 0; k < SL_ARRAY_SIZE(rows); k++) {
    all_t a = {0};
    sl_cfg_val_t v;
    char why[128], buf[128];
    assert_int_equal(sl_cfg_parse(&rows[k], in[k], &v, why, sizeof(why)), 0);
    sl_cfg_store(&rows[k], &a, &v);
    sl_cfg_format(&rows[k], &a, buf, sizeof(buf));
    assert_string_equal(buf, want[k]);
  }
  /* Sizes and durations pick the largest exact unit. */
  const sl_cfg_opt_t sz = ROW(SIZE, u), du = ROW(DURATION, u);
  all_t a = {.u = 1536};
  char buf[64];
  sl_cfg_format(&sz, &a, buf, sizeof(buf));
  assert_string_equal(buf, "1536");
  a.u = 5400000;
  sl_cfg_format(&du, &a, buf, sizeof(buf));
  assert_string_equal(buf, "90m");
  /* Strings are double-quoted YAML with escapes. */
  const sl_cfg_opt_t st = ROW(STRING, s);
  a.s = "a\"b\\c\n";
  sl_cfg_format(&st, &a, buf, sizeof(buf));
  assert_string_equal(buf, "\"a\\\"b\\\\c\\x0a\"");
}

static void test_distance(void **state) {
  (void)state;
  assert_int_equal(sl_cfg_distance("store", "store"), 0);
  assert_int_equal(sl_cfg_distance("stor", "store"), 1);
  assert_int_equal(sl_cfg_distance("budget_byte", "budget_bytes"), 1);
  assert_int_equal(sl_cfg_distance("", "abc"), 3);
  assert_int_equal(sl_cfg_distance("kitten", "sitting"), 3);
}

/* Every row of the real tables is well formed. */
static void check_section(const sl_cfg_section_t *sec) {
  for (size_t i = 0; i < sec->n_opts; i++) {
    const sl_cfg_opt_t *o = &sec->opts[i];
    sl_cfg_val_t v;
    char why[256];
    assert_non_null(o->name);
    assert_non_null(o->desc);
    assert_true(o->desc[0] != '\0');
    assert_true(o->off + 1 <= sec->size);
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(o->name, sec->opts[j].name);
    if (o->type == SL_CFG_ENUM || o->type == SL_CFG_FLAGS)
      assert_non_null(o->enums);
    if (o->type == SL_CFG_SECTION_LIST) {
      assert_non_null(o->sub);
      check_section(o->sub);
      continue;
    }
    if (o->flags & SL_CFG_REQUIRED) {
      assert_null(o->def);
    } else {
      assert_non_null(o->def);
      if (sl_cfg_parse(o, o->def, &v, why, sizeof(why)))
        fail_msg("%s: default \"%s\" %s", o->name, o->def, why);
      sl_cfg_val_free(o, &v);
    }
    const sl_cfg_opt_t bound = {
        .type = o->type == SL_CFG_LIST || o->type == SL_CFG_FLAGS ? SL_CFG_UINT
                                                                  : o->type};
    if (o->min && sl_cfg_parse(&bound, o->min, &v, why, sizeof(why)))
      fail_msg("%s: min \"%s\" %s", o->name, o->min, why);
    if (o->max && sl_cfg_parse(&bound, o->max, &v, why, sizeof(why)))
      fail_msg("%s: max \"%s\" %s", o->name, o->max, why);
    if (o->flags & SL_CFG_SECRET_FILE)
      assert_int_equal(o->type, SL_CFG_PATH);
  }
  /* Rows of one top-level section are contiguous (dump and docs rely on it). */
  for (size_t i = 1; i < sec->n_opts; i++) {
    const char *a = sec->opts[i - 1].name, *b = sec->opts[i].name;
    size_t la = strcspn(a, "."), lb = strcspn(b, ".");
    if (la == lb && !strncmp(a, b, la))
      continue;
    for (size_t j = i + 1; j < sec->n_opts; j++) {
      const char *c = sec->opts[j].name;
      if (strcspn(c, ".") == la && !strncmp(a, c, la))
        fail_msg("%s is separated from %s", c, a);
    }
  }
}

static void test_table_rows(void **state) {
  (void)state;
  check_section(&sl_config__root);
  /* Environment names are unique too. */
  for (size_t i = 0; i < sl_config__root.n_opts; i++) {
    char a[128], b[128];
    config__env_name(sl_config__root.opts[i].name, a, sizeof(a));
    for (size_t j = 0; j < i; j++) {
      config__env_name(sl_config__root.opts[j].name, b, sizeof(b));
      assert_string_not_equal(a, b);
    }
  }
  char var[64];
  config__env_name("store.budget_bytes", var, sizeof(var));
  assert_string_equal(var, "SLUICE_STORE_BUDGET_BYTES");
}

static void test_docs_generate(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(sl_config_doc_markdown(f), 0);
  fclose(f);
  /* Every root key, and its variable, is documented. */
  for (size_t i = 0; i < sl_config__root.n_opts; i++) {
    char key[128];
    snprintf(key, sizeof(key), "`%s`", sl_config__root.opts[i].name);
    if (!strstr(buf, key))
      fail_msg("%s missing from docs", key);
  }
  assert_non_null(strstr(buf, "`streams[].ttl`"));
  assert_non_null(strstr(buf, "`SLUICE_STORE_BUDGET_BYTES`"));
  assert_non_null(strstr(buf, "default < configuration file < environment"));
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_size),
      cmocka_unit_test(test_duration),
      cmocka_unit_test(test_uint_and_range),
      cmocka_unit_test(test_int),
      cmocka_unit_test(test_double),
      cmocka_unit_test(test_bool_and_enum),
      cmocka_unit_test(test_string_path_list_flags),
      cmocka_unit_test(test_format_roundtrip),
      cmocka_unit_test(test_distance),
      cmocka_unit_test(test_table_rows),
      cmocka_unit_test(test_docs_generate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
