/*
 * Native ingest: length-prefixed protobuf frames over TCP and a Unix socket
 * (docs/PROTOCOL.md). Everything here runs on the loop thread.
 *
 * Per connection: bytes are read into an input buffer and parsed in place;
 * each Publish becomes one store batch (compressed here, on the loop
 * thread) in its own group, and its Ack is written only from the store's
 * completion, i.e. after the transaction holding it is durable. A client
 * may pipeline up to limits.max_inflight_batches_per_conn batches.
 *
 * Backpressure never grows a queue: a connection stops reading (uv_read_stop)
 * while it has too many batches in flight, while its unsent output is large
 * (a slow reader), or while the store's writer queue is full. Paused
 * connections are resumed from the completion path. A connection that
 * breaks the protocol gets one fatal Error frame with the reason and is
 * closed; nobody else notices.
 *
 * With listeners.native.tls a TCP connection carries TLS (security/tls.h):
 * reads land in the session and come out as plaintext in the input buffer,
 * the output buffer is encrypted on flush. Hello authenticates the client
 * (security/auth.h); each Publish is checked against its streams and stamped
 * with its identity.
 *
 * Before its Hello is accepted a connection may send frames of at most
 * PREAUTH_FRAME_BYTES and is read in small chunks, so an unauthenticated
 * peer holds a few KiB, not limits.max_frame_bytes. It must complete its
 * Hello, and later every frame it starts, within limits.request_timeout.
 * Input buffers beyond BASE_IN_BYTES (frames larger than a read chunk) are
 * taken from the node-wide limits.max_inflight_bytes (ingest/guard.h): a
 * frame that would go over gets a fatal Error. Connections count against
 * limits.max_connections together with the HTTP listener's.
 *
 * A client that half-closes (EOF) after its last frame still gets the Acks
 * of what it sent: the connection closes once they are written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/log.h"
#include "ingest/native/native_int.h"
#include "ingest/pipes.h"
#include "wire/wire.h"

/* ---- output ---------------------------------------------------------- */

static void on_write(uv_write_t *req, int status);

