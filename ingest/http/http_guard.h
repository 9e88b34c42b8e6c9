/*
 * HTTP connection guard for a libmicrohttpd server (HTTP ingest, admin):
 * what libmicrohttpd 0.9.75 does not do by itself.
 *
 *   - A whole-request deadline: a request must be complete within
 *     request_timeout of the connection's accept (or of the previous
 *     answer on a kept-alive connection). libmicrohttpd's own timeout is an
 *     idle timeout that any byte resets, so one byte every few seconds
 *     (slow loris) would hold a connection forever. A watchdog thread shuts
 *     such connections down.
 *   - Eviction (soft_limit > 0): when a new connection makes more than
 *     soft_limit open, the oldest one whose request is still incomplete is
 *     shut down, so a health probe always gets a slot.
 *   - A cap on query arguments: libmicrohttpd parses them into its
 *     fixed-size connection pool and stops answering when the pool runs out
 *     (~950 arguments in 64 KiB); the guard cuts the query before that and
 *     the handler answers 414.
 *   - With a node guard: the connection counts against
 *     limits.max_connections over all listeners; over it, the handler
 *     answers 503.
 *
 * Threads: every callback runs on libmicrohttpd's thread; the watchdog is
 * the guard's own thread; one mutex guards the connection list.
 * Connections are only ever shut down (shutdown(2)), never closed, and only
 * while they are on the list, i.e. before libmicrohttpd closes the fd.
 */
#ifndef SL_HTTP_GUARD_H
#define SL_HTTP_GUARD_H

#include <stdint.h>

#include <microhttpd.h>

#include "ingest/guard.h"

typedef struct sl_hguard sl_hguard_t;

typedef struct sl_hguard_opts {
  uint64_t request_timeout_ms; /* whole-request deadline; 0 = none */
  unsigned soft_limit;         /* evict beyond this many; 0 = never */
  unsigned max_args;           /* query arguments accepted */
  sl_guard_t *node;            /* node-wide connection count, or NULL */
  int path;                    /* SL_GUARD_NATIVE/HTTP for node's labels */
  sl_metric_t *timeouts;       /* counts deadline shutdowns, may be NULL */
  sl_metric_t *evictions;      /* counts evictions, may be NULL */
} sl_hguard_opts_t;

/* Why the handler must refuse a request before looking at it. */
typedef enum {
  SL_HGUARD_OK = 0,
  SL_HGUARD_TOO_MANY_ARGS, /* answer 414 */
  SL_HGUARD_TOO_MANY_CONNS /* answer 503 and close */
} sl_hguard_verdict_t;

/*
 * Creates a guard and starts its watchdog thread. o: copied. Returns 0,
 * -ENOMEM or -errno of pthread_create. *out: returns owned; free with
 * sl_hguard_free() after MHD_stop_daemon().
 */
int sl_hguard_new(const sl_hguard_opts_t *o, sl_hguard_t **out);

/* Pass to MHD_start_daemon as MHD_OPTION_NOTIFY_CONNECTION, sl_hguard_notify,
 * hg and MHD_OPTION_URI_LOG_CALLBACK, sl_hguard_uri, hg. */
void sl_hguard_notify(void *cls, struct MHD_Connection *conn,
                      void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);
void *sl_hguard_uri(void *cls, const char *uri, struct MHD_Connection *conn);

/* The handler's first call for a request: whether to refuse it. */
sl_hguard_verdict_t sl_hguard_verdict(struct MHD_Connection *conn);

/* The request is entirely received (a response is queued or it is being
 * processed): its deadline no longer applies. */
void sl_hguard_request_done(struct MHD_Connection *conn);

/* The answer was sent (MHD_OPTION_NOTIFY_COMPLETED): the next request on
 * this connection has request_timeout from now. */
void sl_hguard_response_done(struct MHD_Connection *conn);

/* Stops the watchdog and frees the guard. NULL is a no-op. */
void sl_hguard_free(sl_hguard_t *hg);

#endif /* SL_HTTP_GUARD_H */
