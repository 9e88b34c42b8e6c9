/*
 * HTTP ingest: POST /v1/events[?stream=NAME] with a JSON object, a JSON
 * array or JSON lines (docs/HTTP.md). libmicrohttpd runs it on its own
 * thread; the body is decoded and compressed there and submitted to the
 * store directly (the store API is thread-safe). The request is suspended
 * until the store's completion (writer thread) resumes it, so a 2xx is only
 * ever sent for a durably committed batch.
 *
 *   200  {"stream":..,"first_offset":..,"count":..,"stored":..} committed
 *   400  bad JSON or a bad event (reason names the line)
 *   401  no known credential (listeners.http.clients, security/auth.h)
 *   403  the client may not write this stream, or an Origin header not in
 *        listeners.http.allowed_origins (a web page posting cross-site)
 *   404  unknown stream, or another path
 *   405  not POST
 *   413  body over limits.max_frame_bytes
 *   414  too many query arguments
 *   415  content type other than JSON / JSON lines (or none)
 *   429  the store's writer queue is full (Retry-After: 1)
 *   503  budget full under the block policy, a storage error, shutting
 *        down, limits.max_connections or limits.max_inflight_bytes reached
 *        (Retry-After)
 *
 * Everything that can be refused from the headers is refused before a
 * byte of the body is buffered; the body's buffer is taken from the
 * node-wide limits.max_inflight_bytes (ingest/guard.h).
 */
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "common/addr.h"
#include "ingest/ingest.h"
#include "decode/decode_inference.h"
#include "decode/decode_json.h"
#include "ingest/http/http_guard.h"
#include "telemetry/log.h"
#include "ingest/pipes.h"

enum { R_READING, R_TOO_BIG, R_NO_BUDGET, R_SUBMITTED, R_DONE };

/* Query arguments accepted (only ?stream= is used). */
#define HTTP_MAX_ARGS 8u
/* Connections beyond limits.max_connections that libmicrohttpd still
 * accepts, to tell them 503 instead of leaving them in the backlog. */
#define HTTP_OVER_LIMIT_SLACK 16u
#define NO_BUDGET                                                              \
  "too many bytes in flight on this node (limits.max_inflight_bytes): "        \
  "retry later"

struct sl_http {
  sl_ingest_t *ic;
  struct MHD_Daemon *mhd;
  sl_hguard_t *hg;
  _Atomic int stopping;
  _Atomic uint64_t inflight; /* requests submitted, response not finished */
  size_t max_body;
  uint32_t max_events;
  char **origins; /* listeners.http.allowed_origins, copied at start */
  size_t norigins;
  sl_ingest_rules_t rules; /* event rules; now_ns set per request */
  sl_infer_dec_t *infdec;  /* POST /v1/inference (made at first use; the
                              server's one thread) */
};

typedef struct hreq {
  sl_http_t *h;
  struct MHD_Connection *conn;
  char *body;
  size_t len, cap;
  size_t charged; /* bytes taken from the node's in-flight budget */
  _Atomic int state;
  int status;
  uint64_t first_offset;
  uint32_t count;
  size_t bytes;
  uint64_t t0_ns;
  int counted;   /* included in h->inflight */
  size_t sidx;   /* stream index in ic->streams */
  uint32_t own;  /* events stored in that stream (pipelines may drop) */
  int piped;     /* the group carries pipeline state */
  int inference; /* POST /v1/inference: inference JSON (docs/EDGE-AI.md) */
  char ident[SL_AUTH_IDENT_MAX]; /* the client's identity (security/auth.h) */
} hreq_t;

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code,
                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code,
                               const char *fmt, ...) {
  char *body = NULL;
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vasprintf(&body, fmt, ap);
  va_end(ap);
  if (n < 0)
    return MHD_NO;
  struct MHD_Response *rsp =
      MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_FREE);
  if (!rsp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/json");
  if (code == 429 || code == 503)
    MHD_add_response_header(rsp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  /* Whatever the answer, the request is over: no deadline from here. */
  sl_hguard_request_done(conn);
  enum MHD_Result r = MHD_queue_response(conn, code, rsp);
  MHD_destroy_response(rsp);
  return r;
}

/* JSON-escapes s into a static-size buffer for error bodies. */
static const char *jesc(const char *s, char *buf, size_t cap) {
  size_t n = 0;
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[n++] = '\\';
      buf[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
    } else {
      buf[n++] = (char)c;
    }
  }
  buf[n] = 0;
  return buf;
}

