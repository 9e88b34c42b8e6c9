/*
 * writer.c: the writer thread, the only LMDB writer. It drains the whole
 * queue into one transaction per round (group commit): while one commit and
 * its fsync run, the next round accumulates, so the commit window adapts to
 * the disk and never waits on a timer while there is work.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "store/store_int.h"

/* One write transaction and what to restore if it fails. */
typedef struct wtxn {
  MDB_txn *txn;
  store_stream_t *snap; /* writer stream table before the txn */
  size_t snap_n;
  uint64_t gap_seq;
  uint8_t last_key[STORE_KEY_LEN];
  bool have_last_key;
  int64_t newest_append_ns;
  bool publish; /* stream table changed: publish after commit */
} wtxn_t;

static int wtxn_begin(sl_store_t *st, wtxn_t *t) {
  store_writer_t *w = &st->w;
  int rc;

  memset(t, 0, sizeof(*t));
  if (w->nstreams && !(t->snap = malloc(w->nstreams * sizeof(*t->snap))))
    return -ENOMEM;
  if (t->snap)
    memcpy(t->snap, w->streams, w->nstreams * sizeof(*t->snap));
  t->snap_n = w->nstreams;
  t->gap_seq = w->gap_seq;
  memcpy(t->last_key, w->last_key, STORE_KEY_LEN);
  t->have_last_key = w->have_last_key;
  t->newest_append_ns = w->newest_append_ns;
  w->open_gap_valid = false;
  if ((rc = mdb_txn_begin(st->env, NULL, 0, &t->txn))) {
    free(t->snap);
    t->snap = NULL;
    return rc; /* raw LMDB code: the caller handles MDB_MAP_RESIZED etc. */
  }
  return 0;
}

static void wtxn_abort(sl_store_t *st, wtxn_t *t) {
  store_writer_t *w = &st->w;

  if (t->txn)
    mdb_txn_abort(t->txn);
  t->txn = NULL;
  if (t->snap_n)
    memcpy(w->streams, t->snap, t->snap_n * sizeof(*t->snap));
  w->nstreams = t->snap_n;
  w->gap_seq = t->gap_seq;
  memcpy(w->last_key, t->last_key, STORE_KEY_LEN);
  w->have_last_key = t->have_last_key;
  w->newest_append_ns = t->newest_append_ns;
  w->open_gap_valid = false;
  free(t->snap);
  t->snap = NULL;
}

/* Persists changed stream records and counters, then commits. Returns a raw
 * LMDB/errno code; on failure the txn is aborted and state restored. */
static int wtxn_commit(sl_store_t *st, wtxn_t *t) {
  store_writer_t *w = &st->w;
  int rc = 0;

  for (size_t i = 0; i < w->nstreams && !rc; i++) {
    if (i < t->snap_n && !memcmp(&w->streams[i], &t->snap[i], sizeof(*t->snap)))
      continue;
    rc = store__stream_put(st, t->txn, &w->streams[i]);
    if (i < t->snap_n && (w->streams[i].dict_id != t->snap[i].dict_id ||
                          memcmp(&w->streams[i].conf, &t->snap[i].conf,
                                 sizeof(t->snap[i].conf))))
      t->publish = true;
  }
  if (w->nstreams != t->snap_n)
    t->publish = true;
  if (!rc && w->gap_seq != t->gap_seq) {
    uint8_t b[8];
    MDB_val k = {7, "gap_seq"}, v = {8, b};
    sl_put_be64(b, w->gap_seq);
    rc = mdb_put(t->txn, st->dbi_meta, &k, &v, 0);
  }
  if (!rc)
    rc = store__clock_persist(st, t->txn);
  if (!rc)
    atomic_store(&st->used_bytes, store__used_bytes(st, t->txn));
  if (!rc) {
    rc = mdb_txn_commit(t->txn);
    t->txn = NULL; /* committed or freed by LMDB either way */
  }
  if (rc) {
    wtxn_abort(st, t);
    return rc;
  }
  free(t->snap);
  t->snap = NULL;
  if (t->publish)
    store__streams_publish(st);
  return 0;
}

static int key_after_last(const store_writer_t *w, const uint8_t *key) {
  return !w->have_last_key || memcmp(key, w->last_key, STORE_KEY_LEN) > 0;
}

