/*
 * connectors/opcua/opcua.c: one thread per server: connect, resolve the
 * items, subscribe, keep Publish requests outstanding, read periodic items,
 * and recover (opcua.h says what is guaranteed).
 *
 * Threading as the Modbus poller: the OPC UA connection is blocking (with
 * deadlines), one thread per server isolates servers from each other, and
 * a site has a handful of servers, each with up to tens of thousands of
 * items on one subscription. Starting and stopping: opcua_run.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connectors/common/conn.h"
#include "connectors/opcua/opcua_int.h"

#define MAX_GAP 1000u /* missing notifications worth a Republish each */

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static int stopping(sl_opcua_t *ua) {
  pthread_mutex_lock(&ua->mu);
  int s = ua->stop;
  pthread_mutex_unlock(&ua->mu);
  return s;
}

static void wait_until(sl_opcua_t *ua, uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
  pthread_mutex_lock(&ua->mu);
  while (!ua->stop && sl_now_mono_ns() < t)
    if (pthread_cond_timedwait(&ua->cv, &ua->mu, &ts) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&ua->mu);
}

static const char *sname(uint32_t code, char *buf, size_t len) {
  return sl_ua_status_name(code, buf, len);
}

/* ---- per-server state --------------------------------------------------- */

/* Gaps to fill with Republish, found while handling a Publish response. */
typedef struct gaps {
  uint32_t seq[64];
  size_t n;
} gaps_t;

typedef struct run {
  ua_srv_t *s;
  gaps_t gaps;
  bool broken;      /* the session or channel is gone: reconnect */
  bool resubscribe; /* the subscription is gone: create a new one */
  bool refresh;     /* read the monitored items once (after a reactivation) */
  char why[200];
} run_t;

static void set_items_ok(ua_srv_t *s, uint32_t *cur, uint32_t now_ok) {
  if (now_ok > *cur)
    atomic_fetch_add(&s->ua->items_ok, now_ok - *cur);
  else
    atomic_fetch_sub(&s->ua->items_ok, *cur - now_ok);
  *cur = now_ok;
}

static void set_up(ua_srv_t *s) {
  char why[300];
  if (s->state == SRV_UP)
    return;
  s->state = SRV_UP;
  s->backoff_ms = 0;
  atomic_fetch_add(&s->ua->servers_up, 1);
  snprintf(why, sizeof(why), "session open at %s", s->cfg->url);
  SL_CLOG(SL_CONN_LOG_INFO, "server %s: up (%s)", s->cfg->name, why);
  ua_emit_status(s, "up", why);
}

static void set_down(ua_srv_t *s, const char *reason) {
  const sl_opcua_server_t *c = s->cfg;
  uint32_t b;
  /* The session stays at the server: the next connection reactivates it
   * (or transfers its subscription). */
  if (s->conn) { /* (none: a connect that failed; prev stays) */
    sl_ua_conn_drop(s->conn);
    sl_ua_conn_abort(s->prev);
    s->prev = s->conn;
  }
  s->conn = NULL;
  s->outstanding = 0;
  atomic_fetch_add(&s->ua->failures, 1);
  if (s->state != SRV_DOWN) {
    char why[260];
    if (s->state == SRV_UP)
      atomic_fetch_sub(&s->ua->servers_up, 1);
    s->state = SRV_DOWN;
    SL_CLOG(SL_CONN_LOG_WARN, "server %s: down (%s: %s)", c->name, c->url,
            reason);
    ua_emit_status(s, "down", reason);
    snprintf(why, sizeof(why), "server down: %s", reason);
    for (uint32_t i = 0; i < c->nitems; i++)
      ua_emit_bad(s, i, 0x80310000u /* BadNoCommunication */, why);
  } else {
    SL_CLOG(SL_CONN_LOG_DEBUG, "server %s: reconnect failed: %s", c->name,
            reason);
  }
  s->backoff_ms = s->backoff_ms ? (uint32_t)SL_MIN((uint64_t)s->backoff_ms * 2,
                                                   c->backoff_max_ms)
                                : (uint32_t)c->backoff_min_ms;
  /* Jitter in [b/2, b]: clients that lost a server together come back
   * apart. */
  b = s->backoff_ms / 2 +
      (uint32_t)(xorshift(&s->rng) % (s->backoff_ms / 2 + 1));
  s->retry_mono = sl_now_mono_ns() + (uint64_t)b * 1000000u;
}

