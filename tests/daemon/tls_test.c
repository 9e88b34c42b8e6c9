/*
 * End-to-end tests of TLS and credentials on every listener
 * (docs/security/tls.md): the real daemon, a PKI made by the real openssl
 * CLI (tls_certs.sh), real curl for HTTP and admin, and a small OpenSSL
 * client speaking the native protocol. Identities are read back from the
 * store after the daemon stopped.
 *
 *   tls_test SLUICE_BINARY CERTS_SCRIPT native   native TCP TLS, tokens,
 *                                                mTLS, stream allow-list,
 *                                                SIGHUP certificate reload
 *   tls_test SLUICE_BINARY CERTS_SCRIPT http     the same over HTTPS
 *   tls_test SLUICE_BINARY CERTS_SCRIPT admin    admin HTTPS, POST /v1/reload
 *                                                needs the admin token,
 *                                                sluice_listener_insecure
 * Exits 77 (skipped) when openssl or curl is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "wire/frame.h"
#include "sluice/client.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "tests/common/daemon_fixture.h"

/* SHA-256 of the tokens below (printf %s TOKEN | sha256sum). */
#define TOKEN_LINE "tok-line-1-5c1e0b"
#define TOKEN_ADMIN "tok-admin-77aa01"

/* Runs a shell command, returns its stdout (first 4 KiB). */
static char *run(const char *cmd) {
  static char out[4096];
  size_t n = 0;
  FILE *f = popen(cmd, "r");
  CHECK(f, "popen %s", cmd);
  n = fread(out, 1, sizeof(out) - 1, f);
  out[n] = 0;
  pclose(f);
  return out;
}

static void sha256_hex(const char *s, char hex[65]) {
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "printf %%s '%s' | sha256sum", s);
  snprintf(hex, 65, "%.64s", run(cmd));
}

/* ---- daemon ------------------------------------------------------------- */

/* A pipeline that re-encodes every reading of stream readings (a tag): the
 * identity must survive it. */
#define TAG_PIPELINE                                                           \
  "pipelines:\n  - name: tagger\n    match: {stream: readings}\n"              \
  "    steps:\n      - filter: 'value > 0'\n        action: tag\n"             \
  "        tag: \"checked=yes\"\n"

static void write_tls_config(const char *listeners, const char *admin) {
  write_config_fmt("node:\n  id: tls-node\n  data_dir: %s\n"
                   "listeners:\n%s"
                   "admin:\n%s"
                   "streams:\n  - name: readings\n  - name: inference\n"
                   "  - name: bulk\n%s",
                   data_dir, listeners, admin, TAG_PIPELINE);
}

/* ---- a TLS client ------------------------------------------------------- */

typedef struct tcl {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl; /* NULL: plain TCP */
  sl_frame_buf_t in;
  sl_frame_arena_t *ar;
  char serial[64]; /* the server certificate's serial (hex) */
} tcl_t;

/* Connects to port, with TLS when tls (verifying the server against the
 * test CA and 127.0.0.1), presenting client certificate name (NULL: none).
 * Returns 0 when connected (and the handshake went through), else -1. */
static int tcl_open(tcl_t *t, int port, int tls, const char *name) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  struct timeval tv = {.tv_sec = 10};
  char path[400];

  memset(t, 0, sizeof(*t));
  sl_frame_buf_init(&t->in);
  CHECK(sl_frame_arena_new(1 << 20, &t->ar) == 0, "arena");
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (port < 0) { /* the Unix socket */
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    CHECK(strlen(sock_path) < sizeof(su.sun_path), "socket path too long");
    memcpy(su.sun_path, sock_path, strlen(sock_path) + 1);
    t->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(t->fd, (struct sockaddr *)&su, sizeof(su)) == 0,
          "connect %s: %s", sock_path, strerror(errno));
  } else {
    t->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(t->fd >= 0 && connect(t->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
          "connect %d: %s", port, strerror(errno));
  }
  setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (!tls)
    return 0;
  CHECK((t->ctx = SSL_CTX_new(TLS_client_method())), "SSL_CTX_new");
  snprintf(path, sizeof(path), "%s/ca.pem", dir);
  CHECK(SSL_CTX_load_verify_locations(t->ctx, path, NULL) == 1, "CA");
  SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
  if (name) {
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    CHECK(SSL_CTX_use_certificate_file(t->ctx, path, SSL_FILETYPE_PEM) == 1,
          "client cert %s", path);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    CHECK(SSL_CTX_use_PrivateKey_file(t->ctx, path, SSL_FILETYPE_PEM) == 1,
          "client key %s", path);
  }
  t->ssl = SSL_new(t->ctx);
  SSL_set_fd(t->ssl, t->fd);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), "127.0.0.1");
  if (SSL_connect(t->ssl) != 1) {
    ERR_clear_error();
    return -1;
  }
  X509 *crt = SSL_get1_peer_certificate(t->ssl);
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(crt), NULL);
  char *hex = BN_bn2hex(bn);
  snprintf(t->serial, sizeof(t->serial), "%s", hex);
  OPENSSL_free(hex);
  BN_free(bn);
  X509_free(crt);
  return 0;
}

