/* Known-answer tests for the filter expression language (process/expr.c,
 * process/eval.c): every operator, every field, null/NaN semantics, parse
 * errors with their column, and every prefix of valid expressions. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "process/process_int.h"
#include "helpers.h"

enum {
  EV_READ,
  EV_INF,
  EV_STR,
  EV_NAN,
  EV_INT,
  EV_BOOL,
  EV_AI,
  EV_EMPTY,
  EV_N
};
static const Sluice__V1__Event *evs[EV_N];

static void fixtures(void) {
  ph_reset();
  evs[EV_READ] =
      ph_attr(ph_attr(ph_quality(ph_reading("plant1/line3/press07/temp",
                                            1500000000, 42.5),
                                 SLUICE__V1__QUALITY__QUALITY_UNCERTAIN),
                      "site", "plant1"),
              "k-1", "x");
  ph_mut(evs[EV_READ])->reading->unit = (char *)"bar";
  ph_mut(evs[EV_READ])->reading->status_code = 7;
  evs[EV_INF] = ph_inference("cam1", 2000000000, "yolo", "v8", "car", 0.4,
                             "person", 0.9, NULL);
  evs[EV_STR] = ph_reading("plc/state", 0, 0);
  ph_mut(evs[EV_STR])->reading->value_case =
      SLUICE__V1__READING__VALUE_STRING_VALUE;
  ph_mut(evs[EV_STR])->reading->string_value = (char *)"RUNNING";
  evs[EV_NAN] = ph_reading("a", 0, NAN);
  evs[EV_INT] = ph_reading("b", 0, 0);
  ph_mut(evs[EV_INT])->reading->value_case =
      SLUICE__V1__READING__VALUE_INT_VALUE;
  ph_mut(evs[EV_INT])->reading->int_value = -7;
  evs[EV_BOOL] = ph_reading("c", 0, 0);
  ph_mut(evs[EV_BOOL])->reading->value_case =
      SLUICE__V1__READING__VALUE_BOOL_VALUE;
  ph_mut(evs[EV_BOOL])->reading->bool_value = 1;
  /* Label-id results (docs/EDGE-AI.md): a canary's detections. */
  static Sluice__V1__Detection det[2], *detp[2] = {&det[0], &det[1]};
  sluice__v1__detection__init(&det[0]);
  sluice__v1__detection__init(&det[1]);
  det[0].label_id = 3;
  det[0].score = 0.25f;
  det[1].label_id = 7;
  det[1].score = 0.75f;
  det[1].label = (char *)"forklift";
  evs[EV_AI] = ph_inference("cam2", 3000000000, "yolo", "v9", NULL);
  Sluice__V1__Inference *in = ph_mut(evs[EV_AI])->inference;
  in->n_detections = 2;
  in->detections = detp;
  in->role = SLUICE__V1__INFERENCE_ROLE__INFERENCE_ROLE_CANARY;
  in->task = SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_DETECT;
  in->model_digest = (char *)"sha256:ab";
  in->latency_us = 1500;
  in->sequence = 42;
  /* No result, no status: empty; no role: primary. */
  evs[EV_EMPTY] = ph_inference("cam3", 3000000000, "yolo", "v9", NULL);
}

/* Each row: expression, event, expected truth. The expected values were
 * worked out by hand from the fixtures above. */
