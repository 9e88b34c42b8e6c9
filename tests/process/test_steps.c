/* process steps: filter actions, deadband with heartbeat, sample,
 * rate_limit, matching (stream, kinds, source captures, attributes),
 * routes, drop counters and rollback. Expected verdicts are worked out by
 * hand in the comments. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#define S 1000000000LL /* one second in ns */

static sl_process_t *one(const sl_process_step_conf_t *steps, size_t n,
                         const char *source) {
  sl_process_t *pr;
  char err[256];
  sl_process_pipeline_conf_t pc = {
      .name = "p", .source = source, .steps = steps, .n_steps = n};
  assert_int_equal(sl_process_new(&pr), 0);
  int rc = sl_process_pipeline_add(pr, &pc, err, sizeof(err));
  if (rc)
    print_error("pipeline_add: %s\n", err);
  assert_int_equal(rc, 0);
  return pr;
}

/* Runs events one batch and returns the keep string, e.g. "101". */
static const char *run(sl_process_t *pr, const Sluice__V1__Event **ev,
                       size_t n) {
  static char out[PH_MAX + 1];
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "plc", ev, n, &res), 0);
  for (size_t i = 0; i < n; i++)
    out[i] = res.keep[i] ? '1' : '0';
  out[n] = '\0';
  sl_process_commit(pr);
  return out;
}

static void test_filter_actions(void **state) {
  (void)state;
  ph_reset();
  const Sluice__V1__Event *ev[] = {
      ph_reading("a", 0, 5), ph_reading("a", 1, 50),
      ph_quality(ph_reading("a", 2, 7), SLUICE__V1__QUALITY__QUALITY_BAD)};
  sl_process_step_conf_t keep = {.kind = SL_PROCESS_FILTER,
                                 .expr = "value < 10",
                                 .action = SL_PROCESS_KEEP};
  sl_process_t *pr = one(&keep, 1, NULL);
  assert_string_equal(run(pr, ev, 3), "101");
  sl_process_free(pr);

  sl_process_step_conf_t drop = {.kind = SL_PROCESS_FILTER,
                                 .expr = "quality == \"bad\"",
                                 .action = SL_PROCESS_DROP};
  pr = one(&drop, 1, NULL);
  assert_string_equal(run(pr, ev, 3), "110");
  sl_process_stats_t st;
  assert_int_equal(sl_process_stats(pr, 0, &st), 0);
  assert_int_equal(st.events_in, 3);
  assert_int_equal(st.dropped[SL_PROCESS_R_FILTER], 1);
  sl_process_free(pr);

  sl_process_step_conf_t tag = {.kind = SL_PROCESS_FILTER,
                                .expr = "value > 10",
                                .action = SL_PROCESS_TAG,
                                .tag_key = "alarm",
                                .tag_value = "high"};
  pr = one(&tag, 1, NULL);
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "plc", ev, 3, &res), 0);
  assert_int_equal(res.kept, 3);
  assert_int_equal(res.ntags, 1);
  assert_int_equal(res.tags[0].event, 1);
  assert_string_equal(res.tags[0].key, "alarm");
  assert_string_equal(res.tags[0].value, "high");
  sl_process_free(pr);
}

static void test_deadband_absolute(void **state) {
  (void)state;
  ph_reset();
  sl_process_step_conf_t db = {.kind = SL_PROCESS_DEADBAND, .deadband = 0.5};
  sl_process_t *pr = one(&db, 1, NULL);
  /* a: 10 first -> send; 10.4 (|0.4| <= 0.5) drop; 10.5 (0.5, not more)
   * drop; 10.51 send (vs 10); 10.2 (0.31 from 10.51) drop; 9.9 (0.61)
   * send. b is independent: first -> send, 10.1 drop. */
  const Sluice__V1__Event *ev[] = {
      ph_reading("a", 1 * S, 10),    ph_reading("a", 2 * S, 10.4),
      ph_reading("a", 3 * S, 10.5),  ph_reading("b", 3 * S, 10),
      ph_reading("a", 4 * S, 10.51), ph_reading("a", 5 * S, 10.2),
      ph_reading("b", 5 * S, 10.1),  ph_reading("a", 6 * S, 9.9)};
  assert_string_equal(run(pr, ev, 8), "10011001");
  /* Slow drift: each step 0.3 from the previous, but measured from the
   * last SENT value (9.9): 10.2 (0.3) drop, 10.5 (0.6) send. */
  const Sluice__V1__Event *ev2[] = {ph_reading("a", 7 * S, 10.2),
                                    ph_reading("a", 8 * S, 10.5)};
  assert_string_equal(run(pr, ev2, 2), "01");
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.dropped[SL_PROCESS_R_DEADBAND], 5);
  assert_int_equal(st.keys, 2);
  sl_process_free(pr);
}