static void tcl_close(tcl_t *t) {
  if (t->ssl)
    SSL_free(t->ssl);
  SSL_CTX_free(t->ctx);
  close(t->fd);
  sl_frame_buf_close(&t->in);
  sl_frame_arena_free(t->ar);
}

static int tcl_write(tcl_t *t, const void *p, size_t n) {
  if (t->ssl)
    return SSL_write(t->ssl, p, (int)n) == (int)n ? 0 : -1;
  return write(t->fd, p, n) == (ssize_t)n ? 0 : -1;
}

/* Reads the next frame; NULL on EOF, a TLS alert or timeout. */
static const Sluice__V1__Frame *tcl_frame(tcl_t *t) {
  for (;;) {
    const uint8_t *body;
    size_t consumed, blen;
    const Sluice__V1__Frame *fr;
    if (sl_frame_parse(t->in.data, t->in.len, 1 << 20, &consumed, &body,
                       &blen) < 0)
      return NULL;
    if (consumed) {
      int rc = sl_frame_decode(t->ar, body, blen, SL_FRAME_FROM_SERVER, &fr,
                               NULL, 0);
      sl_frame_buf_consume(&t->in, consumed);
      return rc < 0 ? NULL : fr;
    }
    CHECK(sl_frame_buf_reserve(&t->in, 4096) == 0, "reserve");
    int r = t->ssl ? SSL_read(t->ssl, t->in.data + t->in.len,
                              (int)(t->in.cap - t->in.len))
                   : (int)read(t->fd, t->in.data + t->in.len,
                               t->in.cap - t->in.len);
    if (r <= 0) {
      ERR_clear_error();
      return NULL;
    }
    t->in.len += (size_t)r;
  }
}

/* Hello with token; returns the reply's kind (HELLO_ACK, ERROR) or NONE
 * when the connection ended without one. *err gets an Error's code. */
static int tcl_hello(tcl_t *t, const char *token, int *err) {
  sl_frame_buf_t b;
  const Sluice__V1__Frame *fr;
  sl_frame_buf_init(&b);
  CHECK(sl_frame_encode_hello(&b, 1, "tls-test", token) == 0, "hello");
  int wrc = tcl_write(t, b.data, b.len);
  sl_frame_buf_close(&b);
  if (wrc < 0 || !(fr = tcl_frame(t)))
    return SLUICE__V1__FRAME__KIND__NOT_SET;
  if (fr->kind_case == SLUICE__V1__FRAME__KIND_ERROR && err)
    *err = fr->error->code;
  return fr->kind_case;
}

/* Publishes one reading carrying a forged identity attribute; returns the
 * reply's kind (ACK or ERROR). */
