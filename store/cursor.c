/*
 * cursor.c: reading a stream by offset with short read transactions and a
 * bounded read-ahead; consumer cursors and state lookups.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define CURSOR_AHEAD_RECS 256         /* records per read txn */
#define CURSOR_AHEAD_BYTES (4u << 20) /* payload bytes per read txn */

struct sl_store_cursor {
  sl_store_t *st;
  uint32_t stream;
  uint64_t next; /* next offset to read */
  uint64_t to;   /* exclusive end */
  bool started;  /* first fill done (from may be mid-batch) */
  ZSTD_DCtx *dctx;
  uint8_t *buf; /* payloads of the current read-ahead */
  size_t cap, used;
  sl_store_rec_t *recs; /* read-ahead records */
  size_t *offs;         /* payload offset of each record in buf */
  size_t nrecs, pos;
};

int sl_store_cursor_open(sl_store_t *st, uint32_t stream, uint64_t from,
                         uint64_t to, sl_store_cursor_t **curp) {
  sl_store_cursor_t *cur;
  store_stream_t s;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if ((rc = store__stream_get(st, stream, &s)))
    return rc;
  if (!(cur = calloc(1, sizeof(*cur))))
    return -ENOMEM;
  cur->st = st;
  cur->stream = stream;
  cur->next = from;
  cur->to = to;
  cur->recs = calloc(CURSOR_AHEAD_RECS, sizeof(*cur->recs));
  cur->offs = calloc(CURSOR_AHEAD_RECS, sizeof(*cur->offs));
  cur->dctx = ZSTD_createDCtx();
  if (!cur->recs || !cur->offs || !cur->dctx) {
    sl_store_cursor_close(cur);
    return -ENOMEM;
  }
  *curp = cur;
  return 0;
}

void sl_store_cursor_close(sl_store_cursor_t *cur) {
  if (!cur)
    return;
  ZSTD_freeDCtx(cur->dctx);
  free(cur->buf);
  free(cur->recs);
  free(cur->offs);
  free(cur);
}

static sl_store_rec_t *push(sl_store_cursor_t *cur, int status, uint64_t first,
                            uint64_t count) {
  sl_store_rec_t *r = &cur->recs[cur->nrecs];

  memset(r, 0, sizeof(*r));
  r->status = status;
  r->stream = cur->stream;
  r->first_offset = first;
  r->count = count;
  cur->offs[cur->nrecs++] = 0;
  cur->next = SL_MAX(cur->next, first + count);
  return r;
}

/* Positions c on the batch holding cur->next (it may start before it). */
static int seek(sl_store_cursor_t *cur, MDB_cursor *c, MDB_val *k, MDB_val *v) {
  uint8_t kb[STORE_KEY_LEN];
  int rc;

  store__key(kb, cur->stream, cur->next);
  k->mv_size = STORE_KEY_LEN;
  k->mv_data = kb;
  rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
  if (cur->started || cur->next == 0)
    return rc;
  if (rc == 0 && k->mv_size == STORE_KEY_LEN &&
      sl_get_be32(k->mv_data) == cur->stream &&
      sl_get_be64((const uint8_t *)k->mv_data + 4) == cur->next)
    return 0;
  /* Not an exact hit: the previous batch may cover cur->next. */
  rc = rc == 0 ? mdb_cursor_get(c, k, v, MDB_PREV)
               : mdb_cursor_get(c, k, v, MDB_LAST);
  if (rc == 0 && k->mv_size == STORE_KEY_LEN &&
      sl_get_be32(k->mv_data) == cur->stream) {
    store_hdr_t h;
    uint64_t first = sl_get_be64((const uint8_t *)k->mv_data + 4);
    if (store__hdr_peek(v->mv_data, v->mv_size, &h) == 0 &&
        first + h.count > cur->next)
      return 0;
  }
  store__key(kb, cur->stream, cur->next);
  k->mv_size = STORE_KEY_LEN;
  k->mv_data = kb;
  return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
}

/* The stream's record as of txn (the shared table may lag behind). */
static bool stream_rec(sl_store_t *st, MDB_txn *txn, uint32_t id,
                       store_stream_t *s) {
  uint8_t kb[4];
  MDB_val k = {4, kb}, v;

  sl_put_be32(kb, id);
  return mdb_get(txn, st->dbi_streams, &k, &v) == 0 &&
         store__stream_decode(v.mv_data, v.mv_size, s) == 0;
}

