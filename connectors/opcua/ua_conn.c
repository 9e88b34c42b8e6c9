/*
 * connectors/opcua/ua_conn.c: OPC UA TCP, the secure channel (policy None)
 * and the session (ua_conn.h).
 *
 * Chunks. Every request is cut into chunks of at most the server's receive
 * buffer (from its Acknowledge); responses are assembled from their 'C'
 * chunks up to the 'F' one, bounded by max_message; an 'A' chunk aborts the
 * response and comes back as a fault with the server's status. Chunks of
 * two responses interleaved are refused (servers send a message's chunks
 * together; handling interleaving would need one assembly per request).
 *
 * Renewal. When three quarters of the channel token's lifetime have passed,
 * the next send first sends an OpenSecureChannel renew request; its response
 * is consumed by recv, and later messages use the new token (the server
 * accepts the old one until it expires, so nothing waits for the renewal).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "connectors/opcua/ua_conn.h"

#define OUR_BUF 65536u /* our receive and send buffer sizes */
#define HDR_MSG 24u    /* MSG header: 8 + channel, token, seq, request id */

struct sl_ua_conn {
  int fd;
  char *url;
  uint32_t timeout_ms, lifetime_req_ms, max_message;
  uint32_t send_chunk; /* the server's receive buffer */
  uint32_t max_chunks; /* the server's limit, 0: none */
  uint32_t channel_id, token_id, lifetime_ms;
  uint64_t token_mono; /* when the token was issued */
  uint32_t seq, next_req, next_handle;
  uint32_t renew_req; /* an OPN renew in flight, 0: none */
  uint32_t renewals;  /* renewals answered */
  char policy[128];   /* the user token policy of the session */
  bool resumed;       /* the session of a predecessor, reactivated */
  sl_ua_nodeid_t auth;
  char *auth_buf; /* auth token's string or opaque bytes */
  double session_timeout_ms;
  uint8_t *asm_buf; /* the response being assembled */
  size_t asm_len, asm_cap;
  uint32_t asm_req; /* its request id, 0: none */
  uint8_t chunk[OUR_BUF];
  char err[320];
};

static int fail(sl_ua_conn_t *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(sl_ua_conn_t *c, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof(c->err), fmt, ap);
  va_end(ap);
  return rc;
}

const char *sl_ua_conn_error(const sl_ua_conn_t *c) {
  return c->err;
}

double sl_ua_conn_session_timeout(const sl_ua_conn_t *c) {
  return c->session_timeout_ms;
}

int sl_ua_url_parse(const char *url, char *host, size_t cap, uint16_t *port) {
  const char *p, *end;
  size_t n;
  if (strncmp(url, "opc.tcp://", 10))
    return -EINVAL;
  p = url + 10;
  if (*p == '[') { /* [v6 address] */
    if (!(end = strchr(p, ']')))
      return -EINVAL;
    p++;
    n = (size_t)(end - p);
    end++;
  } else {
    end = p + strcspn(p, ":/");
    n = (size_t)(end - p);
  }
  if (!n || n >= cap)
    return -EINVAL;
  memcpy(host, p, n);
  host[n] = '\0';
  *port = 4840;
  if (*end == ':') {
    char *e;
    unsigned long v = strtoul(end + 1, &e, 10);
    if (e == end + 1 || v == 0 || v > 65535 || (*e && *e != '/'))
      return -EINVAL;
    *port = (uint16_t)v;
  } else if (*end && *end != '/') {
    return -EINVAL;
  }
  return 0;
}

/* ---- socket ------------------------------------------------------------- */

static int wait_fd(int fd, short ev, uint64_t deadline) {
  for (;;) {
    uint64_t now = sl_now_mono_ns();
    struct pollfd p = {fd, ev, 0};
    int ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
    int rc = poll(&p, 1, ms);
    if (rc > 0)
      return 0;
    if (rc == 0)
      return -ETIMEDOUT;
    if (errno != EINTR)
      return -errno;
  }
}