/* An item the server refused: one bad reading and one log line. */
static void item_error(ua_srv_t *s, uint32_t i, uint32_t status,
                       const char *what) {
  char nb[64], why[200];
  snprintf(why, sizeof(why), "%s: %s", what, sname(status, nb, sizeof(nb)));
  if (s->items[i].quality != SLUICE__V1__QUALITY__QUALITY_BAD ||
      s->items[i].status != status) {
    atomic_fetch_add(&s->ua->item_errors, 1);
    SL_CLOG(SL_CONN_LOG_WARN, "server %s: item %s: %s", s->cfg->name,
            s->cfg->items[i].name, why);
  }
  ua_emit_bad(s, i, status, why);
}

/* ---- notifications ------------------------------------------------------ */

static void handle_notif(run_t *r, uint32_t sub_id, const sl_ua_notif_t *nf,
                         bool republished) {
  ua_srv_t *s = r->s;
  char nb[64];
  if (nf->has_status_change) {
    SL_CLOG(SL_CONN_LOG_WARN, "server %s: subscription %u status %s",
            s->cfg->name, sub_id, sname(nf->status_change, nb, sizeof(nb)));
    if (sl_ua_severity(nf->status_change) >= 2)
      r->resubscribe = true;
  }
  if (!nf->nitems && !nf->has_status_change && !nf->nother)
    return; /* a keep-alive: its number is the next one, not a message */
  if (s->last_seq && nf->seq <= s->last_seq && !republished) {
    ua_ack_wait_add(s, sub_id, nf->seq); /* seen: the server may drop it */
    return;
  }
  if (s->last_seq && nf->seq > s->last_seq + 1 && !republished) {
    uint32_t miss = nf->seq - s->last_seq - 1;
    if (miss > MAX_GAP || r->gaps.n + miss > 64) {
      atomic_fetch_add(&s->ua->lost, miss);
      SL_CLOG(SL_CONN_LOG_WARN,
              "server %s: %u notifications missing before %u, not recovered",
              s->cfg->name, miss, nf->seq);
    } else {
      for (uint32_t q = s->last_seq + 1; q < nf->seq; q++)
        r->gaps.seq[r->gaps.n++] = q;
    }
  }
  atomic_fetch_add(&s->ua->notifications, 1);
  atomic_fetch_add(&s->ua->changes, nf->nitems);
  for (uint32_t k = 0; k < nf->nitems; k++) {
    uint32_t h = nf->items[k].handle - 1; /* handles are index + 1 */
    pending_t p;
    if (h >= s->cfg->nitems) /* 0 - 1 wraps: not ours either */
      continue;              /* not ours */
    /* InfoType DataValue with the Overflow bit: the server's queue for
     * this item was full and dropped older values (Part 4 7.39.1). */
    if ((nf->items[k].dv.status & 0x0480u) == 0x0480u)
      atomic_fetch_add(&s->ua->overflows, 1);
    ua_pending_from_dv(s, h, &nf->items[k].dv, &p);
    SL_CLOG(
        SL_CONN_LOG_DEBUG, "server %s: %s: status %x, %s %g%s", s->cfg->name,
        s->cfg->items[h].name, p.status, sl_ua_type_name(p.ua_type),
        p.value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE ? p.v.d
        : p.value_case == SLUICE__V1__READING__VALUE_INT_VALUE  ? (double)p.v.i
                                                                : 0.0,
        republished ? " (republished)" : "");
    ua_emit(s, &p);
  }
  ua_ack_wait_add(s, sub_id, nf->seq);
  if (nf->seq > s->last_seq)
    s->last_seq = nf->seq;
}

