/*
 * crypt.c: encryption at rest. Each batch sealed with AES-256-GCM (OpenSSL
 * EVP) on the encoding thread, after compression.
 *
 * Keys. "id:64-hex-digits" entries (separated by newlines, spaces or
 * commas; '#' starts a comment) from a key file, which must be a regular
 * file owned by the running user and not readable or writable by group or
 * others, or from an environment variable. The highest id seals new
 * batches; every listed id opens old ones, so rotation is: add a line with
 * a higher id and restart. Key bytes are never printed and are cleansed at
 * close.
 *
 * Check values. For every key that ever sealed (it was the highest id at a
 * read-write open) the meta sub-db keeps "kcv"+BE32(id) -> the first 16
 * bytes of SHA-256("sluice store key check v1" || key). An open refuses a
 * key whose check value differs (a wrong key, reported as such rather than
 * as corrupt batches) and, read-write, a store whose recorded key ids are
 * not all provided (their batches would be unreadable).
 *
 * Nonces. 96 bits: a random base drawn at open, plus a per-open 64-bit
 * counter added to its low 8 bytes, so nonces never repeat within an open
 * and two opens collide only if two random 96-bit bases land within the
 * number of batches of each other.
 *
 * Authenticated data: the stream id, the 56-byte header with the first
 * offset and append time zeroed (the writer fills them in later, under the
 * xxh3 checksum), the key id and the nonce.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "store/store_int.h"

#define KEYS_TEXT_MAX (64u << 10)
#define KEYS_MAX 256u

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int cmp_key(const void *a, const void *b) {
  const store_key_t *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int kcv(const uint8_t key[STORE_KEY_BYTES], uint8_t out[STORE_KCV_LEN]) {
  static const char label[] = "sluice store key check v1";
  uint8_t buf[sizeof(label) - 1 + STORE_KEY_BYTES], md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  int ok;

  memcpy(buf, label, sizeof(label) - 1);
  memcpy(buf + sizeof(label) - 1, key, STORE_KEY_BYTES);
  ok = EVP_Digest(buf, sizeof(buf), md, &mdlen, EVP_sha256(), NULL);
  OPENSSL_cleanse(buf, sizeof(buf));
  if (!ok || mdlen < STORE_KCV_LEN)
    return SL_ESTORE;
  memcpy(out, md, STORE_KCV_LEN);
  return 0;
}

/* Parses text (NUL-terminated, modified) into st->keys. Messages name the
 * entry by its position and id, never the key bytes. */
static int parse_keys(sl_store_t *st, char *text, char *errstr, size_t errlen) {
  size_t entry = 0;
  char *p = text;
  int rc;

  if (!(st->keys = calloc(KEYS_MAX, sizeof(*st->keys))))
    return -ENOMEM;
  while (*p) {
    char *tok, *colon, *end;
    unsigned long long id;
    size_t n;
    if (*p == '#') {
      p += strcspn(p, "\n");
      continue;
    }
    if (strchr(" \t\r\n,", *p)) {
      p++;
      continue;
    }
    tok = p;
    n = strcspn(p, " \t\r\n,#");
    p += n;
    entry++;
    colon = memchr(tok, ':', n);
    errno = 0;
    id = colon ? strtoull(tok, &end, 10) : 0;
    if (!colon || end != colon || tok == colon || errno || id == 0 ||
        id > UINT32_MAX) {
      store__seterr(
          errstr, errlen,
          "%s: entry %zu is not \"id:key\" with an id in 1..4294967295",
          st->key_src, entry);
      return SL_EKEY;
    }
    if ((size_t)(tok + n - colon - 1) != 2 * STORE_KEY_BYTES) {
      store__seterr(errstr, errlen,
                    "%s: key id %llu must be %u hex digits (a 256-bit key)",
                    st->key_src, id, 2 * STORE_KEY_BYTES);
      return SL_EKEY;
    }
    if (st->nkeys == KEYS_MAX) {
      store__seterr(errstr, errlen, "%s: more than %u keys", st->key_src,
                    KEYS_MAX);
      return SL_EKEY;
    }
    for (size_t i = 0; i < st->nkeys; i++)
      if (st->keys[i].id == id) {
        store__seterr(errstr, errlen, "%s: key id %llu is listed twice",
                      st->key_src, id);
        return SL_EKEY;
      }
    {
      store_key_t *k = &st->keys[st->nkeys];
      k->id = (uint32_t)id;
      for (unsigned i = 0; i < STORE_KEY_BYTES; i++) {
        int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
        if (hi < 0 || lo < 0) {
          store__seterr(errstr, errlen, "%s: key id %llu is not hexadecimal",
                        st->key_src, id);
          return SL_EKEY;
        }
        k->key[i] = (uint8_t)(hi << 4 | lo);
      }
      if ((rc = kcv(k->key, k->kcv)))
        return rc;
      st->nkeys++;
    }
  }
  if (st->nkeys == 0) {
    store__seterr(errstr, errlen, "%s holds no key", st->key_src);
    return SL_EKEY;
  }
  qsort(st->keys, st->nkeys, sizeof(*st->keys), cmp_key);
  st->seal = &st->keys[st->nkeys - 1];
  return 0;
}