static const struct {
  const char *expr;
  int ev;
  bool want;
} kat[] = {
    /* comparisons on numbers */
    {"value == 42.5", EV_READ, true},
    {"value != 42.5", EV_READ, false},
    {"value < 42.5", EV_READ, false},
    {"value <= 42.5", EV_READ, true},
    {"value > 42", EV_READ, true},
    {"value >= 43", EV_READ, false},
    /* arithmetic and precedence */
    {"value + 1 == 43.5", EV_READ, true},
    {"value - 2.5 == 40", EV_READ, true},
    {"value * 2 == 85", EV_READ, true},
    {"value / 5 == 8.5", EV_READ, true},
    {"value % 10 == 2.5", EV_READ, true},
    {"1 + 2 * 3 == 7", EV_READ, true},
    {"(1 + 2) * 3 == 9", EV_READ, true},
    {"10 - 4 - 3 == 3", EV_READ, true},
    {"2 * 3 % 4 == 2", EV_READ, true},
    {"-value == -42.5", EV_READ, true},
    {"- -value == 42.5", EV_READ, true},
    {"1e3 == 1000", EV_READ, true},
    {".5 == 0.5", EV_READ, true},
    {"1 / 0 > 1e308", EV_READ, true},
    /* functions */
    {"abs(-value) == 42.5", EV_READ, true},
    {"abs(value - 50) == 7.5", EV_READ, true},
    {"min(value, 10, 20) == 10", EV_READ, true},
    {"max(value, 10, 20) == 42.5", EV_READ, true},
    {"min(3) == 3", EV_READ, true},
    /* strings */
    {"source == \"plant1/line3/press07/temp\"", EV_READ, true},
    {"source == 'plant1/line3/press07/temp'", EV_READ, true},
    {"source != \"x\"", EV_READ, true},
    {"unit == \"bar\"", EV_READ, true},
    {"\"abc\" < \"abd\"", EV_READ, true},
    {"\"ab\" < \"abc\"", EV_READ, true},
    {"\"b\" >= \"abc\"", EV_READ, true},
    {"'it\\'s' == \"it's\"", EV_READ, true},
    /* glob */
    {"source ~ \"plant1/*/press*\"", EV_READ, true},
    {"source ~ \"plant1/line?/*/temp\"", EV_READ, true},
    {"source ~ \"plant2/*\"", EV_READ, false},
    {"source !~ \"plant2/*\"", EV_READ, true},
    {"source ~ \"*\"", EV_READ, true},
    {"source ~ \"*temp\"", EV_READ, true},
    {"source ~ \"*pressure\"", EV_READ, false},
    /* in */
    {"quality in [\"uncertain\", \"bad\"]", EV_READ, true},
    {"quality in [\"good\"]", EV_READ, false},
    {"quality not in [\"good\"]", EV_READ, true},
    {"value in [1, 42.5, 3]", EV_READ, true},
    {"value in []", EV_READ, false},
    {"value in [\"42.5\"]", EV_READ, false},
    /* boolean logic and precedence: not > and > or */
    {"true and true", EV_READ, true},
    {"true and false", EV_READ, false},
    {"false or true", EV_READ, true},
    {"false or false", EV_READ, false},
    {"not false", EV_READ, true},
    {"not true", EV_READ, false},
    {"true or false and false", EV_READ, true},
    {"(true or false) and false", EV_READ, false},
    {"not true or true", EV_READ, true},
    {"not (true or true)", EV_READ, false},
    {"!(value > 50) && value > 40 || false", EV_READ, true},
    {"value > 40 and value < 50 and unit == \"bar\"", EV_READ, true},
    {"value > 50 or value < 0 or unit == \"C\"", EV_READ, false},
    /* fields */
    {"quality == \"uncertain\"", EV_READ, true},
    {"time == 1.5", EV_READ, true},
    {"kind == \"reading\"", EV_READ, true},
    {"kind == \"inference\"", EV_INF, true},
    {"status_code == 7", EV_READ, true},
    {"stream == \"plc\"", EV_READ, true},
    {"model == \"yolo\" and model_version == \"v8\"", EV_INF, true},
    {"label == \"person\"", EV_INF, true},
    {"score > 0.89 and score < 0.91", EV_INF, true},
    {"value == \"RUNNING\"", EV_STR, true},
    {"value == -7", EV_INT, true},
    {"value == true", EV_BOOL, true},
    /* attributes */
    {"attr.site == \"plant1\"", EV_READ, true},
    {"attr[\"k-1\"] == \"x\"", EV_READ, true},
    {"attr.site ~ \"plant*\"", EV_READ, true},
    /* missing values are null: comparisons false, != true */
    {"attr.nope == \"x\"", EV_READ, false},
    {"attr.nope != \"x\"", EV_READ, true},
    {"attr.nope != attr.other", EV_READ, false},
    {"model == \"yolo\"", EV_READ, false},
    {"value > 0", EV_INF, false},
    {"not (value > 0)", EV_INF, true}, /* two-valued: null > 0 is false */
    {"value + 1 > 0", EV_STR, false},
    {"label in [\"person\"]", EV_READ, false},
    {"unit == \"C\" or attr.nope == \"y\"", EV_INF, false},
    /* NaN: every ordered comparison false, != true */
    {"value > 0", EV_NAN, false},
    {"value <= 0", EV_NAN, false},
    {"value == value", EV_NAN, false},
    {"value != 1", EV_NAN, true},
    {"max(value, 1) > 0", EV_NAN, false},
    /* mixed types compare unequal, never error */
    {"value == \"42.5\"", EV_READ, false},
    /* inference fields of the label-id results */
    {"role == \"canary\" and status == \"ok\" and task == \"detect\"", EV_AI,
     true},
    {"label == \"forklift\" and score == 0.75 and label_id == 7", EV_AI, true},
    {"model_digest == \"sha256:ab\" and latency_us > 1000 and sequence == 42",
     EV_AI, true},
    {"role == \"primary\" and status == \"empty\" and task == \"\"", EV_EMPTY,
     true},
    {"label_id >= 0", EV_EMPTY, false},
    {"label == \"person\"", EV_INF, true},
    {"role != \"x\" or status != \"x\"", EV_READ, true},
    {"role == \"primary\"", EV_READ, false},
    {"source == 1", EV_READ, false},
};