static void test_deadband_percent_quality_heartbeat(void **state) {
  (void)state;
  ph_reset();
  sl_process_step_conf_t db = {.kind = SL_PROCESS_DEADBAND,
                               .deadband = 10,
                               .percent = true,
                               .heartbeat_ns = 60 * S};
  sl_process_t *pr = one(&db, 1, NULL);
  /* 200 sent; 215 (7.5% of 200) drop; 221 (10.5%) send; 221 bad quality
   * send (quality changed); 221 bad drop; at t=61 s nothing moved but 60 s
   * passed since the last send at 1 s... the last send was the quality
   * change at 4 s, so t=63 s is the heartbeat: 62 s drop, 64 s send. */
  const Sluice__V1__Event *ev[] = {
      ph_reading("a", 0, 200),
      ph_reading("a", 1 * S, 215),
      ph_reading("a", 2 * S, 221),
      ph_quality(ph_reading("a", 4 * S, 221), SLUICE__V1__QUALITY__QUALITY_BAD),
      ph_quality(ph_reading("a", 5 * S, 221), SLUICE__V1__QUALITY__QUALITY_BAD),
      ph_quality(ph_reading("a", 62 * S, 221),
                 SLUICE__V1__QUALITY__QUALITY_BAD),
      ph_quality(ph_reading("a", 64 * S, 221),
                 SLUICE__V1__QUALITY__QUALITY_BAD)};
  assert_string_equal(run(pr, ev, 7), "1011001");
  /* Quality back to good passes even with the same value. */
  const Sluice__V1__Event *ev2[] = {ph_reading("a", 65 * S, 221)};
  assert_string_equal(run(pr, ev2, 1), "1");
  sl_process_free(pr);
}

static void test_deadband_nan_strings_kinds(void **state) {
  (void)state;
  ph_reset();
  sl_process_step_conf_t db = {.kind = SL_PROCESS_DEADBAND, .deadband = 1};
  sl_process_t *pr = one(&db, 1, NULL);
  const Sluice__V1__Event *s1 = ph_reading("s", 0, 0),
                          *s2 = ph_reading("s", 1, 0),
                          *s3 = ph_reading("s", 2, 0);
  ph_mut(s1)->reading->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
  ph_mut(s1)->reading->string_value = (char *)"RUN";
  ph_mut(s2)->reading->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
  ph_mut(s2)->reading->string_value = (char *)"RUN";
  ph_mut(s3)->reading->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
  ph_mut(s3)->reading->string_value = (char *)"STOP";
  /* NaN after a number passes, NaN after NaN does not, a number after
   * NaN passes. Strings pass on change. Inference events are untouched. */
  const Sluice__V1__Event *ev[] = {
      ph_reading("n", 0, 1),
      ph_reading("n", 1, NAN),
      ph_reading("n", 2, NAN),
      ph_reading("n", 3, 1.5),
      s1,
      s2,
      s3,
      ph_inference("cam", 0, "m", "v", "x", 0.5, NULL),
      ph_inference("cam", 1, "m", "v", "x", 0.5, NULL)};
  assert_string_equal(run(pr, ev, 9), "110110111");
  sl_process_free(pr);
}

static void test_sample(void **state) {
  (void)state;
  ph_reset();
  sl_process_step_conf_t sm = {.kind = SL_PROCESS_SAMPLE, .every = 3};
  sl_process_t *pr = one(&sm, 1, NULL);
  /* Per source: a keeps its 1st and 4th, b its 1st and 4th. */
  const Sluice__V1__Event *ev[] = {
      ph_reading("a", 0, 1), ph_reading("b", 0, 1), ph_reading("a", 1, 1),
      ph_reading("a", 2, 1), ph_reading("b", 1, 1), ph_reading("a", 3, 1),
      ph_reading("b", 2, 1), ph_reading("b", 3, 1)};
  assert_string_equal(run(pr, ev, 8), "11000101");
  sl_process_free(pr);
}

static void test_rate_limit(void **state) {
  (void)state;
  ph_reset();
  sl_process_step_conf_t rl = {
      .kind = SL_PROCESS_RATE_LIMIT, .limit = 2, .interval_ns = 10 * S};
  sl_process_t *pr = one(&rl, 1, NULL);
  /* Interval [0,10): a a a -> 1 1 0; b -> 1; interval [10,20): a -> 1;
   * device clock back to 5 s: counts against [10,20) (2nd) -> 1; then a
   * third in [10,20) -> 0; [20,30) resets -> 1. */
  const Sluice__V1__Event *ev[] = {
      ph_reading("a", 1 * S, 1),  ph_reading("a", 2 * S, 1),
      ph_reading("a", 3 * S, 1),  ph_reading("b", 3 * S, 1),
      ph_reading("a", 10 * S, 1), ph_reading("a", 5 * S, 1),
      ph_reading("a", 12 * S, 1), ph_reading("a", 20 * S, 1)};
  assert_string_equal(run(pr, ev, 8), "11011101");
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.dropped[SL_PROCESS_R_RATE_LIMIT], 2);
  sl_process_free(pr);
}

