/*
 * budget.c: keeping the store inside its byte budget (block, drop_oldest,
 * evict by priority), TTL expiry with a clock-jump guard, and gap records
 * for every undelivered event that leaves the store.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define STORE_TTL_SWEEP_MAX 10000 /* batches expired per sweep */
#define STORE_GAP_LEN 56u

static const char *const reason_names[SL_STORE_REASON_COUNT] = {
    "drop_oldest", "evict_priority", "ttl", "corrupt"};

const char *sl_store_reason_name(sl_store_reason_t reason) {
  if ((unsigned)reason >= SL_STORE_REASON_COUNT)
    return "unknown";
  return reason_names[reason];
}

int store__min_cursor(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                      uint64_t *min) {
  MDB_cursor *cur;
  uint8_t kb[4];
  MDB_val k = {4, kb}, v;
  bool found = false;
  int rc;

  *min = 0;
  sl_put_be32(kb, stream);
  if ((rc = mdb_cursor_open(txn, st->dbi_cursors, &cur)))
    return rc;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (k.mv_size < 4 || sl_get_be32(k.mv_data) != stream)
      break;
    if (v.mv_size == 8) {
      uint64_t next = sl_get_be64(v.mv_data);
      *min = found ? SL_MIN(*min, next) : next;
      found = true;
    }
  }
  mdb_cursor_close(cur);
  return rc == 0 || rc == MDB_NOTFOUND ? 0 : rc;
}

uint64_t store__batch_end(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                          uint64_t first, uint64_t stream_next) {
  uint8_t kb[STORE_KEY_LEN];
  MDB_val k = {STORE_KEY_LEN, kb}, v;
  MDB_cursor *cur;
  uint64_t end = stream_next;

  store__key(kb, stream, first + 1);
  if (mdb_cursor_open(txn, st->dbi_log, &cur))
    return end;
  if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 &&
      k.mv_size == STORE_KEY_LEN && sl_get_be32(k.mv_data) == stream)
    end = sl_get_be64((const uint8_t *)k.mv_data + 4);
  mdb_cursor_close(cur);
  return end > first ? end : first + 1;
}

static void gap_encode(const sl_store_gap_t *g, uint8_t *p) {
  sl_put_be32(p, STORE_GAP_MAGIC);
  p[4] = 1; /* record version */
  p[5] = (uint8_t)g->reason;
  p[6] = p[7] = 0;
  sl_put_be32(p + 8, g->stream);
  sl_put_be32(p + 12, 0);
  sl_put_be64(p + 16, g->first_offset);
  sl_put_be64(p + 24, g->count);
  sl_put_be64(p + 32, (uint64_t)g->min_time_ns);
  sl_put_be64(p + 40, (uint64_t)g->max_time_ns);
  sl_put_be64(p + 48, (uint64_t)g->recorded_ns);
}

static int gap_decode(const MDB_val *k, const MDB_val *v, sl_store_gap_t *g) {
  const uint8_t *p = v->mv_data;

  if (k->mv_size != 8 || v->mv_size != STORE_GAP_LEN ||
      sl_get_be32(p) != STORE_GAP_MAGIC || p[4] != 1 ||
      p[5] >= SL_STORE_REASON_COUNT)
    return SL_ECORRUPT;
  g->seq = sl_get_be64(k->mv_data);
  g->reason = (sl_store_reason_t)p[5];
  g->stream = sl_get_be32(p + 8);
  g->first_offset = sl_get_be64(p + 16);
  g->count = sl_get_be64(p + 24);
  g->min_time_ns = (int64_t)sl_get_be64(p + 32);
  g->max_time_ns = (int64_t)sl_get_be64(p + 40);
  g->recorded_ns = (int64_t)sl_get_be64(p + 48);
  return 0;
}

int store__gap_record(sl_store_t *st, MDB_txn *txn, uint32_t stream,
                      uint64_t first, uint64_t count, int64_t mint,
                      int64_t maxt, sl_store_reason_t reason) {
  store_writer_t *w = &st->w;
  sl_store_gap_t *g = &w->open_gap;
  uint8_t kb[8], vb[STORE_GAP_LEN];
  MDB_val k = {8, kb}, v = {STORE_GAP_LEN, vb};

  /* Consecutive evictions of one stream in one txn make one record. */
  if (w->open_gap_valid && g->stream == stream && g->reason == reason &&
      g->first_offset + g->count == first) {
    g->count += count;
    g->min_time_ns = SL_MIN(g->min_time_ns, mint);
    g->max_time_ns = SL_MAX(g->max_time_ns, maxt);
  } else {
    memset(g, 0, sizeof(*g));
    g->seq = w->gap_seq++;
    g->stream = stream;
    g->first_offset = first;
    g->count = count;
    g->min_time_ns = mint;
    g->max_time_ns = maxt;
    g->reason = reason;
    w->open_gap_valid = true;
  }
  g->recorded_ns = sl_now_wall_ns();
  sl_put_be64(kb, g->seq);
  gap_encode(g, vb);
  return mdb_put(txn, st->dbi_gaps, &k, &v, 0);
}