static void test_known_answers(void **state) {
  (void)state;
  fixtures();
  for (size_t i = 0; i < SL_ARRAY_SIZE(kat); i++) {
    sl_process_expr_t *ex;
    char err[256];
    int rc = sl_process_expr_compile(kat[i].expr, &ex, err, sizeof(err));
    if (rc) {
      print_error("compile \"%s\": %s\n", kat[i].expr, err);
      fail();
    }
    bool got = sl_process_expr_match(ex, evs[kat[i].ev], "plc");
    if (got != kat[i].want) {
      print_error("\"%s\": got %d want %d\n", kat[i].expr, got, kat[i].want);
      fail();
    }
    sl_process_expr_free(ex);
  }
}

static const struct {
  const char *expr;
  const char *err; /* expected message prefix, "column N: ..." */
} bad[] = {
    {"", "column 1: empty expression"},
    {"value >", "column 8: unexpected end of expression"},
    {"value = 1", "column 7: '=' is not an operator"},
    {"valu > 1", "column 1: unknown name 'valu'"},
    {"value > 1 and", "column 14: unexpected end of expression"},
    {"(value > 1", "column 11: expected ')'"},
    {"value > 1)", "column 10: unexpected ')'"},
    {"source == \"abc", "column 11: unterminated string"},
    {"value > 1 # x", "column 11: unexpected character '#'"},
    {"value + 1", "column 1: the expression is a number"},
    {"source", "column 1: the expression is a string"},
    {"value > 1.2.3", "column 9: malformed number"},
    {"value > 12abc", "column 9: malformed number"},
    {"abs(1, 2) > 0", "column 1: abs() takes one argument"},
    {"abs(source) > 0", "column 5: argument must be a number"},
    {"min value > 1", "column 5: expected '(' after min"},
    {"attr > 1", "column 6: expected '.' or '['"},
    {"attr[1] == 1", "column 6: expected a string in attr[...]"},
    {"value in 1", "column 10: expected '[' after 'in'"},
    {"value in [1, 2", "column 15: expected ',' or ']'"},
    {"source < 3", "column 8: comparing a string with a number"},
    {"time ~ \"x\"", "column 1: '~' matches strings"},
    {"source ~ 3", "column 10: '~' needs a glob pattern string"},
    {"1 and true", "column 1: 'and' needs conditions"},
    {"true or 'x'", "column 9: 'or' needs conditions"},
    {"not 3", "column 1: 'not' needs a condition"},
    {"-source > 0", "column 1: '-' needs a number"},
    {"source + 1 > 0", "column 1: arithmetic needs numbers"},
    {"'a\\q' == 'a'", "column 3: unknown escape"},
    {"value > 1 not", "column 11: unexpected 'not'"},
};