static int tcp_connect(sl_ua_conn_t *c, const char *host, uint16_t port) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL, *a;
  char ps[8];
  int rc = -ECONNREFUSED, fd = -1;
  uint64_t deadline = sl_now_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
  snprintf(ps, sizeof(ps), "%u", port);
  if ((rc = getaddrinfo(host, ps, &hints, &ai)))
    return fail(c, -EHOSTUNREACH, "cannot resolve %s: %s", host,
                gai_strerror(rc));
  rc = -ECONNREFUSED;
  for (a = ai; a; a = a->ai_next) {
    int e = 0, one = 1;
    socklen_t el = sizeof(e);
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                a->ai_protocol);
    if (fd < 0) {
      rc = -errno;
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
      rc = -errno;
    } else if ((rc = wait_fd(fd, POLLOUT, deadline)) == 0 &&
               getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e) {
      rc = -e;
    }
    if (rc == 0)
      break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0)
    return fail(c, rc, "connect %s:%u: %s", host, port, sl_strerror(rc));
  c->fd = fd;
  return 0;
}

static int write_all(sl_ua_conn_t *c, const uint8_t *p, size_t n) {
  uint64_t deadline = sl_now_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
  while (n) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN)
      return fail(c, -errno, "send: %s", strerror(errno));
    int rc = wait_fd(c->fd, POLLOUT, deadline);
    if (rc)
      return fail(c, rc, "send: %s", sl_strerror(rc));
  }
  return 0;
}

static int read_full(sl_ua_conn_t *c, uint8_t *p, size_t n, uint64_t deadline) {
  while (n) {
    ssize_t r = recv(c->fd, p, n, 0);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
      continue;
    }
    if (r == 0)
      return fail(c, -ECONNRESET, "server closed the connection");
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN)
      return fail(c, -errno, "recv: %s", strerror(errno));
    int rc = wait_fd(c->fd, POLLIN, deadline);
    if (rc)
      return rc == -ETIMEDOUT ? fail(c, rc, "no response in time") : rc;
  }
  return 0;
}

/* ---- chunks out --------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
  p[3] = (uint8_t)(v >> 24);
}

/* Sends body as one OPN or CLO message or as MSG chunks. */
static int send_msg(sl_ua_conn_t *c, const char *type, const uint8_t *body,
                    size_t len, uint32_t req_id) {
  sl_ua_wr_t w;
  int rc = 0;
  if (!strcmp(type, "OPN")) {
    sl_ua_wr_init(&w);
    sl_ua_wr_bytes(&w, "OPNF\0\0\0\0", 8);
    sl_ua_wr_u32(&w, c->channel_id);
    sl_ua_wr_cstr(&w, UA_POLICY_NONE);
    sl_ua_wr_i32(&w, -1); /* senderCertificate */
    sl_ua_wr_i32(&w, -1); /* receiverCertificateThumbprint */
    sl_ua_wr_u32(&w, ++c->seq);
    sl_ua_wr_u32(&w, req_id);
    sl_ua_wr_bytes(&w, body, len);
    sl_ua_wr_patch_u32(&w, 4, (uint32_t)w.len);
    rc = w.err ? w.err : write_all(c, w.p, w.len);
    sl_ua_wr_free(&w);
    return rc;
  }
  size_t room = c->send_chunk - HDR_MSG, off = 0, nchunks = 0;
  do {
    size_t n = SL_MIN(room, len - off);
    uint8_t h[HDR_MSG];
    int last = off + n == len;
    if (c->max_chunks && ++nchunks > c->max_chunks)
      return fail(c, SL_ETOOBIG, "request needs more than %u chunks",
                  c->max_chunks);
    memcpy(h, type, 3);
    h[3] = last ? 'F' : 'C';
    put32(h + 4, (uint32_t)(HDR_MSG + n));
    put32(h + 8, c->channel_id);
    put32(h + 12, c->token_id);
    put32(h + 16, ++c->seq);
    put32(h + 20, req_id);
    if ((rc = write_all(c, h, sizeof(h))) || (rc = write_all(c, body + off, n)))
      return rc;
    off += n;
  } while (off < len);
  return 0;
}