static void handle_publish(run_t *r, const sl_ua_msg_t *m) {
  ua_srv_t *s = r->s;
  uint32_t res = m->hdr.result;
  char nb[64];
  if (s->outstanding)
    s->outstanding--;
  s->last_rx_mono = sl_now_mono_ns();
  SL_CLOG(SL_CONN_LOG_DEBUG,
          "server %s: Publish response %s: subscription %u seq %u, %u "
          "values, %u acks (first %x)",
          s->cfg->name, sname(res, nb, sizeof(nb)), m->u.pub.sub_id,
          m->u.pub.notif.seq, m->u.pub.notif.nitems, m->u.pub.nacks,
          m->u.pub.nacks ? m->u.pub.acks[0] : 0);
  if (m->type != UA_ID_PUBLISH_RESP || res) {
    switch (res & 0xffff0000u) {
    case UA_BAD_TOO_MANY_PUBLISH_REQUESTS:
      s->max_outstanding = SL_MAX(1u, s->outstanding);
      break;
    case UA_BAD_TIMEOUT:
      break;
    case UA_BAD_NO_SUBSCRIPTION:
      if (s->sub_id)
        r->resubscribe = true;
      break;
    default:
      r->broken = true;
      snprintf(r->why, sizeof(r->why), "Publish: %s",
               sname(res ? res : UA_BAD_UNEXPECTED, nb, sizeof(nb)));
    }
    return;
  }
  if (m->u.pub.sub_id != s->sub_id)
    return; /* a subscription we no longer use */
  handle_notif(r, m->u.pub.sub_id, &m->u.pub.notif, false);
}

/* Responses that arrive while a call waits for its own. */
static void on_other(sl_ua_conn_t *c, uint32_t request_id, const sl_ua_msg_t *m,
                     void *opaque) {
  (void)c;
  (void)request_id;
  if (m->type == UA_ID_PUBLISH_RESP || m->type == UA_ID_SERVICE_FAULT)
    handle_publish(opaque, m);
}

/* A call on the server's connection; a transport error marks it broken. */
static int call(run_t *r, sl_ua_wr_t *w, sl_ua_arena_t *a, sl_ua_msg_t *m) {
  int rc = w->err ? w->err : sl_ua_conn_call(r->s->conn, w, a, m, on_other, r);
  sl_ua_wr_free(w);
  if (rc) {
    r->broken = true;
    snprintf(r->why, sizeof(r->why), "%s", sl_ua_conn_error(r->s->conn));
  }
  return rc;
}

/* ---- setup -------------------------------------------------------------- */

static int resolve(run_t *r) {
  ua_srv_t *s = r->s;
  const sl_opcua_server_t *c = s->cfg;
  uint32_t batch = (uint32_t)c->items_per_request;
  uint32_t *idx = malloc(batch * sizeof(*idx));
  sl_ua_browse_path_t *paths = malloc(batch * sizeof(*paths));
  sl_ua_qname_t *els = malloc((size_t)batch * 64 * sizeof(*els));
  char *bufs = malloc((size_t)batch * 1024);
  int rc = 0;
  if (!idx || !paths || !els || !bufs) {
    rc = -ENOMEM;
    goto out;
  }
  for (uint32_t i = 0; i < c->nitems; i++) {
    ua_item_state_t *st = &s->items[i];
    if (!c->items[i].node[0] || st->resolved)
      continue;
    if (!st->nodebuf && !(st->nodebuf = malloc(1024))) {
      rc = -ENOMEM;
      goto out;
    }
    st->resolved =
        !sl_ua_nodeid_parse(c->items[i].node, &st->node, st->nodebuf, 1024);
  }
  /* Browse paths: resolved at every connect (a restarted server may have
   * new NodeIds), items_per_request at a time. */
  for (uint32_t i = 0; i < c->nitems && !rc;) {
    uint32_t n = 0;
    for (; i < c->nitems && n < batch; i++) {
      if (!c->items[i].path[0])
        continue;
      int ne = sl_opcua_path_parse(c->items[i].path, els + (size_t)n * 64, 64,
                                   bufs + (size_t)n * 1024, 1024);
      if (ne <= 0)
        continue;
      paths[n].start =
          (sl_ua_nodeid_t){.num = UA_NS0_OBJECTS_FOLDER, .str = {NULL, -1}};
      paths[n].elems = els + (size_t)n * 64;
      paths[n].n = (uint32_t)ne;
      idx[n++] = i;
    }
    if (!n)
      break;
    sl_ua_arena_t a = {0};
    sl_ua_msg_t m;
    sl_ua_wr_t w;
    sl_ua_req_t rq = sl_ua_conn_req(s->conn);
    sl_ua_wr_init(&w);
    sl_ua_enc_translate(&w, &rq, paths, n);
    if (!(rc = call(r, &w, &a, &m))) {
      for (uint32_t k = 0; k < n; k++) {
        uint32_t st = m.hdr.result          ? m.hdr.result
                      : k < m.u.translate.n ? m.u.translate.res[k].status
                                            : UA_BAD_UNEXPECTED;
        ua_item_state_t *is = &s->items[idx[k]];
        is->resolved = false;
        if (!st && m.u.translate.res[k].ntargets) {
          sl_ua_nodeid_t id = m.u.translate.res[k].targets[0].id;
          if (!is->nodebuf && !(is->nodebuf = malloc(1024))) {
            rc = -ENOMEM;
            break;
          }
          if (id.str.len > 1024) {
            st = UA_BAD_UNEXPECTED;
          } else {
            if (id.str.len > 0)
              memcpy(is->nodebuf, id.str.p, (size_t)id.str.len);
            id.str.p = is->nodebuf;
            is->node = id;
            is->resolved = true;
          }
        } else if (!st) {
          st = UA_BAD_NO_MATCH;
        }
        if (!is->resolved)
          item_error(s, idx[k], st, "browse path");
      }
    }
    sl_ua_arena_free(&a);
  }
out:
  free(idx);
  free(paths);
  free(els);
  free(bufs);
  return rc;
}