/* Appends, cursor commits and state puts of one group. Returns 0 or a
 * per-group verdict in g->status; a raw LMDB code means the txn is broken. */
static int apply_group(sl_store_t *st, MDB_txn *txn, sl_store_group_t *g,
                       int64_t now, int64_t snow) {
  store_writer_t *w = &st->w;
  uint32_t ids[16];
  uint64_t need[16], adds[16];
  size_t nids = 0;
  int rc;

  /* Validate everything first: a group is applied whole or not at all. */
  for (size_t i = 0; i < g->nbatches; i++) {
    sl_store_batch_t *b = g->batches[i];
    size_t j;
    if (b->stream == 0 || b->stream > w->nstreams) {
      g->status = SL_ENOTFOUND;
      return 0;
    }
    for (j = 0; j < nids && ids[j] != b->stream; j++)
      ;
    if (j == nids) {
      if (nids == SL_ARRAY_SIZE(ids)) {
        g->status = SL_ETOOBIG; /* too many streams in one group */
        return 0;
      }
      ids[nids] = b->stream;
      need[nids] = adds[nids] = 0;
      nids++;
    }
    need[j] += b->len + 64; /* value plus node and page overhead */
    adds[j] += b->count;
  }
  for (size_t i = 0; i < g->ncsets; i++) {
    const store_cset_t *c = &g->csets[i];
    uint64_t next;
    if (c->stream == 0 || c->stream > w->nstreams) {
      g->status = SL_ENOTFOUND;
      return 0;
    }
    next = w->streams[c->stream - 1].next_offset;
    for (size_t j = 0; j < nids; j++)
      if (ids[j] == c->stream)
        next += adds[j];
    if (c->next > next) {
      g->status = -ERANGE;
      return 0;
    }
  }
  if (nids) {
    rc = store__budget_reserve(st, txn, ids, need, nids);
    if (rc == SL_EBACKPRESSURE) {
      g->status = rc;
      return 0;
    }
    if (rc)
      return rc;
  }

  for (size_t i = 0; i < g->nbatches; i++) {
    sl_store_batch_t *b = g->batches[i];
    store_stream_t *s = &w->streams[b->stream - 1];
    uint8_t key[STORE_KEY_LEN];
    MDB_val k = {STORE_KEY_LEN, key}, v;
    unsigned flags;

    store__batch_seal(b, s->next_offset, now, snow);
    store__key(key, b->stream, s->next_offset);
    /* MDB_APPEND only when the key sorts last in the whole log; other
     * streams' tails are ordinary (no-overwrite) puts. */
    flags = key_after_last(w, key) ? MDB_APPEND : MDB_NOOVERWRITE;
    v.mv_size = b->len;
    v.mv_data = b->buf;
    if ((rc = mdb_put(txn, st->dbi_log, &k, &v, flags)))
      return rc;
    if (flags == MDB_APPEND) {
      memcpy(w->last_key, key, STORE_KEY_LEN);
      w->have_last_key = true;
    }
    g->offsets[i] = s->next_offset;
    s->next_offset += b->count;
    s->bytes += b->len;
    s->events += b->count;
    s->batches++;
  }
  if (g->nbatches)
    w->newest_append_ns = SL_MAX(w->newest_append_ns, now);

  for (size_t i = 0; i < g->ncsets; i++) {
    const store_cset_t *c = &g->csets[i];
    uint8_t key[4 + SL_STORE_NAME_MAX], val[8];
    size_t n = strlen(c->name);
    MDB_val k = {4 + n, key}, v = {8, val};
    sl_put_be32(key, c->stream);
    memcpy(key + 4, c->name, n);
    sl_put_be64(val, c->next);
    if ((rc = mdb_put(txn, st->dbi_cursors, &k, &v, 0)))
      return rc;
  }
  for (size_t i = 0; i < g->nkvs; i++) {
    MDB_val k = {g->kvs[i].klen, g->kvs[i].key};
    MDB_val v = {g->kvs[i].vlen, g->kvs[i].val};
    rc = g->kvs[i].val ? mdb_put(txn, st->dbi_state, &k, &v, 0)
                       : mdb_del(txn, st->dbi_state, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
      return rc;
  }
  return 0;
}

static int apply_stream(sl_store_t *st, MDB_txn *txn, sl_store_group_t *g) {
  store_writer_t *w = &st->w;
  store_stream_t *s = NULL;

  (void)txn;
  for (size_t i = 0; i < w->nstreams; i++)
    if (!strcmp(w->streams[i].name, g->name))
      s = &w->streams[i];
  if (!s) {
    if (w->nstreams >= STORE_MAX_STREAMS) {
      g->status = SL_ETOOBIG;
      return 0;
    }
    if (w->nstreams == w->cap) {
      size_t ncap = w->cap ? w->cap * 2 : 8;
      store_stream_t *ns = realloc(w->streams, ncap * sizeof(*ns));
      if (!ns) {
        g->status = -ENOMEM;
        return 0;
      }
      w->streams = ns;
      w->cap = ncap;
    }
    s = &w->streams[w->nstreams];
    memset(s, 0, sizeof(*s));
    s->id = (uint32_t)++w->nstreams;
    strcpy(s->name, g->name);
  }
  s->conf = g->conf;
  if (g->waiter)
    g->waiter->id = s->id;
  return 0; /* the record is written by wtxn_commit */
}

static int apply_gap_ack(sl_store_t *st, MDB_txn *txn, sl_store_group_t *g) {
  MDB_cursor *cur;
  MDB_val k, v;
  int rc;

  if ((rc = mdb_cursor_open(txn, st->dbi_gaps, &cur)))
    return rc;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (k.mv_size == 8 && sl_get_be64(k.mv_data) >= g->u64)
      break;
    if ((rc = mdb_cursor_del(cur, 0)))
      break;
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_dict(sl_store_t *st, MDB_txn *txn, sl_store_group_t *g) {
  store_writer_t *w = &st->w;
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t kb[4];
  uint32_t id = 1;
  int rc;

  if (g->stream == 0 || g->stream > w->nstreams) {
    g->status = SL_ENOTFOUND;
    return 0;
  }
  if ((rc = mdb_cursor_open(txn, st->dbi_dicts, &cur)))
    return rc;
  if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 4)
    id = sl_get_be32(k.mv_data) + 1;
  mdb_cursor_close(cur);
  sl_put_be32(kb, id);
  k.mv_size = 4;
  k.mv_data = kb;
  v.mv_size = g->blen;
  v.mv_data = g->blob;
  if ((rc = mdb_put(txn, st->dbi_dicts, &k, &v, MDB_NOOVERWRITE)))
    return rc;
  w->streams[g->stream - 1].dict_id = id;
  if (g->waiter)
    g->waiter->id = id;
  return 0;
}

static int apply(sl_store_t *st, MDB_txn *txn, sl_store_group_t *g, int64_t now,
                 int64_t snow) {
  switch (g->op) {
  case STORE_OP_GROUP:
    return apply_group(st, txn, g, now, snow);
  case STORE_OP_STREAM:
    return apply_stream(st, txn, g);
  case STORE_OP_GAP_ACK:
    return apply_gap_ack(st, txn, g);
  case STORE_OP_QUARANTINE:
    return store__quarantine_apply(st, txn, g->stream, g->u64);
  case STORE_OP_DICT:
    return apply_dict(st, txn, g);
  case STORE_OP_SYNC:
    return 0;
  }
  return 0;
}

/* Fires completions and frees the items; writer thread, no txn open. */
static void complete(sl_store_t *st, sl_store_group_t **items, size_t n,
                     int err) {
  for (size_t i = 0; i < n; i++) {
    sl_store_group_t *g = items[i];
    int status = err ? err : g->status;
    if (g->cb)
      g->cb(g->arg, status, status ? NULL : g->offsets, g->nbatches);
    if (g->waiter) {
      pthread_mutex_lock(&st->q_lock);
      if (g->waiter->offsets && !status)
        memcpy(g->waiter->offsets, g->offsets,
               SL_MIN(g->waiter->cap, g->nbatches) * sizeof(uint64_t));
      g->waiter->status = status;
      g->waiter->done = 1;
      pthread_cond_broadcast(&st->q_done);
      pthread_mutex_unlock(&st->q_lock);
    }
    store__item_free(g);
  }
}

static void writer_sync(sl_store_t *st) {
  int rc = mdb_env_sync(st->env, 1);

  st->w.unsynced = rc != 0;
  st->w.last_sync_mono = sl_now_mono_ns();
  if (rc) {
    atomic_store(&st->last_error, store__err(st, rc));
    atomic_fetch_add(&st->commit_errors, 1);
  } else {
    store__ident_hwm(st, false); /* everything committed is durable now */
  }
}

static bool shrink_limit(sl_store_t *st) {
  uint64_t lim = atomic_load(&st->limit_bytes);
  uint64_t step = SL_MAX(st->opts.budget_bytes / 32, (uint64_t)st->psize);

  if (lim < st->opts.budget_bytes / 2 + step)
    return false;
  atomic_store(&st->limit_bytes, lim - step);
  return true;
}

/* LMDB reports a short write (the usual face of a full disk) as EIO: tell
 * the two apart by the free space left on the file system. */
static int disk_err(sl_store_t *st, int rc, sl_store_group_t **items,
                    size_t n) {
  uint64_t need = 64u << 10;
  struct statvfs sv;

  if (rc != EIO || fstatvfs(st->data_fd, &sv) != 0)
    return store__err(st, rc);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < items[i]->nbatches; j++)
      need += items[i]->batches[j]->len;
  if ((uint64_t)sv.f_bavail * sv.f_frsize < need)
    return -ENOSPC;
  return -EIO;
}