sl_ua_req_t sl_ua_conn_req(sl_ua_conn_t *c) {
  sl_ua_req_t rq = {.auth = c->auth.kind || c->auth.num ? &c->auth : NULL,
                    .handle = ++c->next_handle,
                    .timeout_ms = c->timeout_ms};
  return rq;
}

static uint32_t new_req_id(sl_ua_conn_t *c) {
  if (++c->next_req == 0)
    c->next_req = 1;
  return c->next_req;
}

static int send_opn(sl_ua_conn_t *c, int renew, uint32_t *req_id) {
  sl_ua_wr_t w;
  sl_ua_req_t rq = {.handle = ++c->next_handle, .timeout_ms = c->timeout_ms};
  int rc;
  sl_ua_wr_init(&w);
  sl_ua_enc_opn(&w, &rq, renew, c->lifetime_req_ms);
  *req_id = new_req_id(c);
  rc = w.err ? w.err : send_msg(c, "OPN", w.p, w.len, *req_id);
  sl_ua_wr_free(&w);
  return rc;
}

int sl_ua_conn_send(sl_ua_conn_t *c, const sl_ua_wr_t *req,
                    uint32_t *request_id) {
  int rc;
  if (c->fd < 0)
    return fail(c, SL_ECLOSED, "not connected");
  if (req->err)
    return req->err;
  if (!c->renew_req && c->lifetime_ms &&
      sl_now_mono_ns() - c->token_mono > (uint64_t)c->lifetime_ms * 750000u) {
    if ((rc = send_opn(c, 1, &c->renew_req)))
      return rc;
  }
  *request_id = new_req_id(c);
  return send_msg(c, "MSG", req->p, req->len, *request_id);
}

/* ---- chunks in ---------------------------------------------------------- */

static int asm_add(sl_ua_conn_t *c, const uint8_t *p, size_t n) {
  if (c->asm_len + n > c->max_message)
    return fail(c, SL_ETOOBIG, "response larger than %u bytes", c->max_message);
  if (c->asm_cap - c->asm_len < n) {
    size_t cap = c->asm_cap ? c->asm_cap : OUR_BUF;
    while (cap - c->asm_len < n)
      cap *= 2;
    uint8_t *q = realloc(c->asm_buf, cap);
    if (!q)
      return -ENOMEM;
    c->asm_buf = q;
    c->asm_cap = cap;
  }
  memcpy(c->asm_buf + c->asm_len, p, n);
  c->asm_len += n;
  return 0;
}

static int decode_into(sl_ua_conn_t *c, const uint8_t *p, size_t n,
                       sl_ua_arena_t *arena, sl_ua_msg_t *msg) {
  /* The message bytes move into the arena: its views live as long. */
  uint8_t *copy = sl_ua_arena_alloc(arena, n ? n : 1);
  int rc;
  if (!copy)
    return -ENOMEM;
  memcpy(copy, p, n);
  if ((rc = sl_ua_msg_decode(copy, n, arena, msg)))
    return fail(c, rc, "undecodable response: %s", sl_strerror(rc));
  return 0;
}