static int transfer(run_t *r) {
  ua_srv_t *s = r->s;
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  sl_ua_wr_t w;
  sl_ua_req_t rq = sl_ua_conn_req(s->conn);
  char nb[64];
  int rc;
  sl_ua_wr_init(&w);
  /* sendInitialValues: items the outage marked bad get their value back. */
  sl_ua_enc_transfer(&w, &rq, &s->sub_id, 1, false);
  if ((rc = call(r, &w, &a, &m)))
    goto out;
  uint32_t st = m.hdr.result     ? m.hdr.result
                : m.u.transfer.n ? m.u.transfer.res[0].status
                                 : UA_BAD_UNEXPECTED;
  if (st) {
    SL_CLOG(SL_CONN_LOG_INFO,
            "server %s: subscription %u not transferred (%s): subscribing "
            "again",
            s->cfg->name, s->sub_id, sname(st, nb, sizeof(nb)));
    s->sub_id = 0;
    goto out;
  }
  /* What the server still holds beyond what we delivered: republished. */
  const sl_ua_transfer_result_t *t = &m.u.transfer.res[0];
  SL_CLOG(SL_CONN_LOG_INFO,
          "server %s: subscription %u transferred, %u notifications held",
          s->cfg->name, s->sub_id, t->navail);
  for (uint32_t k = 0; k < t->navail && r->gaps.n < 64; k++)
    if (t->avail[k] > s->last_seq)
      r->gaps.seq[r->gaps.n++] = t->avail[k];
out:
  sl_ua_arena_free(&a);
  return rc;
}

static int create_sub(run_t *r) {
  ua_srv_t *s = r->s;
  const sl_opcua_server_t *c = s->cfg;
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  sl_ua_wr_t w;
  sl_ua_req_t rq = sl_ua_conn_req(s->conn);
  char nb[64];
  int rc;
  sl_ua_wr_init(&w);
  sl_ua_enc_create_sub(
      &w, &rq, (double)c->publishing_interval_ms, (uint32_t)c->lifetime_count,
      (uint32_t)c->keepalive_count, (uint32_t)c->max_notifications);
  if ((rc = call(r, &w, &a, &m)))
    goto out;
  if (m.hdr.result) {
    r->broken = true;
    snprintf(r->why, sizeof(r->why), "CreateSubscription: %s",
             sname(m.hdr.result, nb, sizeof(nb)));
    rc = SL_EPROTO;
    goto out;
  }
  s->sub_id = m.u.sub.id;
  s->last_seq = 0;
  s->revised_interval_ms = m.u.sub.interval_ms;
  s->revised_keepalive = m.u.sub.keepalive;
  ua_acks_clear(s);
  for (uint32_t i = 0; i < c->nitems; i++)
    s->items[i].monitored = false;
  SL_CLOG(SL_CONN_LOG_INFO,
          "server %s: subscription %u (publishing interval %.0f ms, "
          "keep-alive %u)",
          c->name, s->sub_id, s->revised_interval_ms, s->revised_keepalive);
out:
  sl_ua_arena_free(&a);
  return rc;
}

