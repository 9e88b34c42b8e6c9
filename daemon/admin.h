/*
 * Admin HTTP endpoints (libmicrohttpd, its own thread): /metrics (Prometheus
 * text), /healthz, /readyz, /v1/status (JSON).
 */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include <stdint.h>

#include "common/addr.h"
#include "telemetry/metrics.h"

typedef struct sl_admin sl_admin_t;

/*
 * Builds the /v1/status document. Called on the admin thread, so it must
 * only read state that is safe to read from another thread. Returns owned
 * JSON text (freed by the admin server with free()) or NULL on failure (the
 * server answers 500).
 */
typedef char *(*sl_admin_status_cb)(void *opaque);

/*
 * Starts serving on address ("host:port"; port 0 picks a free port, see
 * sl_admin_port()). mx: borrowed, must outlive the server. status_cb may be
 * NULL. Returns 0, -EINVAL for a bad address (reason in errstr) or
 * -EADDRINUSE/-errno when the socket cannot be bound. *out: returns owned;
 * free with sl_admin_stop().
 */
int sl_admin_start(const char *address, sl_metrics_t *mx,
                   sl_admin_status_cb status_cb, void *opaque, sl_admin_t **out,
                   char *errstr, size_t errlen);

/*
 * TLS and credentials of the admin server (daemon/security.h). tls: NULL =
 * plain HTTP. allowed_cb: returns 0 when the request on conn may change
 * state (a credential was shown), else an error; NULL refuses all such
 * requests. reload_cb: POST /v1/reload, returns 0 (applied), SL_ECONFIG
 * (refused) or SL_ECLOSED; NULL = 404. Callbacks run on the admin thread
 * with the server's opaque.
 */
struct sl_tls_mhd;
struct MHD_Connection;
typedef struct sl_admin_sec {
  struct sl_tls_mhd *tls;
  int (*allowed_cb)(void *opaque, struct MHD_Connection *conn);
  int (*reload_cb)(void *opaque);
} sl_admin_sec_t;

/* sl_admin_start() with sec (borrowed, copied; its tls must outlive the
 * server). Read-only endpoints never need a credential. */
int sl_admin_start_secure(const char *address, sl_metrics_t *mx,
                          sl_admin_status_cb status_cb, void *opaque,
                          const sl_admin_sec_t *sec, sl_admin_t **out,
                          char *errstr, size_t errlen);

/* The bound TCP port. */
uint16_t sl_admin_port(const sl_admin_t *adm);

/*
 * Readiness (/readyz answers 200 or 503 with the reason) and health
 * (/healthz answers 200 or 500 with the reason). reason: copied. Thread-safe.
 */
void sl_admin_set_ready(sl_admin_t *adm, int ready, const char *reason);
void sl_admin_set_healthy(sl_admin_t *adm, int healthy, const char *reason);

/* What /readyz answers now: 1 ready, or 0 with the reason in reason (len
 * bytes). Thread-safe. */
int sl_admin_get_ready(sl_admin_t *adm, char *reason, size_t len);

/*
 * A commit failed with a storage error (reason: copied), or with NULL the
 * store accepts writes again. /readyz answers 503 with the reason from the
 * last error for 10 s, so it stays not ready while errors keep coming but
 * recovers when clients stop trying. Thread-safe.
 */
void sl_admin_set_store_error(sl_admin_t *adm, const char *reason);

/* Stops the server thread and frees everything. NULL is a no-op. */
void sl_admin_stop(sl_admin_t *adm);

#endif /* SL_ADMIN_H */