/* Reads one chunk; 1 when it completed a message (decoded into msg). */
static int read_chunk(sl_ua_conn_t *c, uint64_t deadline, sl_ua_arena_t *arena,
                      sl_ua_msg_t *msg, uint32_t *req_id) {
  sl_ua_chunk_hdr_t h;
  sl_ua_rd_t r;
  int rc;
  char nb[64];
  if ((rc = read_full(c, c->chunk, 8, deadline)))
    return rc;
  if (sl_ua_chunk_parse(c->chunk, OUR_BUF, &h))
    return fail(c, SL_EPROTO, "bad chunk header from server");
  if ((rc = read_full(c, c->chunk + 8, h.size - 8, deadline)))
    return rc;
  sl_ua_rd_init(&r, c->chunk + 8, h.size - 8, NULL);
  if (!strcmp(h.type, "ERR")) {
    uint32_t code = sl_ua_rd_u32(&r);
    sl_ua_str_t why = sl_ua_rd_str(&r);
    return fail(c, SL_ECLOSED, "server error %s: %.*s",
                sl_ua_status_name(code, nb, sizeof(nb)),
                why.len > 0 ? (int)SL_MIN(why.len, 200) : 0,
                why.len > 0 ? why.p : "");
  }
  if (strcmp(h.type, "MSG") && strcmp(h.type, "OPN"))
    return fail(c, SL_EPROTO, "unexpected %s message", h.type);
  uint32_t channel = sl_ua_rd_u32(&r);
  if (!strcmp(h.type, "OPN")) {
    sl_ua_str_t pol = sl_ua_rd_str(&r);
    (void)sl_ua_rd_str(&r);
    (void)sl_ua_rd_str(&r);
    if (!r.err && !sl_ua_str_eq(pol, UA_POLICY_NONE))
      return fail(c, SL_EPROTO, "server answered with another policy");
  } else {
    (void)sl_ua_rd_u32(&r); /* token id */
    if (channel != c->channel_id)
      return fail(c, SL_EPROTO, "message for channel %u on channel %u", channel,
                  c->channel_id);
  }
  (void)sl_ua_rd_u32(&r); /* sequence number */
  *req_id = sl_ua_rd_u32(&r);
  if (r.err)
    return fail(c, SL_EPROTO, "short chunk from server");
  const uint8_t *body = r.p + r.pos;
  size_t blen = r.len - r.pos;
  if (c->asm_req && c->asm_req != *req_id)
    return fail(c, SL_EPROTO, "interleaved response chunks");
  if (h.chunk == 'A') {
    uint32_t code = sl_ua_rd_u32(&r);
    c->asm_req = 0;
    c->asm_len = 0;
    memset(msg, 0, sizeof(*msg));
    msg->type = UA_ID_SERVICE_FAULT;
    msg->hdr.result = code ? code : UA_BAD_UNEXPECTED;
    return 1;
  }
  if (h.chunk == 'C') {
    c->asm_req = *req_id;
    return asm_add(c, body, blen);
  }
  if (c->asm_req) {
    if ((rc = asm_add(c, body, blen)))
      return rc;
    c->asm_req = 0;
    rc = decode_into(c, c->asm_buf, c->asm_len, arena, msg);
    c->asm_len = 0;
  } else {
    rc = decode_into(c, body, blen, arena, msg);
  }
  if (!rc && !strcmp(h.type, "OPN") && msg->type == UA_ID_OPN_RESP) {
    if (msg->hdr.result)
      return fail(c, SL_EPROTO, "OpenSecureChannel: %s",
                  sl_ua_status_name(msg->hdr.result, nb, sizeof(nb)));
    c->channel_id = msg->u.opn.channel_id;
    c->token_id = msg->u.opn.token_id;
    c->lifetime_ms = msg->u.opn.lifetime_ms;
    c->token_mono = sl_now_mono_ns();
  }
  return rc ? rc : 1;
}