static int tcl_publish(tcl_t *t, const char *stream, double v, int *err) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Attribute at = SLUICE__V1__ATTRIBUTE__INIT, *ats[1] = {&at};
  Sluice__V1__Event *evs[1] = {&ev};
  sl_frame_buf_t b;
  const Sluice__V1__Frame *fr;
  static uint64_t batch = 1;

  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = v;
  ev.source = "plant/line1/temp";
  ev.time_ns = 1700000000000000000ll;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  at.key = "sluice.identity";
  at.value = "forged";
  ev.n_attributes = 1;
  ev.attributes = ats;
  sl_frame_buf_init(&b);
  CHECK(sl_frame_encode_publish(&b, batch++, stream, evs, 1, 1 << 20) == 0,
        "publish");
  int wrc = tcl_write(t, b.data, b.len);
  sl_frame_buf_close(&b);
  if (wrc < 0 || !(fr = tcl_frame(t)))
    return SLUICE__V1__FRAME__KIND__NOT_SET;
  if (fr->kind_case == SLUICE__V1__FRAME__KIND_ERROR && err)
    *err = fr->error->code;
  return fr->kind_case;
}

/* The serial a new TLS connection to port sees. */
static void serial_of(int port, char *buf, size_t len) {
  tcl_t t;
  CHECK(tcl_open(&t, port, 1, NULL) == 0, "TLS handshake with %d", port);
  snprintf(buf, len, "%s", t.serial);
  tcl_close(&t);
}

/* Switches the certificate files in the config and sends SIGHUP; waits
 * (bounded) until a new connection to port sees serial want. */
static void reload_cert(int port, const char *want) {
  char cmd[700], serial[64];
  uint64_t deadline = now_ms() + 10000;
  snprintf(cmd, sizeof(cmd), "sed -i 's/server1\\./server2./g' %s", cfg_path);
  CHECK(system(cmd) == 0, "%s", cmd);
  kill(daemon_pid, SIGHUP);
  for (;;) {
    serial_of(port, serial, sizeof(serial));
    if (!strcmp(serial, want))
      return;
    CHECK(now_ms() < deadline, "serial still %s, want %s after SIGHUP", serial,
          want);
    usleep(20000); /* polling for the reload, with a deadline */
  }
}

/* ---- verification -------------------------------------------------------- */

/* Reads stream name back; idents receives "v=<value> id=<identity>;" per
 * event, where identity is every sluice.identity attribute joined by '+'. */
static void read_idents(const char *name, char *idents, size_t cap) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  size_t n = 0;

  idents[0] = 0;
  CHECK(store_cursor(name, &st, &cur) == 0, "stream %s", name);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "batch decodes");
    for (size_t i = 0; i < b->n_events; i++) {
      Sluice__V1__Event *ev = b->events[i];
      n += (size_t)snprintf(idents + n, cap - n, "v=%g ",
                            ev->reading ? ev->reading->double_value : -1.0);
      int first = 1;
      for (size_t k = 0; k < ev->n_attributes; k++)
        if (!strcmp(ev->attributes[k]->key, "checked"))
          n += (size_t)snprintf(idents + n, cap - n, "tagged ");
      n += (size_t)snprintf(idents + n, cap - n, "id=");
      for (size_t k = 0; k < ev->n_attributes; k++)
        if (!strcmp(ev->attributes[k]->key, "sluice.identity")) {
          n += (size_t)snprintf(idents + n, cap - n, "%s%s", first ? "" : "+",
                                ev->attributes[k]->value);
          first = 0;
        }
      n += (size_t)snprintf(idents + n, cap - n, ";");
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  store_cursor_close(st, cur);
}

/* Events of stream name, and how many carry exactly one sluice.identity
 * attribute, equal to ident. */
static uint64_t count_ident(const char *name, const char *ident,
                            uint64_t *with) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t n = 0;

  *with = 0;
  CHECK(store_cursor(name, &st, &cur) == 0, "stream %s", name);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "batch decodes");
    for (size_t i = 0; i < b->n_events; i++, n++) {
      int hits = 0, right = 0;
      for (size_t k = 0; k < b->events[i]->n_attributes; k++)
        if (!strcmp(b->events[i]->attributes[k]->key, "sluice.identity")) {
          hits++;
          right = !strcmp(b->events[i]->attributes[k]->value, ident);
        }
      *with += hits == 1 && right;
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  store_cursor_close(st, cur);
  return n;
}

/* ---- libsluice over TLS ------------------------------------------------- */

typedef struct lib {
  pthread_mutex_t lock;
  uint64_t acked, failed;
  char reason[300]; /* last disconnect reason */
} lib_t;

