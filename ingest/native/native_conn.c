/*
 * Native listener, connection side: accepting (with limits.max_connections
 * counted over all listeners), closing, the TCP and Unix listeners, and the
 * 1 s sweep that enforces the idle timeout, the Hello and frame deadlines
 * (limits.request_timeout) and gives idle input buffers back to the
 * node's in-flight budget. Loop thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "ingest/native/listen_unix.h"
#include "telemetry/log.h"
#include "ingest/native/native_int.h"

/* ---- connection lifetime ---------------------------------------------- */

void native__conn_free(conn_t *c) {
  native__charge_in(c, 0);
  sl_tls_conn_free(c->tls);
  sl_frame_buf_close(&c->tout);
  sl_frame_buf_close(&c->in);
  sl_frame_buf_close(&c->out);
  free(c);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->nt->handles_open--;
  c->handle_closed = 1;
  /* Completions still pending point at c: the last one frees it. */
  if (c->inflight == 0)
    native__conn_free(c);
}

void native__close(conn_t *c) {
  sl_native_t *nt = c->nt;
  if (c->closed)
    return;
  c->closed = 1;
  if (c->prev)
    c->prev->next = c->next;
  else
    nt->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  nt->nconns--;
  sl_metric_set(nt->ic->connections, nt->nconns);
  if (c->counted)
    sl_guard_conn_give(&nt->ic->guard);
  c->counted = 0;
  sl_debug(SL_LOG_CTX_INGEST, c->peer, "closed (%u in flight)", c->inflight);
  uv_close(&c->u.h, on_conn_closed);
}

static void peer_name(conn_t *c, int is_unix) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char host[64] = "?";
  if (is_unix) {
    snprintf(c->peer, sizeof(c->peer), "unix:%p", (void *)c);
    return;
  }
  if (uv_tcp_getpeername(&c->u.tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(s6, host, sizeof(host));
      snprintf(c->peer, sizeof(c->peer), "tcp:[%s]:%u", host,
               ntohs(s6->sin6_port));
    } else {
      struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
      uv_ip4_name(s4, host, sizeof(host));
      snprintf(c->peer, sizeof(c->peer), "tcp:%s:%u", host,
               ntohs(s4->sin_port));
    }
  } else {
    snprintf(c->peer, sizeof(c->peer), "tcp:?");
  }
}

static void on_connection(uv_stream_t *server, int status) {
  listener_t *l = server->data;
  sl_native_t *nt = l->nt;
  conn_t *c;

  if (status < 0 || nt->stopping)
    return;
  if (!(c = calloc(1, sizeof(*c))))
    return;
  c->nt = nt;
  if (l->is_unix)
    uv_pipe_init(nt->ic->loop, &c->u.pipe, 0);
  else
    uv_tcp_init(nt->ic->loop, &c->u.tcp);
  c->u.h.data = c;
  nt->handles_open++;
  if (uv_accept(server, &c->u.s) < 0) {
    c->closed = 1; /* never linked */
    uv_close(&c->u.h, on_conn_closed);
    return;
  }
  if (!l->is_unix)
    uv_tcp_nodelay(&c->u.tcp, 1);
  peer_name(c, l->is_unix);
  c->last_active_ns = c->accepted_ns = sl_now_mono_ns();
  c->next = nt->conns;
  if (nt->conns)
    nt->conns->prev = c;
  nt->conns = c;
  nt->nconns++;
  sl_metric_set(nt->ic->connections, nt->nconns);
  if (!l->is_unix && nt->ic->creds->native &&
      sl_tls_conn_new(nt->ic->creds->native, &c->tls) < 0) {
    native__close(c);
    return;
  }
  /* limits.max_connections counts every listener (HTTP too). */
  if (sl_guard_conn_take(&nt->ic->guard, SL_GUARD_NATIVE) < 0) {
    native__send_error(c, 0, SL_EBACKPRESSURE,
                       "too many connections (limits.max_connections, all "
                       "listeners): retry later",
                       1);
    return;
  }
  c->counted = 1;
  native__update_reading(c);
}

/* ---- listeners --------------------------------------------------------- */

static int listen_tcp(sl_native_t *nt, const char *address, char *errstr,
                      size_t errlen) {
  char host[256];
  uint16_t port;
  struct sockaddr_storage ss;
  int rc;

  if ((rc = sl_addr_split(address, host, sizeof(host), &port, errstr, errlen)) <
      0)
    return rc;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
    snprintf(errstr, errlen, "listeners.native.tcp: '%s' is not an IP address",
             host);
    return -EINVAL;
  }
  uv_tcp_init(nt->ic->loop, &nt->tcp.u.tcp);
  nt->tcp.u.h.data = &nt->tcp;
  nt->tcp.nt = nt;
  nt->have_tcp = 1;
  nt->handles_open++;
  if ((rc = uv_tcp_bind(&nt->tcp.u.tcp, (struct sockaddr *)&ss, 0)) < 0 ||
      (rc = uv_listen(&nt->tcp.u.s, 511, on_connection)) < 0) {
    snprintf(errstr, errlen, "listeners.native.tcp: cannot listen on %s: %s",
             address, uv_strerror(rc));
    return rc;
  }
  return 0;
}