int sl_ua_conn_recv(sl_ua_conn_t *c, int wait_ms, sl_ua_arena_t *arena,
                    sl_ua_msg_t *msg, uint32_t *request_id) {
  uint64_t start = sl_now_mono_ns();
  for (;;) {
    int rc;
    uint64_t now = sl_now_mono_ns(), deadline;
    if (c->fd < 0)
      return fail(c, SL_ECLOSED, "not connected");
    if (!c->asm_req) { /* between messages: wait up to wait_ms */
      uint64_t w = start + (uint64_t)wait_ms * 1000000u;
      if ((rc = wait_fd(c->fd, POLLIN, w)))
        return rc == -ETIMEDOUT ? -EAGAIN : rc;
    }
    /* A response that started must finish within the request timeout. */
    deadline = now + (uint64_t)c->timeout_ms * 1000000u;
    rc = read_chunk(c, deadline, arena, msg, request_id);
    if (rc < 0)
      return rc;
    if (rc == 0)
      continue;
    if (c->renew_req && *request_id == c->renew_req) {
      c->renew_req = 0; /* the renewal: consumed here */
      c->renewals++;
      continue;
    }
    return 0;
  }
}

int sl_ua_conn_call(sl_ua_conn_t *c, const sl_ua_wr_t *req,
                    sl_ua_arena_t *arena, sl_ua_msg_t *msg, sl_ua_other_cb cb,
                    void *opaque) {
  uint32_t id, got;
  uint64_t deadline;
  int rc;
  if ((rc = sl_ua_conn_send(c, req, &id)))
    return rc;
  deadline = sl_now_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
  for (;;) {
    uint64_t now = sl_now_mono_ns();
    if (now >= deadline)
      return fail(c, -ETIMEDOUT, "no response in %u ms", c->timeout_ms);
    rc = sl_ua_conn_recv(c, (int)((deadline - now) / 1000000u) + 1, arena, msg,
                         &got);
    if (rc == -EAGAIN)
      continue;
    if (rc)
      return rc;
    if (got == id)
      return 0;
    if (cb)
      cb(c, got, msg, opaque);
  }
}

/* ---- open and close ----------------------------------------------------- */

static int hello(sl_ua_conn_t *c) {
  sl_ua_wr_t w;
  sl_ua_arena_t a = {0};
  sl_ua_chunk_hdr_t h;
  sl_ua_rd_t r;
  uint64_t deadline = sl_now_mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
  int rc;
  char nb[64];
  sl_ua_wr_init(&w);
  sl_ua_wr_bytes(&w, "HELF\0\0\0\0", 8);
  sl_ua_wr_u32(&w, 0);       /* protocolVersion */
  sl_ua_wr_u32(&w, OUR_BUF); /* receiveBufferSize */
  sl_ua_wr_u32(&w, OUR_BUF); /* sendBufferSize */
  sl_ua_wr_u32(&w, c->max_message);
  sl_ua_wr_u32(&w, 0); /* maxChunkCount: any */
  sl_ua_wr_cstr(&w, c->url);
  sl_ua_wr_patch_u32(&w, 4, (uint32_t)w.len);
  rc = w.err ? w.err : write_all(c, w.p, w.len);
  sl_ua_wr_free(&w);
  if (rc || (rc = read_full(c, c->chunk, 8, deadline)))
    return rc;
  if (sl_ua_chunk_parse(c->chunk, 4096, &h))
    return fail(c, SL_EPROTO, "not an OPC UA server (bad Acknowledge)");
  if ((rc = read_full(c, c->chunk + 8, h.size - 8, deadline)))
    return rc;
  sl_ua_rd_init(&r, c->chunk + 8, h.size - 8, &a);
  if (!strcmp(h.type, "ERR")) {
    uint32_t code = sl_ua_rd_u32(&r);
    sl_ua_str_t why = sl_ua_rd_str(&r);
    return fail(c, SL_ECLOSED, "server refused Hello: %s %.*s",
                sl_ua_status_name(code, nb, sizeof(nb)),
                why.len > 0 ? (int)SL_MIN(why.len, 200) : 0,
                why.len > 0 ? why.p : "");
  }
  if (strcmp(h.type, "ACK"))
    return fail(c, SL_EPROTO, "expected Acknowledge, got %s", h.type);
  (void)sl_ua_rd_u32(&r); /* protocolVersion */
  uint32_t srv_recv = sl_ua_rd_u32(&r);
  (void)sl_ua_rd_u32(&r); /* its send buffer */
  (void)sl_ua_rd_u32(&r); /* its max message size */
  c->max_chunks = sl_ua_rd_u32(&r);
  if (r.err || srv_recv < 8192)
    return fail(c, SL_EPROTO, "bad Acknowledge (receive buffer %u)", srv_recv);
  c->send_chunk = SL_MIN(srv_recv, OUR_BUF);
  return 0;
}