static void lib_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first,
                    uint32_t count, int err, void *opaque) {
  lib_t *l = opaque;
  (void)cl, (void)batch_id, (void)first;
  pthread_mutex_lock(&l->lock);
  if (err == 0)
    l->acked += count;
  else
    l->failed += count;
  pthread_mutex_unlock(&l->lock);
}

static void lib_state(sl_client_t *cl, sl_client_state_t state, int err,
                      const char *reason, void *opaque) {
  lib_t *l = opaque;
  (void)cl, (void)err;
  pthread_mutex_lock(&l->lock);
  if (state != SL_CLIENT_CONNECTED)
    snprintf(l->reason, sizeof(l->reason), "%s", reason);
  pthread_mutex_unlock(&l->lock);
}

/* Publishes n readings to stream through libsluice with TLS (CA ca, client
 * certificate cert or NULL, token or NULL). Returns the flush result. */
static int lib_publish(lib_t *l, const char *ca, const char *cert,
                       const char *token, const char *stream, int n) {
  char addr[64], ca_path[400], crt[400], key[400];
  sl_client_opts_t o;
  sl_client_t *cl;
  int rc;

  memset(l, 0, sizeof(*l));
  pthread_mutex_init(&l->lock, NULL);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", native_port);
  snprintf(ca_path, sizeof(ca_path), "%s/%s.pem", dir, ca);
  sl_client_opts_init(&o);
  o.address = addr;
  o.client_id = "tls-lib";
  o.token = token;
  o.tls_ca_file = ca_path;
  if (cert) {
    snprintf(crt, sizeof(crt), "%s/%s.pem", dir, cert);
    snprintf(key, sizeof(key), "%s/%s.key", dir, cert);
    o.tls_cert_file = crt;
    o.tls_key_file = key;
  }
  o.max_batch_events = 100;
  o.ack_cb = lib_ack;
  o.state_cb = lib_state;
  o.opaque = l;
  CHECK(sl_client_new(&o, &cl) == 0, "sl_client_new with TLS");
  for (int i = 0; i < n; i++)
    CHECK(sl_client_publish_reading(
              cl, stream, "plant/line2/flow", 1700000000000000000ll + i,
              (double)i, SLUICE__V1__QUALITY__QUALITY_GOOD, "l/s", NULL) == 0,
          "publish %d", i);
  rc = sl_client_flush(cl, 3000);
  sl_client_free(cl);
  pthread_mutex_destroy(&l->lock);
  return rc;
}

/* ---- scenarios ---------------------------------------------------------- */

static const char *tls_block(const char *indent, char *buf, size_t len) {
  snprintf(buf, len,
           "%stls:\n%s  cert: %s/server1.pem\n%s  key: %s/server1.key\n"
           "%s  client_ca: %s/ca.pem\n",
           indent, indent, dir, indent, dir, indent, dir);
  return buf;
}

static const char *clients_block(const char *indent, char *buf, size_t len) {
  char hex[65];
  sha256_hex(TOKEN_LINE, hex);
  snprintf(buf, len,
           "%sclients:\n"
           "%s  - name: line-1\n%s    token_sha256: %s\n"
           "%s    streams: [readings, \"bul?\"]\n"
           "%s  - name: cam-1\n%s    cert_cn: cam-1\n"
           "%s    streams: [\"infer*\"]\n",
           indent, indent, indent, hex, indent, indent, indent, indent);
  return buf;
}

