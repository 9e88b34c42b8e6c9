/* Unit tests of the fleet centre's pure logic (fleet/centre/centre.h):
 * selectors, RFC 7396 (its Appendix A vectors), rendering order, the
 * rollout planner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fleet/centre/centre.h"

/* ---- selectors ----------------------------------------------------------- */

static bool sel(const char *text, const sl_fleet_label_t *l, size_t n) {
  sl_fleet_sel_t *s;
  char err[256];
  int rc = sl_fleet_sel_parse(text, &s, err, sizeof(err));
  if (rc)
    fail_msg("parse '%s': %s", text, err);
  bool m = sl_fleet_sel_match(s, l, n);
  sl_fleet_sel_free(s);
  return m;
}

static void test_selector_match(void **st) {
  (void)st;
  sl_fleet_label_t l[] = {
      {"site", "berlin"}, {"tier", "prod"}, {"hw", "pi4"}, {"canary", ""}};
  assert_true(sel("", l, 4));
  assert_true(sel("site=berlin", l, 4));
  assert_true(sel("site==berlin", l, 4));
  assert_false(sel("site=paris", l, 4));
  assert_true(sel("site!=paris", l, 4));
  assert_false(sel("site!=berlin", l, 4));
  assert_true(sel("hw in (pi5|pi4)", l, 4));
  assert_false(sel("hw in (pi5|x86)", l, 4));
  assert_true(sel("hw notin (pi5|x86)", l, 4));
  assert_true(sel("canary", l, 4));
  assert_false(sel("!canary", l, 4));
  assert_true(sel("!legacy", l, 4));
  assert_false(sel("legacy", l, 4));
  assert_true(sel(" site = berlin , tier in ( prod ) , !legacy ", l, 4));
  assert_false(sel("site=berlin,tier=test", l, 4));
  /* a missing label is != anything and notin anything */
  assert_true(sel("zone!=a", l, 4));
  assert_true(sel("zone notin (a)", l, 4));
  assert_false(sel("zone in (a)", l, 4));
}

static void sel_err(const char *text, const char *want) {
  sl_fleet_sel_t *s = (void *)1;
  char err[256] = "";
  assert_int_equal(sl_fleet_sel_parse(text, &s, err, sizeof(err)), SL_ECONFIG);
  assert_null(s);
  if (!strstr(err, want))
    fail_msg("'%s': error '%s' lacks '%s'", text, err, want);
}

static void test_selector_errors(void **st) {
  (void)st;
  sel_err("site=", "column 6: expected a value");
  sel_err("=x", "column 1: expected a label key");
  sel_err("a=b,", "column 5: expected a term after ','");
  sel_err("a=b c", "column 5: expected ','");
  sel_err("hw in (a|", "expected a value");
  sel_err("hw in (a b)", "expected '|' or ')'");
  sel_err("a=b,,c", "column 5");
  sel_err("!", "expected a label key after '!'");
  sel_err("a=\"b\"", "column 3");
}

/* ---- RFC 7396 Appendix A --------------------------------------------------
 */

static void merge_case(const char *target, const char *patch,
                       const char *want) {
  json_error_t je;
  json_t *t = json_loads(target, JSON_DECODE_ANY, &je);
  json_t *p = json_loads(patch, JSON_DECODE_ANY, &je);
  json_t *w = json_loads(want, JSON_DECODE_ANY, &je);
  assert_non_null(t);
  assert_non_null(p);
  assert_non_null(w);
  json_t *r = sl_fleet_merge_patch(t, p);
  if (!json_equal(r, w)) {
    char *got = json_dumps(r, JSON_ENCODE_ANY);
    fail_msg("%s + %s = %s, want %s", target, patch, got, want);
  }
  json_decref(r);
  json_decref(p);
  json_decref(w);
}

