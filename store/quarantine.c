/*
 * quarantine.c: corrupt batches found by readers are moved, by the writer,
 * from the log to the quarantine sub-db, counted and recorded as a gap.
 * Readers never block on this and never see the batch again once moved.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

void store__quarantine_request(sl_store_t *st, uint32_t stream,
                               uint64_t first) {
  sl_store_group_t *g = store__item_new(st, STORE_OP_QUARANTINE);

  if (!g)
    return; /* the next reader to meet the batch asks again */
  g->stream = stream;
  g->u64 = first;
  if (store__enqueue(st, g, false))
    store__item_free(g);
}

/* Is the value at first still unreadable? Mirrors the cursor's checks. */
static bool still_corrupt(sl_store_t *st, const MDB_val *v, uint32_t stream,
                          uint64_t first) {
  store_hdr_t h;
  ZSTD_DCtx *dctx;
  uint8_t *buf = NULL;
  size_t cap = 0;
  int rc;

  if (store__hdr_decode(v->mv_data, v->mv_size, &h) || h.first_offset != first)
    return true;
  if (!(dctx = ZSTD_createDCtx()))
    return false; /* cannot tell now: leave it for a later reader */
  rc = store__batch_inflate(st, dctx, stream, &h, &buf, &cap);
  ZSTD_freeDCtx(dctx);
  free(buf);
  return rc == SL_ECORRUPT;
}

int store__quarantine_apply(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                            uint64_t first) {
  store_writer_t *w = &st->w;
  uint8_t kb[STORE_KEY_LEN];
  MDB_val k = {STORE_KEY_LEN, kb}, v;
  uint64_t count, end, min, lo;
  int64_t mint = 0, maxt = 0;
  store_stream_t *s;
  store_hdr_t h;
  size_t len;
  int rc;

  if (stream == 0 || stream > w->nstreams)
    return 0;
  s = &w->streams[stream - 1];
  store__key(kb, stream, first);
  rc = mdb_get(txn, st->dbi_log, &k, &v);
  if (rc == MDB_NOTFOUND)
    return 0; /* already moved or evicted */
  if (rc)
    return rc;
  if (!still_corrupt(st, &v, stream, first))
    return 0;
  len = v.mv_size;
  end = store__batch_end(st, txn, stream, first, s->next_offset);
  count = end - first;
  if (store__hdr_peek(v.mv_data, v.mv_size, &h) == 0 &&
      h.first_offset == first) {
    mint = h.min_time_ns;
    maxt = h.max_time_ns;
  }
  /* The put copies the value before the delete frees its pages. */
  if ((rc = mdb_put(txn, st->dbi_quarantine, &k, &v, 0)) ||
      (rc = mdb_del(txn, st->dbi_log, &k, NULL)))
    return rc;
  if (first == s->first_offset)
    s->first_offset = SL_MIN(end, s->next_offset);
  s->bytes -= SL_MIN(s->bytes, (uint64_t)len);
  s->events -= SL_MIN(s->events, count);
  s->batches -= SL_MIN(s->batches, 1u);
  s->evicted_events[SL_STORE_REASON_CORRUPT] += count;
  s->evicted_bytes[SL_STORE_REASON_CORRUPT] += len;
  if ((rc = store__min_cursor(st, txn, stream, &min)))
    return rc;
  lo = SL_MAX(first, min);
  if (end > lo)
    rc = store__gap_record(st, txn, stream, lo, end - lo, mint, maxt,
                           SL_STORE_REASON_CORRUPT);
  return rc;
}
