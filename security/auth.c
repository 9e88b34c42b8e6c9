/*
 * Client credentials and the identity attribute (security/auth.h).
 */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "security/auth.h"
#include "wire/wire.h"

typedef struct client {
  char name[SL_AUTH_IDENT_MAX];
  uint8_t hash[32]; /* SHA-256 of the token */
  int has_hash;
  char *cert_cn;  /* owned, "" = none */
  char **streams; /* owned patterns */
  size_t nstreams;
} client_t;

typedef struct table {
  client_t *v;
  size_t n;
} table_t;

struct sl_auth {
  pthread_rwlock_t lock;
  table_t lis[SL_AUTH_N];
  uint8_t legacy[32]; /* SHA-256 of listeners.native.token */
  int has_legacy;
  uint8_t admin[32]; /* admin.token_sha256 */
  int has_admin;
};

static int unhex(const char *hex, uint8_t out[32]) {
  for (size_t i = 0; i < 32; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1)
      return -1;
    out[i] = (uint8_t)v;
  }
  return 0;
}

static void sha256(const char *s, uint8_t out[32]) {
  SHA256((const unsigned char *)s, strlen(s), out);
}

void sl_auth_sha256_hex(const char *s, char hex[65]) {
  uint8_t h[32];
  sha256(s, h);
  for (size_t i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

static void table_free(table_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    client_t *c = &t->v[i];
    free(c->cert_cn);
    for (size_t k = 0; k < c->nstreams; k++)
      free(c->streams[k]);
    free(c->streams);
  }
  free(t->v);
  t->v = NULL;
  t->n = 0;
}

static int table_build(table_t *t, const sl_config_clients_t *cl) {
  if (!cl->n)
    return 0;
  if (!(t->v = calloc(cl->n, sizeof(*t->v))))
    return -ENOMEM;
  t->n = cl->n;
  for (size_t i = 0; i < cl->n; i++) {
    const sl_config_client_t *cc = &cl->v[i];
    client_t *c = &t->v[i];
    snprintf(c->name, sizeof(c->name), "%s", cc->name);
    if (*cc->token_sha256 && unhex(cc->token_sha256, c->hash) == 0)
      c->has_hash = 1;
    if (!(c->cert_cn = strdup(cc->cert_cn)) ||
        !(c->streams = calloc(cc->streams.n + 1, sizeof(char *))))
      return -ENOMEM;
    for (size_t k = 0; k < cc->streams.n; k++) {
      if (!(c->streams[k] = strdup(cc->streams.v[k])))
        return -ENOMEM;
      c->nstreams++;
    }
  }
  return 0;
}

int sl_auth_new(const sl_config_t *cfg, sl_auth_t **out) {
  sl_auth_t *au = calloc(1, sizeof(*au));
  int rc;
  if (!au)
    return -ENOMEM;
  pthread_rwlock_init(&au->lock, NULL);
  if ((rc = table_build(&au->lis[SL_AUTH_NATIVE],
                        &cfg->listeners.native_clients)) < 0 ||
      (rc = table_build(&au->lis[SL_AUTH_HTTP], &cfg->listeners.http_clients)) <
          0) {
    sl_auth_free(au);
    return rc;
  }
  if (cfg->listeners.native_token && *cfg->listeners.native_token) {
    sha256(cfg->listeners.native_token, au->legacy);
    au->has_legacy = 1;
  }
  if (cfg->admin.token_sha256 && *cfg->admin.token_sha256 &&
      unhex(cfg->admin.token_sha256, au->admin) == 0)
    au->has_admin = 1;
  *out = au;
  return 0;
}

void sl_auth_free(sl_auth_t *au) {
  if (!au)
    return;
  for (int l = 0; l < SL_AUTH_N; l++)
    table_free(&au->lis[l]);
  pthread_rwlock_destroy(&au->lock);
  free(au);
}

void sl_auth_swap(sl_auth_t *au, sl_auth_t *nw) {
  table_t old[SL_AUTH_N];
  pthread_rwlock_wrlock(&au->lock);
  memcpy(old, au->lis, sizeof(old));
  memcpy(au->lis, nw->lis, sizeof(au->lis));
  memcpy(au->legacy, nw->legacy, sizeof(au->legacy));
  au->has_legacy = nw->has_legacy;
  memcpy(au->admin, nw->admin, sizeof(au->admin));
  au->has_admin = nw->has_admin;
  pthread_rwlock_unlock(&au->lock);
  memcpy(nw->lis, old, sizeof(old)); /* freed with nw */
  sl_auth_free(nw);
}

/* A listener with no credential at all accepts anybody. */
static int is_open(const sl_auth_t *au, sl_auth_listener_t l) {
  return au->lis[l].n == 0 && !(l == SL_AUTH_NATIVE && au->has_legacy);
}

int sl_auth_login(sl_auth_t *au, sl_auth_listener_t l, const char *token,
                  const char *cert_cn, char *ident, size_t identlen) {
  const table_t *t;
  uint8_t h[32];
  int rc = SL_EDENIED, have_token = token && *token;

  if (have_token)
    sha256(token, h);
  pthread_rwlock_rdlock(&au->lock);
  t = &au->lis[l];
  if (cert_cn && *cert_cn) {
    for (size_t i = 0; i < t->n; i++)
      if (*t->v[i].cert_cn && !strcmp(t->v[i].cert_cn, cert_cn)) {
        snprintf(ident, identlen, "%s", t->v[i].name);
        rc = 0;
        goto done;
      }
  }
  if (have_token) {
    /* Every configured hash is compared, each in constant time: the time
     * taken says nothing about how close a guess came. */
    int hit = -1;
    for (size_t i = 0; i < t->n; i++)
      if (t->v[i].has_hash && CRYPTO_memcmp(h, t->v[i].hash, 32) == 0 &&
          hit < 0)
        hit = (int)i;
    if (hit >= 0) {
      snprintf(ident, identlen, "%s", t->v[hit].name);
      rc = 0;
      goto done;
    }
    if (l == SL_AUTH_NATIVE && au->has_legacy &&
        CRYPTO_memcmp(h, au->legacy, 32) == 0) {
      snprintf(ident, identlen, "%s", SL_AUTH_LEGACY_IDENT);
      rc = 0;
      goto done;
    }
  }
  if (is_open(au, l)) {
    snprintf(ident, identlen, "%s", cert_cn ? cert_cn : "");
    rc = 0;
  }
done:
  pthread_rwlock_unlock(&au->lock);
  return rc;
}

int sl_auth_allowed(sl_auth_t *au, sl_auth_listener_t l, const char *ident,
                    const char *stream) {
  const table_t *t;
  int rc = SL_EDENIED;

  pthread_rwlock_rdlock(&au->lock);
  t = &au->lis[l];
  if (is_open(au, l) || (l == SL_AUTH_NATIVE && au->has_legacy &&
                         !strcmp(ident, SL_AUTH_LEGACY_IDENT))) {
    rc = 0;
    goto done;
  }
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->v[i].name, ident))
      continue;
    for (size_t k = 0; k < t->v[i].nstreams; k++)
      if (fnmatch(t->v[i].streams[k], stream, 0) == 0) {
        rc = 0;
        break;
      }
    break;
  }
