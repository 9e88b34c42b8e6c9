#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "telemetry/metrics.h"

static void test_counter_gauge_render(void **state) {
  sl_metrics_t *mx;
  char *out;
  size_t len;
  (void)state;
  assert_int_equal(sl_metrics_new(&mx), 0);
  sl_metric_t *c = sl_metrics_counter(mx, "sluice_ingest_events_total",
                                      "Events accepted", "path=\"native\"");
  sl_metric_t *c2 = sl_metrics_counter(mx, "sluice_ingest_events_total",
                                       "ignored", "path=\"http\"");
  sl_metric_t *g = sl_metrics_gauge(mx, "sluice_store_bytes", "Bytes", NULL);
  assert_non_null(c);
  assert_non_null(c2);
  assert_ptr_not_equal(c, c2);
  /* Same name and labels: the same series. */
  assert_ptr_equal(c, sl_metrics_counter(mx, "sluice_ingest_events_total", "x",
                                         "path=\"native\""));
  /* Same name, other type: refused. */
  assert_null(sl_metrics_gauge(mx, "sluice_ingest_events_total", "x", NULL));
  sl_metric_add(c, 5);
  sl_metric_add(c, 7);
  sl_metric_add(NULL, 1); /* NULL-safe */
  sl_metric_set(g, 1.5);
  sl_metric_gauge_add(g, 2);
  assert_true(sl_metric_value(g) == 3.5);
  assert_int_equal(sl_metrics_render(mx, &out, &len), 0);
  assert_int_equal(strlen(out), len);
  assert_non_null(strstr(out, "# HELP sluice_ingest_events_total Events "
                              "accepted\n# TYPE sluice_ingest_events_total "
                              "counter\n"));
  assert_non_null(strstr(out, "sluice_ingest_events_total{path=\"native\"} "
                              "12\n"));
  assert_non_null(strstr(out, "sluice_ingest_events_total{path=\"http\"} 0\n"));
  assert_non_null(strstr(out, "sluice_store_bytes 3.5\n"));
  /* HELP/TYPE once per family. */
  assert_null(strstr(strstr(out, "# TYPE sluice_ingest_events_total") + 1,
                     "# TYPE sluice_ingest_events_total"));
  free(out);
  sl_metrics_free(mx);
}

static void test_histogram(void **state) {
  sl_metrics_t *mx;
  char *out;
  size_t len;
  const double b[] = {0.001, 0.01, 0.1};
  (void)state;
  assert_int_equal(sl_metrics_new(&mx), 0);
  sl_metric_t *h = sl_metrics_histogram(mx, "sluice_commit_seconds",
                                        "Commit latency", "db=\"log\"", b, 3);
  assert_non_null(h);
  sl_metric_observe(h, 0.0005); /* bucket 0 */
  sl_metric_observe(h, 0.001);  /* le is inclusive: bucket 0 */
  sl_metric_observe(h, 0.05);   /* bucket 2 */
  sl_metric_observe(h, 3);      /* +Inf */
  assert_int_equal(sl_metrics_render(mx, &out, &len), 0);
  assert_non_null(
      strstr(out, "sluice_commit_seconds_bucket{db=\"log\",le=\"0.001\"} 2\n"));
  assert_non_null(
      strstr(out, "sluice_commit_seconds_bucket{db=\"log\",le=\"0.01\"} 2\n"));
  assert_non_null(
      strstr(out, "sluice_commit_seconds_bucket{db=\"log\",le=\"0.1\"} 3\n"));
  assert_non_null(
      strstr(out, "sluice_commit_seconds_bucket{db=\"log\",le=\"+Inf\"} 4\n"));
  assert_non_null(strstr(out, "sluice_commit_seconds_count{db=\"log\"} 4\n"));
  const char *sum = strstr(out, "sluice_commit_seconds_sum{db=\"log\"} ");
  assert_non_null(sum);
  double v =
      strtod(sum + strlen("sluice_commit_seconds_sum{db=\"log\"} "), NULL);
  assert_true(v > 3.05149 && v < 3.05151);
  free(out);
  sl_metrics_free(mx);
}

static void test_escape(void **state) {
  char buf[32];
  (void)state;
  assert_string_equal(sl_metrics_escape(buf, sizeof(buf), "a\"b\\c\nd"),
                      "a\\\"b\\\\c\\nd");
  /* Truncation keeps the buffer terminated and never splits an escape. */
  assert_true(strlen(sl_metrics_escape(buf, 6, "\"\"\"\"\"")) <= 5);
}

/* The rendered text passes Prometheus' own linter. */
static void test_promtool(void **state) {
  (void)state;
#ifndef SL_PROMTOOL
  skip();
#else
  sl_metrics_t *mx;
  char *out, path[] = "/tmp/sl_metrics_XXXXXX", cmd[512];
  size_t len;
  assert_int_equal(sl_metrics_new(&mx), 0);
  sl_metric_add(sl_metrics_counter(mx, "sluice_acks_total", "Acks sent",
                                   "path=\"native\""),
                3);
  sl_metric_set(
      sl_metrics_gauge(mx, "sluice_backpressure", "1 when engaged", NULL), 1);
  sl_metric_observe(sl_metrics_histogram(mx, "sluice_commit_latency_seconds",
                                         "Commit latency", NULL,
                                         sl_metrics_latency_buckets,
                                         sl_metrics_latency_nbuckets),
                    0.002);
  assert_int_equal(sl_metrics_render(mx, &out, &len), 0);
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fwrite(out, 1, len, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "%s check metrics < %s", SL_PROMTOOL, path);
  int rc = system(cmd);
  unlink(path);
  free(out);
  sl_metrics_free(mx);
  assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_gauge_render),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_escape),
      cmocka_unit_test(test_promtool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