static void test_rfc7396(void **st) {
  (void)st;
  merge_case("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
  merge_case("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
  merge_case("{\"a\":\"b\"}", "{\"a\":null}", "{}");
  merge_case("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
  merge_case("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
  merge_case("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
  merge_case("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}",
             "{\"a\":{\"b\":\"d\"}}");
  merge_case("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
  merge_case("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]");
  merge_case("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]");
  merge_case("{\"a\":\"foo\"}", "null", "null");
  merge_case("{\"a\":\"foo\"}", "\"bar\"", "\"bar\"");
  merge_case("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
  merge_case("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}");
  merge_case("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

/* ---- canonical text, patch check, YAML ------------------------------------
 */

static void test_canon_and_check(void **st) {
  (void)st;
  json_error_t je;
  json_t *a = json_loads("{\"log\":{\"level\":\"debug\",\"debug\":true},"
                         "\"streams\":[{\"name\":\"s\",\"max\":1.5}]}",
                         0, &je);
  json_t *b = json_loads("{\"streams\":[{\"max\":1.5,\"name\":\"s\"}],"
                         "\"log\":{\"debug\":true,\"level\":\"debug\"}}",
                         0, &je);
  char *ca = sl_fleet_json_canon(a), *cb = sl_fleet_json_canon(b);
  assert_string_equal(ca, cb);
  assert_string_equal(ca, "{\"log\": {\"debug\": true, \"level\": \"debug\"}, "
                          "\"streams\": [{\"max\": 1.5, \"name\": \"s\"}]}");
  free(ca);
  free(cb);
  char err[256];
  assert_int_equal(sl_fleet_patch_check(a, err, sizeof(err)), 0);
  json_t *bad = json_loads("{\"node\":{\"id\":\"x\"}}", 0, &je);
  assert_int_equal(sl_fleet_patch_check(bad, err, sizeof(err)), SL_ECONFIG);
  assert_non_null(strstr(err, "'node' is not a remote-owned key"));
  json_decref(bad);
  bad = json_loads("{\"kafka\":{\"brokers\":\"x\"}}", 0, &je);
  assert_int_equal(sl_fleet_patch_check(bad, err, sizeof(err)), SL_ECONFIG);
  assert_non_null(strstr(err, "'kafka.brokers' is not a remote-owned key"));
  json_decref(bad);
  json_decref(a);
  json_decref(b);
}

static void test_yaml(void **st) {
  (void)st;
  const char *y = "name: debug-berlin\n"
                  "selector: \"site=berlin\"\n"
                  "priority: 10\n"
                  "patch:\n"
                  "  log: {level: debug, debug: true}\n"
                  "  kafka:\n"
                  "    backlog_share: 0.5\n"
                  "    bandwidth_bytes_per_s: ~\n"
                  "rollout:\n"
                  "  steps_percent: [10, 50, 100]\n"
                  "  quoted: \"10\"\n";
  json_t *j;
  char err[256];
  assert_int_equal(sl_fleet_yaml_to_json(y, strlen(y), &j, err, sizeof(err)),
                   0);
  char *c = sl_fleet_json_canon(j);
  assert_string_equal(
      c, "{\"name\": \"debug-berlin\", \"patch\": {\"kafka\": "
         "{\"backlog_share\": 0.5, \"bandwidth_bytes_per_s\": null}, \"log\": "
         "{\"debug\": true, \"level\": \"debug\"}}, \"priority\": 10, "
         "\"rollout\": {\"quoted\": \"10\", \"steps_percent\": [10, 50, 100]}, "
         "\"selector\": \"site=berlin\"}");
  free(c);
  json_decref(j);
  const char *dup = "a: 1\nb: 2\na: 3\n";
  assert_int_equal(
      sl_fleet_yaml_to_json(dup, strlen(dup), &j, err, sizeof(err)),
      SL_ECONFIG);
  assert_non_null(strstr(err, "line 3"));
  assert_non_null(strstr(err, "duplicate key 'a'"));
  const char *bad = "a: [1, 2\n";
  assert_int_equal(
      sl_fleet_yaml_to_json(bad, strlen(bad), &j, err, sizeof(err)),
      SL_ECONFIG);
  assert_non_null(strstr(err, "line "));
}

/* ---- render
 * ------------------------------------------------------------------ */

static void test_render_order(void **st) {
  (void)st;
  json_error_t je;
  json_t *lo =
      json_loads("{\"log\":{\"level\":\"info\",\"format\":\"json\"}}", 0, &je);
  json_t *hi = json_loads("{\"log\":{\"level\":\"debug\"}}", 0, &je);
  json_t *del = json_loads("{\"log\":{\"format\":null}}", 0, &je);
  char *out, sha[65], sha2[65];

  /* priority: the higher one wins whatever the order given */
  sl_fleet_rpol_t p1[] = {{"hi", 1, 10, 100, hi}, {"lo", 1, 0, 200, lo}};
  assert_int_equal(sl_fleet_render(p1, 2, &out, sha), 0);
  assert_string_equal(
      out, "{\"log\": {\"format\": \"json\", \"level\": \"debug\"}}");
  assert_string_equal(p1[0].name, "lo");
  free(out);
  /* the same policies give the same bytes and sha */
  sl_fleet_rpol_t p2[] = {{"lo", 1, 0, 200, lo}, {"hi", 1, 10, 100, hi}};
  assert_int_equal(sl_fleet_render(p2, 2, &out, sha2), 0);
  assert_string_equal(sha, sha2);
  char want[65];
  sl_fleet_sha256_hex(out, strlen(out), want);
  assert_string_equal(sha, want);
  free(out);
  /* ties: the newer (updated_ns) wins */
  sl_fleet_rpol_t p3[] = {{"new", 1, 5, 300, hi}, {"old", 1, 5, 100, lo}};
  assert_int_equal(sl_fleet_render(p3, 2, &out, sha), 0);
  assert_string_equal(
      out, "{\"log\": {\"format\": \"json\", \"level\": \"debug\"}}");
  free(out);
  sl_fleet_rpol_t p4[] = {{"new", 1, 5, 300, lo}, {"old", 1, 5, 100, hi}};
  assert_int_equal(sl_fleet_render(p4, 2, &out, sha), 0);
  assert_string_equal(out,
                      "{\"log\": {\"format\": \"json\", \"level\": \"info\"}}");
  free(out);
  /* null removes what a lower one set */
  sl_fleet_rpol_t p5[] = {{"d", 1, 9, 1, del}, {"lo", 1, 0, 1, lo}};
  assert_int_equal(sl_fleet_render(p5, 2, &out, sha), 0);
  assert_string_equal(out, "{\"log\": {\"level\": \"info\"}}");
  free(out);
  /* nothing: {} */
  assert_int_equal(sl_fleet_render(NULL, 0, &out, sha), 0);
  assert_string_equal(out, "{}");
  free(out);
  json_decref(lo);
  json_decref(hi);
  json_decref(del);
}

/* ---- the rollout planner
 * ------------------------------------------------------ */

#define NN 20
static sl_fleet_label_t lab[NN][2];
static char ids[NN][16];

static void fleet_init(sl_fleet_plan_node_t *n, size_t count) {
  for (size_t i = 0; i < count; i++) {
    snprintf(ids[i], sizeof(ids[i]), "node-%02zu", i);
    lab[i][0] = (sl_fleet_label_t){"site", i % 2 ? "a" : "b"};
    lab[i][1] = (sl_fleet_label_t){i < 2 ? "canary" : "plain", ""};
    n[i] =
        (sl_fleet_plan_node_t){.id = ids[i], .labels = lab[i], .n_labels = 2};
  }
}

static size_t count_released(const sl_fleet_plan_node_t *n, size_t count) {
  size_t r = 0;
  for (size_t i = 0; i < count; i++)
    r += n[i].released;
  return r;
}

static void test_plan_canary_fails(void **st) {
  (void)st;
  sl_fleet_plan_node_t n[NN];
  sl_fleet_sel_t *canary;
  char err[128];
  static const uint32_t steps[] = {25, 100};
  assert_int_equal(sl_fleet_sel_parse("canary", &canary, err, sizeof(err)), 0);
  fleet_init(n, NN);
  sl_fleet_plan_spec_t spec = {.canary = canary,
                               .steps = steps,
                               .n_steps = 2,
                               .threshold = 1.0,
                               .deadline_ms = 60000,
                               .max_failures = 1};
  sl_fleet_plan_t p = {0};
  assert_true(sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 1000));
  assert_int_equal(p.state, SL_FLEET_RO_RUNNING);
  assert_int_equal(p.batches, 3);
  assert_int_equal(p.batch, 0);
  assert_int_equal(count_released(n, NN), 2);
  assert_true(n[0].released && n[1].released);
  /* nothing new while the canaries apply */
  assert_false(sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 2000));
  /* one canary commits, one rolls back: stop, nobody else released */
  n[0].outcome = SL_FLEET_OUT_COMMITTED;
  n[1].outcome = SL_FLEET_OUT_FAILED;
  assert_true(sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 3000));
  assert_int_equal(p.state, SL_FLEET_RO_STOPPED);
  assert_non_null(strstr(p.reason, "failures"));
  assert_int_equal(p.failed, 1);
  assert_int_equal(count_released(n, NN), 2);
  assert_false(sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 4000));
  assert_int_equal(count_released(n, NN), 2);
  /* a resume forgives the failures seen so far and goes on */
  p.state = SL_FLEET_RO_RUNNING;
  p.failed_base = p.failed;
  n[1].outcome = SL_FLEET_OUT_COMMITTED;
  assert_true(sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 5000));
  assert_int_equal(p.batch, 1);
  assert_int_equal(count_released(n, NN), 2 + 5); /* ceil(25% of 18) */
  sl_fleet_sel_free(canary);
}

static void test_plan_batches_advance(void **st) {
  (void)st;
  sl_fleet_plan_node_t n[NN];
  static const uint32_t steps[] = {10, 50, 100};
  fleet_init(n, NN);
  sl_fleet_plan_spec_t spec = {
      .steps = steps, .n_steps = 3, .threshold = 0.5, .deadline_ms = 10000};
  sl_fleet_plan_t p = {0};
  size_t want[] = {2, 10, 20};
  for (int b = 0; b < 3; b++) {
    sl_fleet_plan_step(&spec, "pol", 7, n, NN, &p, 1000 + b);
    assert_int_equal(p.batch, b);
    assert_int_equal(count_released(n, NN), want[b]);
    assert_int_equal(p.state,
                     b == 2 ? SL_FLEET_RO_RUNNING : SL_FLEET_RO_RUNNING);
    /* half of the batch commits: >= threshold 0.5 */
    size_t in = 0, done = 0;
    for (size_t i = 0; i < NN; i++)
      in += n[i].batch == b;
    for (size_t i = 0; i < NN && done * 2 < in; i++)
      if (n[i].batch == b) {
        n[i].outcome = SL_FLEET_OUT_COMMITTED;
        done++;
      }
  }
  sl_fleet_plan_step(&spec, "pol", 7, n, NN, &p, 5000);
  assert_int_equal(p.state, SL_FLEET_RO_DONE);
  /* batches are a function of policy, revision and id: stable */
  int b1[NN];
  for (size_t i = 0; i < NN; i++)
    b1[i] = n[i].batch;
  sl_fleet_plan_node_t m[NN];
  fleet_init(m, NN);
  sl_fleet_plan_t q = {0};
  sl_fleet_plan_step(&spec, "pol", 7, m, NN, &q, 1);
  for (size_t i = 0; i < NN; i++)
    assert_int_equal(m[i].batch, b1[i]);
}

static void test_plan_deadline(void **st) {
  (void)st;
  sl_fleet_plan_node_t n[NN];
  static const uint32_t steps[] = {10, 100};
  fleet_init(n, NN);
  sl_fleet_plan_spec_t spec = {
      .steps = steps, .n_steps = 2, .deadline_ms = 1000};
  sl_fleet_plan_t p = {0};
  sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 1000000000);
  assert_int_equal(count_released(n, NN), 2);
  sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 1900000000);
  assert_int_equal(p.state, SL_FLEET_RO_RUNNING);
  sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 2100000000);
  assert_int_equal(p.state, SL_FLEET_RO_STOPPED);
  assert_non_null(strstr(p.reason, "deadline"));
  assert_int_equal(count_released(n, NN), 2);
}

static void test_plan_group_limit(void **st) {
  (void)st;
  sl_fleet_plan_node_t n[NN];
  fleet_init(n, NN);
  sl_fleet_plan_spec_t spec = {.group_label = "site",
                               .max_unavailable_per_group = 2};
  sl_fleet_plan_t p = {0};
  sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 1);
  assert_int_equal(count_released(n, NN), 4); /* 2 per site, 2 sites */
  /* two commit: two more go */
  int c = 0;
  for (size_t i = 0; i < NN && c < 2; i++)
    if (n[i].released && !strcmp(lab[i][0].value, "a")) {
      n[i].outcome = SL_FLEET_OUT_COMMITTED;
      c++;
    }
  sl_fleet_plan_step(&spec, "pol", 1, n, NN, &p, 2);
  assert_int_equal(count_released(n, NN), 6);
  size_t busy_a = 0;
  for (size_t i = 0; i < NN; i++)
    busy_a += n[i].released && n[i].outcome == SL_FLEET_OUT_PENDING &&
              !strcmp(lab[i][0].value, "a");
  assert_int_equal(busy_a, 2);
}

