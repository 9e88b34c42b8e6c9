/*
 * stream.c: stream records (the streams sub-db), the stream table callers'
 * threads consult, and the public stream reads (lookup, list, stats).
 * Creating a stream goes through the writer: sl_store_stream_create() is
 * in group.c with the other control ops.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define STREAM_REC_V1 1u
#define STREAM_REC_FIXED 130u

size_t store__stream_encode(const store_stream_t *s, uint8_t *buf, size_t cap) {
  size_t nlen = strlen(s->name);
  uint8_t *p = buf;

  if (cap < STREAM_REC_FIXED + nlen)
    return 0;
  sl_put_be32(p, STORE_STREAM_MAGIC);
  p[4] = STREAM_REC_V1;
  p[5] = (uint8_t)s->conf.policy;
  p[6] = s->conf.priority;
  p[7] = 0;
  sl_put_be32(p + 8, s->id);
  sl_put_be32(p + 12, s->dict_id);
  sl_put_be64(p + 16, (uint64_t)s->conf.ttl_ns);
  sl_put_be64(p + 24, s->first_offset);
  sl_put_be64(p + 32, s->next_offset);
  sl_put_be64(p + 40, s->bytes);
  sl_put_be64(p + 48, s->events);
  sl_put_be64(p + 56, s->batches);
  for (int r = 0; r < SL_STORE_REASON_COUNT; r++) {
    sl_put_be64(p + 64 + 8 * r, s->evicted_events[r]);
    sl_put_be64(p + 96 + 8 * r, s->evicted_bytes[r]);
  }
  p[128] = (uint8_t)(nlen >> 8);
  p[129] = (uint8_t)nlen;
  memcpy(p + STREAM_REC_FIXED, s->name, nlen);
  return STREAM_REC_FIXED + nlen;
}

int store__stream_decode(const void *val, size_t len, store_stream_t *s) {
  const uint8_t *p = val;
  size_t nlen;

  memset(s, 0, sizeof(*s));
  if (len < STREAM_REC_FIXED || sl_get_be32(p) != STORE_STREAM_MAGIC)
    return SL_ECORRUPT;
  if (p[4] != STREAM_REC_V1)
    return SL_EVERSION;
  nlen = ((size_t)p[128] << 8) | p[129];
  if (nlen == 0 || nlen > SL_STORE_NAME_MAX || len != STREAM_REC_FIXED + nlen ||
      p[5] > SL_STORE_POLICY_EVICT_PRIORITY || p[6] > SL_STORE_PRIORITY_MAX)
    return SL_ECORRUPT;
  s->conf.policy = (sl_store_policy_t)p[5];
  s->conf.priority = p[6];
  s->id = sl_get_be32(p + 8);
  s->dict_id = sl_get_be32(p + 12);
  s->conf.ttl_ns = (int64_t)sl_get_be64(p + 16);
  s->first_offset = sl_get_be64(p + 24);
  s->next_offset = sl_get_be64(p + 32);
  s->bytes = sl_get_be64(p + 40);
  s->events = sl_get_be64(p + 48);
  s->batches = sl_get_be64(p + 56);
  for (int r = 0; r < SL_STORE_REASON_COUNT; r++) {
    s->evicted_events[r] = sl_get_be64(p + 64 + 8 * r);
    s->evicted_bytes[r] = sl_get_be64(p + 96 + 8 * r);
  }
  memcpy(s->name, p + STREAM_REC_FIXED, nlen);
  s->name[nlen] = '\0';
  if (s->id == 0 || s->first_offset > s->next_offset)
    return SL_ECORRUPT;
  return 0;
}

int store__stream_put(sl_store_t *st, MDB_txn *txn, const store_stream_t *s) {
  uint8_t kb[4], vb[STREAM_REC_FIXED + SL_STORE_NAME_MAX];
  MDB_val k = {4, kb}, v;

  sl_put_be32(kb, s->id);
  v.mv_size = store__stream_encode(s, vb, sizeof(vb));
  v.mv_data = vb;
  return mdb_put(txn, st->dbi_streams, &k, &v, 0);
}

int store__streams_load(sl_store_t *st, MDB_txn *txn, store_stream_t **out,
                        size_t *n) {
  store_stream_t *arr = NULL;
  MDB_cursor *cur = NULL;
  MDB_stat ms;
  MDB_val k, v;
  size_t cnt = 0;
  int rc;

  *out = NULL;
  *n = 0;
  if ((rc = mdb_stat(txn, st->dbi_streams, &ms)))
    return store__err(st, rc);
  if (ms.ms_entries == 0)
    return 0;
  if (ms.ms_entries > STORE_MAX_STREAMS)
    return SL_ECORRUPT;
  if (!(arr = calloc(ms.ms_entries, sizeof(*arr))))
    return -ENOMEM;
  if ((rc = mdb_cursor_open(txn, st->dbi_streams, &cur))) {
    rc = store__err(st, rc);
    goto fail;
  }
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    /* Ids are dense from 1: the table is indexed by id - 1. */
    if (cnt == ms.ms_entries || k.mv_size != 4 ||
        sl_get_be32(k.mv_data) != cnt + 1 ||
        store__stream_decode(v.mv_data, v.mv_size, &arr[cnt]) ||
        arr[cnt].id != cnt + 1) {
      rc = SL_ECORRUPT;
      goto fail;
    }
    cnt++;
  }
  if (rc != MDB_NOTFOUND) {
    rc = store__err(st, rc);
    goto fail;
  }
  mdb_cursor_close(cur);
  *out = arr;
  *n = cnt;
  return 0;

