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
 * With listeners.native.tls a TCP connection carries TLS (broker/tls.h):
 * reads land in the session and come out as plaintext in the input buffer,
 * the output buffer is encrypted on flush. Hello authenticates the client
 * (broker/auth.h); each Publish is checked against its streams and stamped
 * with its identity.
 *
 * Before its Hello is accepted a connection may send frames of at most
 * PREAUTH_FRAME_BYTES and is read in small chunks, so an unauthenticated
 * peer holds a few KiB, not limits.max_frame_bytes. It must complete its
 * Hello, and later every frame it starts, within limits.request_timeout.
 * Input buffers beyond BASE_IN_BYTES (frames larger than a read chunk) are
 * taken from the node-wide limits.max_inflight_bytes (broker/guard.h): a
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

#include "broker/daemon.h"
#include "broker/listen_unix.h"
#include "broker/log.h"
#include "broker/pipeline.h"
#include "broker/security.h"
#include "schemas/frame.h"

/* Why a connection is not reading (bitmask). */
enum {
  PAUSE_INFLIGHT = 1, /* too many batches waiting for their commit */
  PAUSE_OUTPUT = 2,   /* too many unsent bytes: the client reads slowly */
  PAUSE_STORE = 4,    /* the store's writer queue is full */
};

#define READ_CHUNK (64u * 1024u)
/* Largest frame before the Hello is accepted (a Hello is ~100 bytes), and
 * the read chunk until then. */
#define PREAUTH_FRAME_BYTES 4096u
/* Input buffer every authenticated connection may hold outside the
 * node-wide budget (what reading READ_CHUNK at a time needs). */
#define BASE_IN_BYTES (2u * READ_CHUNK)
#define OUTPUT_HIGH_WATER (1u << 20)
#define ARENA_BYTES (8u << 20)

typedef struct conn conn_t;

typedef struct listener {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_handle_t h;
    uv_stream_t s;
  } u;
  sl_native_t *nt;
  int is_unix;
} listener_t;

struct sl_native {
  sl_daemon_t *dm;
  listener_t tcp;
  listener_t unix_;
  int have_tcp, have_unix;
  int handles_open; /* listeners and connections not yet closed */
  conn_t *conns;    /* every open connection */
  unsigned nconns;
  int stopping;
  sl_frame_arena_t *arena; /* one decode at a time on the loop thread */
  sl_metric_t *timeouts;   /* Hello or frame not complete in time */
  sl_frame_buf_t scratch;  /* EventBatch bytes being built */
};

struct conn {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_handle_t h;
    uv_stream_t s;
  } u;
  sl_native_t *nt;
  conn_t *prev, *next;
  char peer[80];
  sl_frame_buf_t in;  /* received, not yet parsed */
  sl_frame_buf_t out; /* encoded, not yet handed to uv_write */
  int writing;        /* a uv_write is in progress */
  int hello_done;
  int closing;       /* close requested: stop reading, flush, close */
  int closed;        /* unlinked and uv_close called */
  int handle_closed; /* uv_close finished; freed when inflight is 0 too */
  int reading;       /* uv_read_start active */
  int paused;        /* PAUSE_* bits */
  int counted;       /* holds one of the node's limits.max_connections */
  int over_budget;   /* the last buffer growth was refused */
  unsigned inflight;
  size_t charged;            /* c->in bytes taken from the node's budget */
  uint64_t accepted_ns;      /* for the Hello deadline */
  uint64_t partial_since_ns; /* a frame started arriving, 0 = none */
  uint64_t last_active_ns;
  sl_tls_conn_t *tls;            /* TLS session, NULL = plain (broker/tls.h) */
  sl_frame_buf_t tout;           /* TLS records not yet handed to uv_write */
  char ident[SL_AUTH_IDENT_MAX]; /* identity from Hello (broker/auth.h) */
};

typedef struct pending {
  sl_done_t d;
  conn_t *c;
  size_t stream; /* index in dm->streams */
  uint32_t own;  /* events stored in that stream (pipelines may drop) */
  int piped;     /* the group carries pipeline state */
  uint64_t batch_id;
  uint32_t count;
  size_t bytes;
  uint64_t t0_ns;
} pending_t;