done:
  pthread_rwlock_unlock(&au->lock);
  return rc;
}

int sl_auth_admin(sl_auth_t *au, const char *token, int cert_ok) {
  uint8_t h[32];
  int rc = SL_EDENIED;
  if (cert_ok)
    return 0;
  if (!token || !*token)
    return SL_EDENIED;
  sha256(token, h);
  pthread_rwlock_rdlock(&au->lock);
  if (au->has_admin && CRYPTO_memcmp(h, au->admin, 32) == 0)
    rc = 0;
  pthread_rwlock_unlock(&au->lock);
  return rc;
}

/* ---- the identity attribute -------------------------------------------- */

#define TAG_BATCH_EVENT ((1u << 3) | 2u)
#define TAG_EVENT_ATTR ((9u << 3) | 2u)
#define TAG_ATTR_KEY ((1u << 3) | 2u)

/* True when the Attribute message [p, end) has key SL_AUTH_ATTR. */
static int is_identity_attr(const uint8_t *p, const uint8_t *end) {
  const uint8_t *val, *next;
  uint64_t key;
  size_t vlen;
  for (; p < end; p = next) {
    if (!(next = sl_pb_next_field(p, end, &key, &val, &vlen)))
      return 0;
    if (key == TAG_ATTR_KEY)
      return vlen == sizeof(SL_AUTH_ATTR) - 1 &&
             !memcmp(val, SL_AUTH_ATTR, vlen);
  }
  return 0;
}