/* Runs one round: every taken item in one transaction. */
static void run_round(sl_store_t *st, sl_store_group_t **items, size_t n) {
  int64_t now, snow;
  bool want_sync = false;
  wtxn_t t;
  int rc;

  if (atomic_load(&st->poisoned)) {
    complete(st, items, n, SL_EPOISONED);
    return;
  }
  /* Both clocks once per round: batches carry the wall and store clock. */
  store__clock_sample(st, &now, &snow);
  for (;;) {
    for (size_t i = 0; i < n; i++)
      items[i]->status = 0;
    if ((rc = wtxn_begin(st, &t)))
      break;
    for (size_t i = 0; i < n && !rc; i++) {
      rc = apply(st, t.txn, items[i], now, snow);
      want_sync |= items[i]->op == STORE_OP_SYNC;
    }
    if (rc) {
      wtxn_abort(st, &t);
    } else {
      rc = wtxn_commit(st, &t);
    }
    if (rc != MDB_MAP_FULL)
      break;
    /* The map is full: grow it (no txn open now) and redo the round. At
     * the budget cap the page estimate was optimistic (free-list and
     * copy-on-write slack): tighten the live-data limit so the policies
     * evict more, and redo the round; give up at half the budget. */
    if (store__map_grow(st) != 0 && !shrink_limit(st))
      break;
  }
  if (rc) {
    int err = disk_err(st, rc, items, n);
    atomic_fetch_add(&st->commit_errors, 1);
    atomic_store(&st->last_error, err);
    complete(st, items, n, err);
    return;
  }
  atomic_fetch_add(&st->commits, 1);
  atomic_store(&st->last_error, 0);
  if (st->opts.sync == SL_STORE_SYNC_ALWAYS)
    store__ident_hwm(st, false); /* the commit was fsynced */
  if (st->opts.sync == SL_STORE_SYNC_INTERVAL) {
    st->w.unsynced = true;
    if (want_sync) {
      writer_sync(st);
      if (st->w.unsynced) {
        complete(st, items, n, atomic_load(&st->last_error));
        return;
      }
    }
  }
  complete(st, items, n, 0);
}

