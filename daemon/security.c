/*
 * TLS and credentials, daemon side (daemon/security.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>

#include <microhttpd.h>

#include "telemetry/log.h"
#include "daemon/security.h"

/* ---- insecure listeners ------------------------------------------------- */

/* True for 127.0.0.0/8, ::1 and "localhost": only this host can connect. */
static int is_loopback(const char *address) {
  char host[256], err[128];
  uint16_t port;
  struct in_addr a4;
  struct in6_addr a6;
  if (sl_addr_split(address, host, sizeof(host), &port, err, sizeof(err)) < 0)
    return 0;
  if (!strcasecmp(host, "localhost"))
    return 1;
  if (inet_pton(AF_INET, host, &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, host, &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&a6);
  return 0;
}

static void insecure_gauge(sl_daemon_t *dm, const char *listener,
                           const char *address, int tls) {
  char labels[64];
  int bad;
  if (!address || !*address)
    return;
  bad = !tls && !is_loopback(address);
  snprintf(labels, sizeof(labels), "listener=\"%s\"", listener);
  sl_metric_set(sl_metrics_gauge(dm->in.mx, "sluice_listener_insecure",
                                 "1 while a listener without TLS binds a "
                                 "non-loopback address",
                                 labels),
                bad);
  if (bad)
    sl_warn(SL_LOG_CTX_ADMIN, NULL,
            "%s listener on %s has no TLS: traffic and credentials cross the "
            "network in clear (set its tls.cert and tls.key)",
            listener, address);
}

/* ---- start, reload ------------------------------------------------------ */

static int load(const sl_config_t *cfg, sl_sec_next_t *n, char *err,
                size_t errlen) {
  char why[600];
  int rc;
  memset(n, 0, sizeof(*n));
  if ((rc = sl_auth_new(cfg, &n->auth)) < 0) {
    snprintf(err, errlen, "credentials: %s", sl_strerror(rc));
    goto fail;
  }
  if (*cfg->listeners.native_tls.cert &&
      (rc = sl_tls_server_new(&cfg->listeners.native_tls, &n->native, why,
                              sizeof(why))) < 0) {
    snprintf(err, errlen, "listeners.native.tls: %s", why);
    goto fail;
  }
  if (*cfg->listeners.http_tls.cert &&
      (rc = sl_tls_mhd_new(&cfg->listeners.http_tls, &n->http, why,
                           sizeof(why))) < 0) {
    snprintf(err, errlen, "listeners.http.tls: %s", why);
    goto fail;
  }
  if (*cfg->admin.tls.cert &&
      (rc = sl_tls_mhd_new(&cfg->admin.tls, &n->admin, why, sizeof(why))) < 0) {
    snprintf(err, errlen, "admin.tls: %s", why);
    goto fail;
  }
  return 0;
fail:
  sl_sec_next_free(n);
  return rc;
}

void sl_sec_next_free(sl_sec_next_t *n) {
  sl_auth_free(n->auth);
  sl_tls_server_free(n->native);
  sl_tls_mhd_free(n->http);
  sl_tls_mhd_free(n->admin);
  memset(n, 0, sizeof(*n));
}

static void log_cert(const sl_sec_t *sec) {
  char desc[300];
  if (!sec->creds.native)
    return;
  sl_tls_server_describe(sec->creds.native, desc, sizeof(desc));
  sl_info(SL_LOG_CTX_ADMIN, NULL, "native TLS certificate: %s", desc);
}

static void on_reload_async(uv_async_t *a) {
  sl_daemon_t *dm = a->data;
  sl_sec_t *sec = dm->sec;
  uint64_t asked;
  pthread_mutex_lock(&sec->lock);
  asked = sec->asked;
  pthread_mutex_unlock(&sec->lock);
  if (asked == sec->done)
    return;
  sl_daemon__reload_start(dm);
}

void sl_sec_reload_begin(sl_daemon_t *dm) {
  sl_sec_t *sec = dm->sec;
  if (!sec)
    return;
  pthread_mutex_lock(&sec->lock);
  sec->parsing = sec->asked; /* the requests this round answers */
  pthread_mutex_unlock(&sec->lock);
}

void sl_sec_reload_finished(sl_daemon_t *dm, int rc) {
  sl_sec_t *sec = dm->sec;
  if (!sec)
    return;
  pthread_mutex_lock(&sec->lock);
  if (sec->parsing > sec->done) {
    sec->result = rc;
    sec->done = sec->parsing; /* one reload answers every request before it */
  }
  pthread_cond_broadcast(&sec->cond);
  pthread_mutex_unlock(&sec->lock);
  /* A request made while this round parsed woke the loop after it began:
   * its sl_daemon__reload_start() queued one more round. */
}

int sl_sec_start(sl_daemon_t *dm, char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  sl_sec_next_t n;
  sl_sec_t *sec;
  int rc;

  if (!(sec = calloc(1, sizeof(*sec))))
    return -ENOMEM;
  if ((rc = load(cfg, &n, err, errlen)) < 0) {
    free(sec);
    return rc;
  }
  sec->creds.auth = n.auth;
  sec->creds.native = n.native;
  sec->creds.http = n.http;
  sec->creds.admin = n.admin;
  pthread_mutex_init(&sec->lock, NULL);
  pthread_cond_init(&sec->cond, NULL);
  uv_async_init(&dm->loop, &sec->reload_async, on_reload_async);
  sec->reload_async.data = dm;
  dm->sec = sec;
  insecure_gauge(dm, "native", cfg->listeners.native_tcp,
                 sec->creds.native != NULL);
  insecure_gauge(dm, "http", cfg->listeners.http_address,
                 sec->creds.http != NULL);
  insecure_gauge(dm, "admin", cfg->admin.address, sec->creds.admin != NULL);
  log_cert(sec);
  return 0;
}

int sl_sec_prepare(sl_daemon_t *dm, const sl_config_t *nw, sl_sec_next_t *next,
                   char *err, size_t errlen) {
  const sl_sec_t *sec = dm->sec;
  int rc;
  if ((rc = load(nw, next, err, errlen)) < 0)
    return rc;
  /* libmicrohttpd fixes TLS on or off when it starts; native follows suit
   * so every listener behaves the same. */
  const char *key = NULL;
  if (!sec->creds.native != !next->native)
    key = "listeners.native.tls.cert";
  else if (!sec->creds.http != !next->http)
    key = "listeners.http.tls.cert";
  else if (!sec->creds.admin != !next->admin)
    key = "admin.tls.cert";
  if (key) {
    snprintf(err, errlen, "%s: turning TLS on or off needs a restart", key);
    sl_sec_next_free(next);
    return SL_ECONFIG;
  }
  return 0;
}

void sl_sec_commit(sl_daemon_t *dm, sl_sec_next_t *next) {
  sl_sec_t *sec = dm->sec;
  sl_auth_swap(sec->creds.auth, next->auth);
  /* Open sessions hold their own reference to the old context. */
  sl_tls_server_free(sec->creds.native);
  sec->creds.native = next->native;
  if (next->http)
    sl_tls_mhd_swap(sec->creds.http, next->http);
  if (next->admin)
    sl_tls_mhd_swap(sec->creds.admin, next->admin);
  memset(next, 0, sizeof(*next));
  log_cert(sec);
}

void sl_sec_close(sl_daemon_t *dm) {
  sl_sec_t *sec = dm->sec;
  if (!sec)
    return;
  pthread_mutex_lock(&sec->lock);
  sec->closed = 1;
  pthread_cond_broadcast(&sec->cond);
  pthread_mutex_unlock(&sec->lock);
  uv_close((uv_handle_t *)&sec->reload_async, NULL);
}

void sl_sec_free(sl_daemon_t *dm) {
  sl_sec_t *sec = dm->sec;
  if (!sec)
    return;
  sl_auth_free(sec->creds.auth);
  sl_tls_server_free(sec->creds.native);
  sl_tls_mhd_free(sec->creds.http);
  sl_tls_mhd_free(sec->creds.admin);
  pthread_mutex_destroy(&sec->lock);
  pthread_cond_destroy(&sec->cond);
  free(sec);
  dm->sec = NULL;
}

/* ---- HTTP and admin ----------------------------------------------------- */

/* The token of "Authorization: Bearer TOKEN", or NULL. */
int sl_sec_admin_allowed(void *opaque, struct MHD_Connection *conn) {
  sl_daemon_t *dm = opaque;
  return sl_creds_admin_allowed(&dm->sec->creds, conn);
}

int sl_sec_reload_request(void *opaque) {
  sl_daemon_t *dm = opaque;
  sl_sec_t *sec = dm->sec;
  struct timespec until;
  uint64_t mine;
  int rc = 0;

  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 30;
  pthread_mutex_lock(&sec->lock);
  if (sec->closed) {
    pthread_mutex_unlock(&sec->lock);
    return SL_ECLOSED;
  }
  mine = ++sec->asked;
  uv_async_send(&sec->reload_async);
  while (sec->done < mine && !sec->closed && rc == 0)
    rc = pthread_cond_timedwait(&sec->cond, &sec->lock, &until);
  rc = sec->done >= mine ? (sec->result < 0 ? SL_ECONFIG : 0) : SL_ECLOSED;
  pthread_mutex_unlock(&sec->lock);
  return rc;
}