int sl_auth_stamp(sl_frame_buf_t *batch, const char *ident,
                  sl_frame_buf_t *tmp) {
  const uint8_t *p = batch->data, *end = batch->data + batch->len, *val, *next;
  size_t ilen = strlen(ident), alen = 0, vlen;
  uint64_t key;
  sl_frame_buf_t t;
  uint32_t nev = 0;

  if (!ilen && (!batch->len || !memmem(batch->data, batch->len, SL_AUTH_ATTR,
                                       sizeof(SL_AUTH_ATTR) - 1)))
    return 0;
  /* Attribute{key, value} and its field 9 header. */
  if (ilen) {
    size_t body =
        2 + sizeof(SL_AUTH_ATTR) - 1 + 1 + sl_wire_varint_size(ilen) + ilen;
    alen = 1 + sl_wire_varint_size(body) + body;
  }
  for (const uint8_t *q = p; q < end; q = next, nev++)
    if (!(next = sl_pb_next_field(q, end, &key, &val, &vlen)))
      return SL_EPROTO;
  sl_frame_buf_init(&t);
  /* Each event grows by alen and its length prefix by at most 10 bytes. */
  if (sl_frame_buf_reserve(&t, batch->len + (size_t)nev * (alen + 10)) < 0)
    return -ENOMEM;
  for (; p < end; p = next) {
    next = sl_pb_next_field(p, end, &key, &val, &vlen);
    if (key != TAG_BATCH_EVENT) {
      memcpy(t.data + t.len, p, (size_t)(next - p));
      t.len += (size_t)(next - p);
      continue;
    }
    /* First pass: the event's new length. */
    const uint8_t *e = val, *eend = val + vlen, *ev, *enext;
    uint64_t ekey;
    size_t evlen, nlen = alen;
    for (const uint8_t *q = e; q < eend; q = enext) {
      if (!(enext = sl_pb_next_field(q, eend, &ekey, &ev, &evlen))) {
        sl_frame_buf_close(&t);
        return SL_EPROTO;
      }
      if (!(ekey == TAG_EVENT_ATTR && is_identity_attr(ev, ev + evlen)))
        nlen += (size_t)(enext - q);
    }
    t.data[t.len++] = TAG_BATCH_EVENT;
    t.len += sl_wire_varint_put(t.data + t.len, nlen);
    for (const uint8_t *q = e; q < eend; q = enext) {
      enext = sl_pb_next_field(q, eend, &ekey, &ev, &evlen);
      if (ekey == TAG_EVENT_ATTR && is_identity_attr(ev, ev + evlen))
        continue;
      memcpy(t.data + t.len, q, (size_t)(enext - q));
      t.len += (size_t)(enext - q);
    }
    if (ilen) {
      size_t body =
          2 + sizeof(SL_AUTH_ATTR) - 1 + 1 + sl_wire_varint_size(ilen) + ilen;
      t.data[t.len++] = TAG_EVENT_ATTR;
      t.len += sl_wire_varint_put(t.data + t.len, body);
      t.data[t.len++] = TAG_ATTR_KEY;
      t.data[t.len++] = sizeof(SL_AUTH_ATTR) - 1;
      memcpy(t.data + t.len, SL_AUTH_ATTR, sizeof(SL_AUTH_ATTR) - 1);
      t.len += sizeof(SL_AUTH_ATTR) - 1;
      t.data[t.len++] = (2u << 3) | 2u;
      t.len += sl_wire_varint_put(t.data + t.len, ilen);
      memcpy(t.data + t.len, ident, ilen);
      t.len += ilen;
    }
  }
  /* The caller's tmp gets the old bytes; batch the new ones. */
  sl_frame_buf_close(tmp);
  *tmp = *batch;
  *batch = t;
  return 0;
}

int sl_auth_stamp_batch(sl_frame_buf_t *batch, const char *ident, int decode,
                        Sluice__V1__EventBatch **decoded) {
  sl_frame_buf_t old;
  int rc;
  sl_frame_buf_init(&old);
  rc = sl_auth_stamp(batch, ident, &old);
  if (rc == 0 && old.data && decode &&
      !(*decoded =
            sluice__v1__event_batch__unpack(NULL, batch->len, batch->data)))
    rc = -ENOMEM;
  sl_frame_buf_close(&old);
  return rc;
}