/* Reads up to the read-ahead limits in one short read txn. */
static int fill(sl_store_cursor_t *cur) {
  sl_store_t *st = cur->st;
  MDB_cursor *c = NULL;
  store_stream_t s;
  bool have_s = false;
  MDB_txn *txn;
  MDB_val k, v;
  int rc;

  cur->nrecs = cur->pos = cur->used = 0;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  if ((rc = mdb_cursor_open(txn, st->dbi_log, &c)))
    goto fail_mdb;
  rc = seek(cur, c, &k, &v);
  cur->started = true;
  while (cur->nrecs < CURSOR_AHEAD_RECS && cur->used < CURSOR_AHEAD_BYTES &&
         cur->next < cur->to) {
    uint64_t first;
    store_hdr_t h;

    if (rc == 0 &&
        (k.mv_size != STORE_KEY_LEN || sl_get_be32(k.mv_data) != cur->stream))
      rc = MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
      /* End of the stream; if its first offset moved past us, the
       * difference was evicted. */
      if ((have_s || (have_s = stream_rec(st, txn, cur->stream, &s))) &&
          s.first_offset > cur->next)
        push(cur, SL_EEVICTED, cur->next,
             SL_MIN(s.first_offset, cur->to) - cur->next);
      rc = 0;
      break;
    }
    if (rc)
      goto fail_mdb;
    first = sl_get_be64((const uint8_t *)k.mv_data + 4);
    if (first > cur->next) {
      push(cur, SL_EEVICTED, cur->next, SL_MIN(first, cur->to) - cur->next);
      continue;
    }
    if (first >= cur->to)
      break;
    rc = store__hdr_decode(v.mv_data, v.mv_size, &h);
    if (rc == 0 && h.first_offset != first)
      rc = SL_ECORRUPT;
    if (rc == 0) {
      size_t need = cur->used + h.raw_len;
      if (need > cur->cap) {
        size_t ncap = SL_MAX(need, cur->cap * 2);
        uint8_t *nb = realloc(cur->buf, ncap);
        if (!nb) {
          rc = -ENOMEM;
          goto fail;
        }
        cur->buf = nb;
        cur->cap = ncap;
      }
      {
        uint8_t *dst = cur->buf + cur->used;
        size_t dcap = h.raw_len;
        /* Inflate straight into the read-ahead buffer (no extra copy). */
        rc = store__batch_inflate(st, cur->dctx, cur->stream, &h, &dst, &dcap);
        if (rc == -ENOMEM)
          goto fail;
      }
    }
    if (rc == SL_EKEY) {
      /* Sealed with a key we were not given: not corrupt, never skipped
       * or quarantined. Hand out what came before; the next call stops
       * here again with the error. */
      if (cur->nrecs == 0)
        goto fail;
      rc = 0;
      break;
    }
    if (rc) {
      uint64_t end;
      if (!have_s && !(have_s = stream_rec(st, txn, cur->stream, &s)))
        s.next_offset = 0; /* batch_end falls back to the next key */
      end = store__batch_end(st, txn, cur->stream, first, s.next_offset);
      push(cur, SL_ECORRUPT, first, end - first);
      atomic_fetch_add(&st->corrupt_seen, 1);
      if (!st->rdonly)
        store__quarantine_request(st, cur->stream, first);
    } else {
      sl_store_rec_t *r = push(cur, 0, first, h.count);
      r->min_time_ns = h.min_time_ns;
      r->max_time_ns = h.max_time_ns;
      r->append_time_ns = h.append_time_ns;
      r->store_time_ns = h.store_time_ns;
      r->dict_id = h.dict_id;
      r->len = h.raw_len;
      cur->offs[cur->nrecs - 1] = cur->used;
      cur->used += h.raw_len;
    }
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(c);
  store__rtxn_end(st, txn);
  for (size_t i = 0; i < cur->nrecs; i++)
    if (cur->recs[i].status == 0)
      cur->recs[i].payload = cur->buf + cur->offs[i];
  return 0;

fail_mdb:
  rc = store__err(st, rc);
fail:
  if (c)
    mdb_cursor_close(c);
  store__rtxn_end(st, txn);
  cur->nrecs = 0;
  return rc;
}