static enum MHD_Result reject(sl_http_t *h, struct MHD_Connection *conn,
                              unsigned code, int err, const char *reason) {
  char esc[512];
  sl_ingest_rejected(h->ic, SL_PATH_HTTP, err);
  sl_debug(SL_LOG_CTX_HTTP, NULL, "%u %s: %s", code, sl_errname(err), reason);
  return respond(conn, code, "{\"error\":\"%s\",\"reason\":\"%s\"}\n",
                 sl_errname(err), jesc(reason, esc, sizeof(esc)));
}

/* Like reject(), and the connection is closed after the answer. */
static enum MHD_Result reject_close(sl_http_t *h, struct MHD_Connection *conn,
                                    unsigned code, int err,
                                    const char *reason) {
  char esc[512], *body = NULL;
  int n;
  sl_ingest_rejected(h->ic, SL_PATH_HTTP, err);
  n = asprintf(&body, "{\"error\":\"%s\",\"reason\":\"%s\"}\n", sl_errname(err),
               jesc(reason, esc, sizeof(esc)));
  if (n < 0)
    return MHD_NO;
  struct MHD_Response *rsp =
      MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_FREE);
  if (!rsp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/json");
  MHD_add_response_header(rsp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  MHD_add_response_header(rsp, MHD_HTTP_HEADER_CONNECTION, "close");
  sl_hguard_request_done(conn);
  enum MHD_Result r = MHD_queue_response(conn, code, rsp);
  MHD_destroy_response(rsp);
  return r;
}

/* The first bytes of every request body are not charged to the in-flight
 * budget, as the native listener's per-connection read buffer is not: a
 * few large bodies that hold the budget then cannot starve small requests
 * (the security probe: every small POST got 503 while eight 4 MiB bodies
 * trickled in). Bounded by limits.max_connections. */
#define BODY_FREE_BYTES (64u << 10)

/* Grows r's body buffer to cap bytes, taking the growth beyond
 * BODY_FREE_BYTES from the node's in-flight budget first. Returns 0,
 * SL_EBACKPRESSURE (budget exhausted, nothing changed) or -ENOMEM. */
static int body_grow(hreq_t *r, size_t cap) {
  sl_guard_t *g = &r->h->ic->guard;
  size_t want = cap > BODY_FREE_BYTES ? cap - BODY_FREE_BYTES : 0;
  size_t more = want > r->charged ? want - r->charged : 0;
  int rc;
  if (cap <= r->cap)
    return 0;
  if (more && (rc = sl_guard_bytes_take(g, SL_GUARD_HTTP, more)) < 0)
    return rc;
  char *nb = realloc(r->body, cap);
  if (!nb) {
    if (more)
      sl_guard_bytes_give(g, more);
    return -ENOMEM;
  }
  r->charged += more;
  r->body = nb;
  r->cap = cap;
  return 0;
}

/* Frees r's body and gives its bytes back to the budget. */
static void body_release(hreq_t *r) {
  if (r->charged)
    sl_guard_bytes_give(&r->h->ic->guard, r->charged);
  free(r->body);
  r->body = NULL;
  r->len = r->cap = r->charged = 0;
}

/* Writer thread: the batch is committed (or failed). */
static void on_committed(void *arg, int status, const uint64_t *offsets,
                         size_t n) {
  hreq_t *r = arg;
  r->status = status;
  /* The first offset in the request's own stream; 0 when pipelines stored
   * none of its events there. */
  r->first_offset = (status == 0 && offsets && n && r->own) ? offsets[0] : 0;
  if (status != 0 && r->piped)
    sl_pipes_commit_failed(r->h->ic->pipes);
  sl_guard_store_result(&r->h->ic->guard, status);
  atomic_store(&r->state, R_DONE);
  MHD_resume_connection(r->conn);
}

/*
 * The documented media types, exactly (case-insensitive), with parameters
 * allowed; a charset parameter must be UTF-8. Anything else, and a missing
 * Content-Type, is refused: text/plain and form encodings are what a web
 * page can post cross-site without a CORS preflight.
 */
static int content_type_ok(const char *ct) {
  static const char *const types[] = {
      "application/json", "application/x-ndjson", "application/jsonl", NULL};
  size_t n;
  int ok = 0;
  if (!ct)
    return 0;
  n = strcspn(ct, "; \t");
  for (int i = 0; types[i]; i++)
    if (n == strlen(types[i]) && !strncasecmp(ct, types[i], n))
      ok = 1;
  if (!ok)
    return 0;
  for (const char *p = ct + n; (p = strchr(p, ';'));) {
    p++;
    p += strspn(p, " \t");
    if (!strncasecmp(p, "charset=", 8)) {
      const char *v = p + 8;
      size_t q = (*v == '"');
      if (strncasecmp(v + q, "utf-8", 5) ||
          (v[q + 5] && v[q + 5] != ';' && v[q + 5] != '"' && v[q + 5] != ' ' &&
           v[q + 5] != '\t'))
        return 0;
    }
  }
  return 1;
}

/* A request from a web page carries Origin; only listed origins may post.
 * Returns 1 when allowed (no Origin: not a browser's cross-site post). */
static int origin_ok(const sl_http_t *h, const char *origin) {
  if (!origin)
    return 1;
  for (size_t i = 0; i < h->norigins; i++)
    if (!strcasecmp(h->origins[i], origin))
      return 1;
  return 0;
}

static enum MHD_Result submit(sl_http_t *h, hreq_t *r) {
  sl_ingest_t *ic = h->ic;
  sl_json_batch_t jb;
  sl_store_batch_t *b = NULL;
  sl_store_group_t *g = NULL;
  char err[300];
  const char *sname;
  uint32_t stream;
  Sluice__V1__EventBatch *eb = NULL;
  sl_pipes_out_t po;
  int rc, piped = 0;

  if (atomic_load(&h->stopping))
    return reject(h, r->conn, 503, SL_ECLOSED, "shutting down");
  sname = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "stream");
  if (sl_ingest_stream(ic, sname, &r->sidx) < 0) {
    snprintf(err, sizeof(err), "unknown stream '%.100s'", sname ? sname : "");
    return reject(h, r->conn, 404, SL_ENOTFOUND, err);
  }
  stream = ic->streams[r->sidx].id;
  if (sl_auth_allowed(ic->creds->auth, SL_AUTH_HTTP, r->ident,
                      ic->streams[r->sidx].name) < 0) {
    snprintf(err, sizeof(err), "client '%s' may not write stream '%s'",
             r->ident, ic->streams[r->sidx].name);
    return reject(h, r->conn, 403, SL_EDENIED, err);
  }
  sl_json_batch_init(&jb);
  sl_ingest_rules_t rules = h->rules;
  rules.now_ns = sl_now_wall_ns();
  jb.rules = &rules;
  if (r->inference && !h->infdec && sl_infer_dec_new(&h->infdec) < 0) {
    sl_json_batch_close(&jb);
    return reject(h, r->conn, 503, -ENOMEM, "out of memory");
  }
  const char *fmt =
      MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "format");
  const char *src =
      MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "source");
  if (r->inference && fmt && !strcmp(fmt, "oip")) {
    /* An OIP v2 response as the model server sent it, read with the
     * profile ?oip= names (docs/EDGE-AI.md). */
    const char *pn =
        MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "oip");
    const sl_config_oip_t *prof = sl_config_oip_find(ic->cfg, pn);
    sl_oip_map_t m;
    if (!prof) {
      sl_json_batch_close(&jb);
      snprintf(err, sizeof(err), "no oip profile '%.60s' (oip: in the config)",
               pn ? pn : "");
      return reject(h, r->conn, 400, SL_EPROTO, err);
    }
    sl_ingest_oip_map(prof, &m);
    rc = sl_infer_decode_oip(h->infdec, r->body ? r->body : "", r->len, &m, src,
                             rules.now_ns, &jb, err, sizeof(err));
  } else if (r->inference && fmt && strcmp(fmt, "json")) {
    sl_json_batch_close(&jb);
    return reject(h, r->conn, 400, SL_EPROTO, "format must be json or oip");
  } else if (r->inference)
    rc = sl_infer_decode_json(h->infdec, r->body ? r->body : "", r->len, src,
                              rules.now_ns, h->max_events, &jb, err,
                              sizeof(err));
  else
    rc = sl_json_decode_body(r->body ? r->body : "", r->len, rules.now_ns,
                             h->max_events, &jb, err, sizeof(err));
  /* The identity on each event, a forged one removed. */
  if (rc == 0 && (rc = sl_auth_stamp_batch(&jb.buf, r->ident, 0, NULL)) < 0)
    snprintf(err, sizeof(err), "identity: %s", sl_strerror(rc));
  if (rc < 0) {
    sl_json_batch_close(&jb);
    return reject(h, r->conn, rc == SL_ETOOBIG ? 413 : 400, rc, err);
  }
  r->count = jb.count;
  r->bytes = jb.buf.len;
  if ((rc = sl_store_group_new(ic->st, &g)) < 0)
    goto fail;
  if (sl_pipes_wants(ic->pipes, r->sidx)) {
    /* Pipelines work on decoded events; they stay locked until the
     * submit below is decided. */
    if (!(eb =
              sluice__v1__event_batch__unpack(NULL, jb.buf.len, jb.buf.data))) {
      rc = -ENOMEM;
      goto fail;
    }
    piped = 1;
    if ((rc = sl_pipes_apply(
             ic->pipes, r->sidx, (const Sluice__V1__Event *const *)eb->events,
             eb->n_events, jb.buf.data, jb.buf.len, g, &po)) < 0)
      goto fail;
    r->own = po.own;
    r->piped = 1;
  } else {
    if ((rc = sl_store_batch_new(ic->st, stream, jb.buf.data, jb.buf.len,
                                 jb.count, jb.min_time_ns, jb.max_time_ns,
                                 &b)) < 0 ||
        (rc = sl_store_group_add(g, b)) < 0)
      goto fail;
    b = NULL;
    r->own = jb.count;
  }
  sl_json_batch_close(&jb);
  /* Suspend before submitting: the completion may resume at once. */
  atomic_store(&r->state, R_SUBMITTED);
  r->t0_ns = sl_now_mono_ns();
  r->counted = 1;
  atomic_fetch_add(&h->inflight, 1);
  sl_hguard_request_done(r->conn);
  MHD_suspend_connection(r->conn);
  rc = sl_store_group_submit(g, 0, on_committed, r);
  if (piped) {
    sl_pipes_finish(ic->pipes, rc == 0);
    sluice__v1__event_batch__free_unpacked(eb, NULL);
  }
  if (rc < 0) {
    /* The callback will never fire and g is still ours: answer now. */
    sl_store_group_free(g);
    r->status = rc;
    atomic_store(&r->state, R_DONE);
    MHD_resume_connection(r->conn);
    return MHD_YES;
  }
  return MHD_YES;