SL_SCENARIO(native) {
  char tls[1200], cl[1200], lis[3000], got[4096], serial[64];
  tcl_t t, keep;
  int err = 0;

  snprintf(lis, sizeof(lis),
           "  native:\n    tcp: \"127.0.0.1:0\"\n    unix: %s\n%s%s"
           "  http:\n    address: \"\"\n",
           sock_path, tls_block("    ", tls, sizeof(tls)),
           clients_block("    ", cl, sizeof(cl)));
  write_tls_config(lis, "  address: \"127.0.0.1:0\"\n");
  daemon_start(NULL);
  CHECK(log_has("native TLS certificate: CN=localhost serial=1001"),
        "certificate logged at start");

  /* Plain TCP on a TLS listener: no HelloAck, ever. */
  CHECK(tcl_open(&t, native_port, 0, NULL) == 0, "plain connect");
  CHECK(tcl_hello(&t, TOKEN_LINE, NULL) == SLUICE__V1__FRAME__KIND__NOT_SET,
        "plain-text hello on the TLS listener was answered");
  tcl_close(&t);
  /* TLS without a credential, and with a wrong token: refused. */
  CHECK(tcl_open(&t, native_port, 1, NULL) == 0, "TLS handshake");
  CHECK(!strcmp(t.serial, "1001"), "serial %s", t.serial);
  CHECK(tcl_hello(&t, NULL, &err) == SLUICE__V1__FRAME__KIND_ERROR &&
            err == SL_EDENIED,
        "no credential: want an SL_EDENIED error (got %d)", err);
  tcl_close(&t);
  CHECK(tcl_open(&t, native_port, 1, NULL) == 0, "TLS handshake");
  CHECK(tcl_hello(&t, "tok-wrong", &err) == SLUICE__V1__FRAME__KIND_ERROR &&
            err == SL_EDENIED,
        "wrong token accepted");
  tcl_close(&t);
  /* A certificate from another CA fails the handshake (TLS 1.3: the
   * client learns it at its first read). */
  if (tcl_open(&t, native_port, 1, "rogue") == 0)
    CHECK(tcl_hello(&t, NULL, NULL) == SLUICE__V1__FRAME__KIND__NOT_SET,
          "a certificate from another CA was accepted");
  tcl_close(&t);
  /* The Unix socket stays plain but needs the credential too. */
  CHECK(tcl_open(&t, -1, 0, NULL) == 0, "unix connect");
  CHECK(tcl_hello(&t, NULL, &err) == SLUICE__V1__FRAME__KIND_ERROR &&
            err == SL_EDENIED,
        "unix socket without a credential accepted");
  tcl_close(&t);
  CHECK(tcl_open(&t, -1, 0, NULL) == 0, "unix connect");
  CHECK(tcl_hello(&t, TOKEN_LINE, NULL) == SLUICE__V1__FRAME__KIND_HELLO_ACK,
        "unix socket with the token refused");
  tcl_close(&t);

  /* The token: readings yes, inference no (a clear, non-fatal error). */
  CHECK(tcl_open(&keep, native_port, 1, NULL) == 0, "TLS handshake");
  CHECK(tcl_hello(&keep, TOKEN_LINE, NULL) == SLUICE__V1__FRAME__KIND_HELLO_ACK,
        "token refused");
  CHECK(tcl_publish(&keep, "readings", 1, NULL) == SLUICE__V1__FRAME__KIND_ACK,
        "publish to readings");
  err = 0;
  CHECK(tcl_publish(&keep, "inference", 2, &err) ==
                SLUICE__V1__FRAME__KIND_ERROR &&
            err == SL_EDENIED,
        "line-1 wrote stream inference (err %d)", err);
  /* The certificate cam-1: inference yes, readings no. */
  CHECK(tcl_open(&t, native_port, 1, "cam-1") == 0, "mTLS handshake");
  CHECK(tcl_hello(&t, NULL, NULL) == SLUICE__V1__FRAME__KIND_HELLO_ACK,
        "client certificate refused");
  CHECK(tcl_publish(&t, "inference", 3, NULL) == SLUICE__V1__FRAME__KIND_ACK,
        "cam-1 publish to inference");
  CHECK(tcl_publish(&t, "readings", 4, &err) == SLUICE__V1__FRAME__KIND_ERROR &&
            err == SL_EDENIED,
        "cam-1 wrote stream readings");
  tcl_close(&t);

  /* libsluice with TLS: a token, a client certificate, and a wrong CA. */
  lib_t lib;
  CHECK(lib_publish(&lib, "ca", NULL, TOKEN_LINE, "bulk", 2000) == 0 &&
            lib.acked == 2000,
        "libsluice over TLS with a token: acked %llu",
        (unsigned long long)lib.acked);
  CHECK(lib_publish(&lib, "ca", "cam-1", NULL, "inference", 10) == 0 &&
            lib.acked == 10,
        "libsluice over TLS with a client certificate");
  CHECK(lib_publish(&lib, "other-ca", NULL, TOKEN_LINE, "bulk", 5) != 0 &&
            lib.acked == 0 && strstr(lib.reason, "certificate"),
        "libsluice trusted a daemon its CA does not vouch for (%s)",
        lib.reason);

  /* SIGHUP: new connections get the new certificate, the open one goes on. */
  serial_of(native_port, serial, sizeof(serial));
  CHECK(!strcmp(serial, "1001"), "serial before reload %s", serial);
  reload_cert(native_port, "1002");
  CHECK(tcl_publish(&keep, "readings", 5, NULL) == SLUICE__V1__FRAME__KIND_ACK,
        "the connection opened before the reload still works");
  tcl_close(&keep);
  stop_daemon_ok();

  read_idents("readings", got, sizeof(got));
  CHECK(!strcmp(got, "v=1 tagged id=line-1;v=5 tagged id=line-1;"),
        "readings: %s", got);
  uint64_t with, total = count_ident("bulk", "line-1", &with);
  CHECK(total == 2000 && with == 2000, "bulk: %llu events, %llu line-1",
        (unsigned long long)total, (unsigned long long)with);
  total = count_ident("inference", "cam-1", &with);
  CHECK(total == 11 && with == 11, "inference: %llu events, %llu cam-1",
        (unsigned long long)total, (unsigned long long)with);
}