static int open_channel(sl_ua_conn_t *c) {
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  uint32_t id, got;
  int rc;
  if ((rc = send_opn(c, 0, &id)))
    return rc;
  rc = sl_ua_conn_recv(c, (int)c->timeout_ms, &a, &m, &got);
  if (rc == -EAGAIN)
    rc = fail(c, -ETIMEDOUT, "no OpenSecureChannel response");
  else if (!rc && (got != id || m.type != UA_ID_OPN_RESP))
    rc =
        fail(c, SL_EPROTO, "OpenSecureChannel: unexpected response %u", m.type);
  sl_ua_arena_free(&a);
  return rc;
}

/* The endpoint with policy None, and the token policy for our identity.
 * The password goes as plain bytes only when the token policy says None
 * (or inherits the channel's, None) and the config allows it. */
static int pick_token(sl_ua_conn_t *c, const sl_ua_msg_t *m, const char *user,
                      bool allow_plain, char *policy, size_t cap) {
  int want = user ? 1 : 0, saw_encrypted = 0;
  for (uint32_t i = 0; i < m->u.session.neps; i++) {
    const sl_ua_endpoint_t *e = &m->u.session.eps[i];
    if (e->security_mode != 1 ||
        !sl_ua_str_eq(e->security_policy, UA_POLICY_NONE))
      continue;
    for (uint32_t k = 0; k < e->ntokens; k++) {
      const sl_ua_token_policy_t *t = &e->tokens[k];
      if (t->token_type != want || t->policy_id.len < 0 ||
          (size_t)t->policy_id.len >= cap)
        continue;
      if (want && t->security_policy.len > 0 &&
          !sl_ua_str_eq(t->security_policy, UA_POLICY_NONE)) {
        saw_encrypted = 1; /* needs the password encrypted: not supported */
        continue;
      }
      if (want && !allow_plain)
        return fail(c, SL_EDENIED,
                    "refusing to send a password over an unencrypted channel "
                    "(security policy None): set allow_plaintext_password "
                    "to allow it");
      memcpy(policy, t->policy_id.p, (size_t)t->policy_id.len);
      policy[t->policy_id.len] = '\0';
      return 0;
    }
  }
  if (saw_encrypted)
    return fail(c, SL_EDENIED,
                "the server wants the password encrypted (a user token "
                "security policy other than None): not supported");
  return fail(c, SL_EDENIED,
              "the server offers no %s login on a policy "
              "None endpoint",
              want ? "user name" : "anonymous");
}

static int activate(sl_ua_conn_t *c, const sl_ua_conn_opts_t *o);