fail:
  if (piped)
    sl_pipes_finish(ic->pipes, 0);
  if (eb)
    sluice__v1__event_batch__free_unpacked(eb, NULL);
  sl_json_batch_close(&jb);
  sl_store_group_free(g);
  sl_store_batch_free(b);
  return reject(h, r->conn, rc == SL_ETOOBIG ? 413 : 500, rc, sl_strerror(rc));
}

static enum MHD_Result finish(sl_http_t *h, hreq_t *r) {
  sl_ingest_t *ic = h->ic;
  if (r->status == 0) {
    sl_ingest_accepted(ic, SL_PATH_HTTP, r->sidx, r->count, r->bytes);
    sl_metric_observe(ic->commit_latency,
                      (double)(sl_now_mono_ns() - r->t0_ns) / 1e9);
    return respond(r->conn, 200,
                   "{\"stream\":\"%s\",\"first_offset\":%llu,\"count\":%u,"
                   "\"stored\":%u}\n",
                   ic->streams[r->sidx].name,
                   (unsigned long long)r->first_offset, r->count, r->own);
  }
  if (r->status == SL_EBACKPRESSURE) {
    sl_metric_add(ic->pauses[SL_PATH_HTTP], 1);
    return reject(h, r->conn, 429, r->status,
                  "the store's writer queue is full: retry later");
  }
  return reject(h, r->conn, 503, r->status, sl_strerror(r->status));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls) {
  sl_http_t *h = cls;
  hreq_t *r = *req_cls;

  if (!r) {
    char err[200];
    const char *v;
    switch (sl_hguard_verdict(conn)) {
    case SL_HGUARD_TOO_MANY_CONNS:
      return reject_close(h, conn, 503, SL_EBACKPRESSURE,
                          "too many connections (limits.max_connections)");
    case SL_HGUARD_TOO_MANY_ARGS:
      return reject(h, conn, 414, SL_EPROTO, "too many query arguments");
    case SL_HGUARD_OK:
      break;
    }
    bool inference = strcmp(url, "/v1/inference") == 0;
    if (strcmp(url, "/v1/events") != 0 && !inference)
      return reject(h, conn, 404, SL_ENOTFOUND, "no such path");
    if (strcmp(method, "POST") != 0)
      return reject(h, conn, 405, SL_EPROTO, "use POST");
    v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin_ok(h, v)) {
      snprintf(err, sizeof(err),
               "Origin '%.100s' is not allowed "
               "(listeners.http.allowed_origins)",
               v);
      return reject(h, conn, 403, SL_EPROTO, err);
    }
    if (!content_type_ok(
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type")))
      return reject(h, conn, 415, SL_EPROTO,
                    "Content-Type must be application/json, "
                    "application/x-ndjson or application/jsonl");
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    unsigned long long clen = cl ? strtoull(cl, NULL, 10) : 0;
    if (clen > h->max_body)
      return reject(h, conn, 413, SL_ETOOBIG, "body over the size limit");
    char ident[SL_AUTH_IDENT_MAX];
    if (sl_creds_http_login(h->ic->creds, conn, ident, sizeof(ident)) < 0)
      return reject(h, conn, 401, SL_EDENIED,
                    "a credential is needed: Authorization: Bearer TOKEN or "
                    "a client certificate");
    if (!(r = calloc(1, sizeof(*r))))
      return MHD_NO;
    memcpy(r->ident, ident, sizeof(ident));
    r->inference = inference;
    r->h = h;
    r->conn = conn;
    *req_cls = r;
    /* A known length is taken from the budget at once, before the body
     * arrives: refused here, nothing is buffered. */
    if (clen && body_grow(r, (size_t)clen) < 0)
      return reject(h, conn, 503, SL_EBACKPRESSURE, NO_BUDGET);
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (atomic_load(&r->state) != R_READING)
      return MHD_YES; /* refused: the rest of the body is dropped */
    if (r->len + n > h->max_body) {
      /* Chunked bodies have no Content-Length: stop buffering here. */
      atomic_store(&r->state, R_TOO_BIG);
      body_release(r);
      return MHD_YES;
    }
    if (r->len + n > r->cap) {
      size_t cap = r->cap ? r->cap : 16384;
      while (cap < r->len + n)
        cap *= 2;
      if (cap > h->max_body)
        cap = h->max_body;
      int rc = body_grow(r, cap);
      if (rc == SL_EBACKPRESSURE) {
        body_release(r);
        atomic_store(&r->state, R_NO_BUDGET);
        return MHD_YES;
      }
      if (rc < 0)
        return MHD_NO;
    }
    memcpy(r->body + r->len, upload_data, n);
    r->len += n;
    return MHD_YES;
  }
  switch (atomic_load(&r->state)) {
  case R_TOO_BIG:
    return reject(h, conn, 413, SL_ETOOBIG, "body over the size limit");
  case R_NO_BUDGET:
    return reject(h, conn, 503, SL_EBACKPRESSURE, NO_BUDGET);
  case R_READING:
    return submit(h, r);
  case R_DONE:
    return finish(h, r);
  default:
    return MHD_YES; /* spurious call while suspended */
  }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode why) {
  sl_http_t *h = cls;
  hreq_t *r = *req_cls;
  (void)why;
  sl_hguard_response_done(conn);
  if (!r)
    return;
  if (r->counted)
    atomic_fetch_sub(&h->inflight, 1);
  body_release(r);
  free(r);
  *req_cls = NULL;
}

/* Frees h once its server is stopped (or never started). */
static void http_free(sl_http_t *h) {
  sl_infer_dec_free(h->infdec);
  sl_hguard_free(h->hg);
  for (size_t i = 0; i < h->norigins; i++)
    free(h->origins[i]);
  free(h->origins);
  free(h);
}

int sl_http_start(sl_ingest_t *ic, sl_http_t **out, char *errstr,
                  size_t errlen) {
  const sl_config_t *cfg = ic->cfg;
  struct addrinfo hints = {0}, *ai = NULL;
  char host[256], portstr[8];
  uint16_t port;
  sl_http_t *h;
  struct MHD_OptionItem tls_opts[4];
  int rc;

  sl_tls_mhd_options(ic->creds->http, tls_opts);
  if ((rc = sl_addr_split(cfg->listeners.http_address, host, sizeof(host),
                          &port, errstr, errlen)) < 0)
    return rc;
  snprintf(portstr, sizeof(portstr), "%u", port);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  if ((rc = getaddrinfo(host, portstr, &hints, &ai)) != 0) {
    snprintf(errstr, errlen, "listeners.http.address '%s': %s",
             cfg->listeners.http_address, gai_strerror(rc));
    return -EINVAL;
  }
  if (!(h = calloc(1, sizeof(*h)))) {
    freeaddrinfo(ai);
    return -ENOMEM;
  }
  rc = 0;
  h->ic = ic;
  h->max_body = cfg->limits.max_frame_bytes;
  h->max_events = (uint32_t)cfg->limits.max_batch_events;
  sl_ingest_rules(ic, cfg, SL_PATH_HTTP, &h->rules);
  /* The MHD thread must not read ic->cfg (a reload swaps it). */
  if (cfg->listeners.http_origins.n &&
      !(h->origins = calloc(cfg->listeners.http_origins.n, sizeof(char *))))
    rc = -ENOMEM;
  for (size_t i = 0; rc == 0 && i < cfg->listeners.http_origins.n;
       i++, h->norigins++)
    if (!(h->origins[i] = strdup(cfg->listeners.http_origins.v[i])))
      rc = -ENOMEM;
  if (rc == 0) {
    sl_hguard_opts_t ho = {.request_timeout_ms = cfg->limits.request_timeout_ms,
                           .max_args = HTTP_MAX_ARGS,
                           .node = &ic->guard,
                           .path = SL_GUARD_HTTP,
                           .timeouts = sl_metrics_counter(
                               ic->mx, "sluice_ingest_request_timeouts_total",
                               "Connections closed because a request or a "
                               "native Hello/frame was not complete within "
                               "limits.request_timeout",
                               "path=\"http\"")};
    rc = sl_hguard_new(&ho, &h->hg);
  }
  if (rc < 0) {
    freeaddrinfo(ai);
    snprintf(errstr, errlen, "http: %s", sl_strerror(rc));
    http_free(h);
    return rc;
  }
  h->mhd = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
          MHD_ALLOW_SUSPEND_RESUME | sl_tls_mhd_flags(ic->creds->http) |
          (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
      0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER, sl_log_mhd_cb,
      (void *)"http", MHD_OPTION_SOCK_ADDR, ai->ai_addr,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_NOTIFY_CONNECTION, sl_hguard_notify, h->hg,
      MHD_OPTION_URI_LOG_CALLBACK, sl_hguard_uri, h->hg,
      MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)(cfg->limits.max_connections + HTTP_OVER_LIMIT_SLACK),
      MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)(cfg->limits.idle_timeout_ms
                     ? (cfg->limits.idle_timeout_ms + 999) / 1000
                     : 0),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_ARRAY,
      tls_opts, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->mhd) {
    snprintf(errstr, errlen, "listeners.http.address: cannot listen on %s",
             cfg->listeners.http_address);
    http_free(h);
    return -EADDRINUSE;
  }
  *out = h;
  return 0;
}

uint16_t sl_http_port(const sl_http_t *h) {
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  return info ? info->port : 0;
}

void sl_http_quiesce(sl_http_t *h) {
  atomic_store(&h->stopping, 1);
}

uint64_t sl_http_inflight(const sl_http_t *h) {
  return atomic_load(&((sl_http_t *)h)->inflight);
}

void sl_http_stop(sl_http_t *h) {
  if (!h)
    return;
  MHD_stop_daemon(h->mhd);
  http_free(h);
}