int store__evict_oldest(sl_store_t *st, MDB_txn *txn, store_stream_t *s,
                        sl_store_reason_t reason, uint64_t *freed) {
  uint8_t kb[STORE_KEY_LEN];
  MDB_val k = {STORE_KEY_LEN, kb}, v;
  MDB_cursor *cur;
  uint64_t first, count, min, lo;
  int64_t mint = 0, maxt = 0;
  store_hdr_t h;
  size_t len;
  int rc;

  store__key(kb, s->id, 0);
  if ((rc = mdb_cursor_open(txn, st->dbi_log, &cur)))
    return rc;
  rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  if (rc == 0 &&
      (k.mv_size != STORE_KEY_LEN || sl_get_be32(k.mv_data) != s->id))
    rc = MDB_NOTFOUND;
  if (rc == MDB_NOTFOUND) {
    /* The record says there is data but the log has none: repair the
     * counters so no policy picks this stream again. */
    s->first_offset = s->next_offset;
    s->bytes = s->events = s->batches = 0;
    rc = 0;
    goto out;
  }
  if (rc)
    goto out;
  first = sl_get_be64((const uint8_t *)k.mv_data + 4);
  len = v.mv_size;
  if (store__hdr_peek(v.mv_data, v.mv_size, &h) == 0 &&
      h.first_offset == first) {
    count = h.count;
    mint = h.min_time_ns;
    maxt = h.max_time_ns;
  } else {
    /* A damaged header: the offsets between keys tell the count. */
    count = store__batch_end(st, txn, s->id, first, s->next_offset) - first;
  }
  if ((rc = mdb_cursor_del(cur, 0)))
    goto out;
  mdb_cursor_close(cur);
  cur = NULL;
  s->first_offset = store__batch_end(st, txn, s->id, first, s->next_offset);
  if (s->first_offset > s->next_offset)
    s->first_offset = s->next_offset;
  s->bytes -= SL_MIN(s->bytes, (uint64_t)len);
  s->events -= SL_MIN(s->events, count);
  s->batches -= SL_MIN(s->batches, 1u);
  s->evicted_events[reason] += count;
  s->evicted_bytes[reason] += len;
  if (freed)
    *freed = len;
  /* Undelivered: at or above the slowest consumer (all, without one). */
  if ((rc = store__min_cursor(st, txn, s->id, &min)))
    goto out;
  lo = SL_MAX(first, min);
  if (first + count > lo)
    rc = store__gap_record(st, txn, s->id, lo, first + count - lo, mint, maxt,
                           reason);
out:
  if (cur)
    mdb_cursor_close(cur);
  return rc;
}

/* The evict_priority victim for an append at priority prio: the lowest
 * priority class first, then the stream holding the most bytes. */
static store_stream_t *pick_victim(store_writer_t *w, uint8_t prio) {
  store_stream_t *best = NULL;

  for (size_t i = 0; i < w->nstreams; i++) {
    store_stream_t *s = &w->streams[i];
    if (s->conf.policy != SL_STORE_POLICY_EVICT_PRIORITY || !s->batches ||
        s->conf.priority > prio)
      continue;
    if (!best || s->conf.priority < best->conf.priority ||
        (s->conf.priority == best->conf.priority && s->bytes > best->bytes))
      best = s;
  }
  return best;
}

int store__budget_reserve(sl_store_t *st, MDB_txn *txn, const uint32_t *ids,
                          const uint64_t *need, size_t n) {
  store_writer_t *w = &st->w;
  uint64_t limit = atomic_load(&st->limit_bytes), total = 0, used;
  store_stream_t *snap = NULL;
  sl_store_gap_t gsnap = w->open_gap;
  bool gvalid = w->open_gap_valid;
  uint64_t seq = w->gap_seq;
  MDB_txn *child = NULL;
  int rc = 0;

  for (size_t i = 0; i < n; i++)
    total += need[i];
  used = store__used_bytes(st, txn);
  if (used + total <= limit)
    return 0;
  if (total > limit)
    return SL_EBACKPRESSURE;
  /* Evict in a nested txn so a reservation that cannot succeed leaves
   * nothing evicted (the caller's group fails with backpressure). */
  if (!(snap = malloc(w->nstreams * sizeof(*snap))))
    return -ENOMEM;
  memcpy(snap, w->streams, w->nstreams * sizeof(*snap));
  if ((rc = mdb_txn_begin(st->env, txn, 0, &child)))
    goto fail;
  for (size_t i = 0; i < n && used + total > limit; i++) {
    store_stream_t *s = &w->streams[ids[i] - 1];
    for (;;) {
      store_stream_t *victim = NULL;
      sl_store_reason_t why = SL_STORE_REASON_DROP_OLDEST;
      if (s->conf.policy == SL_STORE_POLICY_DROP_OLDEST && s->batches)
        victim = s;
      else if (s->conf.policy == SL_STORE_POLICY_EVICT_PRIORITY) {
        victim = pick_victim(w, s->conf.priority);
        why = SL_STORE_REASON_EVICT_PRIORITY;
      }
      if (!victim)
        break;
      if ((rc = store__evict_oldest(st, child, victim, why, NULL)))
        goto fail;
      used = store__used_bytes(st, child);
      if (used + total <= limit)
        break;
    }
  }
  if (used + total > limit) {
    rc = SL_EBACKPRESSURE;
    goto fail;
  }
  rc = mdb_txn_commit(child);
  child = NULL;
  if (rc)
    goto fail;
  free(snap);
  return 0;

fail:
  if (child)
    mdb_txn_abort(child);
  memcpy(w->streams, snap, w->nstreams * sizeof(*snap));
  w->open_gap = gsnap;
  w->open_gap_valid = gvalid;
  w->gap_seq = seq;
  free(snap);
  return rc;
}