static int create_items(run_t *r) {
  ua_srv_t *s = r->s;
  const sl_opcua_server_t *c = s->cfg;
  uint32_t batch = (uint32_t)c->items_per_request;
  sl_ua_mon_req_t *reqs = malloc(batch * sizeof(*reqs));
  uint32_t *idx = malloc(batch * sizeof(*idx));
  int rc = 0;
  if (!reqs || !idx) {
    rc = -ENOMEM;
    goto out;
  }
  for (uint32_t i = 0; i < c->nitems && !rc;) {
    uint32_t n = 0;
    for (; i < c->nitems && n < batch; i++) {
      const sl_opcua_item_t *it = &c->items[i];
      if (it->mode != SL_OPCUA_CHANGE || !s->items[i].resolved ||
          s->items[i].monitored)
        continue;
      reqs[n] = (sl_ua_mon_req_t){.node = s->items[i].node,
                                  /* Some servers mishandle 0. */
                                  .handle = i + 1,
                                  .sampling_ms = (double)it->interval_ms,
                                  .queue_size = (uint32_t)it->queue_size,
                                  .deadband_type = (uint32_t)it->deadband_type,
                                  .deadband = it->deadband};
      idx[n++] = i;
    }
    if (!n)
      break;
    sl_ua_arena_t a = {0};
    sl_ua_msg_t m;
    sl_ua_wr_t w;
    sl_ua_req_t rq = sl_ua_conn_req(s->conn);
    sl_ua_wr_init(&w);
    sl_ua_enc_create_mon(&w, &rq, s->sub_id, reqs, n);
    if (!(rc = call(r, &w, &a, &m)))
      for (uint32_t k = 0; k < n; k++) {
        uint32_t st = m.hdr.result    ? m.hdr.result
                      : k < m.u.mon.n ? m.u.mon.res[k].status
                                      : UA_BAD_UNEXPECTED;
        if (st)
          item_error(s, idx[k], st, "CreateMonitoredItems");
        else
          s->items[idx[k]].monitored = true;
      }
    sl_ua_arena_free(&a);
  }
out:
  free(reqs);
  free(idx);
  return rc;
}

static void republish_gaps(run_t *r) {
  ua_srv_t *s = r->s;
  char nb[64];
  while (r->gaps.n && !r->broken) {
    uint32_t seq = r->gaps.seq[0];
    sl_ua_arena_t a = {0};
    sl_ua_msg_t m;
    sl_ua_wr_t w;
    sl_ua_req_t rq = sl_ua_conn_req(s->conn);
    memmove(r->gaps.seq, r->gaps.seq + 1, --r->gaps.n * sizeof(uint32_t));
    sl_ua_wr_init(&w);
    sl_ua_enc_republish(&w, &rq, s->sub_id, seq);
    if (!call(r, &w, &a, &m)) {
      if (!m.hdr.result && m.type == UA_ID_REPUBLISH_RESP) {
        atomic_fetch_add(&s->ua->republished, 1);
        handle_notif(r, s->sub_id, &m.u.pub.notif, true);
      } else {
        atomic_fetch_add(&s->ua->lost, 1);
        SL_CLOG(SL_CONN_LOG_WARN,
                "server %s: notification %u not recovered: %s", s->cfg->name,
                seq, sname(m.hdr.result, nb, sizeof(nb)));
      }
    }
    sl_ua_arena_free(&a);
  }
}