/* Periodic work: clock steps, stale readers, TTL expiry, interval fsync. */
static void maintenance(sl_store_t *st, uint64_t mono) {
  store_writer_t *w = &st->w;
  bool ttl = false;
  int64_t snow;
  int dead = 0;
  wtxn_t t;

  if (mono >= w->next_maint_mono) {
    store__clock_sample(st, NULL, &snow);
    w->next_maint_mono = mono + (uint64_t)st->opts.maintenance_ms * 1000000u;
    if (mdb_reader_check(st->env, &dead) == 0 && dead > 0)
      atomic_fetch_add(&st->readers_cleared, (uint64_t)dead);
    for (size_t i = 0; i < w->nstreams; i++)
      ttl |= w->streams[i].conf.ttl_ns > 0 && w->streams[i].events > 0;
    /* A step is persisted soon even when nothing is appended, so a restart
     * does not count it again as a step while stopped. */
    ttl |= st->clock.dirty;
    if (ttl && !atomic_load(&st->poisoned) && wtxn_begin(st, &t) == 0) {
      int rc = store__ttl_sweep(st, t.txn, snow);
      if (rc)
        wtxn_abort(st, &t);
      else
        rc = wtxn_commit(st, &t);
      if (rc) {
        atomic_fetch_add(&st->commit_errors, 1);
        atomic_store(&st->last_error, store__err(st, rc));
      } else if (st->opts.sync == SL_STORE_SYNC_INTERVAL) {
        w->unsynced = true;
      }
    }
  }
  if (w->unsynced && mono >= w->last_sync_mono +
                                 (uint64_t)st->opts.sync_interval_ms * 1000000u)
    writer_sync(st);
}