static int open_session(sl_ua_conn_t *c, const sl_ua_conn_opts_t *o) {
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  sl_ua_wr_t w;
  sl_ua_req_t rq = sl_ua_conn_req(c);
  char nb[64];
  int rc;
  sl_ua_wr_init(&w);
  sl_ua_enc_create_session(&w, &rq, c->url, o->session_name,
                           o->session_timeout_ms);
  rc = sl_ua_conn_call(c, &w, &a, &m, NULL, NULL);
  sl_ua_wr_free(&w);
  if (rc)
    goto out;
  if (m.hdr.result) {
    rc = fail(c, SL_EPROTO, "CreateSession: %s",
              sl_ua_status_name(m.hdr.result, nb, sizeof(nb)));
    goto out;
  }
  c->session_timeout_ms = m.u.session.timeout_ms;
  c->auth = m.u.session.auth_token;
  if (c->auth.kind != UA_NID_NUMERIC && c->auth.kind != UA_NID_GUID) {
    size_t n = c->auth.str.len > 0 ? (size_t)c->auth.str.len : 0;
    if (!(c->auth_buf = malloc(n + 1))) {
      rc = -ENOMEM;
      goto out;
    }
    if (n)
      memcpy(c->auth_buf, c->auth.str.p, n);
    c->auth.str.p = c->auth_buf;
  }
  if ((rc = pick_token(c, &m, o->user, o->allow_plaintext_password, c->policy,
                       sizeof(c->policy))))
    goto out;
  rc = activate(c, o);
out:
  sl_ua_arena_free(&a);
  return rc;
}

/* ActivateSession with c's token and policy (a new session, or a
 * predecessor's on this new channel). */
static int activate(sl_ua_conn_t *c, const sl_ua_conn_opts_t *o) {
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  sl_ua_wr_t w;
  sl_ua_req_t rq;
  char nb[64];
  int rc;
  sl_ua_identity_t id = {
      .policy_id = c->policy, .user = o->user, .password = o->password};
  rq = sl_ua_conn_req(c);
  sl_ua_wr_init(&w);
  sl_ua_enc_activate_session(&w, &rq, &id);
  rc = sl_ua_conn_call(c, &w, &a, &m, NULL, NULL);
  if (w.p)
    memset(w.p, 0, w.len); /* the password */
  sl_ua_wr_free(&w);
  if (!rc && m.hdr.result)
    rc = fail(c,
              sl_ua_severity(m.hdr.result) >= 2 &&
                      (m.hdr.result & 0xffff0000u) != UA_BAD_SERVICE_UNSUPPORTED
                  ? SL_EDENIED
                  : SL_EPROTO,
              "ActivateSession%s: %s", o->user ? " (user name)" : "",
              sl_ua_status_name(m.hdr.result, nb, sizeof(nb)));
  sl_ua_arena_free(&a);
  return rc;
}

/* Takes prev's session (token, policy) into c, for a reactivation. */
static int take_session(sl_ua_conn_t *c, sl_ua_conn_t *prev) {
  c->auth = prev->auth;
  if (prev->auth_buf) {
    size_t n = prev->auth.str.len > 0 ? (size_t)prev->auth.str.len : 0;
    if (!(c->auth_buf = malloc(n + 1)))
      return -ENOMEM;
    if (n)
      memcpy(c->auth_buf, prev->auth_buf, n);
    c->auth.str.p = c->auth_buf;
  }
  c->session_timeout_ms = prev->session_timeout_ms;
  memcpy(c->policy, prev->policy, sizeof(c->policy));
  return 0;
}

static void forget_session(sl_ua_conn_t *c) {
  free(c->auth_buf);
  c->auth_buf = NULL;
  memset(&c->auth, 0, sizeof(c->auth));
}

static int open_conn(const sl_ua_conn_opts_t *o, sl_ua_conn_t *prev,
                     sl_ua_conn_t **out, char *err, size_t errlen);

int sl_ua_conn_open(const sl_ua_conn_opts_t *o, sl_ua_conn_t **out, char *err,
                    size_t errlen) {
  return open_conn(o, NULL, out, err, errlen);
}

int sl_ua_conn_reopen(const sl_ua_conn_opts_t *o, sl_ua_conn_t *prev,
                      sl_ua_conn_t **out, char *err, size_t errlen) {
  return open_conn(o, prev, out, err, errlen);
}