static void srv_connect(run_t *r) {
  ua_srv_t *s = r->s;
  const sl_opcua_server_t *c = s->cfg;
  sl_ua_conn_opts_t o = {
      .url = c->url,
      .timeout_ms = (uint32_t)c->timeout_ms,
      .channel_lifetime_ms = (uint32_t)c->channel_lifetime_ms,
      .session_timeout_ms = (double)c->session_timeout_ms,
      .session_name = c->name,
      .user = c->user[0] ? c->user : NULL,
      .password = c->password,
      .allow_plaintext_password = c->allow_plaintext_password,
  };
  char err[320];
  bool any_change = false;
  err[0] = '\0';
  int rc = sl_ua_conn_reopen(&o, s->prev, &s->conn, err, sizeof(err));
  if (!rc) { /* the old session is reactivated or given up */
    sl_ua_conn_abort(s->prev);
    s->prev = NULL;
  }
  if (!rc && err[0])
    SL_CLOG(SL_CONN_LOG_INFO, "server %s: %s", c->name, err);
  if (rc) {
    set_down(s, err);
    return;
  }
  r->broken = r->resubscribe = false;
  s->outstanding = 0;
  s->max_outstanding = (uint32_t)c->publish_requests;
  for (uint32_t i = 0; i < c->nitems; i++)
    any_change |= c->items[i].mode == SL_OPCUA_CHANGE;
  if (resolve(r) || r->broken)
    goto fail;
  r->refresh = false;
  if (any_change && s->sub_id && sl_ua_conn_resumed(s->conn)) {
    /* The same session: its subscription went on at the server. What it
     * sent into the cut shows as a gap (Republish); items the outage
     * marked bad are read once to restore their value. */
    SL_CLOG(SL_CONN_LOG_INFO,
            "server %s: session reactivated, subscription %u kept", c->name,
            s->sub_id);
    r->refresh = true;
  } else if (any_change) {
    if (s->sub_id && (transfer(r) || r->broken))
      goto fail;
    if (!s->sub_id && (create_sub(r) || r->broken))
      goto fail;
    if (create_items(r) || r->broken)
      goto fail;
  }
  uint64_t now = sl_now_mono_ns();
  for (uint32_t i = 0; i < c->nitems; i++)
    if (s->due[i] != UINT64_MAX)
      s->due[i] = now;
  s->last_rx_mono = now;
  SL_CLOG(SL_CONN_LOG_DEBUG,
          "server %s: secure channel token lifetime %u ms, session timeout "
          "%.0f ms",
          c->name, sl_ua_conn_lifetime(s->conn),
          sl_ua_conn_session_timeout(s->conn));
  set_up(s);
  return;
fail:
  set_down(s, r->why[0] ? r->why : "setup failed");
}

/* ---- steady state ------------------------------------------------------- */

static void send_publish(run_t *r) {
  ua_srv_t *s = r->s;
  sl_ua_sub_ack_t acks[256];
  uint32_t n = ua_acks_ready(s, acks, 256), id;
  sl_ua_wr_t w;
  sl_ua_req_t rq = sl_ua_conn_req(s->conn);
  rq.timeout_ms = 0; /* a Publish waits at the server as long as it must */
  if (n)
    SL_CLOG(SL_CONN_LOG_DEBUG,
            "server %s: acknowledging %u notifications "
            "(first %u:%u)",
            s->cfg->name, n, acks[0].sub_id, acks[0].seq);
  sl_ua_wr_init(&w);
  sl_ua_enc_publish(&w, &rq, acks, n);
  int rc = w.err ? w.err : sl_ua_conn_send(s->conn, &w, &id);
  sl_ua_wr_free(&w);
  if (rc) {
    r->broken = true;
    snprintf(r->why, sizeof(r->why), "%s", sl_ua_conn_error(s->conn));
    return;
  }
  s->outstanding++;
}

/* Reads every periodic item that is due. */
static void read_due(run_t *r) {
  ua_srv_t *s = r->s;
  const sl_opcua_server_t *c = s->cfg;
  uint32_t batch = (uint32_t)c->items_per_request, n = 0;
  uint64_t now = sl_now_mono_ns();
  sl_ua_nodeid_t *nodes = NULL;
  uint32_t *idx = NULL;
  for (uint32_t i = 0; i <= c->nitems && !r->broken; i++) {
    if (i < c->nitems) {
      bool once = r->refresh && s->items[i].monitored;
      if (!once && s->due[i] > now)
        continue;
      if (!once) {
        s->due[i] += c->items[i].interval_ms * 1000000u;
        if (s->due[i] <= now)
          s->due[i] = now + c->items[i].interval_ms * 1000000u;
      }
      if (!s->items[i].resolved)
        continue;
      if (!nodes && (!(nodes = malloc(batch * sizeof(*nodes))) ||
                     !(idx = malloc(batch * sizeof(*idx)))))
        break;
      nodes[n] = s->items[i].node;
      idx[n++] = i;
      if (n < batch)
        continue;
    }
    if (!n)
      continue;
    sl_ua_arena_t a = {0};
    sl_ua_msg_t m;
    sl_ua_wr_t w;
    sl_ua_req_t rq = sl_ua_conn_req(s->conn);
    sl_ua_wr_init(&w);
    sl_ua_enc_read(&w, &rq, nodes, n, UA_ATTR_VALUE);
    if (!call(r, &w, &a, &m)) {
      atomic_fetch_add(&s->ua->reads, 1);
      for (uint32_t k = 0; k < n; k++) {
        uint32_t st = m.hdr.result     ? m.hdr.result
                      : k < m.u.read.n ? m.u.read.dv[k].status
                                       : UA_BAD_UNEXPECTED;
        if (sl_ua_severity(st) >= 2) {
          item_error(s, idx[k], st, "Read");
          continue;
        }
        pending_t p;
        atomic_fetch_add(&s->ua->changes, 1);
        ua_pending_from_dv(s, idx[k], &m.u.read.dv[k], &p);
        ua_emit(s, &p);
      }
    }
    sl_ua_arena_free(&a);
    n = 0;
  }
  r->refresh = false;
  free(nodes);
  free(idx);
}