static void test_match(void **state) {
  (void)state;
  ph_reset();
  sl_process_t *pr;
  char err[256];
  sl_process_step_conf_t drop_all = {
      .kind = SL_PROCESS_FILTER, .expr = "true", .action = SL_PROCESS_DROP};
  const char *attrs[] = {"site=plant*"};
  sl_process_pipeline_conf_t pc = {.name = "m",
                                   .stream = "plc",
                                   .source = "plant1/{line}/*/temp",
                                   .kinds = SL_PROCESS_KIND_READING,
                                   .attrs = attrs,
                                   .n_attrs = 1,
                                   .steps = &drop_all,
                                   .n_steps = 1};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)), 0);
  const Sluice__V1__Event *ev[] = {
      ph_attr(ph_reading("plant1/line3/press07/temp", 0, 1), "site", "plant1"),
      ph_attr(ph_reading("plant1/line3/press07/flow", 0, 1), "site", "plant1"),
      ph_reading("plant1/line3/press07/temp", 0, 1), /* no attribute */
      ph_attr(ph_reading("plant1//press07/temp", 0, 1), "site", "plant1"),
      ph_attr(ph_inference("plant1/l/x/temp", 0, "m", "v", NULL), "site", "p"),
      ph_attr(ph_reading("plant1/l/a/b/temp", 0, 1), "site", "plantX")};
  /* Dropped = matched: 1st and last (the '*' spans a/b); the empty
   * capture segment, missing attribute and the inference do not match. */
  assert_string_equal(run(pr, ev, 6), "011110");
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "other", ev, 6, &res), 0);
  assert_int_equal(res.kept, 6); /* other stream: pipeline not applied */
  sl_process_free(pr);

  /* Captures are checked when compiled. */
  static const struct {
    const char *source, *err;
  } badsrc[] = {{"a/{li ne}", "column 3"},
                {"a/{}", "column 3"},
                {"{x}/{x}", "used twice"},
                {"*a*b*", "at most 2"}};
  for (size_t i = 0; i < SL_ARRAY_SIZE(badsrc); i++) {
    sl_process_pipeline_conf_t b = {.name = "b", .source = badsrc[i].source};
    assert_int_equal(sl_process_new(&pr), 0);
    assert_int_equal(sl_process_pipeline_add(pr, &b, err, sizeof(err)),
                     SL_ECONFIG);
    assert_non_null(strstr(err, badsrc[i].err));
    sl_process_free(pr);
  }
}

static void test_config_errors(void **state) {
  (void)state;
  static const struct {
    sl_process_step_conf_t c;
    const char *err;
  } bad[] = {
      {{.kind = SL_PROCESS_FILTER, .expr = "value >"},
       "steps[0]: filter: column 8: unexpected end"},
      {{.kind = SL_PROCESS_FILTER, .expr = "true", .action = SL_PROCESS_TAG},
       "needs a tag key"},
      {{.kind = SL_PROCESS_DEADBAND, .deadband = -1}, "deadband: must be"},
      {{.kind = SL_PROCESS_DEADBAND, .deadband = NAN}, "deadband: must be"},
      {{.kind = SL_PROCESS_SAMPLE}, "sample: must be at least 1"},
      {{.kind = SL_PROCESS_RATE_LIMIT, .limit = 1}, "rate_limit: needs"},
      {{.kind = SL_PROCESS_AGGREGATE, .into = "x"}, "window must be"},
      {{.kind = SL_PROCESS_AGGREGATE,
        .window_ns = 10,
        .hop_ns = 20,
        .into = "x"},
       "hop must be"},
      {{.kind = SL_PROCESS_AGGREGATE,
        .window_ns = 100,
        .hop_ns = 1,
        .into = "x"},
       "too many windows"},
      {{.kind = SL_PROCESS_AGGREGATE, .window_ns = 10}, "into must name"},
      {{.kind = SL_PROCESS_AGGREGATE,
        .window_ns = 10,
        .into = "x",
        .group_by = "line"},
       "group_by \"line\""},
      {{.kind = SL_PROCESS_ROUTE, .stream = "Bad Name"}, "route: stream"},
  };
  char err[256];
  for (size_t i = 0; i < SL_ARRAY_SIZE(bad); i++) {
    sl_process_t *pr;
    sl_process_pipeline_conf_t pc = {
        .name = "p", .steps = &bad[i].c, .n_steps = 1};
    assert_int_equal(sl_process_new(&pr), 0);
    int rc = sl_process_pipeline_add(pr, &pc, err, sizeof(err));
    if (rc != SL_ECONFIG || !strstr(err, bad[i].err)) {
      print_error("case %zu: rc %d err \"%s\" want \"%s\"\n", i, rc, err,
                  bad[i].err);
      fail();
    }
    sl_process_free(pr);
  }
  /* Names: format and uniqueness. */
  sl_process_t *pr;
  sl_process_pipeline_conf_t pc = {.name = "Bad"};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)),
                   SL_ECONFIG);
  pc.name = "ok";
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)),
                   SL_EEXIST);
  sl_process_free(pr);
}