void sl_ua_conn_drop(sl_ua_conn_t *c) {
  if (c && c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
}

bool sl_ua_conn_resumed(const sl_ua_conn_t *c) {
  return c->resumed;
}

static int open_conn(const sl_ua_conn_opts_t *o, sl_ua_conn_t *prev,
                     sl_ua_conn_t **out, char *err, size_t errlen) {
  sl_ua_conn_t *c;
  char host[256];
  uint16_t port;
  int rc;
  *out = NULL;
  if (sl_ua_url_parse(o->url, host, sizeof(host), &port)) {
    snprintf(err, errlen, "bad endpoint URL %s (want opc.tcp://host:port)",
             o->url);
    return SL_ECONFIG;
  }
  if (!(c = calloc(1, sizeof(*c))) || !(c->url = strdup(o->url))) {
    free(c);
    return -ENOMEM;
  }
  c->fd = -1;
  c->timeout_ms = o->timeout_ms ? o->timeout_ms : 10000;
  c->lifetime_req_ms =
      o->channel_lifetime_ms ? o->channel_lifetime_ms : 3600000;
  c->max_message = o->max_message ? o->max_message : 64u << 20;
  c->send_chunk = 8192;
  if ((rc = tcp_connect(c, host, port)) || (rc = hello(c)) ||
      (rc = open_channel(c)))
    goto fail;
  /* A predecessor's session (its connection was lost) is reactivated on
   * the new channel: its subscriptions and their queues live on. When the
   * server no longer has it, a new session. */
  if (prev && (prev->auth.num || prev->auth.kind) && prev->policy[0]) {
    if ((rc = take_session(c, prev)))
      goto fail;
    if (!(rc = activate(c, o))) {
      c->resumed = true;
      *out = c;
      return 0;
    }
    if (c->fd < 0 || rc == SL_ECLOSED || rc == -ETIMEDOUT || rc == -ECONNRESET)
      goto fail; /* the connection itself failed */
    /* Why not, for the caller's log (err holds it on success too). */
    snprintf(err, errlen, "session not reactivated: %s", c->err);
    forget_session(c);
  }
  if ((rc = open_session(c, o))) {
  fail:
    snprintf(err, errlen, "%s", c->err);
    sl_ua_conn_abort(c);
    return rc;
  }
  *out = c;
  return 0;
}

void sl_ua_conn_abort(sl_ua_conn_t *c) {
  if (!c)
    return;
  if (c->fd >= 0)
    close(c->fd);
  free(c->auth_buf);
  free(c->asm_buf);
  free(c->url);
  free(c);
}

void sl_ua_conn_close(sl_ua_conn_t *c, bool delete_subs) {
  sl_ua_wr_t w;
  sl_ua_arena_t a = {0};
  sl_ua_msg_t m;
  uint32_t id;
  if (!c)
    return;
  if (c->fd >= 0 && (c->auth.num || c->auth.kind)) {
    sl_ua_req_t rq = sl_ua_conn_req(c);
    uint32_t saved = c->timeout_ms;
    c->timeout_ms = SL_MIN(saved, 2000u); /* a goodbye, not a wait */
    sl_ua_wr_init(&w);
    sl_ua_enc_close_session(&w, &rq, delete_subs);
    (void)sl_ua_conn_call(c, &w, &a, &m, NULL, NULL);
    sl_ua_wr_free(&w);
    sl_ua_arena_free(&a);
    if (c->fd >= 0) {
      rq = sl_ua_conn_req(c);
      rq.auth = NULL;
      sl_ua_wr_init(&w);
      sl_ua_enc_clo(&w, &rq);
      if (!w.err)
        (void)send_msg(c, "CLO", w.p, w.len, new_req_id(c));
      sl_ua_wr_free(&w);
    }
    (void)id;
  }
  sl_ua_conn_abort(c);
}

uint32_t sl_ua_conn_renewals(const sl_ua_conn_t *c) {
  return c->renewals;
}

uint32_t sl_ua_conn_lifetime(const sl_ua_conn_t *c) {
  return c->lifetime_ms;
}