void *ua_srv_main(void *arg) {
  ua_srv_t *s = arg;
  sl_opcua_t *ua = s->ua;
  const sl_opcua_server_t *c = s->cfg;
  run_t r = {.s = s};
  uint32_t ok_items = 0, renewals = 0;
  while (!stopping(ua)) {
    uint64_t now = sl_now_mono_ns(), next;
    int empty = ua_drain(s);
    if (!s->conn) {
      if (now < s->retry_mono) {
        wait_until(ua, empty ? s->retry_mono
                             : SL_MIN(s->retry_mono, now + 50000000u));
        continue;
      }
      srv_connect(&r);
      renewals = 0;
      uint32_t ok = 0;
      for (uint32_t i = 0; s->conn && i < c->nitems; i++)
        ok += s->items[i].resolved &&
              (c->items[i].mode == SL_OPCUA_PERIODIC || s->items[i].monitored);
      set_items_ok(s, &ok_items, ok);
      continue;
    }
    if (r.resubscribe && !r.broken) {
      r.resubscribe = false;
      s->sub_id = 0;
      if (!create_sub(&r))
        create_items(&r);
    }
    republish_gaps(&r);
    if (sl_ua_conn_renewals(s->conn) != renewals) {
      renewals = sl_ua_conn_renewals(s->conn);
      SL_CLOG(SL_CONN_LOG_DEBUG, "server %s: secure channel renewed (%u)",
              c->name, renewals);
    }
    /* No Publish while readings wait for room: the server keeps them. */
    while (!r.broken && s->sub_id && empty &&
           s->outstanding < s->max_outstanding)
      send_publish(&r);
    read_due(&r);
    if (s->sub_id && !r.broken) {
      /* A server that sends nothing (not even keep-alives) is gone. */
      double ka = s->revised_interval_ms * (s->revised_keepalive + 1);
      uint64_t limit = (uint64_t)(ka * 2e6) + c->timeout_ms * 1000000u;
      if (s->outstanding && sl_now_mono_ns() - s->last_rx_mono > limit) {
        r.broken = true;
        snprintf(r.why, sizeof(r.why), "no Publish response in %" PRIu64 " ms",
                 limit / 1000000u);
      }
    }
    if (r.broken) {
      r.broken = false;
      set_items_ok(s, &ok_items, 0);
      set_down(s, r.why);
      continue;
    }
    next = sl_now_mono_ns() + 200000000u;
    for (uint32_t i = 0; i < c->nitems; i++)
      next = SL_MIN(next, s->due[i]);
    if (!empty)
      next = SL_MIN(next, sl_now_mono_ns() + 20000000u);
    now = sl_now_mono_ns();
    if (next > now) {
      sl_ua_arena_t a = {0};
      sl_ua_msg_t m;
      uint32_t id;
      int rc =
          sl_ua_conn_recv(s->conn, (int)((next - now) / 1000000u), &a, &m, &id);
      if (rc == 0)
        on_other(s->conn, id, &m, &r);
      else if (rc != -EAGAIN) {
        r.broken = true;
        snprintf(r.why, sizeof(r.why), "%s", sl_ua_conn_error(s->conn));
      }
      sl_ua_arena_free(&a);
    }
  }
  set_items_ok(s, &ok_items, 0);
  return NULL;
}
