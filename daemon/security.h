/*
 * daemon/security: the daemon's side of TLS and credentials
 * (docs/security/tls.md). Builds the listeners' TLS contexts and the
 * credential tables from the config at start, swaps them in two phases on
 * reload, exposes the insecure-listener gauges, and carries POST
 * /v1/reload from the admin thread to the loop. Private to the daemon layer.
 */
#ifndef SL_BROKER_SECURITY_H
#define SL_BROKER_SECURITY_H

#include <pthread.h>

#include <uv.h>

#include "security/creds.h"
#include "daemon/daemon.h"
#include "security/tls.h"

struct MHD_Connection;

typedef struct sl_sec {
  sl_creds_t creds;        /* what the listeners use (security/creds.h) */
  uv_async_t reload_async; /* admin thread -> loop: reload asked */
  pthread_mutex_t lock;    /* guards the reload fields below */
  pthread_cond_t cond;
  uint64_t asked, done; /* reload requests made / answered */
  uint64_t parsing;     /* requests the reload being parsed answers */
  int result;           /* of the last answered request */
  int closed;           /* the loop no longer answers */
} sl_sec_t;

/* Next generation of a reload (sl_sec_prepare -> sl_sec_commit). */
typedef struct sl_sec_next {
  sl_auth_t *auth;
  sl_tls_server_t *native;
  sl_tls_mhd_t *http, *admin;
} sl_sec_next_t;

/*
 * Builds dm->sec from dm->cfg on the loop thread, before any listener
 * starts: loads every certificate (a bad file fails the start with its
 * reason in err), warns and sets sluice_listener_insecure for each
 * plain-TCP listener on a non-loopback address. Returns 0, SL_ECONFIG or
 * -ENOMEM.
 */
int sl_sec_start(sl_daemon_t *dm, char *err, size_t errlen);

/*
 * Phase one of a reload: loads nw's certificates and credentials into next
 * (caller-owned, overwritten) without touching what runs. Turning TLS on or
 * off needs a restart. Returns 0 or SL_ECONFIG / -ENOMEM with err; next is
 * empty then.
 */
int sl_sec_prepare(sl_daemon_t *dm, const sl_config_t *nw, sl_sec_next_t *next,
                   char *err, size_t errlen);

/* Phase two: installs next (consumed). New connections use it. */
void sl_sec_commit(sl_daemon_t *dm, sl_sec_next_t *next);

/* Frees what a prepare left when the reload is abandoned. */
void sl_sec_next_free(sl_sec_next_t *next);

/* Closes the loop handle (the stop's finish step). */
void sl_sec_close(sl_daemon_t *dm);

/* Frees dm->sec, after the listeners stopped. NULL-safe. */
void sl_sec_free(sl_daemon_t *dm);

/* Admin thread: 0 when the request on conn carries the admin token or a
 * client certificate verified by admin.tls.client_ca, else SL_EDENIED. */
int sl_sec_admin_allowed(void *dm, struct MHD_Connection *conn);

/*
 * Admin thread: runs a config reload on the loop and waits (bounded) for
 * its outcome. Returns 0 (applied), SL_ECONFIG (refused: the log says why)
 * or SL_ECLOSED (shutting down or no answer within 30 s).
 */
int sl_sec_reload_request(void *dm);

/* Loop thread, from sl_daemon__reload_start(): a reload's parse begins (it
 * answers the requests made so far) / the reload was decided (rc 0 applied,
 * -1 refused): wakes the requests it answers. No-ops before sl_sec_start. */
void sl_sec_reload_begin(sl_daemon_t *dm);
void sl_sec_reload_finished(sl_daemon_t *dm, int rc);

#endif /* SL_BROKER_SECURITY_H */