static uint64_t next_deadline(sl_store_t *st) {
  uint64_t d = st->w.next_maint_mono;

  if (st->w.unsynced)
    d = SL_MIN(d, st->w.last_sync_mono +
                      (uint64_t)st->opts.sync_interval_ms * 1000000u);
  return d;
}

static void *writer_main(void *arg) {
  sl_store_t *st = arg;
  sl_store_group_t **items = malloc(st->q_cap * sizeof(*items));
  size_t n;

  if (!items)
    abort(); /* tiny control allocation at start: no way to report it */
  st->w.last_sync_mono = sl_now_mono_ns();
  st->w.next_maint_mono = st->w.last_sync_mono;
  pthread_mutex_lock(&st->q_lock);
  for (;;) {
    while (st->q_len == 0 && !st->stopping) {
      uint64_t now = sl_now_mono_ns(), dl = next_deadline(st);
      struct timespec ts;
      if (now >= dl) {
        pthread_mutex_unlock(&st->q_lock);
        maintenance(st, now);
        pthread_mutex_lock(&st->q_lock);
        continue;
      }
      ts.tv_sec = (time_t)(dl / 1000000000u);
      ts.tv_nsec = (long)(dl % 1000000000u);
      pthread_cond_timedwait(&st->q_nonempty, &st->q_lock, &ts);
    }
    if (st->q_len == 0)
      break; /* stopping and drained */
    for (n = 0; st->q_len > 0; n++) {
      items[n] = st->q[st->q_head];
      st->q_head = (st->q_head + 1) % st->q_cap;
      st->q_len--;
    }
    st->q_busy = (uint32_t)n;
    pthread_cond_broadcast(&st->q_nonfull);
    pthread_mutex_unlock(&st->q_lock);
    run_round(st, items, n);
    {
      uint64_t now = sl_now_mono_ns();
      if (now >= next_deadline(st))
        maintenance(st, now);
    }
    pthread_mutex_lock(&st->q_lock);
    st->q_busy = 0;
  }
  pthread_mutex_unlock(&st->q_lock);
  if (st->w.unsynced && !atomic_load(&st->poisoned))
    writer_sync(st);
  if (!st->w.unsynced)
    store__ident_hwm(st, true); /* the marks as of close */
  free(items);
  return NULL;
}

int store__writer_start(sl_store_t *st) {
  pthread_condattr_t ca;
  int rc;

  /* Timed waits use the monotonic clock: wall clock jumps must not stall
   * or spin the writer. */
  pthread_cond_destroy(&st->q_nonempty);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&st->q_nonempty, &ca);
  pthread_condattr_destroy(&ca);
  if ((rc = pthread_create(&st->writer, NULL, writer_main, st)))
    return -rc;
  st->writer_started = true;
  return 0;
}

void store__writer_stop(sl_store_t *st) {
  if (!st->writer_started)
    return;
  pthread_mutex_lock(&st->q_lock);
  st->stopping = true;
  pthread_cond_broadcast(&st->q_nonempty);
  pthread_cond_broadcast(&st->q_nonfull);
  pthread_mutex_unlock(&st->q_lock);
  pthread_join(st->writer, NULL);
  st->writer_started = false;
}