/* ---- policy files
 * --------------------------------------------------------------- */

static void policy_err(const char *y, const char *want) {
  Sluice__V1__Policy *p = NULL;
  char err[256] = "";
  assert_int_equal(sl_fleet_policy_parse(y, strlen(y), &p, err, sizeof(err)),
                   SL_ECONFIG);
  assert_null(p);
  if (!strstr(err, want))
    fail_msg("policy error '%s' lacks '%s'", err, want);
}

static void test_policy_file(void **st) {
  (void)st;
  const char *y = "name: logs\n"
                  "selector: \"site in (a|b)\"\n"
                  "priority: 7\n"
                  "patch: {log: {level: debug}}\n"
                  "rollout: {canary_selector: canary, steps_percent: [10, "
                  "100], success_threshold: 0.9, batch_deadline: 2m, "
                  "max_failures: 2, group_label: site, "
                  "max_unavailable_per_group: 1}\n"
                  "gate: {min_healthy: 5s, timeout: 1m, require_uplink: true, "
                  "max_error_rate: 0.05}\n"
                  "on_failure: keep\n"
                  "window: {start: \"01:30\", end: \"05:00\"}\n";
  Sluice__V1__Policy *p;
  char err[256];
  assert_int_equal(sl_fleet_policy_parse(y, strlen(y), &p, err, sizeof(err)),
                   0);
  assert_string_equal(p->name, "logs");
  assert_int_equal(p->priority, 7);
  assert_string_equal(p->patch_json, "{\"log\": {\"level\": \"debug\"}}");
  assert_int_equal(p->rollout->n_steps_percent, 2);
  assert_int_equal(p->rollout->batch_deadline_ms, 120000);
  assert_int_equal(p->rollout->max_unavailable_per_group, 1);
  assert_int_equal(p->gate->min_healthy_ms, 5000);
  assert_int_equal(p->gate->timeout_ms, 60000);
  assert_true(p->gate->require_uplink);
  assert_int_equal(p->on_failure, SLUICE__V1__ON_FAILURE__ON_FAILURE_KEEP);
  assert_int_equal(p->window->start_minute, 90);
  assert_int_equal(p->window->end_minute, 300);
  sluice__v1__policy__free_unpacked(p, NULL);

  policy_err("selector: x\npatch: {}\n", "name: required");
  policy_err("name: a\n", "patch: required");
  policy_err("name: a\npatch: {}\nprio: 1\n", "unknown key 'prio'");
  policy_err("name: a\npatch: {node: {id: x}}\n",
             "'node' is not a remote-owned key");
  policy_err("name: a\nselector: \"a=\"\npatch: {}\n",
             "selector: selector column 3: expected a value");
  policy_err("name: a\npatch: {}\nrollout: {steps_percent: [50, 20]}\n",
             "steps_percent[1]: expected increasing");
  policy_err("name: a\npatch: {}\nrollout: {batch_deadline: soon}\n",
             "rollout.batch_deadline: expected a duration");
  policy_err("name: a\npatch: {}\nrollout: {max_unavailable_per_group: 2}\n",
             "needs rollout.group_label");
  policy_err("name: a\npatch: {}\ngate: {min_healthy: 1m, timeout: 30s}\n",
             "gate.timeout must be longer");
  policy_err("name: a\npatch: {}\nwindow: {start: \"25:00\", end: "
             "\"01:00\"}\n",
             "window.start: expected \"HH:MM\"");
  policy_err("name: a\npatch: {}\non_failure: retry\n",
             "on_failure: expected rollback or keep");
  policy_err("name: [a\n", "line ");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_selector_match),
      cmocka_unit_test(test_selector_errors),
      cmocka_unit_test(test_rfc7396),
      cmocka_unit_test(test_canon_and_check),
      cmocka_unit_test(test_yaml),
      cmocka_unit_test(test_render_order),
      cmocka_unit_test(test_plan_canary_fails),
      cmocka_unit_test(test_plan_batches_advance),
      cmocka_unit_test(test_plan_deadline),
      cmocka_unit_test(test_plan_group_limit),
      cmocka_unit_test(test_policy_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