/* curl against the HTTPS listener; returns the status code. */
static int curl(int port, const char *path, const char *auth, const char *cert,
                const char *body, const char *scheme) {
  char cmd[2000], ca[400], c[800] = "";
  snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
  if (cert)
    snprintf(c, sizeof(c), "--cert %s/%s.pem --key %s/%s.key", dir, cert, dir,
             cert);
  snprintf(cmd, sizeof(cmd),
           "curl -s -o /dev/null -w '%%{http_code}' --max-time 10 --cacert %s "
           "%s %s%s%s %s%s%s '%s://127.0.0.1:%d%s'",
           ca, c, auth ? "-H 'Authorization: Bearer " : "", auth ? auth : "",
           auth ? "'" : "",
           body ? "-H 'Content-Type: application/json' -d '" : "",
           body ? body : "", body ? "'" : "", scheme, port, path);
  return atoi(run(cmd));
}

/* An event whose client tries to set its own identity. */
static void ev_body(char *buf, size_t len, int v) {
  snprintf(buf, len,
           "{\"source\":\"s\",\"value\":%d,\"attributes\":{"
           "\"sluice.identity\":\"forged\",\"shift\":\"B\"}}",
           v);
}

SL_SCENARIO(http) {
  char tls[1200], cl[1200], lis[3000], got[4096], serial[64];
  char body[200];

  snprintf(lis, sizeof(lis),
           "  native:\n    tcp: \"\"\n  http:\n    address: \"127.0.0.1:0\"\n"
           "%s%s",
           tls_block("    ", tls, sizeof(tls)),
           clients_block("    ", cl, sizeof(cl)));
  write_tls_config(lis, "  address: \"127.0.0.1:0\"\n");
  daemon_start(NULL);

  ev_body(body, sizeof(body), 1);
  CHECK(curl(http_port, "/v1/events?stream=readings", NULL, NULL, body,
             "http") != 200,
        "plain HTTP accepted on the TLS listener");
  CHECK(curl(http_port, "/v1/events?stream=readings", NULL, NULL, body,
             "https") == 401,
        "no credential: want 401");
  CHECK(curl(http_port, "/v1/events?stream=readings", "tok-wrong", NULL, body,
             "https") == 401,
        "wrong token: want 401");
  CHECK(curl(http_port, "/v1/events?stream=readings", NULL, "rogue", body,
             "https") == 401,
        "a certificate from another CA: want 401 (or no answer)");
  CHECK(curl(http_port, "/v1/events?stream=readings", TOKEN_LINE, NULL, body,
             "https") == 200,
        "token: want 200");
  ev_body(body, sizeof(body), 2);
  CHECK(curl(http_port, "/v1/events?stream=inference", TOKEN_LINE, NULL, body,
             "https") == 403,
        "line-1 to inference: want 403");
  ev_body(body, sizeof(body), 3);
  CHECK(curl(http_port, "/v1/events?stream=inference", NULL, "cam-1", body,
             "https") == 200,
        "cam-1 certificate to inference: want 200");
  CHECK(curl(http_port, "/v1/events?stream=readings", NULL, "ops", body,
             "https") == 401,
        "a verified certificate mapped to no client: want 401");

  serial_of(http_port, serial, sizeof(serial));
  CHECK(!strcmp(serial, "1001"), "HTTP serial before reload %s", serial);
  reload_cert(http_port, "1002");
  ev_body(body, sizeof(body), 4);
  CHECK(curl(http_port, "/v1/events?stream=readings", TOKEN_LINE, NULL, body,
             "https") == 200,
        "token after reload: want 200");
  stop_daemon_ok();

  read_idents("readings", got, sizeof(got));
  CHECK(!strcmp(got, "v=1 tagged id=line-1;v=4 tagged id=line-1;"),
        "readings: %s", got);
  read_idents("inference", got, sizeof(got));
  CHECK(!strcmp(got, "v=3 id=cam-1;"), "inference: %s", got);
}