int sl_store_first_time(sl_store_t *st, uint32_t stream, uint64_t from,
                        int64_t *min_time_ns) {
  sl_store_cursor_t cur = {.st = st, .stream = stream, .next = from};
  MDB_cursor *c = NULL;
  MDB_txn *txn;
  MDB_val k, v;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  if ((rc = mdb_cursor_open(txn, st->dbi_log, &c)))
    goto fail_mdb;
  rc = seek(&cur, c, &k, &v);
  for (int i = 0; i < 64 && rc == 0; i++) {
    store_hdr_t h;
    uint64_t first;
    if (k.mv_size != STORE_KEY_LEN || sl_get_be32(k.mv_data) != stream)
      break;
    first = sl_get_be64((const uint8_t *)k.mv_data + 4);
    if (store__hdr_decode(v.mv_data, v.mv_size, &h) == 0 &&
        h.first_offset == first && first + h.count > from) {
      *min_time_ns = h.min_time_ns;
      mdb_cursor_close(c);
      store__rtxn_end(st, txn);
      return 0;
    }
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  if (rc && rc != MDB_NOTFOUND)
    goto fail_mdb;
  mdb_cursor_close(c);
  store__rtxn_end(st, txn);
  return SL_ENOTFOUND;

fail_mdb:
  rc = store__err(st, rc);
  if (c)
    mdb_cursor_close(c);
  store__rtxn_end(st, txn);
  return rc;
}

int sl_store_cursor_next(sl_store_cursor_t *cur, sl_store_rec_t *rec) {
  int rc;

  if ((rc = store__check(cur->st)))
    return rc;
  if (cur->pos == cur->nrecs) {
    if ((rc = fill(cur)))
      return rc;
    if (cur->nrecs == 0)
      return SL_ENOTFOUND;
  }
  *rec = cur->recs[cur->pos++];
  return 0;
}

static size_t cursor_key(uint8_t *kb, uint32_t stream, const char *name) {
  size_t n = strlen(name);

  sl_put_be32(kb, stream);
  memcpy(kb + 4, name, n);
  return 4 + n;
}

int sl_store_consumer_get(sl_store_t *st, const char *consumer, uint32_t stream,
                          uint64_t *next) {
  uint8_t kb[4 + SL_STORE_NAME_MAX];
  MDB_val k, v;
  MDB_txn *txn;
  int rc;

  if (strlen(consumer) == 0 || strlen(consumer) > SL_STORE_NAME_MAX)
    return SL_ECONFIG;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  k.mv_size = cursor_key(kb, stream, consumer);
  k.mv_data = kb;
  rc = mdb_get(txn, st->dbi_cursors, &k, &v);
  if (rc == 0 && v.mv_size != 8)
    rc = MDB_CORRUPTED;
  if (rc == 0)
    *next = sl_get_be64(v.mv_data);
  store__rtxn_end(st, txn);
  return store__err(st, rc);
}

int sl_store_consumer_list(sl_store_t *st, uint32_t stream,
                           sl_store_consumer_t *out, size_t cap, size_t *n) {
  uint8_t kb[4];
  MDB_val k = {4, kb}, v;
  MDB_cursor *c;
  MDB_txn *txn;
  int rc;

  *n = 0;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  if ((rc = mdb_cursor_open(txn, st->dbi_cursors, &c)))
    goto out;
  sl_put_be32(kb, stream);
  for (rc = mdb_cursor_get(c, &k, &v, stream ? MDB_SET_RANGE : MDB_FIRST);
       rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    size_t nl = k.mv_size - 4;
    if (k.mv_size <= 4 || nl > SL_STORE_NAME_MAX || v.mv_size != 8)
      continue; /* not ours to interpret; skip */
    if (stream && sl_get_be32(k.mv_data) != stream)
      break;
    if (*n < cap) {
      sl_store_consumer_t *o = &out[*n];
      o->stream = sl_get_be32(k.mv_data);
      memcpy(o->name, (const uint8_t *)k.mv_data + 4, nl);
      o->name[nl] = '\0';
      o->next_offset = sl_get_be64(v.mv_data);
    }
    (*n)++;
  }
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND)
    rc = 0;
out:
  store__rtxn_end(st, txn);
  return store__err(st, rc);
}

int sl_store_state_get(sl_store_t *st, const void *key, size_t klen, void *buf,
                       size_t cap, size_t *vlen) {
  MDB_val k = {klen, (void *)key}, v;
  MDB_txn *txn;
  int rc;

  if (klen == 0 || klen > STORE_STATE_KEY_MAX)
    return SL_ECONFIG;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  rc = mdb_get(txn, st->dbi_state, &k, &v);
  if (rc == 0) {
    *vlen = v.mv_size;
    if (v.mv_size > cap)
      rc = SL_ETOOBIG;
    else
      memcpy(buf, v.mv_data, v.mv_size);
  }
  store__rtxn_end(st, txn);
  return rc == SL_ETOOBIG ? rc : store__err(st, rc);
}
