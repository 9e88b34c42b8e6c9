/*
 * Ingest guard: the limits every listener shares (native TCP and Unix,
 * HTTP), so that no listener can take more than the node has.
 *
 *   - connections: limits.max_connections over all listeners together;
 *   - bytes: limits.max_inflight_bytes of client data buffered at once
 *     (partial native frames, HTTP request bodies), metric
 *     sluice_ingest_inflight_bytes, refusals counted in
 *     sluice_ingest_budget_refusals_total{path,what};
 *   - storage errors: the first failed commit of an episode is logged, each
 *     one counted (sluice_store_write_errors_total{reason}) and /readyz
 *     answers 503 while commits keep failing.
 *
 * Every function is thread-safe (the loop thread, libmicrohttpd's thread and
 * the store's writer thread call them): plain atomics, no locks.
 */
#ifndef SL_GUARD_H
#define SL_GUARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "telemetry/metrics.h"

typedef struct sl_guard {
  _Atomic uint64_t bytes;  /* client bytes buffered now */
  _Atomic uint64_t conns;  /* client connections open now */
  _Atomic int store_fails; /* 1 while commits fail with a storage error */
  uint64_t max_bytes;      /* limits.max_inflight_bytes */
  uint64_t max_conns;      /* limits.max_connections */
  sl_metrics_t *mx;        /* borrowed */
  /* Told of each storage error (reason) and of the recovery (NULL); may
   * be NULL. The daemon points /readyz at it. */
  void (*notify)(void *arg, const char *reason);
  void *notify_arg;
  sl_metric_t *bytes_gauge;
  sl_metric_t *conns_gauge;
  sl_metric_t *refused[2][2]; /* [native|http][bytes|connections] */
} sl_guard_t;

/* What a refusal was about (the "what" label). */
enum { SL_GUARD_BYTES = 0, SL_GUARD_CONNS = 1 };
/* Which listener asks (the "path" label); values of sl_path_t. */
enum { SL_GUARD_NATIVE = 0, SL_GUARD_HTTP = 1 };

/* Sets the limits and registers the metrics. g: caller-allocated, zeroed;
 * mx: borrowed, must outlive g. Cannot fail. */
void sl_guard_init(sl_guard_t *g, sl_metrics_t *mx, uint64_t max_bytes,
                   uint64_t max_conns);

/* Storage errors and recoveries are reported to fn(arg, reason) from now
 * on (reason NULL: recovered); any thread. fn may be NULL. */
void sl_guard_set_notify(sl_guard_t *g,
                         void (*fn)(void *arg, const char *reason), void *arg);

/* Takes n bytes of the budget for path. Returns 0, or SL_EBACKPRESSURE
 * (nothing taken, the refusal counted) when it would go over. */
int sl_guard_bytes_take(sl_guard_t *g, int path, size_t n);

/* Gives back n bytes taken earlier. */
void sl_guard_bytes_give(sl_guard_t *g, size_t n);

/* Counts one connection open. Returns 0, or SL_EBACKPRESSURE (not counted,
 * refusal counted) when limits.max_connections are already open. */
int sl_guard_conn_take(sl_guard_t *g, int path);

/* A connection counted by sl_guard_conn_take() closed. */
void sl_guard_conn_give(sl_guard_t *g);

/* A commit finished with status (any ingest path, any thread). Storage
 * errors (anything but 0, SL_EBACKPRESSURE and SL_ECLOSED) are counted;
 * the first of an episode is logged and makes /readyz answer 503; the next
 * successful commit ends the episode (logged too). */
void sl_guard_store_result(sl_guard_t *g, int status);

#endif /* SL_GUARD_H */