SL_SCENARIO(admin) {
  char tls[1200], adm[2000], hex[65], cmd[1200];
  const char *out;

  sha256_hex(TOKEN_ADMIN, hex);
  snprintf(adm, sizeof(adm),
           "  address: \"127.0.0.1:0\"\n  token_sha256: %s\n%s", hex,
           tls_block("  ", tls, sizeof(tls)));
  /* HTTP plain on every interface: the insecure listener. */
  write_tls_config("  native:\n    tcp: \"127.0.0.1:0\"\n"
                   "  http:\n    address: \"0.0.0.0:0\"\n",
                   adm);
  daemon_start(NULL);
  CHECK(log_has("http listener on 0.0.0.0:0 has no TLS"), "warning logged");
  CHECK(!log_has("native listener on"), "loopback native was warned about");

  snprintf(cmd, sizeof(cmd),
           "curl -s --max-time 10 --cacert %s/ca.pem "
           "https://127.0.0.1:%d/metrics | grep '^sluice_listener_insecure'",
           dir, admin_port);
  out = run(cmd);
  CHECK(strstr(out, "sluice_listener_insecure{listener=\"http\"} 1\n") &&
            strstr(out, "sluice_listener_insecure{listener=\"native\"} 0\n") &&
            strstr(out, "sluice_listener_insecure{listener=\"admin\"} 0\n"),
        "insecure gauges over HTTPS: %s", out);
  CHECK(curl(admin_port, "/healthz", NULL, NULL, NULL, "https") == 200,
        "healthz open without a credential");
  CHECK(curl(admin_port, "/v1/reload", NULL, NULL, "{}", "https") == 403,
        "reload without a credential: want 403");
  CHECK(curl(admin_port, "/v1/reload", "tok-wrong", NULL, "{}", "https") == 403,
        "reload with a wrong token: want 403");
  CHECK(curl(admin_port, "/v1/reload", TOKEN_ADMIN, NULL, "{}", "https") == 200,
        "reload with the admin token: want 200");
  CHECK(log_has("config reloaded"), "the reload ran");
  /* The admin CA's certificates are admin credentials too. */
  CHECK(curl(admin_port, "/v1/reload", NULL, "ops", "{}", "https") == 200,
        "reload with an admin client certificate: want 200");
  CHECK(curl(admin_port, "/v1/reload", NULL, "rogue", "{}", "https") != 200,
        "reload with a certificate of another CA accepted");
  stop_daemon_ok();
}

static int setup(int argc, char **argv) {
  char cmd[700];
  (void)argc;
  if (system("command -v openssl >/dev/null && command -v curl >/dev/null")) {
    fprintf(stderr, "skipped: openssl and curl are needed\n");
    return 77;
  }
  snprintf(cmd, sizeof(cmd), "%s %s", argv[2], dir);
  CHECK(system(cmd) == 0, "making certificates: %s", cmd);
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "tls", "CERTS_SCRIPT", setup);
}