static void conn_flush(conn_t *c) {
  sl_frame_buf_t *ob = c->tls ? &c->tout : &c->out;
  wreq_t *w;
  uv_buf_t b;
  if (c->writing || c->closed)
    return;
  if (c->tls) { /* TLS: c->out becomes records in c->tout */
    if (sl_tls_conn_encrypt(c->tls, &c->out, &c->tout) < 0 ||
        (c->closing && !sl_tls_conn_ready(c->tls))) {
      native__close(c); /* nothing can be said before the handshake */
      return;
    }
  }
  if (ob->len == 0)
    return;
  if (!(w = malloc(sizeof(*w)))) {
    native__close(c);
    return;
  }
  /* Hand the whole output buffer to libuv and start a fresh one: no copy. */
  w->data = ob->data;
  b = uv_buf_init((char *)ob->data, (unsigned)ob->len);
  sl_frame_buf_init(ob);
  c->writing = 1;
  if (uv_write(&w->req, &c->u.s, &b, 1, on_write) < 0) {
    c->writing = 0;
    free(w->data);
    free(w);
    native__close(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = req->handle->data;
  free(w->data);
  free(w);
  c->writing = 0;
  if (status < 0) {
    sl_debug(SL_LOG_CTX_INGEST, c->peer, "write failed: %s",
             uv_strerror(status));
    c->closing = 1;
    native__close(c);
    return;
  }
  if (c->closing && c->out.len == 0 && c->inflight == 0) {
    native__finish(c);
    return;
  }
  conn_flush(c);
  native__update_reading(c);
}

void native__finish(conn_t *c) {
  if (c->nt->stopping && c->hello_done && !c->goodbye && !c->closed) {
    c->goodbye = 1;
    /* Not a refusal (not counted): the stop, said after the last ack. */
    if (sl_frame_encode_error(&c->out, 0, SL_ECLOSED, "shutting down", true) ==
        0) {
      conn_flush(c);
      if (c->writing || c->out.len)
        return; /* closes when the write completes */
    }
  }
  native__close(c);
}

/* Every Error frame is a refusal: counted here by reason. */
void native__send_error(conn_t *c, uint64_t batch_id, int code,
                        const char *reason, int fatal) {
  sl_ingest_rejected(c->nt->ic, SL_PATH_NATIVE, code);
  sl_frame_encode_error(&c->out, batch_id, code, reason, fatal != 0);
  if (fatal) {
    sl_warn(SL_LOG_CTX_INGEST, c->peer, "closing: %s: %s", sl_errname(code),
            reason);
    c->closing = 1;
  }
  conn_flush(c);
}

/* ---- reading and backpressure ----------------------------------------- */

/* The input buffer's capacity beyond BASE_IN_BYTES is charged to the
 * node's in-flight budget; brings the charge to match cap. Returns 0 or
 * SL_EBACKPRESSURE (nothing taken). */
int native__charge_in(conn_t *c, size_t cap) {
  sl_guard_t *g = &c->nt->ic->guard;
  size_t want = cap > BASE_IN_BYTES ? cap - BASE_IN_BYTES : 0;
  if (want > c->charged) {
    if (sl_guard_bytes_take(g, SL_GUARD_NATIVE, want - c->charged) < 0)
      return SL_EBACKPRESSURE;
  } else if (want < c->charged) {
    sl_guard_bytes_give(g, c->charged - want);
  }
  c->charged = want;
  return 0;
}

/* Drops an empty input buffer larger than the base, so the bytes of a big
 * frame go back to the budget. Done by the 1 s sweep, not after every
 * frame: a client sending large frames back to back keeps its buffer
 * instead of reallocating it for each one. */
void native__trim_in(conn_t *c) {
  if (c->in.len == 0 && c->in.cap > BASE_IN_BYTES) {
    sl_frame_buf_close(&c->in);
    native__charge_in(c, 0);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;
  size_t chunk = c->hello_done ? READ_CHUNK : PREAUTH_FRAME_BYTES;
  (void)hint;
  if (c->tls) { /* ciphertext goes to the TLS session's buffer */
    char *p;
    size_t n;
    sl_tls_conn_rbuf(c->tls, &p, &n);
    *buf = uv_buf_init(p, (unsigned)n);
    return;
  }
  if (c->in.cap - c->in.len < chunk) {
    /* The capacity sl_frame_buf_reserve() will pick (it doubles). */
    size_t cap = c->in.cap ? c->in.cap : 256;
    while (cap - c->in.len < chunk)
      cap *= 2;
    if (native__charge_in(c, cap) < 0) {
      c->over_budget = 1;
      *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
      return;
    }
  }
  if (sl_frame_buf_reserve(&c->in, chunk) < 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  native__charge_in(c, c->in.cap); /* only ever gives back here */
  *buf = uv_buf_init((char *)c->in.data + c->in.len,
                     (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = s->data;
  (void)buf;
  if (n == 0)
    return;
  if (n == UV_ENOBUFS && c->over_budget) {
    char reason[160];
    c->over_budget = 0;
    snprintf(reason, sizeof(reason),
             "frame needs more than the node's in-flight byte budget "
             "(limits.max_inflight_bytes = %llu) leaves: retry later",
             (unsigned long long)c->nt->ic->guard.max_bytes);
    native__send_error(c, 0, SL_EBACKPRESSURE, reason, 1);
    native__process(c); /* stops reading; closes once the error is written */
    return;
  }
  if (n == UV_EOF && !c->closing) {
    /* Half-close: nothing more will come, but the Acks of what came are
     * still owed. Close once they are written (pending_done, on_write). */
    c->closing = 1;
    native__process(c);
    return;
  }
  if (n < 0) {
    if (n != UV_EOF)
      sl_debug(SL_LOG_CTX_INGEST, c->peer, "read: %s", uv_strerror((int)n));
    c->closing = 1;
    native__close(c);
    return;
  }
  if (c->tls) {
    char why[256];
    int rc = sl_tls_conn_decrypt(c->tls, (size_t)n, &c->in, why, sizeof(why));
    if (rc < 0) {
      if (rc != SL_ECLOSED) {
        sl_ingest_rejected(c->nt->ic, SL_PATH_NATIVE, SL_EDENIED);
        sl_warn(SL_LOG_CTX_INGEST, c->peer, "closing: %s", why);
      }
      c->closing = 1;
      native__close(c);
      return;
    }
    conn_flush(c); /* handshake messages */
    /* The session grew c->in by itself: charge it now (the growth is at
     * most one TLS read) and refuse like on_alloc() when it went over. */
    if (native__charge_in(c, c->in.cap) < 0) {
      c->over_budget = 1;
      on_read(s, UV_ENOBUFS, buf);
      return;
    }
  } else {
    c->in.len += (size_t)n;
  }
  native__process(c);
}

void native__update_reading(conn_t *c) {
  sl_native_t *nt = c->nt;
  const sl_config_t *cfg = nt->ic->cfg;
  int was = c->paused;

  c->paused &= ~(PAUSE_INFLIGHT | PAUSE_OUTPUT);
  if (c->inflight >= cfg->limits.max_inflight_batches_per_conn)
    c->paused |= PAUSE_INFLIGHT;
  if (c->out.len + (c->writing ? OUTPUT_HIGH_WATER / 2 : 0) > OUTPUT_HIGH_WATER)
    c->paused |= PAUSE_OUTPUT;
  if (!was && c->paused)
    sl_metric_add(nt->ic->pauses[SL_PATH_NATIVE], 1);

  int want = !c->paused && !c->closing && !c->closed && !nt->stopping;
  if (want && !c->reading) {
    if (uv_read_start(&c->u.s, on_alloc, on_read) == 0)
      c->reading = 1;
    /* A frame's deadline does not run while we did not read it. */
    if (c->partial_since_ns)
      c->partial_since_ns = sl_now_mono_ns();
    /* Bytes that arrived before the pause may hold whole frames. */
    if (c->in.len)
      native__process(c);
  } else if (!want && c->reading) {
    uv_read_stop(&c->u.s);
    c->reading = 0;
  }
}

/* ---- frames ----------------------------------------------------------- */

/*
 * Builds the serialized EventBatch from a Publish frame body without
 * re-encoding the events: Publish.events (field 3) and EventBatch.events
 * (field 1) are both length-delimited Event messages, so each entry is
 * copied with its one-byte key rewritten (wire/wire.h). The body has
 * already been validated by sl_frame_decode(); the walk still checks every
 * length against the buffer.
 */
static int events_to_batch(const uint8_t *body, size_t len,
                           sl_frame_buf_t *out) {
  const uint8_t *p = body, *end = body + len, *pub = NULL, *val, *next;
  uint64_t key;
  size_t vlen, publen = 0;

  out->len = 0;
  /* Find Frame.publish (field 3, length-delimited). */
  for (; p < end; p = next) {
    if (!(next = sl_pb_next_field(p, end, &key, &val, &vlen)))
      return SL_EPROTO;
    if (key == SL_WIRE_KEY_FRAME_PUBLISH) {
      pub = val;
      publen = vlen;
    }
  }
  if (!pub)
    return SL_EPROTO;
  if (sl_frame_buf_reserve(out, publen) < 0)
    return -ENOMEM;
  /* Copy each Publish.events entry (field 3) as EventBatch.events. */
  for (p = pub, end = pub + publen; p < end; p = next) {
    if (!(next = sl_pb_next_field(p, end, &key, &val, &vlen)))
      return SL_EPROTO;
    if (key == SL_WIRE_KEY_PUBLISH_EVENTS) {
      memcpy(out->data + out->len, p, (size_t)(next - p));
      out->data[out->len] = SL_WIRE_KEY_BATCH_EVENTS;
      out->len += (size_t)(next - p);
    }
  }
  return 0;
}

/*
 * Checks every event of a Publish with the rules all ingest paths share
 * (decode/event_check.h). Returns 0 with *nclamp events to clamp, or
 * SL_EPROTO with the first refused event's index and reason.
 */
static int check_events(sl_ingest_t *ic, const Sluice__V1__Publish *pub,
                        sl_ingest_rules_t *rules, size_t *nclamp, char *reason,
                        size_t len) {
  char why[120];
  *nclamp = 0;
  sl_ingest_rules(ic, ic->cfg, SL_PATH_NATIVE, rules);
  for (size_t i = 0; i < pub->n_events; i++) {
    int rc = sl_ingest_event_check(rules, pub->events[i], why, sizeof(why));
    if (rc < 0) {
      snprintf(reason, len, "events[%zu]: %s", i, why);
      return rc;
    }
    /* A client's sluice.identity is dropped by sl_auth_stamp_batch(). */
    *nclamp += (rc & SL_INGEST_FIX_CLAMP) != 0;
  }
  return 0;
}

/*
 * Builds the EventBatch by encoding every event again, clamping the times
 * check_events() found beyond limits.max_future: the rare path, as an
 * unchanged batch is copied byte for byte (events_to_batch()).
 */
static int events_encode_clamped(const Sluice__V1__Publish *pub,
                                 const sl_ingest_rules_t *rules,
                                 sl_frame_buf_t *out) {
  char why[8];
  int rc = 0;
  out->len = 0;
  for (size_t i = 0; i < pub->n_events && rc == 0; i++) {
    sl_ingest_mark_t mark = {0};
    Sluice__V1__Event *ev = pub->events[i];
    size_t at = out->len;
    if ((sl_ingest_event_check(rules, ev, why, sizeof(why)) &
         SL_INGEST_FIX_CLAMP) &&
        (rc = sl_ingest_event_fix(rules, ev, SL_INGEST_FIX_CLAMP, &mark)) < 0)
      break;
    /* Appended as Publish.events (field 3), retagged EventBatch.events. */
    if ((rc = sl_frame_event_append(out, ev)) == 0)
      out->data[at] = SL_WIRE_KEY_BATCH_EVENTS;
    sl_ingest_mark_undo(&mark);
  }
  return rc;
}

static void pending_done(sl_done_t *d, int status, uint64_t first_offset) {
  pending_t *pd = (pending_t *)d;
  conn_t *c = pd->c;
  sl_ingest_t *ic = c->nt->ic;

  c->inflight--;
  if (status != 0 && pd->piped)
    sl_pipes_commit_failed(ic->pipes);
  sl_metric_observe(ic->commit_latency,
                    (double)(sl_now_mono_ns() - pd->t0_ns) / 1e9);
  if (!c->closed) {
    if (status == 0) {
      /* count is what the client sent (all processed durably); the first
       * offset is that of the first event stored in the batch's stream,
       * 0 when pipelines stored none there (docs/PROTOCOL.md). */
      sl_frame_encode_ack(&c->out, pd->batch_id, pd->own ? first_offset : 0,
                          pd->count);
      sl_ingest_accepted(ic, SL_PATH_NATIVE, pd->stream, pd->count, pd->bytes);
      conn_flush(c);
    } else {
      native__send_error(c, pd->batch_id, status, sl_strerror(status), 0);
    }
    native__update_reading(c);
  }
  free(pd);
  if (c->closed) {
    if (c->handle_closed && c->inflight == 0)
      native__conn_free(c);
  } else if (c->closing && c->inflight == 0 && !c->writing && c->out.len == 0) {
    native__finish(c);
  }
}

/* Returns 1 when the frame was handled, 0 when it must wait (store queue
 * full: the caller keeps the bytes and pauses). */
static int handle_publish(conn_t *c, const Sluice__V1__Publish *pub,
                          const uint8_t *body, size_t body_len) {
  sl_native_t *nt = c->nt;
  sl_ingest_t *ic = nt->ic;
  sl_store_batch_t *b = NULL;
  sl_store_group_t *g = NULL;
  pending_t *pd = NULL;
  uint32_t stream;
  size_t sidx;
  int64_t tmin = INT64_MAX, tmax = INT64_MIN;
  char reason[160];
  sl_pipes_out_t po = {0};
  sl_ingest_rules_t rules;
  size_t nclamp;
  Sluice__V1__EventBatch *stamped = NULL; /* decoded, when stamping changed */
  int rc, piped = 0;

  if (pub->n_events > ic->cfg->limits.max_batch_events) {
    snprintf(reason, sizeof(reason), "batch of %zu events over the limit %llu",
             pub->n_events,
             (unsigned long long)ic->cfg->limits.max_batch_events);
    native__send_error(c, pub->batch_id, SL_ETOOBIG, reason, 0);
    return 1;
  }
  if ((rc = sl_ingest_stream(ic, pub->stream, &sidx)) < 0) {
    snprintf(reason, sizeof(reason), "unknown stream '%.100s'",
             pub->stream ? pub->stream : "");
    native__send_error(c, pub->batch_id, rc, reason, 0);
    return 1;
  }
  stream = ic->streams[sidx].id;
  if (sl_auth_allowed(ic->creds->auth, SL_AUTH_NATIVE, c->ident,
                      ic->streams[sidx].name) < 0) {
    snprintf(reason, sizeof(reason), "client '%s' may not write stream '%s'",
             c->ident, ic->streams[sidx].name);
    native__send_error(c, pub->batch_id, SL_EDENIED, reason, 0);
    return 1;
  }
  if ((rc = check_events(ic, pub, &rules, &nclamp, reason, sizeof(reason))) <
      0) {
    native__send_error(c, pub->batch_id, rc, reason, 0);
    return 1;
  }
  /* Times are read after a clamp: the store's range covers what it holds. */
  if (nclamp)
    rc = events_encode_clamped(pub, &rules, &nt->scratch);
  else
    rc = events_to_batch(body, body_len, &nt->scratch);
  if (rc < 0)
    goto fail;
  for (size_t i = 0; i < pub->n_events; i++) {
    int64_t t = pub->events[i]->time_ns;
    tmin = t < tmin ? t : tmin;
    tmax = t > tmax ? t : tmax;
  }
  if ((rc = sl_auth_stamp_batch(&nt->scratch, c->ident,
                                sl_pipes_wants(ic->pipes, sidx), &stamped)) < 0)
    goto fail;
  if ((rc = sl_store_group_new(ic->st, &g)) < 0)
    goto fail;
  if (sl_pipes_wants(ic->pipes, sidx)) {
    /* Pipelines decide what is stored (and where), and put their state in
     * the same group; they stay locked until the submit is decided. */
    piped = 1;
    if ((rc = sl_pipes_apply(
             ic->pipes, sidx,
             (const Sluice__V1__Event *const *)(stamped ? stamped->events
                                                        : pub->events),
             pub->n_events, nt->scratch.data, nt->scratch.len, g, &po)) < 0)
      goto fail;
  } else {
    if ((rc = sl_store_batch_new(ic->st, stream, nt->scratch.data,
                                 nt->scratch.len, (uint32_t)pub->n_events, tmin,
                                 tmax, &b)) < 0)
      goto fail;
    if ((rc = sl_store_group_add(g, b)) < 0)
      goto fail;
    b = NULL;
    po.own = po.stored = (uint32_t)pub->n_events;
  }
  if (!(pd = calloc(1, sizeof(*pd)))) {
    rc = -ENOMEM;
    goto fail;
  }
  pd->d.fn = pending_done;
  pd->c = c;
  pd->batch_id = pub->batch_id;
  pd->stream = sidx;
  pd->count = (uint32_t)pub->n_events;
  pd->bytes = nt->scratch.len;
  pd->t0_ns = sl_now_mono_ns();
  pd->own = po.own;
  pd->piped = piped;
  rc = sl_ingest_submit(ic, g, &pd->d);
  if (piped) {
    /* Rolled back when not submitted: a retry runs the batch again. */
    sl_pipes_finish(ic->pipes, rc == 0);
    piped = 0;
  }
  if (rc < 0)
    goto fail;
  c->inflight++;
  if (stamped)
    sluice__v1__event_batch__free_unpacked(stamped, NULL);
  return 1;
fail:
  if (stamped)
    sluice__v1__event_batch__free_unpacked(stamped, NULL);
  if (piped)
    sl_pipes_finish(ic->pipes, 0);
  free(pd);
  sl_store_group_free(g);
  sl_store_batch_free(b);
  if (rc == SL_EBACKPRESSURE) {
    /* Writer queue full: keep the frame, stop reading, retry on resume. */
    if (!(c->paused & PAUSE_STORE))
      sl_metric_add(ic->pauses[SL_PATH_NATIVE], 1);
    c->paused |= PAUSE_STORE;
    return 0;
  }
  native__send_error(c, pub->batch_id, rc, sl_strerror(rc), 0);
  return 1;
}

/* Handles one frame body. Returns 1 when consumed, 0 to retry later. */
static int handle_frame(conn_t *c, const uint8_t *body, size_t len) {
  sl_native_t *nt = c->nt;
  sl_ingest_t *ic = nt->ic;
  const Sluice__V1__Frame *fr;
  char reason[200];
  int rc;

  /* Activity means whole frames: a client that trickles a frame byte by
   * byte (slow loris) still goes idle and is closed. */
  c->last_active_ns = sl_now_mono_ns();
  rc = sl_frame_decode(nt->arena, body, len, SL_FRAME_FROM_CLIENT, &fr, reason,
                       sizeof(reason));
  if (rc < 0) {
    native__send_error(c, 0, rc, reason, 1);
    return 1;
  }
  switch (fr->kind_case) {
  case SLUICE__V1__FRAME__KIND_HELLO: {
    if (c->hello_done) {
      native__send_error(c, 0, SL_EPROTO, "second hello", 1);
      return 1;
    }
    if (sl_auth_login(ic->creds->auth, SL_AUTH_NATIVE, fr->hello->token,
                      c->tls ? sl_tls_conn_peer_cn(c->tls) : NULL, c->ident,
                      sizeof(c->ident)) < 0) {
      native__send_error(
          c, 0, SL_EDENIED,
          "bad or missing credential (token or client certificate)", 1);
      return 1;
    }
    {
      /* The client id is the peer's text: escaped, it cannot forge log
       * lines or smuggle terminal escapes. */
      char id[40];
      sl_log_esc(id, sizeof(id), fr->hello->client_id);
      snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer),
               "/%s", id);
    }
    c->hello_done = 1;
    sl_frame_encode_hello_ack(&c->out, ic->cfg->node.id,
                              (uint32_t)ic->cfg->limits.max_frame_bytes,
                              (uint32_t)ic->cfg->limits.max_batch_events);
    conn_flush(c);
    sl_debug(SL_LOG_CTX_INGEST, c->peer, "hello");
    return 1;
  }
  case SLUICE__V1__FRAME__KIND_PUBLISH:
    if (!c->hello_done) {
      native__send_error(c, 0, SL_EPROTO, "publish before hello", 1);
      return 1;
    }
    return handle_publish(c, fr->publish, body, len);
  case SLUICE__V1__FRAME__KIND_PING:
    sl_frame_encode_pong(&c->out, fr->ping->nonce);
    conn_flush(c);
    return 1;
  case SLUICE__V1__FRAME__KIND_PONG:
    return 1;
  default:
    native__send_error(c, 0, SL_EPROTO, "unexpected frame kind", 1);
    return 1;
  }
}

void native__process(conn_t *c) {
  size_t off = 0;
  const sl_config_t *cfg = c->nt->ic->cfg;

  c->paused &= ~PAUSE_STORE;
  while (!c->closing && !c->closed && !(c->paused & PAUSE_STORE)) {
    const uint8_t *body;
    size_t consumed, blen;
    size_t limit =
        c->hello_done ? cfg->limits.max_frame_bytes : PREAUTH_FRAME_BYTES;
    int rc = sl_frame_parse(c->in.data + off, c->in.len - off, limit, &consumed,
                            &body, &blen);
    if (rc < 0) {
      char reason[120];
      snprintf(reason, sizeof(reason), "bad frame length (limit %llu bytes%s)",
               (unsigned long long)limit, c->hello_done ? "" : " before hello");
      native__send_error(c, 0, rc, reason, 1);
      break;
    }
    if (consumed == 0)
      break;
    if (!handle_frame(c, body, blen))
      break; /* PAUSE_STORE set: keep this frame's bytes */
    off += consumed;
    if (c->inflight >= cfg->limits.max_inflight_batches_per_conn)
      break;
  }
  sl_frame_buf_consume(&c->in, off);
  if (!c->in.len)
    c->partial_since_ns = 0;
  else if (!c->partial_since_ns)
    c->partial_since_ns = sl_now_mono_ns();
  if (c->closing) {
    if (c->reading) {
      uv_read_stop(&c->u.s);
      c->reading = 0;
    }
    if (!c->writing && c->out.len == 0 && c->inflight == 0)
      native__finish(c);
    return;
  }
  native__update_reading(c);
}