/* Reads the key file, refusing one that others could read or replace. */
static int read_key_file(const char *path, char *buf, char *errstr,
                         size_t errlen) {
  struct stat sb;
  size_t got = 0;
  ssize_t n;
  int fd, rc;

  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    rc = -errno;
    store__seterr(errstr, errlen, "cannot open key file %s: %s", path,
                  strerror(errno));
    return errno == ENOENT || errno == ELOOP ? SL_EKEY : rc;
  }
  if (fstat(fd, &sb) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
      (sb.st_mode & 077) != 0) {
    store__seterr(
        errstr, errlen,
        "key file %s must be a regular file owned by uid %u with mode "
        "0600 or 0400 (it is mode %04o, uid %u): chmod 600 and chown it",
        path, (unsigned)geteuid(), (unsigned)(sb.st_mode & 07777),
        (unsigned)sb.st_uid);
    close(fd);
    return SL_EKEY;
  }
  while (got < KEYS_TEXT_MAX &&
         (n = read(fd, buf + got, KEYS_TEXT_MAX - got)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = -errno;
      close(fd);
      return rc;
    }
    got += (size_t)n;
  }
  close(fd);
  buf[got] = '\0';
  return 0;
}

int store__keys_load(sl_store_t *st, char *errstr, size_t errlen) {
  const char *file = st->opts.key_file, *env = st->opts.key_env;
  char *buf;
  int rc;

  if (file && !*file)
    file = NULL;
  if (env && !*env)
    env = NULL;
  /* The options point into the caller's memory: do not keep them. */
  st->opts.key_file = st->opts.key_env = NULL;
  if (!file && !env)
    return 0;
  if (file && env) {
    store__seterr(errstr, errlen,
                  "give an encryption key file or an environment variable, not "
                  "both");
    return SL_ECONFIG;
  }
  if (!(st->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL))) {
    store__seterr(errstr, errlen, "OpenSSL has no AES-256-GCM");
    return SL_ESTORE;
  }
  if (RAND_bytes(st->nonce_base, sizeof(st->nonce_base)) != 1) {
    store__seterr(errstr, errlen, "OpenSSL RAND_bytes failed");
    return SL_ESTORE;
  }
  if (!(buf = malloc(KEYS_TEXT_MAX + 1)))
    return -ENOMEM;
  buf[0] = '\0';
  if (file) {
    snprintf(st->key_src, sizeof(st->key_src), "key file %s", file);
    rc = read_key_file(file, buf, errstr, errlen);
  } else {
    const char *v = getenv(env);
    snprintf(st->key_src, sizeof(st->key_src), "environment variable %s", env);
    rc = 0;
    if (!v || !*v) {
      store__seterr(errstr, errlen, "environment variable %s is not set", env);
      rc = SL_EKEY;
    } else if (strlen(v) > KEYS_TEXT_MAX) {
      store__seterr(errstr, errlen, "environment variable %s is too long", env);
      rc = SL_EKEY;
    } else {
      strcpy(buf, v);
    }
  }
  if (rc == 0)
    rc = parse_keys(st, buf, errstr, errlen);
  OPENSSL_cleanse(buf, KEYS_TEXT_MAX + 1);
  free(buf);
  return rc;
}

void store__keys_free(sl_store_t *st) {
  if (st->keys) {
    OPENSSL_cleanse(st->keys, KEYS_MAX * sizeof(*st->keys));
    free(st->keys);
  }
  st->keys = NULL;
  st->nkeys = 0;
  st->seal = NULL;
  EVP_CIPHER_free(st->aes);
  st->aes = NULL;
}

static const store_key_t *key_find(sl_store_t *st, uint32_t id) {
  for (size_t i = 0; i < st->nkeys; i++)
    if (st->keys[i].id == id)
      return &st->keys[i];
  return NULL;
}