static void test_pipelines_drop_wins_and_routes(void **state) {
  (void)state;
  ph_reset();
  sl_process_t *pr;
  char err[256];
  sl_process_step_conf_t a_steps[] = {{.kind = SL_PROCESS_FILTER,
                                       .expr = "value > 5",
                                       .action = SL_PROCESS_DROP},
                                      {.kind = SL_PROCESS_ROUTE,
                                       .route = SL_PROCESS_ROUTE_LOCAL,
                                       .stream = "raw-local"}};
  sl_process_step_conf_t b_steps[] = {{.kind = SL_PROCESS_FILTER,
                                       .expr = "value < 2",
                                       .action = SL_PROCESS_DROP},
                                      {.kind = SL_PROCESS_ROUTE,
                                       .route = SL_PROCESS_ROUTE_MQTT,
                                       .topic = "local/x",
                                       .format = SL_PROCESS_FORMAT_JSON}};
  sl_process_pipeline_conf_t a = {.name = "a", .steps = a_steps, .n_steps = 2};
  sl_process_pipeline_conf_t b = {.name = "b", .steps = b_steps, .n_steps = 2};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &a, err, sizeof(err)), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &b, err, sizeof(err)), 0);
  /* 1: b drops; 3: both keep; 9: a drops. A drop by either wins. */
  const Sluice__V1__Event *ev[] = {ph_reading("x", 0, 1), ph_reading("x", 1, 3),
                                   ph_reading("x", 2, 9)};
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "plc", ev, 3, &res), 0);
  assert_int_equal(res.keep[0], 0);
  assert_int_equal(res.keep[1], 1);
  assert_int_equal(res.keep[2], 0);
  assert_string_equal(res.dest[1], "raw-local");
  sl_process_commit(pr);
  sl_process_route_t rt[4];
  assert_int_equal(sl_process_routes(pr, rt, 4), 2);
  assert_string_equal(rt[0].pipeline, "a");
  assert_int_equal(rt[0].kind, SL_PROCESS_ROUTE_LOCAL);
  assert_string_equal(rt[0].stream, "raw-local");
  assert_int_equal(rt[1].kind, SL_PROCESS_ROUTE_MQTT);
  assert_string_equal(rt[1].topic, "local/x");
  assert_int_equal(rt[1].format, SL_PROCESS_FORMAT_JSON);
  sl_process_free(pr);
}

/* A rolled-back run leaves no trace: the retried batch decides the same. */
static void test_rollback(void **state) {
  (void)state;
  ph_reset();
  sl_process_step_conf_t steps[] = {
      {.kind = SL_PROCESS_DEADBAND, .deadband = 0.5},
      {.kind = SL_PROCESS_SAMPLE, .every = 2}};
  sl_process_t *pr = one(steps, 2, NULL);
  const Sluice__V1__Event *ev1[] = {ph_reading("a", 0, 1),
                                    ph_reading("b", 0, 1)};
  assert_string_equal(run(pr, ev1, 2), "11");
  const Sluice__V1__Event *ev2[] = {
      ph_reading("a", 1, 3), ph_reading("c", 1, 1), ph_reading("a", 2, 5)};
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "plc", ev2, 3, &res), 0);
  /* a=3 passes deadband, sample: 2nd of a -> drop; c new -> keep; a=5
   * passes deadband, 3rd of a -> keep. */
  assert_int_equal(res.keep[0], 0);
  assert_int_equal(res.keep[1], 1);
  assert_int_equal(res.keep[2], 1);
  sl_process_rollback(pr);
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.events_in, 2);
  assert_int_equal(st.keys, 4); /* a, b in both tables; c undone */
  assert_string_equal(run(pr, ev2, 3), "011");
  sl_process_free(pr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filter_actions),
      cmocka_unit_test(test_deadband_absolute),
      cmocka_unit_test(test_deadband_percent_quality_heartbeat),
      cmocka_unit_test(test_deadband_nan_strings_kinds),
      cmocka_unit_test(test_sample),
      cmocka_unit_test(test_rate_limit),
      cmocka_unit_test(test_match),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_pipelines_drop_wins_and_routes),
      cmocka_unit_test(test_rollback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
