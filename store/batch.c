/*
 * batch.c: the batch value format (header, payload, checksum): encoding on
 * the caller's thread, sealing by the writer, inflating on the reader's, and
 * the zstd contexts and dictionaries both use. Keys and header decoding are
 * in batch_hdr.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "store/store_int.h"

static void put_be16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

void store__batch_seal(sl_store_batch_t *b, uint64_t first, int64_t now_ns,
                       int64_t store_ns) {
  sl_put_be64(b->buf + STORE_H_FIRST, first);
  sl_put_be64(b->buf + STORE_H_APPEND, (uint64_t)now_ns);
  sl_put_be64(b->buf + STORE_H_STIME, (uint64_t)store_ns);
  sl_put_be64(b->buf + b->len - STORE_SUM_LEN,
              XXH3_64bits(b->buf, b->len - STORE_SUM_LEN));
}

int store__batch_inflate(sl_store_t *st, ZSTD_DCtx *dctx, uint32_t stream,
                         const store_hdr_t *h, uint8_t **buf, size_t *cap) {
  const ZSTD_DDict *dd = NULL;
  store_hdr_t plain;
  uint8_t *clear = NULL;
  size_t n;
  int rc;

  if (*cap < h->raw_len || !*buf) {
    size_t ncap = SL_MAX((size_t)h->raw_len, (size_t)4096);
    uint8_t *nb = realloc(*buf, ncap);
    if (!nb)
      return -ENOMEM;
    *buf = nb;
    *cap = ncap;
  }
  if (h->sealed && h->codec == STORE_CODEC_NONE)
    return store__unseal(st, stream, h, *buf);
  if (h->sealed) {
    /* Decrypt the compressed bytes aside, then inflate as a plain batch. */
    if (!(clear = malloc(SL_MAX(h->pay_len, 1u))))
      return -ENOMEM;
    if ((rc = store__unseal(st, stream, h, clear))) {
      free(clear);
      return rc;
    }
    plain = *h;
    plain.payload = clear;
    h = &plain;
  }
  if (h->codec == STORE_CODEC_NONE) {
    memcpy(*buf, h->payload, h->raw_len);
    return 0;
  }
  rc = 0;
  if (h->dict_id && !(dd = store__dict_ddict(st, h->dict_id)))
    rc = SL_ECORRUPT; /* names a dictionary this store does not have */
  if (rc == 0) {
    n = ZSTD_decompress_usingDDict(dctx, *buf, h->raw_len, h->payload,
                                   h->pay_len, dd);
    if (ZSTD_isError(n) || n != h->raw_len)
      rc = SL_ECORRUPT;
  }
  free(clear);
  return rc;
}

ZSTD_CCtx *store__cctx_get(sl_store_t *st) {
  ZSTD_CCtx *cctx = NULL;

  pthread_mutex_lock(&st->pool_lock);
  if (st->ncctx > 0)
    cctx = st->cctx_pool[--st->ncctx];
  pthread_mutex_unlock(&st->pool_lock);
  if (!cctx && (cctx = ZSTD_createCCtx()))
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, st->opts.zstd_level);
  return cctx;
}

void store__cctx_put(sl_store_t *st, ZSTD_CCtx *cctx) {
  pthread_mutex_lock(&st->pool_lock);
  if (st->ncctx < STORE_CCTX_POOL) {
    st->cctx_pool[st->ncctx++] = cctx;
    cctx = NULL;
  }
  pthread_mutex_unlock(&st->pool_lock);
  ZSTD_freeCCtx(cctx);
}

/* Finds or loads dictionary id; pool_lock held. Returns NULL if absent. */
static store_dict_t *dict_find(sl_store_t *st, uint32_t id) {
  store_dict_t *d;
  MDB_txn *txn;
  MDB_val k, v;
  uint8_t kb[4];

  for (size_t i = 0; i < st->ndicts; i++)
    if (st->dicts[i].id == id)
      return &st->dicts[i];
  if (!st->dbi_dicts || st->ndicts == st->dcap) {
    size_t ncap = st->dcap ? st->dcap * 2 : 8;
    store_dict_t *nd;
    if (!st->dbi_dicts || !(nd = realloc(st->dicts, ncap * sizeof(*nd))))
      return NULL;
    st->dicts = nd;
    st->dcap = ncap;
  }
  if (store__rtxn_begin(st, &txn))
    return NULL;
  sl_put_be32(kb, id);
  k.mv_size = 4;
  k.mv_data = kb;
  d = NULL;
  if (mdb_get(txn, st->dbi_dicts, &k, &v) == 0 && v.mv_size > 8 &&
      sl_get_be32(v.mv_data) == STORE_DICT_MAGIC) {
    const uint8_t *p = v.mv_data;
    d = &st->dicts[st->ndicts];
    memset(d, 0, sizeof(*d));
    d->id = id;
    d->stream = sl_get_be32(p + 4);
    /* Both digest the dictionary now: no pointer into the map survives. */
    d->cdict = ZSTD_createCDict(p + 8, v.mv_size - 8, st->opts.zstd_level);
    d->ddict = ZSTD_createDDict(p + 8, v.mv_size - 8);
    if (!d->cdict || !d->ddict) {
      ZSTD_freeCDict(d->cdict);
      ZSTD_freeDDict(d->ddict);
      d = NULL;
    } else {
      st->ndicts++;
    }
  }
  store__rtxn_end(st, txn);
  return d;
}

