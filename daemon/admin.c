#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "daemon/admin.h"
#include "ingest/http/http_guard.h"
#include "common/common.h"

/* Admin requests are tiny GETs: each must be complete this long after the
 * connection opened (or after the previous answer), whatever trickles in. */
#define ADMIN_REQUEST_TIMEOUT_MS 5000u
/* Connections kept; one more evicts the oldest incomplete request, so a
 * health probe is answered even under a slow-loris flood. */
#define ADMIN_SOFT_LIMIT 64u
/* Hard cap in libmicrohttpd: room for the new connections that evict. */
#define ADMIN_HARD_LIMIT (ADMIN_SOFT_LIMIT + 16u)
/* Admin endpoints take no query arguments; a few are tolerated. */
#define ADMIN_MAX_ARGS 8u
/* /readyz stays 503 this long after the last storage error. */
#define STORE_ERROR_HOLD_NS (10ull * 1000000000ull)
#include "security/tls.h"
#include "telemetry/log.h"

struct sl_admin {
  struct MHD_Daemon *mhd;
  sl_hguard_t *hg;
  sl_metrics_t *mx;
  sl_admin_status_cb status_cb;
  void *opaque;
  uint16_t port;
  pthread_mutex_t lock; /* guards the flags and reasons below */
  int ready;
  int healthy;
  char ready_reason[256];
  char health_reason[256];
  uint64_t store_error_ns; /* last storage error, 0 = none (episode over) */
  char store_reason[160];
  sl_admin_sec_t sec; /* TLS and credentials (zero: plain, no POST) */
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
                             const char *ctype, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode) {
  struct MHD_Response *rsp = MHD_create_response_from_buffer(len, body, mode);
  if (!rsp) {
    if (mode == MHD_RESPMEM_MUST_FREE)
      free(body);
    return MHD_NO;
  }
  MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  enum MHD_Result r = MHD_queue_response(conn, status, rsp);
  MHD_destroy_response(rsp);
  return r;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status,
                                  const char *text) {
  char *copy;
  size_t n = strlen(text);
  if (!(copy = malloc(n + 2)))
    return MHD_NO;
  memcpy(copy, text, n);
  copy[n] = '\n';
  copy[n + 1] = 0;
  return reply(conn, status, "text/plain; charset=utf-8", copy, n + 1,
               MHD_RESPMEM_MUST_FREE);
}

/* POST /v1/reload: what SIGHUP does, for callers with a credential. */
static enum MHD_Result post_reload(sl_admin_t *adm, struct MHD_Connection *conn,
                                   const char *method) {
  int rc;
  if (!adm->sec.reload_cb)
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found");
  if (strcmp(method, "POST"))
    return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST");
  if (!adm->sec.allowed_cb || adm->sec.allowed_cb(adm->opaque, conn) < 0)
    return reply_text(conn, MHD_HTTP_FORBIDDEN,
                      "forbidden: this endpoint needs the admin token "
                      "(Authorization: Bearer) or an admin client certificate");
  rc = adm->sec.reload_cb(adm->opaque);
  if (rc == 0)
    return reply_text(conn, MHD_HTTP_OK, "reloaded");
  if (rc == SL_ECONFIG)
    return reply_text(conn, MHD_HTTP_CONFLICT,
                      "reload refused, the running config stays: see the log");
  return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls) {
  sl_admin_t *adm = cls;
  char reason[256];
  int flag;

  (void)version;
  (void)upload_data;
  (void)req_cls;
  if (*upload_data_size) {
    *upload_data_size = 0; /* a body on a GET: ignored */
    return MHD_YES;
  }
  sl_hguard_request_done(conn);
  if (sl_hguard_verdict(conn) == SL_HGUARD_TOO_MANY_ARGS)
    return reply_text(conn, MHD_HTTP_URI_TOO_LONG, "too many query arguments");
  if (!strcmp(url, "/v1/reload"))
    return post_reload(adm, conn, method);
  if (strcmp(method, "GET") && strcmp(method, "HEAD"))
    return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
  if (!strcmp(url, "/metrics")) {
    char *buf;
    size_t len;
    if (sl_metrics_render(adm->mx, &buf, &len) < 0)
      return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                 buf, len, MHD_RESPMEM_MUST_FREE);
  }
  if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
    int ready = !strcmp(url, "/readyz");
    if (ready) {
      flag = sl_admin_get_ready(adm, reason, sizeof(reason));
    } else {
      pthread_mutex_lock(&adm->lock);
      flag = adm->healthy;
      snprintf(reason, sizeof(reason), "%s", adm->health_reason);
      pthread_mutex_unlock(&adm->lock);
    }
    if (flag)
      return reply_text(conn, MHD_HTTP_OK, "ok");
    return reply_text(conn,
                      ready ? MHD_HTTP_SERVICE_UNAVAILABLE
                            : MHD_HTTP_INTERNAL_SERVER_ERROR,
                      reason);
  }
  if (!strcmp(url, "/v1/status")) {
    char *json = adm->status_cb ? adm->status_cb(adm->opaque) : NULL;
    if (!json)
      return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                        "status unavailable");
    return reply(conn, MHD_HTTP_OK, "application/json", json, strlen(json),
                 MHD_RESPMEM_MUST_FREE);
  }
  return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)req_cls;
  (void)why;
  sl_hguard_response_done(conn);
}

int sl_admin_start(const char *address, sl_metrics_t *mx,
                   sl_admin_status_cb status_cb, void *opaque, sl_admin_t **out,
                   char *errstr, size_t errlen) {
  return sl_admin_start_secure(address, mx, status_cb, opaque, NULL, out,
                               errstr, errlen);
}