/* The store clock time a batch ages from (docs/STORAGE.md): its append
 * time on the store clock, earlier by how old its newest event already was
 * then, counted only when the wall clock was trustworthy at the append:
 * not before the clock floor, agreeing with the store clock within the
 * tolerance, and the event time plausible (not before the floor, not after
 * the append plus the tolerance). A batch older than v3 has no store time:
 * its wall clock append time stands in (the store clock started at the
 * wall clock). 0 when there is no trustworthy time at all. */
static int64_t batch_age_time(const store_hdr_t *h, int64_t tol) {
  int64_t wall = h->append_time_ns, t, pre = 0;
  bool v3 = h->version >= STORE_BATCH_V3;

  if (v3)
    t = h->store_time_ns;
  else if (wall >= STORE_CLOCK_FLOOR_NS)
    t = wall;
  else
    return 0;
  if (wall >= STORE_CLOCK_FLOOR_NS && h->max_time_ns >= STORE_CLOCK_FLOOR_NS &&
      h->max_time_ns <= wall + tol &&
      (!v3 || (wall - t <= tol && t - wall <= tol)))
    pre = wall - h->max_time_ns;
  return pre > 0 ? t - pre : t;
}

int store__ttl_sweep(sl_store_t *st, MDB_txn *txn, int64_t now) {
  store_writer_t *w = &st->w;
  int64_t tol = st->opts.clock_tolerance_ns;
  int budget = STORE_TTL_SWEEP_MAX;
  int rc = 0;

  /* now is the store clock: it never steps, so no wall clock guard. */
  for (size_t i = 0; i < w->nstreams && budget > 0; i++) {
    store_stream_t *s = &w->streams[i];
    if (s->conf.ttl_ns <= 0)
      continue;
    while (s->batches > 0 && budget-- > 0) {
      uint8_t kb[STORE_KEY_LEN];
      MDB_val k = {STORE_KEY_LEN, kb}, v;
      MDB_cursor *cur;
      int64_t t = 0;
      store_hdr_t h;
      int scan = 0;

      store__key(kb, s->id, 0);
      if ((rc = mdb_cursor_open(txn, st->dbi_log, &cur)))
        return rc;
      rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
      /* Appended (before v3) while the node clock was unset: it is at
       * least as old as the first later batch with a trustworthy time. */
      while (rc == 0 && k.mv_size == STORE_KEY_LEN &&
             sl_get_be32(k.mv_data) == s->id && scan++ < 1000 &&
             store__hdr_peek(v.mv_data, v.mv_size, &h) == 0 &&
             !(t = batch_age_time(&h, tol)))
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
      mdb_cursor_close(cur);
      if (rc && rc != MDB_NOTFOUND)
        return rc;
      rc = 0;
      if (t == 0 || now - t <= s->conf.ttl_ns)
        break;
      if ((rc = store__evict_oldest(st, txn, s, SL_STORE_REASON_TTL, NULL)))
        return rc;
    }
  }
  return rc;
}

int sl_store_gap_list(sl_store_t *st, uint64_t from_seq, sl_store_gap_t *gaps,
                      size_t cap, size_t *n) {
  uint8_t kb[8];
  MDB_val k = {8, kb}, v;
  MDB_cursor *cur;
  MDB_txn *txn;
  int rc;

  *n = 0;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  sl_put_be64(kb, from_seq);
  if ((rc = mdb_cursor_open(txn, st->dbi_gaps, &cur))) {
    rc = store__err(st, rc);
    goto out;
  }
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && *n < cap;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if ((rc = gap_decode(&k, &v, &gaps[*n])))
      break;
    (*n)++;
  }
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND)
    rc = 0;
  else if (rc && rc != SL_ECORRUPT)
    rc = store__err(st, rc);
out:
  store__rtxn_end(st, txn);
  return rc;
}