static int listen_unix(sl_native_t *nt, const char *path, const char *mode,
                       char *errstr, size_t errlen) {
  int rc;
  uv_pipe_init(nt->ic->loop, &nt->unix_.u.pipe, 0);
  nt->unix_.u.h.data = &nt->unix_;
  nt->unix_.nt = nt;
  nt->unix_.is_unix = 1;
  nt->have_unix = 1;
  nt->handles_open++;
  if ((rc = sl_unix_bind(&nt->unix_.u.pipe, path, mode, errstr, errlen)) < 0)
    return rc;
  if ((rc = uv_listen(&nt->unix_.u.s, 511, on_connection)) < 0) {
    snprintf(errstr, errlen, "listeners.native.unix: cannot listen on %s: %s",
             path, uv_strerror(rc));
    return rc;
  }
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  l->nt->handles_open--;
}

int sl_native_start(sl_ingest_t *ic, sl_native_t **out, char *errstr,
                    size_t errlen) {
  sl_native_t *nt = calloc(1, sizeof(*nt));
  const sl_config_t *cfg = ic->cfg;
  int rc;

  if (!nt)
    return -ENOMEM;
  nt->ic = ic;
  nt->timeouts = sl_metrics_counter(
      ic->mx, "sluice_ingest_request_timeouts_total",
      "Connections closed because a request or a native Hello/frame was not "
      "complete within limits.request_timeout",
      "path=\"native\"");
  sl_frame_buf_init(&nt->scratch);
  if ((rc = sl_frame_arena_new(ARENA_BYTES + cfg->limits.max_frame_bytes * 4,
                               &nt->arena)) < 0)
    goto fail;
  if (cfg->listeners.native_tcp && *cfg->listeners.native_tcp &&
      (rc = listen_tcp(nt, cfg->listeners.native_tcp, errstr, errlen)) < 0)
    goto fail;
  if (cfg->listeners.native_unix && *cfg->listeners.native_unix &&
      (rc = listen_unix(nt, cfg->listeners.native_unix,
                        cfg->listeners.native_unix_mode, errstr, errlen)) < 0)
    goto fail;
  *out = nt;
  return 0;
fail:
  /* Handles already initialised must be closed through the loop. */
  ic->native = nt;
  sl_native_stop(nt);
  return rc;
}

int sl_native_port(const sl_native_t *nt) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (!nt->have_tcp ||
      uv_tcp_getsockname(&nt->tcp.u.tcp, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void sl_native_stop(sl_native_t *nt) {
  if (nt->stopping)
    return;
  nt->stopping = 1;
  if (nt->have_tcp)
    uv_close(&nt->tcp.u.h, on_listener_closed);
  if (nt->have_unix)
    uv_close(&nt->unix_.u.h, on_listener_closed);
  /* Connections stop reading now; each closes once its in-flight batches
   * are acknowledged and its output is flushed (see pending_done). */
  for (conn_t *c = nt->conns, *next; c; c = next) {
    next = c->next;
    c->closing = 1;
    if (c->reading) {
      uv_read_stop(&c->u.s);
      c->reading = 0;
    }
    if (c->inflight == 0 && !c->writing && c->out.len == 0)
      native__finish(c);
  }
}

void sl_native_resume(sl_native_t *nt) {
  for (conn_t *c = nt->conns, *next; c; c = next) {
    next = c->next;
    if (c->paused & PAUSE_STORE)
      native__process(c);
    else if (c->closing && c->inflight == 0 && !c->writing && c->out.len == 0)
      native__finish(c);
  }
}

void sl_native_sweep(sl_native_t *nt, uint64_t now_ns) {
  const sl_config_t *cfg = nt->ic->cfg;
  uint64_t idle_ns = cfg->limits.idle_timeout_ms * 1000000ull;
  uint64_t req_ns = cfg->limits.request_timeout_ms * 1000000ull;
  for (conn_t *c = nt->conns, *next; c; c = next) {
    next = c->next;
    native__trim_in(c);
    if (c->closing)
      continue;
    if (!c->hello_done && req_ns && now_ns - c->accepted_ns > req_ns) {
      sl_metric_add(nt->timeouts, 1);
      native__send_error(c, 0, SL_ECLOSED,
                         "no hello within limits.request_timeout", 1);
      native__process(c);
    } else if (c->reading && c->partial_since_ns && req_ns &&
               now_ns - c->partial_since_ns > req_ns) {
      /* Bytes trickling in do not count as progress: the whole frame must
       * arrive in time (slow loris holding a large buffer). */
      sl_metric_add(nt->timeouts, 1);
      native__send_error(c, 0, SL_ECLOSED,
                         "frame not complete within limits.request_timeout", 1);
      native__process(c);
    } else if (idle_ns && c->inflight == 0 &&
               now_ns - c->last_active_ns > idle_ns) {
      native__send_error(c, 0, SL_ECLOSED, "idle timeout", 1);
    }
  }
}

int sl_native_open_handles(const sl_native_t *nt) {
  return nt->handles_open;
}

void sl_native_free(sl_native_t *nt) {
  if (!nt)
    return;
  sl_frame_arena_free(nt->arena);
  sl_frame_buf_close(&nt->scratch);
  free(nt);
}