int store__keys_check(sl_store_t *st, MDB_txn *txn, char *errstr,
                      size_t errlen) {
  uint8_t kb[7] = {'k', 'c', 'v'};
  MDB_val k = {3, kb}, v;
  MDB_cursor *c;
  int rc;

  if ((rc = mdb_cursor_open(txn, st->dbi_meta, &c)))
    return store__err(st, rc);
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const store_key_t *key;
    uint32_t id;
    if (k.mv_size != 7 || memcmp(k.mv_data, "kcv", 3) != 0)
      break;
    id = sl_get_be32((const uint8_t *)k.mv_data + 3);
    key = key_find(st, id);
    if (key && (v.mv_size != STORE_KCV_LEN ||
                memcmp(v.mv_data, key->kcv, STORE_KCV_LEN) != 0)) {
      store__seterr(errstr, errlen,
                    "%s: key id %u is not the key that sealed this store's "
                    "batches (its check value differs): restore the right key",
                    st->key_src, id);
      rc = SL_EKEY;
      goto out;
    }
    if (!key && !st->rdonly) {
      if (st->nkeys)
        store__seterr(
            errstr, errlen,
            "this store may hold batches sealed with key id %u, which "
            "%s does not provide: keep every old key listed (new "
            "batches use the highest id)",
            id, st->key_src);
      else
        store__seterr(errstr, errlen,
                      "this store holds batches sealed with key id %u but no "
                      "encryption key is configured (store.encryption_key_file "
                      "or store.encryption_key_env)",
                      id);
      rc = SL_EKEY;
      goto out;
    }
  }
  rc = rc == MDB_NOTFOUND ? 0 : store__err(st, rc);
  if (rc == 0 && st->seal && !st->rdonly) {
    sl_put_be32(kb + 3, st->seal->id);
    k.mv_size = 7;
    k.mv_data = kb;
    if (mdb_get(txn, st->dbi_meta, &k, &v) == MDB_NOTFOUND)
      rc = store__err(st, store__meta_put(txn, st->dbi_meta, kb, 7,
                                          st->seal->kcv, STORE_KCV_LEN));
  }
out:
  mdb_cursor_close(c);
  return rc;
}

static void make_nonce(sl_store_t *st, uint8_t nonce[STORE_NONCE_LEN]) {
  uint64_t ctr = atomic_fetch_add(&st->nonce_ctr, 1);

  memcpy(nonce, st->nonce_base, 4);
  sl_put_be64(nonce + 4, sl_get_be64(st->nonce_base + 4) + ctr);
}

/* stream BE32 | header with FIRST, APPEND and (v3) STIME zeroed | key id |
 * nonce. Returns the AAD length. The header length follows its version. */
static size_t make_aad(uint8_t aad[4 + STORE_HDR_MAX + STORE_SEAL_LEN],
                       uint32_t stream, const uint8_t *hdr,
                       const uint8_t *seal) {
  size_t hl =
      hdr[STORE_H_VERSION] >= STORE_BATCH_V3 ? STORE_HDR_LEN_V3 : STORE_HDR_LEN;
  sl_put_be32(aad, stream);
  memcpy(aad + 4, hdr, hl);
  memset(aad + 4 + STORE_H_FIRST, 0, 8);
  memset(aad + 4 + STORE_H_APPEND, 0, 8);
  if (hl == STORE_HDR_LEN_V3)
    memset(aad + 4 + STORE_H_STIME, 0, 8);
  memcpy(aad + 4 + hl, seal, STORE_SEAL_LEN);
  return 4 + hl + STORE_SEAL_LEN;
}

int store__seal(sl_store_t *st, uint32_t stream, uint8_t *hdr, uint8_t *p,
                size_t len) {
  uint8_t aad[4 + STORE_HDR_MAX + STORE_SEAL_LEN];
  uint8_t *seal = p - STORE_SEAL_LEN;
  EVP_CIPHER_CTX *ctx;
  int n, rc = SL_ESTORE;
  size_t alen;

  sl_put_be32(seal, st->seal->id);
  make_nonce(st, seal + 4);
  alen = make_aad(aad, stream, hdr, seal);
  if (!(ctx = EVP_CIPHER_CTX_new()))
    return -ENOMEM;
  if (EVP_EncryptInit_ex2(ctx, st->aes, st->seal->key, seal + 4, NULL) == 1 &&
      EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)alen) == 1 &&
      EVP_EncryptUpdate(ctx, p, &n, p, (int)len) == 1 &&
      EVP_EncryptFinal_ex(ctx, p + n, &n) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, STORE_TAG_LEN, p + len) ==
          1)
    rc = 0;
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

int store__unseal(sl_store_t *st, uint32_t stream, const store_hdr_t *h,
                  uint8_t *out) {
  uint8_t aad[4 + STORE_HDR_MAX + STORE_SEAL_LEN];
  const store_key_t *key = key_find(st, h->key_id);
  EVP_CIPHER_CTX *ctx;
  int n, rc = SL_ECORRUPT;
  size_t alen;

  if (!key || !st->aes)
    return SL_EKEY;
  alen = make_aad(aad, stream, h->hdr, h->nonce - 4);
  if (!(ctx = EVP_CIPHER_CTX_new()))
    return -ENOMEM;
  if (EVP_DecryptInit_ex2(ctx, st->aes, key->key, h->nonce, NULL) == 1 &&
      EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)alen) == 1 &&
      EVP_DecryptUpdate(ctx, out, &n, h->payload, (int)h->pay_len) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, STORE_TAG_LEN,
                          (void *)h->tag) == 1 &&
      EVP_DecryptFinal_ex(ctx, out + n, &n) == 1)
    rc = 0;
  EVP_CIPHER_CTX_free(ctx);
  if (rc)
    OPENSSL_cleanse(out, h->pay_len); /* never hand out unauthenticated text */
  return rc;
}
