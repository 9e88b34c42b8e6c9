#include <errno.h>
#include <stdio.h>

#include "ingest/guard.h"
#include "telemetry/log.h"
#include "common/common.h"

static const char *const path_label[2] = {"native", "http"};
static const char *const what_label[2] = {"bytes", "connections"};

void sl_guard_init(sl_guard_t *g, sl_metrics_t *mx, uint64_t max_bytes,
                   uint64_t max_conns) {
  char labels[64];
  g->mx = mx;
  g->max_bytes = max_bytes;
  g->max_conns = max_conns;
  g->bytes_gauge = sl_metrics_gauge(
      mx, "sluice_ingest_inflight_bytes",
      "Client bytes buffered by all listeners (limits.max_inflight_bytes)",
      NULL);
  g->conns_gauge = sl_metrics_gauge(
      mx, "sluice_ingest_open_connections",
      "Client connections open over all listeners (limits.max_connections)",
      NULL);
  for (int p = 0; p < 2; p++)
    for (int w = 0; w < 2; w++) {
      snprintf(labels, sizeof(labels), "path=\"%s\",what=\"%s\"", path_label[p],
               what_label[w]);
      g->refused[p][w] = sl_metrics_counter(
          mx, "sluice_ingest_budget_refusals_total",
          "Frames, requests or connections refused because a node-wide "
          "limit (in-flight bytes, connections) was reached",
          labels);
    }
}

void sl_guard_set_notify(sl_guard_t *g,
                         void (*fn)(void *arg, const char *reason), void *arg) {
  g->notify_arg = arg;
  g->notify = fn;
}

int sl_guard_bytes_take(sl_guard_t *g, int path, size_t n) {
  uint64_t cur = atomic_load(&g->bytes);
  do {
    if (cur + n > g->max_bytes) {
      sl_metric_add(g->refused[path][SL_GUARD_BYTES], 1);
      return SL_EBACKPRESSURE;
    }
  } while (!atomic_compare_exchange_weak(&g->bytes, &cur, cur + n));
  /* Deltas, not values: two threads setting values could leave a stale
   * one last. */
  sl_metric_gauge_add(g->bytes_gauge, (double)n);
  return 0;
}

void sl_guard_bytes_give(sl_guard_t *g, size_t n) {
  atomic_fetch_sub(&g->bytes, n);
  sl_metric_gauge_add(g->bytes_gauge, -(double)n);
}

int sl_guard_conn_take(sl_guard_t *g, int path) {
  uint64_t cur = atomic_load(&g->conns);
  do {
    if (cur >= g->max_conns) {
      sl_metric_add(g->refused[path][SL_GUARD_CONNS], 1);
      return SL_EBACKPRESSURE;
    }
  } while (!atomic_compare_exchange_weak(&g->conns, &cur, cur + 1));
  sl_metric_gauge_add(g->conns_gauge, 1);
  return 0;
}

void sl_guard_conn_give(sl_guard_t *g) {
  atomic_fetch_sub(&g->conns, 1);
  sl_metric_gauge_add(g->conns_gauge, -1);
}

void sl_guard_store_result(sl_guard_t *g, int status) {
  char labels[64], reason[160];
  if (status == SL_EBACKPRESSURE || status == SL_ECLOSED)
    return; /* flow control and shutdown, not storage failures */
  if (status == 0) {
    if (atomic_load(&g->store_fails) && atomic_exchange(&g->store_fails, 0)) {
      sl_info(SL_LOG_CTX_STORE, NULL, "store accepts writes again");
      if (g->notify)
        g->notify(g->notify_arg, NULL);
    }
    return;
  }
  snprintf(labels, sizeof(labels), "reason=\"%s\"", sl_errname(status));
  sl_metric_add(sl_metrics_counter(g->mx, "sluice_store_write_errors_total",
                                   "Commits that failed with a storage "
                                   "error (disk full, I/O error), by error",
                                   labels),
                1);
  snprintf(reason, sizeof(reason), "store refuses writes: %s (%s)",
           sl_errname(status), sl_strerror(status));
  /* /readyz stays not ready while failures keep coming (each refreshes
   * it); only the first one of an episode is logged. */
  if (g->notify)
    g->notify(g->notify_arg, reason);
  if (!atomic_exchange(&g->store_fails, 1))
    sl_error(SL_LOG_CTX_STORE, NULL,
             "%s: ingest answers 503 / error frames until a commit "
             "succeeds again (sluice_store_write_errors_total)",
             reason);
}