fail:
  if (cur)
    mdb_cursor_close(cur);
  free(arr);
  return rc;
}

int store__streams_publish(sl_store_t *st) {
  store_stream_t *arr = NULL;

  if (st->w.nstreams && !(arr = malloc(st->w.nstreams * sizeof(*arr))))
    return -ENOMEM;
  if (arr)
    memcpy(arr, st->w.streams, st->w.nstreams * sizeof(*arr));
  pthread_mutex_lock(&st->streams_lock);
  free(st->streams);
  st->streams = arr;
  st->nstreams = st->w.nstreams;
  pthread_mutex_unlock(&st->streams_lock);
  return 0;
}

/* Read-only stores see streams a running daemon adds: reload on a miss. */
static int reload(sl_store_t *st) {
  store_stream_t *arr;
  MDB_txn *txn;
  size_t n;
  int rc;

  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  rc = store__streams_load(st, txn, &arr, &n);
  store__rtxn_end(st, txn);
  if (rc)
    return rc;
  pthread_mutex_lock(&st->streams_lock);
  free(st->streams);
  st->streams = arr;
  st->nstreams = n;
  pthread_mutex_unlock(&st->streams_lock);
  return 0;
}

int store__stream_get(sl_store_t *st, uint32_t id, store_stream_t *s) {
  int rc = SL_ENOTFOUND;

  for (int pass = 0; pass < 2 && rc; pass++) {
    pthread_mutex_lock(&st->streams_lock);
    if (id >= 1 && id <= st->nstreams) {
      *s = st->streams[id - 1];
      rc = 0;
    }
    pthread_mutex_unlock(&st->streams_lock);
    if (rc && (!st->rdonly || pass || reload(st)))
      break;
  }
  return rc;
}

int sl_store_stream_lookup(sl_store_t *st, const char *name, uint32_t *id) {
  int rc;

  if ((rc = store__check(st)))
    return rc;
  for (int pass = 0; pass < 2; pass++) {
    rc = SL_ENOTFOUND;
    pthread_mutex_lock(&st->streams_lock);
    for (size_t i = 0; i < st->nstreams; i++) {
      if (!strcmp(st->streams[i].name, name)) {
        *id = st->streams[i].id;
        rc = 0;
        break;
      }
    }
    pthread_mutex_unlock(&st->streams_lock);
    if (!rc || !st->rdonly || pass || reload(st))
      break;
  }
  return rc;
}

int sl_store_stream_list(sl_store_t *st, uint32_t *ids, size_t cap, size_t *n) {
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if (st->rdonly && (rc = reload(st)))
    return rc;
  pthread_mutex_lock(&st->streams_lock);
  for (size_t i = 0; i < st->nstreams && i < cap; i++)
    ids[i] = st->streams[i].id;
  *n = st->nstreams;
  pthread_mutex_unlock(&st->streams_lock);
  return 0;
}

int sl_store_stream_stats(sl_store_t *st, uint32_t id,
                          sl_store_stream_stats_t *stats) {
  MDB_cursor *cur = NULL;
  store_stream_t s;
  store_hdr_t h;
  MDB_txn *txn;
  uint8_t kb[STORE_KEY_LEN];
  MDB_val k = {4, kb}, v;
  int rc;

  memset(stats, 0, sizeof(*stats));
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  sl_put_be32(kb, id);
  if ((rc = mdb_get(txn, st->dbi_streams, &k, &v))) {
    rc = store__err(st, rc);
    goto out;
  }
  if ((rc = store__stream_decode(v.mv_data, v.mv_size, &s)))
    goto out;
  stats->id = s.id;
  memcpy(stats->name, s.name, sizeof(stats->name));
  stats->conf = s.conf;
  stats->dict_id = s.dict_id;
  stats->first_offset = s.first_offset;
  stats->next_offset = s.next_offset;
  stats->bytes = s.bytes;
  stats->events = s.events;
  stats->batches = s.batches;
  memcpy(stats->evicted_events, s.evicted_events, sizeof(s.evicted_events));
  memcpy(stats->evicted_bytes, s.evicted_bytes, sizeof(s.evicted_bytes));
  /* Oldest event time: from the oldest stored batch's header. */
  store__key(kb, id, 0);
  k.mv_size = STORE_KEY_LEN;
  if (mdb_cursor_open(txn, st->dbi_log, &cur) == 0 &&
      mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 &&
      k.mv_size == STORE_KEY_LEN && sl_get_be32(k.mv_data) == id &&
      store__hdr_peek(v.mv_data, v.mv_size, &h) == 0)
    stats->oldest_time_ns = h.min_time_ns;
  if (cur)
    mdb_cursor_close(cur);
out:
  store__rtxn_end(st, txn);
  return rc;
}