static void test_parse_errors(void **state) {
  (void)state;
  for (size_t i = 0; i < SL_ARRAY_SIZE(bad); i++) {
    sl_process_expr_t *ex = (void *)1;
    char err[256];
    int rc = sl_process_expr_compile(bad[i].expr, &ex, err, sizeof(err));
    if (rc != SL_ECONFIG || ex != NULL ||
        strncmp(err, bad[i].err, strlen(bad[i].err))) {
      print_error("\"%s\": rc %d err \"%s\", want \"%s\"\n", bad[i].expr, rc,
                  err, bad[i].err);
      fail();
    }
  }
}

static void test_limits(void **state) {
  (void)state;
  char buf[SL_PROCESS_EXPR_MAX + 2], err[128];
  sl_process_expr_t *ex;
  /* Nesting deeper than the parser allows: refused, not a stack overflow. */
  size_t n = 0;
  for (int i = 0; i < 200; i++)
    buf[n++] = '(';
  buf[n++] = '1';
  buf[n] = '\0';
  assert_int_equal(sl_process_expr_compile(buf, &ex, err, sizeof(err)),
                   SL_ETOOBIG);
  assert_non_null(strstr(err, "nested too deeply"));
  /* Too long. */
  memset(buf, ' ', sizeof(buf) - 1);
  buf[sizeof(buf) - 1] = '\0';
  assert_int_equal(sl_process_expr_compile(buf, &ex, err, sizeof(err)),
                   SL_ETOOBIG);
  /* A wide min() pushes more than the evaluation stack holds. */
  n = (size_t)snprintf(buf, sizeof(buf), "min(");
  for (int i = 0; i < 300; i++)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s1", i ? "," : "");
  snprintf(buf + n, sizeof(buf) - n, ") > 0");
  assert_int_equal(sl_process_expr_compile(buf, &ex, err, sizeof(err)),
                   SL_ETOOBIG);
  /* 40 levels are fine and evaluate right. */
  n = 0;
  for (int i = 0; i < 40; i++)
    buf[n++] = '(';
  n += (size_t)snprintf(buf + n, 20, "value");
  for (int i = 0; i < 40; i++)
    buf[n++] = ')';
  snprintf(buf + n, 20, " == 42.5");
  assert_int_equal(sl_process_expr_compile(buf, &ex, err, sizeof(err)), 0);
  fixtures();
  assert_true(sl_process_expr_match(ex, evs[EV_READ], NULL));
  sl_process_expr_free(ex);
}

/* Every prefix of valid expressions either compiles or fails with a
 * column inside the text (+1 for end of input): no crash, no garbage. */
static void test_prefixes(void **state) {
  (void)state;
  char buf[512], err[256];
  for (size_t i = 0; i < SL_ARRAY_SIZE(kat); i++) {
    size_t len = strlen(kat[i].expr);
    for (size_t k = 0; k <= len; k++) {
      sl_process_expr_t *ex = NULL;
      unsigned col = 0;
      memcpy(buf, kat[i].expr, k);
      buf[k] = '\0';
      int rc = sl_process_expr_compile(buf, &ex, err, sizeof(err));
      if (rc == 0) {
        sl_process_expr_free(ex);
        continue;
      }
      assert_int_equal(rc, SL_ECONFIG);
      assert_int_equal(sscanf(err, "column %u:", &col), 1);
      assert_true(col >= 1 && col <= k + 1);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_prefixes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