typedef struct wreq {
  uv_write_t req;
  uint8_t *data; /* owned buffer being written */
} wreq_t;

static void conn_process(conn_t *c);
static void conn_update_reading(conn_t *c);
static void conn_close(conn_t *c);
static void conn_free(conn_t *c);

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
      conn_close(c); /* nothing can be said before the handshake */
      return;
    }
  }
  if (ob->len == 0)
    return;
  if (!(w = malloc(sizeof(*w)))) {
    conn_close(c);
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
    conn_close(c);
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
    conn_close(c);
    return;
  }
  if (c->closing && c->out.len == 0 && c->inflight == 0) {
    conn_close(c);
    return;
  }
  conn_flush(c);
  conn_update_reading(c);
}

/* Every Error frame is a refusal: counted here by reason. */
static void send_error(conn_t *c, uint64_t batch_id, int code,
                       const char *reason, int fatal) {
  sl_daemon__rejected(c->nt->dm, SL_PATH_NATIVE, code);
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
static int charge_in(conn_t *c, size_t cap) {
  sl_guard_t *g = &c->nt->dm->guard;
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
static void trim_in(conn_t *c) {
  if (c->in.len == 0 && c->in.cap > BASE_IN_BYTES) {
    sl_frame_buf_close(&c->in);
    charge_in(c, 0);
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
    if (charge_in(c, cap) < 0) {
      c->over_budget = 1;
      *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
      return;
    }
  }
  if (sl_frame_buf_reserve(&c->in, chunk) < 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  charge_in(c, c->in.cap); /* only ever gives back here */
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
             (unsigned long long)c->nt->dm->guard.max_bytes);
    send_error(c, 0, SL_EBACKPRESSURE, reason, 1);
    conn_process(c); /* stops reading; closes once the error is written */
    return;
  }
  if (n == UV_EOF && !c->closing) {
    /* Half-close: nothing more will come, but the Acks of what came are
     * still owed. Close once they are written (pending_done, on_write). */
    c->closing = 1;
    conn_process(c);
    return;
  }
  if (n < 0) {
    if (n != UV_EOF)
      sl_debug(SL_LOG_CTX_INGEST, c->peer, "read: %s", uv_strerror((int)n));
    c->closing = 1;
    conn_close(c);
    return;
  }
  if (c->tls) {
    char why[256];
    int rc = sl_tls_conn_decrypt(c->tls, (size_t)n, &c->in, why, sizeof(why));
    if (rc < 0) {
      if (rc != SL_ECLOSED) {
        sl_daemon__rejected(c->nt->dm, SL_PATH_NATIVE, SL_EDENIED);
        sl_warn(SL_LOG_CTX_INGEST, c->peer, "closing: %s", why);
      }
      c->closing = 1;
      conn_close(c);
      return;
    }
    conn_flush(c); /* handshake messages */
    /* The session grew c->in by itself: charge it now (the growth is at
     * most one TLS read) and refuse like on_alloc() when it went over. */
    if (charge_in(c, c->in.cap) < 0) {
      c->over_budget = 1;
      on_read(s, UV_ENOBUFS, buf);
      return;
    }
  } else {
    c->in.len += (size_t)n;
  }
  conn_process(c);
}

static void conn_update_reading(conn_t *c) {
  sl_native_t *nt = c->nt;
  const sl_config_t *cfg = nt->dm->cfg;
  int was = c->paused;

  c->paused &= ~(PAUSE_INFLIGHT | PAUSE_OUTPUT);
  if (c->inflight >= cfg->limits.max_inflight_batches_per_conn)
    c->paused |= PAUSE_INFLIGHT;
  if (c->out.len + (c->writing ? OUTPUT_HIGH_WATER / 2 : 0) > OUTPUT_HIGH_WATER)
    c->paused |= PAUSE_OUTPUT;
  if (!was && c->paused)
    sl_metric_add(nt->dm->pauses[SL_PATH_NATIVE], 1);

  int want = !c->paused && !c->closing && !c->closed && !nt->stopping;
  if (want && !c->reading) {
    if (uv_read_start(&c->u.s, on_alloc, on_read) == 0)
      c->reading = 1;
    /* A frame's deadline does not run while we did not read it. */
    if (c->partial_since_ns)
      c->partial_since_ns = sl_now_mono_ns();
    /* Bytes that arrived before the pause may hold whole frames. */
    if (c->in.len)
      conn_process(c);
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
 * copied with its one-byte tag rewritten (0x1a -> 0x0a). The body has
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
    if (key == ((3u << 3) | 2u)) {
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
    if (key == ((3u << 3) | 2u)) {
      memcpy(out->data + out->len, p, (size_t)(next - p));
      out->data[out->len] = (1u << 3) | 2u;
      out->len += (size_t)(next - p);
    }
  }
  return 0;
}

/*
 * Checks every event of a Publish with the rules all ingest paths share
 * (broker/ingest_check.h). Returns 0 with *nclamp events to clamp, or
 * SL_EPROTO with the first refused event's index and reason.
 */
static int check_events(sl_daemon_t *dm, const Sluice__V1__Publish *pub,
                        sl_ingest_rules_t *rules, size_t *nclamp, char *reason,
                        size_t len) {
  char why[120];
  *nclamp = 0;
  sl_daemon__ingest_rules(dm, dm->cfg, SL_PATH_NATIVE, rules);
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
      out->data[at] = (1u << 3) | 2u;
    sl_ingest_mark_undo(&mark);
  }
  return rc;
}

static void pending_done(sl_done_t *d, int status, uint64_t first_offset) {
  pending_t *pd = (pending_t *)d;
  conn_t *c = pd->c;
  sl_daemon_t *dm = c->nt->dm;

  c->inflight--;
  if (status != 0 && pd->piped)
    sl_pipes_commit_failed(dm->pipes);
  sl_metric_observe(dm->commit_latency,
                    (double)(sl_now_mono_ns() - pd->t0_ns) / 1e9);
  if (!c->closed) {
    if (status == 0) {
      /* count is what the client sent (all processed durably); the first
       * offset is that of the first event stored in the batch's stream,
       * 0 when pipelines stored none there (docs/PROTOCOL.md). */
      sl_frame_encode_ack(&c->out, pd->batch_id, pd->own ? first_offset : 0,
                          pd->count);
      sl_daemon__accepted(dm, SL_PATH_NATIVE, pd->stream, pd->count, pd->bytes);
      conn_flush(c);
    } else {
      send_error(c, pd->batch_id, status, sl_strerror(status), 0);
    }
    conn_update_reading(c);
  }
  free(pd);
  if (c->closed) {
    if (c->handle_closed && c->inflight == 0)
      conn_free(c);
  } else if (c->closing && c->inflight == 0 && !c->writing && c->out.len == 0) {
    conn_close(c);
  }
}

/* Returns 1 when the frame was handled, 0 when it must wait (store queue
 * full: the caller keeps the bytes and pauses). */
static int handle_publish(conn_t *c, const Sluice__V1__Publish *pub,
                          const uint8_t *body, size_t body_len) {
  sl_native_t *nt = c->nt;
  sl_daemon_t *dm = nt->dm;
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

  if (pub->n_events > dm->cfg->limits.max_batch_events) {
    snprintf(reason, sizeof(reason), "batch of %zu events over the limit %llu",
             pub->n_events,
             (unsigned long long)dm->cfg->limits.max_batch_events);
    send_error(c, pub->batch_id, SL_ETOOBIG, reason, 0);
    return 1;
  }
  if ((rc = sl_daemon__stream(dm, pub->stream, &sidx)) < 0) {
    snprintf(reason, sizeof(reason), "unknown stream '%.100s'",
             pub->stream ? pub->stream : "");
    send_error(c, pub->batch_id, rc, reason, 0);
    return 1;
  }
  stream = dm->streams[sidx].id;
  if (sl_auth_allowed(dm->sec->auth, SL_AUTH_NATIVE, c->ident,
                      dm->streams[sidx].name) < 0) {
    snprintf(reason, sizeof(reason), "client '%s' may not write stream '%s'",
             c->ident, dm->streams[sidx].name);
    send_error(c, pub->batch_id, SL_EDENIED, reason, 0);
    return 1;
  }
  if ((rc = check_events(dm, pub, &rules, &nclamp, reason, sizeof(reason))) <
      0) {
    send_error(c, pub->batch_id, rc, reason, 0);
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
                                sl_pipes_wants(dm->pipes, sidx), &stamped)) < 0)
    goto fail;
  if ((rc = sl_store_group_new(dm->st, &g)) < 0)
    goto fail;
  if (sl_pipes_wants(dm->pipes, sidx)) {
    /* Pipelines decide what is stored (and where), and put their state in
     * the same group; they stay locked until the submit is decided. */
    piped = 1;
    if ((rc = sl_pipes_apply(
             dm->pipes, sidx,
             (const Sluice__V1__Event *const *)(stamped ? stamped->events
                                                        : pub->events),
             pub->n_events, nt->scratch.data, nt->scratch.len, g, &po)) < 0)
      goto fail;
  } else {
    if ((rc = sl_store_batch_new(dm->st, stream, nt->scratch.data,
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
  rc = sl_daemon__submit(dm, g, &pd->d);
  if (piped) {
    /* Rolled back when not submitted: a retry runs the batch again. */
    sl_pipes_finish(dm->pipes, rc == 0);
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
    sl_pipes_finish(dm->pipes, 0);
  free(pd);
  sl_store_group_free(g);
  sl_store_batch_free(b);
  if (rc == SL_EBACKPRESSURE) {
    /* Writer queue full: keep the frame, stop reading, retry on resume. */
    if (!(c->paused & PAUSE_STORE))
      sl_metric_add(dm->pauses[SL_PATH_NATIVE], 1);
    c->paused |= PAUSE_STORE;
    return 0;
  }
  send_error(c, pub->batch_id, rc, sl_strerror(rc), 0);
  return 1;
}

/* Handles one frame body. Returns 1 when consumed, 0 to retry later. */
static int handle_frame(conn_t *c, const uint8_t *body, size_t len) {
  sl_native_t *nt = c->nt;
  sl_daemon_t *dm = nt->dm;
  const Sluice__V1__Frame *fr;
  char reason[200];
  int rc;

  /* Activity means whole frames: a client that trickles a frame byte by
   * byte (slow loris) still goes idle and is closed. */
  c->last_active_ns = sl_now_mono_ns();
  rc = sl_frame_decode(nt->arena, body, len, SL_FRAME_FROM_CLIENT, &fr, reason,
                       sizeof(reason));
  if (rc < 0) {
    send_error(c, 0, rc, reason, 1);
    return 1;
  }
  switch (fr->kind_case) {
  case SLUICE__V1__FRAME__KIND_HELLO: {
    if (c->hello_done) {
      send_error(c, 0, SL_EPROTO, "second hello", 1);
      return 1;
    }
    if (sl_auth_login(dm->sec->auth, SL_AUTH_NATIVE, fr->hello->token,
                      c->tls ? sl_tls_conn_peer_cn(c->tls) : NULL, c->ident,
                      sizeof(c->ident)) < 0) {
      send_error(c, 0, SL_EDENIED,
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
    sl_frame_encode_hello_ack(&c->out, dm->cfg->node.id,
                              (uint32_t)dm->cfg->limits.max_frame_bytes,
                              (uint32_t)dm->cfg->limits.max_batch_events);
    conn_flush(c);
    sl_debug(SL_LOG_CTX_INGEST, c->peer, "hello");
    return 1;
  }
  case SLUICE__V1__FRAME__KIND_PUBLISH:
    if (!c->hello_done) {
      send_error(c, 0, SL_EPROTO, "publish before hello", 1);
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
    send_error(c, 0, SL_EPROTO, "unexpected frame kind", 1);
    return 1;
  }
}

static void conn_process(conn_t *c) {
  size_t off = 0;
  const sl_config_t *cfg = c->nt->dm->cfg;

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
      send_error(c, 0, rc, reason, 1);
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
      conn_close(c);
    return;
  }
  conn_update_reading(c);
}

/* ---- connection lifetime ---------------------------------------------- */

static void conn_free(conn_t *c) {
  charge_in(c, 0);
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
    conn_free(c);
}

static void conn_close(conn_t *c) {
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
  sl_metric_set(nt->dm->connections, nt->nconns);
  if (c->counted)
    sl_guard_conn_give(&nt->dm->guard);
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
    uv_pipe_init(&nt->dm->loop, &c->u.pipe, 0);
  else
    uv_tcp_init(&nt->dm->loop, &c->u.tcp);
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
  sl_metric_set(nt->dm->connections, nt->nconns);
  if (!l->is_unix && nt->dm->sec->native &&
      sl_tls_conn_new(nt->dm->sec->native, &c->tls) < 0) {
    conn_close(c);
    return;
  }
  /* limits.max_connections counts every listener (HTTP too). */
  if (sl_guard_conn_take(&nt->dm->guard, SL_GUARD_NATIVE) < 0) {
    send_error(c, 0, SL_EBACKPRESSURE,
               "too many connections (limits.max_connections, all "
               "listeners): retry later",
               1);
    return;
  }
  c->counted = 1;
  conn_update_reading(c);
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
  uv_tcp_init(&nt->dm->loop, &nt->tcp.u.tcp);
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
  uv_pipe_init(&nt->dm->loop, &nt->unix_.u.pipe, 0);
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

int sl_native_start(sl_daemon_t *dm, sl_native_t **out, char *errstr,
                    size_t errlen) {
  sl_native_t *nt = calloc(1, sizeof(*nt));
  const sl_config_t *cfg = dm->cfg;
  int rc;

  if (!nt)
    return -ENOMEM;
  nt->dm = dm;
  nt->timeouts = sl_metrics_counter(
      dm->mx, "sluice_ingest_request_timeouts_total",
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
  dm->native = nt;
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
      conn_close(c);
  }
}

void sl_native_resume(sl_native_t *nt) {
  for (conn_t *c = nt->conns, *next; c; c = next) {
    next = c->next;
    if (c->paused & PAUSE_STORE)
      conn_process(c);
    else if (c->closing && c->inflight == 0 && !c->writing && c->out.len == 0)
      conn_close(c);
  }
}

void sl_native_sweep(sl_native_t *nt, uint64_t now_ns) {
  const sl_config_t *cfg = nt->dm->cfg;
  uint64_t idle_ns = cfg->limits.idle_timeout_ms * 1000000ull;
  uint64_t req_ns = cfg->limits.request_timeout_ms * 1000000ull;
  for (conn_t *c = nt->conns, *next; c; c = next) {
    next = c->next;
    trim_in(c);
    if (c->closing)
      continue;
    if (!c->hello_done && req_ns && now_ns - c->accepted_ns > req_ns) {
      sl_metric_add(nt->timeouts, 1);
      send_error(c, 0, SL_ECLOSED, "no hello within limits.request_timeout", 1);
      conn_process(c);
    } else if (c->reading && c->partial_since_ns && req_ns &&
               now_ns - c->partial_since_ns > req_ns) {
      /* Bytes trickling in do not count as progress: the whole frame must
       * arrive in time (slow loris holding a large buffer). */
      sl_metric_add(nt->timeouts, 1);
      send_error(c, 0, SL_ECLOSED,
                 "frame not complete within limits.request_timeout", 1);
      conn_process(c);
    } else if (idle_ns && c->inflight == 0 &&
               now_ns - c->last_active_ns > idle_ns) {
      send_error(c, 0, SL_ECLOSED, "idle timeout", 1);
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
