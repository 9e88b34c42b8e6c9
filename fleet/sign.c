/*
 * fleet/sign.c: Ed25519 signatures of fleet documents (OpenSSL EVP).
 * The signature covers the payload's exact bytes inside a Signed envelope
 * (fleet.proto), so neither side needs a canonical protobuf encoding: the
 * node verifies the very bytes it then parses. Kafka ACLs say who may write
 * a topic, not who wrote a record; the signature says the second.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"

struct sl_fleet_key {
  EVP_PKEY *pkey;
  bool priv;
  char id[17];
};

void sl_fleet_sha256_hex(const void *data, size_t len, char hex[65]) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(data, len, d);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static int finish_key(EVP_PKEY *pk, bool priv, sl_fleet_key_t **out, char *err,
                      size_t errlen) {
  unsigned char raw[64];
  size_t rlen = sizeof(raw);
  char hex[65];
  sl_fleet_key_t *k;

  if (EVP_PKEY_get_id(pk) != EVP_PKEY_ED25519) {
    snprintf(err, errlen, "not an Ed25519 key");
    EVP_PKEY_free(pk);
    return SL_EKEY;
  }
  if (EVP_PKEY_get_raw_public_key(pk, raw, &rlen) != 1) {
    snprintf(err, errlen, "cannot read the public key");
    EVP_PKEY_free(pk);
    return SL_EKEY;
  }
  if (!(k = calloc(1, sizeof(*k)))) {
    EVP_PKEY_free(pk);
    return -ENOMEM;
  }
  sl_fleet_sha256_hex(raw, rlen, hex);
  memcpy(k->id, hex, 16);
  k->pkey = pk;
  k->priv = priv;
  *out = k;
  return 0;
}

int sl_fleet_key_parse(const char *pem, size_t len, bool want_private,
                       sl_fleet_key_t **out, char *err, size_t errlen) {
  BIO *b;
  EVP_PKEY *pk = NULL;
  bool priv = false;

  *out = NULL;
  if (len > INT32_MAX || !(b = BIO_new_mem_buf(pem, (int)len)))
    return -ENOMEM;
  pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  if (pk) {
    priv = true;
  } else if (!want_private) {
    (void)BIO_reset(b);
    pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
  }
  BIO_free(b);
  if (!pk) {
    snprintf(err, errlen, "not a PEM %s key",
             want_private ? "private" : "public or private");
    return SL_EKEY;
  }
  return finish_key(pk, priv, out, err, errlen);
}

int sl_fleet_key_load(const char *path, bool want_private, sl_fleet_key_t **out,
                      char *err, size_t errlen) {
  FILE *f = fopen(path, "re");
  char buf[16384];
  size_t n;
  int rc;

  *out = NULL;
  if (!f) {
    rc = -errno;
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return rc;
  }
  n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  if (n == sizeof(buf)) {
    snprintf(err, errlen, "%s: too large for a key file", path);
    return SL_EKEY;
  }
  rc = sl_fleet_key_parse(buf, n, want_private, out, err, errlen);
  OPENSSL_cleanse(buf, sizeof(buf));
  if (rc < 0) {
    char why[200];
    snprintf(why, sizeof(why), "%s", err);
    snprintf(err, errlen, "%s: %s", path, why);
  }
  return rc;
}

const char *sl_fleet_key_id(const sl_fleet_key_t *k) {
  return k->id;
}

void sl_fleet_key_free(sl_fleet_key_t *k) {
  if (!k)
    return;
  EVP_PKEY_free(k->pkey);
  free(k);
}

int sl_fleet_sign(const sl_fleet_key_t *k, int kind, const void *payload,
                  size_t len, uint8_t **out, size_t *outlen) {
  Sluice__V1__Signed s = SLUICE__V1__SIGNED__INIT;
  unsigned char sig[64];
  size_t siglen = sizeof(sig);
  EVP_MD_CTX *ctx;
  int ok;

  *out = NULL;
  if (!k->priv)
    return SL_EKEY;
  if (!(ctx = EVP_MD_CTX_new()))
    return -ENOMEM;
  ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
       EVP_DigestSign(ctx, sig, &siglen, payload, len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok)
    return SL_EKEY;
  s.payload.data = (uint8_t *)payload;
  s.payload.len = len;
  s.signature.data = sig;
  s.signature.len = siglen;
  s.key_id = (char *)k->id;
  s.kind = (Sluice__V1__Signed__Kind)kind;
  *outlen = sluice__v1__signed__get_packed_size(&s);
  if (!(*out = malloc(*outlen ? *outlen : 1)))
    return -ENOMEM;
  sluice__v1__signed__pack(&s, *out);
  return 0;
}

int sl_fleet_verify(const sl_fleet_key_t *k, const void *msg, size_t len,
                    int *kind, const uint8_t **payload, size_t *plen,
                    void **hold, char *err, size_t errlen) {
  Sluice__V1__Signed *s;
  EVP_MD_CTX *ctx;
  uint8_t *copy;
  int ok;

  *hold = NULL;
  *payload = NULL;
  *plen = 0;
  s = sluice__v1__signed__unpack(NULL, len, msg);
  if (s && !s->signature.len && !s->payload.len) {
    sluice__v1__signed__free_unpacked(s, NULL);
    s = NULL; /* parsed as unknown fields only */
  }
  if (!s) {
    snprintf(err, errlen, "not a signed fleet document (%zu bytes)", len);
    return SL_EPROTO;
  }
  if (strcmp(s->key_id, k->id) != 0) {
    snprintf(err, errlen,
             "signed by key %.16s, this node trusts key %s (fleet.verify_key)",
             s->key_id, k->id);
    sluice__v1__signed__free_unpacked(s, NULL);
    return SL_ESIGNATURE;
  }
  if (!(ctx = EVP_MD_CTX_new())) {
    sluice__v1__signed__free_unpacked(s, NULL);
    return -ENOMEM;
  }
  ok = s->signature.len == 64 &&
       EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
       EVP_DigestVerify(ctx, s->signature.data, s->signature.len,
                        s->payload.data, s->payload.len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    snprintf(err, errlen, "signature does not verify (key %s)", k->id);
    sluice__v1__signed__free_unpacked(s, NULL);
    return SL_ESIGNATURE;
  }
  if (!(copy = malloc(s->payload.len ? s->payload.len : 1))) {
    sluice__v1__signed__free_unpacked(s, NULL);
    return -ENOMEM;
  }
  memcpy(copy, s->payload.data, s->payload.len);
  *kind = (int)s->kind;
  *payload = copy;
  *plen = s->payload.len;
  *hold = copy;
  sluice__v1__signed__free_unpacked(s, NULL);
  return 0;
}