const ZSTD_CDict *store__dict_cdict(sl_store_t *st, uint32_t id) {
  store_dict_t *d;

  pthread_mutex_lock(&st->pool_lock);
  d = dict_find(st, id);
  pthread_mutex_unlock(&st->pool_lock);
  return d ? d->cdict : NULL;
}

const ZSTD_DDict *store__dict_ddict(sl_store_t *st, uint32_t id) {
  store_dict_t *d;

  pthread_mutex_lock(&st->pool_lock);
  d = dict_find(st, id);
  pthread_mutex_unlock(&st->pool_lock);
  return d ? d->ddict : NULL;
}

void store__dicts_free(sl_store_t *st) {
  for (size_t i = 0; i < st->ndicts; i++) {
    ZSTD_freeCDict(st->dicts[i].cdict);
    ZSTD_freeDDict(st->dicts[i].ddict);
  }
  free(st->dicts);
  st->dicts = NULL;
  st->ndicts = st->dcap = 0;
}

int sl_store_batch_new(sl_store_t *st, uint32_t stream, const void *payload,
                       size_t len, uint32_t count, int64_t min_time_ns,
                       int64_t max_time_ns, sl_store_batch_t **bp) {
  const ZSTD_CDict *cd = NULL;
  sl_store_batch_t *b = NULL;
  ZSTD_CCtx *cctx = NULL;
  store_stream_t s;
  size_t bound, clen, pre, post;
  uint8_t *p, *pay;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  /* Sealed: a seal block before the payload and a tag after it. */
  pre = st->seal ? STORE_SEAL_LEN : 0;
  post = st->seal ? STORE_TAG_LEN : 0;
  if (len > SL_STORE_BATCH_MAX)
    return SL_ETOOBIG;
  if (count == 0 || min_time_ns > max_time_ns || (!payload && len))
    return SL_ECONFIG;
  if ((rc = store__stream_get(st, stream, &s)))
    return rc;
  if (s.dict_id && !(cd = store__dict_cdict(st, s.dict_id)))
    s.dict_id = 0; /* unreadable dictionary: fall back to none */
  bound = ZSTD_compressBound(len);
  if (!(b = calloc(1, sizeof(*b))) ||
      !(b->buf =
            malloc(STORE_HDR_LEN_V3 + pre + bound + post + STORE_SUM_LEN))) {
    rc = -ENOMEM;
    goto fail;
  }
  if (!(cctx = store__cctx_get(st))) {
    rc = -ENOMEM;
    goto fail;
  }
  p = b->buf;
  pay = p + STORE_HDR_LEN_V3 + pre;
  if (cd)
    clen = ZSTD_compress_usingCDict(cctx, pay, bound, payload, len, cd);
  else
    clen = ZSTD_compress2(cctx, pay, bound, payload, len);
  store__cctx_put(st, cctx);
  if (ZSTD_isError(clen)) {
    rc = SL_ESTORE;
    goto fail;
  }
  if (clen >= len) { /* incompressible: store it as is */
    memcpy(pay, payload, len);
    clen = len;
    p[STORE_H_CODEC] = STORE_CODEC_NONE;
    s.dict_id = 0;
  } else {
    p[STORE_H_CODEC] = STORE_CODEC_ZSTD;
  }
  sl_put_be32(p + STORE_H_MAGIC, STORE_BATCH_MAGIC);
  /* One writer: version 3 (the store clock at append), SEALED when
   * encrypting. */
  p[STORE_H_VERSION] = STORE_BATCH_V3;
  put_be16(p + STORE_H_FLAGS, st->seal ? STORE_FLAG_SEALED : 0);
  sl_put_be32(p + STORE_H_COUNT, count);
  sl_put_be32(p + STORE_H_DICT, s.dict_id);
  sl_put_be64(p + STORE_H_FIRST, 0);
  sl_put_be64(p + STORE_H_MINT, (uint64_t)min_time_ns);
  sl_put_be64(p + STORE_H_MAXT, (uint64_t)max_time_ns);
  sl_put_be64(p + STORE_H_APPEND, 0);
  sl_put_be64(p + STORE_H_STIME, 0);
  sl_put_be32(p + STORE_H_RAWLEN, (uint32_t)len);
  sl_put_be32(p + STORE_H_PAYLEN, (uint32_t)clen);
  if (st->seal && (rc = store__seal(st, stream, p, pay, clen)))
    goto fail;
  b->len = STORE_HDR_LEN_V3 + pre + clen + post + STORE_SUM_LEN;
  if ((p = realloc(b->buf, b->len)))
    b->buf = p;
  b->st = st;
  b->stream = stream;
  b->count = count;
  *bp = b;
  return 0;

fail:
  sl_store_batch_free(b);
  return rc;
}

void sl_store_batch_free(sl_store_batch_t *b) {
  if (!b)
    return;
  free(b->buf);
  free(b);
}

size_t sl_store_batch_size(const sl_store_batch_t *b) {
  return b->len;
}