int sl_admin_start_secure(const char *address, sl_metrics_t *mx,
                          sl_admin_status_cb status_cb, void *opaque,
                          const sl_admin_sec_t *sec, sl_admin_t **out,
                          char *errstr, size_t errlen) {
  struct MHD_OptionItem tls_opts[4];
  struct addrinfo hints = {0}, *ai = NULL;
  char host[256], portstr[8];
  uint16_t port;
  sl_admin_t *adm = NULL;
  int rc;

  if ((rc = sl_addr_split(address, host, sizeof(host), &port, errstr, errlen)) <
      0)
    return rc;
  snprintf(portstr, sizeof(portstr), "%u", port);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  if ((rc = getaddrinfo(host, portstr, &hints, &ai)) != 0) {
    snprintf(errstr, errlen, "admin address '%s': %s", address,
             gai_strerror(rc));
    return -EINVAL;
  }
  if (!(adm = calloc(1, sizeof(*adm)))) {
    rc = -ENOMEM;
    goto fail;
  }
  pthread_mutex_init(&adm->lock, NULL);
  adm->mx = mx;
  adm->status_cb = status_cb;
  adm->opaque = opaque;
  adm->healthy = 1;
  if (sec)
    adm->sec = *sec;
  sl_tls_mhd_options(adm->sec.tls, tls_opts);
  snprintf(adm->ready_reason, sizeof(adm->ready_reason), "starting");
  {
    sl_hguard_opts_t ho = {
        .request_timeout_ms = ADMIN_REQUEST_TIMEOUT_MS,
        .soft_limit = ADMIN_SOFT_LIMIT,
        .max_args = ADMIN_MAX_ARGS,
        .timeouts = sl_metrics_counter(
            mx, "sluice_admin_connections_shut_total",
            "Admin connections shut down: request not complete in time "
            "(timeout) or oldest incomplete one at the connection cap "
            "(evicted)",
            "reason=\"timeout\""),
        .evictions = sl_metrics_counter(
            mx, "sluice_admin_connections_shut_total",
            "Admin connections shut down: request not complete in time "
            "(timeout) or oldest incomplete one at the connection cap "
            "(evicted)",
            "reason=\"evicted\""),
    };
    if ((rc = sl_hguard_new(&ho, &adm->hg)) < 0) {
      snprintf(errstr, errlen, "admin: cannot start: %s", sl_strerror(rc));
      goto fail;
    }
  }
  adm->mhd = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
          sl_tls_mhd_flags(adm->sec.tls) |
          (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
      0, NULL, NULL, handle, adm, MHD_OPTION_EXTERNAL_LOGGER, sl_log_mhd_cb,
      (void *)"admin", MHD_OPTION_SOCK_ADDR, ai->ai_addr,
      MHD_OPTION_CONNECTION_LIMIT, ADMIN_HARD_LIMIT,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_NOTIFY_CONNECTION,
      sl_hguard_notify, adm->hg, MHD_OPTION_URI_LOG_CALLBACK, sl_hguard_uri,
      adm->hg, MHD_OPTION_NOTIFY_COMPLETED, on_completed, adm, MHD_OPTION_ARRAY,
      tls_opts, MHD_OPTION_END);
  if (!adm->mhd) {
    rc = errno ? -errno : -EADDRINUSE;
    snprintf(errstr, errlen, "admin: cannot listen on %s", address);
    goto fail;
  }
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(adm->mhd, MHD_DAEMON_INFO_BIND_PORT);
  adm->port = info ? info->port : port;
  freeaddrinfo(ai);
  *out = adm;
  return 0;
fail:
  if (adm) {
    sl_hguard_free(adm->hg);
    pthread_mutex_destroy(&adm->lock);
    free(adm);
  }
  freeaddrinfo(ai);
  return rc;
}

uint16_t sl_admin_port(const sl_admin_t *adm) {
  return adm->port;
}

static void set_flag(sl_admin_t *adm, int *flag, char *buf, size_t cap,
                     int value, const char *reason) {
  pthread_mutex_lock(&adm->lock);
  *flag = value;
  snprintf(buf, cap, "%s", reason ? reason : "");
  pthread_mutex_unlock(&adm->lock);
}

void sl_admin_set_ready(sl_admin_t *adm, int ready, const char *reason) {
  set_flag(adm, &adm->ready, adm->ready_reason, sizeof(adm->ready_reason),
           ready, reason);
}

int sl_admin_get_ready(sl_admin_t *adm, char *reason, size_t len) {
  int flag;
  pthread_mutex_lock(&adm->lock);
  flag = adm->ready;
  snprintf(reason, len, "%s", adm->ready_reason);
  if (flag && adm->store_error_ns &&
      sl_now_mono_ns() - adm->store_error_ns < STORE_ERROR_HOLD_NS) {
    flag = 0;
    snprintf(reason, len, "%s", adm->store_reason);
  }
  pthread_mutex_unlock(&adm->lock);
  return flag;
}

void sl_admin_set_healthy(sl_admin_t *adm, int healthy, const char *reason) {
  set_flag(adm, &adm->healthy, adm->health_reason, sizeof(adm->health_reason),
           healthy, reason);
}

void sl_admin_set_store_error(sl_admin_t *adm, const char *reason) {
  pthread_mutex_lock(&adm->lock);
  adm->store_error_ns = reason ? sl_now_mono_ns() : 0;
  snprintf(adm->store_reason, sizeof(adm->store_reason), "%s",
           reason ? reason : "");
  pthread_mutex_unlock(&adm->lock);
}

void sl_admin_stop(sl_admin_t *adm) {
  if (!adm)
    return;
  MHD_stop_daemon(adm->mhd);
  sl_hguard_free(adm->hg);
  pthread_mutex_destroy(&adm->lock);
  free(adm);
}
