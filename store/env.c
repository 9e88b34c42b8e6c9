/*
 * env.c: opening and closing the LMDB environment (the top of the store: it
 * opens every part), the lock file and store-wide information. The helpers
 * every part shares (error mapping, read txns, map growth) are in base.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

#define STORE_MIN_BUDGET (256u << 10)

void sl_store_opts_init(sl_store_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->budget_bytes = 1ull << 30;
  opts->map_size = 64ull << 20;
  opts->sync = SL_STORE_SYNC_ALWAYS;
  opts->sync_interval_ms = 100; /* = the daemon's store.sync_interval */
  opts->queue_depth = 1024;
  opts->zstd_level = 3;
  opts->clock_tolerance_ns = 300ll * 1000000000ll;
  opts->maintenance_ms = 1000;
}

static int validate_opts(const sl_store_opts_t *o, char *errstr,
                         size_t errlen) {
  if (o->budget_bytes < STORE_MIN_BUDGET) {
    store__seterr(errstr, errlen, "budget_bytes %llu is below the minimum %u",
                  (unsigned long long)o->budget_bytes, STORE_MIN_BUDGET);
    return SL_ECONFIG;
  }
  if (o->sync != SL_STORE_SYNC_ALWAYS && o->sync != SL_STORE_SYNC_INTERVAL) {
    store__seterr(errstr, errlen, "unknown sync mode %d", (int)o->sync);
    return SL_ECONFIG;
  }
  if (o->sync == SL_STORE_SYNC_INTERVAL &&
      (o->sync_interval_ms < 1 || o->sync_interval_ms > 600000)) {
    store__seterr(errstr, errlen, "sync_interval_ms %u not in 1..600000",
                  o->sync_interval_ms);
    return SL_ECONFIG;
  }
  if (o->queue_depth < 1 || o->queue_depth > (1u << 20)) {
    store__seterr(errstr, errlen, "queue_depth %u not in 1..1048576",
                  o->queue_depth);
    return SL_ECONFIG;
  }
  if (o->zstd_level < ZSTD_minCLevel() || o->zstd_level > ZSTD_maxCLevel()) {
    store__seterr(errstr, errlen, "zstd_level %d out of range", o->zstd_level);
    return SL_ECONFIG;
  }
  if (o->clock_tolerance_ns < 0 || o->maintenance_ms < 1) {
    store__seterr(errstr, errlen,
                  "negative clock tolerance or zero maintenance");
    return SL_ECONFIG;
  }
  return 0;
}

/* Takes the exclusive lock on DIR/sluice.lock and writes our pid in it. */
static int take_lock(sl_store_t *st, const char *dir, char *errstr,
                     size_t errlen) {
  char path[4096], pid[32] = "";
  int fd, rc;
  ssize_t n;

  snprintf(path, sizeof(path), "%s/sluice.lock", dir);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    store__seterr(errstr, errlen, "cannot open %s: %s", path, strerror(errno));
    return rc;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    rc = errno == EWOULDBLOCK ? SL_ELOCKED : -errno;
    n = pread(fd, pid, sizeof(pid) - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    store__seterr(errstr, errlen,
                  "store %s is in use by another process (pid %s): only one "
                  "sluice daemon may open it",
                  dir, pid[0] ? pid : "unknown");
    close(fd);
    return rc;
  }
  n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    /* The lock is what matters; the pid is only for the message. */
  }
  st->lock_fd = fd;
  return 0;
}

static int put_meta(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *val,
                    size_t len) {
  MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
  return mdb_put(txn, dbi, &k, &v, 0);
}

/* Reads or initialises the meta sub-db: format version and node identity. */
static int init_meta(sl_store_t *st, MDB_txn *txn, bool fresh, char *errstr,
                     size_t errlen) {
  MDB_val k = {6, "format"}, v;
  uint8_t b[16];
  int rc;

  rc = mdb_get(txn, st->dbi_meta, &k, &v);
  if (rc == MDB_NOTFOUND && fresh && !st->rdonly) {
    uint8_t id[16];
    if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
      return -errno;
    sl_put_be32(b, STORE_FORMAT_VERSION);
    if ((rc = put_meta(txn, st->dbi_meta, "format", b, 4)) ||
        (rc = put_meta(txn, st->dbi_meta, "node_id", id, 16)))
      return store__err(st, rc);
    sl_put_be64(b, 0);
    if ((rc = put_meta(txn, st->dbi_meta, "gap_seq", b, 8)))
      return store__err(st, rc);
    return init_meta(st, txn, false, errstr, errlen);
  }
  if (rc) {
    store__seterr(errstr, errlen, "not a sluice store (no format record)");
    return SL_ECORRUPT;
  }
  if (v.mv_size != 4) {
    store__seterr(errstr, errlen, "bad format record");
    return SL_ECORRUPT;
  }
  st->format_version = sl_get_be32(v.mv_data);
  if (st->format_version == 0 || st->format_version > STORE_FORMAT_VERSION) {
    store__seterr(errstr, errlen,
                  "store format version %u is not supported (this build reads "
                  "1..%u)",
                  st->format_version, STORE_FORMAT_VERSION);
    return SL_EVERSION;
  }
  if (st->format_version < STORE_FORMAT_VERSION && !st->rdonly) {
    /* Format 2 adds v3 batches and the clock record: older builds must
     * refuse the store whole rather than meet v3 batches one by one. */
    sl_put_be32(b, STORE_FORMAT_VERSION);
    if ((rc = put_meta(txn, st->dbi_meta, "format", b, 4)))
      return store__err(st, rc);
    st->format_version = STORE_FORMAT_VERSION;
  }
  k.mv_size = 7;
  k.mv_data = "node_id";
  if (mdb_get(txn, st->dbi_meta, &k, &v) == 0 && v.mv_size == 16) {
    for (int i = 0; i < 16; i++)
      snprintf(st->node_id + 2 * i, 3, "%02x", ((uint8_t *)v.mv_data)[i]);
  }
  k.mv_size = 7;
  k.mv_data = "gap_seq";
  if (mdb_get(txn, st->dbi_meta, &k, &v) == 0 && v.mv_size == 8)
    st->w.gap_seq = sl_get_be64(v.mv_data);
  return 0;
}

/* Opens every sub-database; creates them on a fresh read-write store. */
static int open_dbs(sl_store_t *st, char *errstr, size_t errlen) {
  static const char *const names[] = {"streams",    "log",  "cursors",
                                      "state",      "meta", "dlq",
                                      "quarantine", "gaps", "dicts"};
  MDB_dbi *dbis[] = {&st->dbi_streams,    &st->dbi_log,  &st->dbi_cursors,
                     &st->dbi_state,      &st->dbi_meta, &st->dbi_dlq,
                     &st->dbi_quarantine, &st->dbi_gaps, &st->dbi_dicts};
  unsigned flags = st->rdonly ? 0 : MDB_CREATE;
  MDB_txn *txn = NULL;
  MDB_dbi main_dbi;
  MDB_stat ms;
  MDB_val k = {4, "meta"}, v;
  bool fresh;
  int rc;

  rc = mdb_txn_begin(st->env, NULL, st->rdonly ? MDB_RDONLY : 0, &txn);
  if (rc)
    goto fail_mdb;
  if ((rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) ||
      (rc = mdb_stat(txn, main_dbi, &ms)))
    goto fail_mdb;
  fresh = ms.ms_entries == 0;
  if (!fresh && mdb_get(txn, main_dbi, &k, &v) == MDB_NOTFOUND) {
    store__seterr(errstr, errlen, "foreign LMDB environment (no sluice meta)");
    rc = SL_ECORRUPT;
    goto fail;
  }
  if (fresh && st->rdonly) {
    store__seterr(errstr, errlen, "empty environment: not a sluice store");
    rc = SL_ENOTFOUND;
    goto fail;
  }
  for (size_t i = 0; i < SL_ARRAY_SIZE(names); i++) {
    rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
    if (rc == MDB_NOTFOUND && st->rdonly &&
        (dbis[i] == &st->dbi_dicts || dbis[i] == &st->dbi_dlq)) {
      *dbis[i] = 0; /* optional in read-only mode */
      continue;
    }
    if (rc) {
      store__seterr(errstr, errlen, "cannot open sub-database %s: %s", names[i],
                    mdb_strerror(rc));
      goto fail_mdb;
    }
  }
  if ((rc = init_meta(st, txn, fresh, errstr, errlen)) ||
      (rc = store__ident_check(st, txn, fresh, errstr, errlen)) ||
      (rc = store__keys_check(st, txn, errstr, errlen)))
    goto fail;
  if ((rc = store__clock_open(st, txn, errstr, errlen)))
    goto fail_mdb; /* errstr set for our own codes; store__err keeps them */
  /* Commit even a read-only txn: an abort would close the new handles. */
  rc = mdb_txn_commit(txn);
  txn = NULL;
  if (rc)
    goto fail_mdb;
  return 0;

fail_mdb:
  if (errstr && errlen && !errstr[0])
    store__seterr(errstr, errlen, "LMDB: %s", mdb_strerror(rc));
  rc = store__err(st, rc);
fail:
  if (txn)
    mdb_txn_abort(txn);
  return rc;
}

/* LMDB does not notice a data file shorter than its last page (it would
 * SIGBUS on access): check the size against the meta page first. */
static int check_file(sl_store_t *st, char *errstr, size_t errlen) {
  MDB_envinfo ei;
  MDB_stat ms;
  struct stat sb;
  uint64_t need;

  if (mdb_env_info(st->env, &ei) || mdb_env_stat(st->env, &ms) ||
      mdb_env_get_fd(st->env, &st->data_fd) || fstat(st->data_fd, &sb)) {
    store__seterr(errstr, errlen, "cannot stat data.mdb");
    return SL_ESTORE;
  }
  st->psize = ms.ms_psize;
  need = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
  if ((uint64_t)sb.st_size < need) {
    store__seterr(errstr, errlen,
                  "data.mdb is truncated: %llu bytes, its last page needs %llu",
                  (unsigned long long)sb.st_size, (unsigned long long)need);
    return SL_ECORRUPT;
  }
  atomic_store(&st->map_size, (uint64_t)ei.me_mapsize);
  return 0;
}

/* Loads stream records, the log's last key and the newest append time. */
static int load_state(sl_store_t *st) {
  MDB_txn *txn = NULL;
  MDB_cursor *cur = NULL;
  MDB_val k, v;
  uint8_t key[STORE_KEY_LEN];
  store_hdr_t h;
  int rc;

  if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)))
    goto fail_mdb;
  if ((rc = store__streams_load(st, txn, &st->w.streams, &st->w.nstreams)))
    goto fail;
  st->w.cap = st->w.nstreams;
  if ((rc = mdb_cursor_open(txn, st->dbi_log, &cur)))
    goto fail_mdb;
  rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  if (rc == 0 && k.mv_size == STORE_KEY_LEN) {
    memcpy(st->w.last_key, k.mv_data, STORE_KEY_LEN);
    st->w.have_last_key = true;
  }
  for (size_t i = 0; i < st->w.nstreams; i++) {
    store__key(key, st->w.streams[i].id + 1, 0);
    k.mv_size = sizeof(key);
    k.mv_data = key;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                 : mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == STORE_KEY_LEN &&
        sl_get_be32(k.mv_data) == st->w.streams[i].id &&
        store__hdr_peek(v.mv_data, v.mv_size, &h) == 0)
      st->w.newest_append_ns = SL_MAX(st->w.newest_append_ns, h.append_time_ns);
  }
  mdb_cursor_close(cur);
  atomic_store(&st->used_bytes, store__used_bytes(st, txn));
  mdb_txn_abort(txn);
  return store__streams_publish(st);

fail_mdb:
  rc = store__err(st, rc);
fail:
  if (cur)
    mdb_cursor_close(cur);
  if (txn)
    mdb_txn_abort(txn);
  return rc;
}

static void store_free(sl_store_t *st) {
  if (st->env)
    mdb_env_close(st->env);
  store__keys_free(st);
  free(st->side_hwm);
  free(st->dir);
  if (st->lock_fd >= 0)
    close(st->lock_fd);
  for (int i = 0; i < st->ncctx; i++)
    ZSTD_freeCCtx(st->cctx_pool[i]);
  store__dicts_free(st);
  store__clock_free(st);
  free(st->streams);
  free(st->w.streams);
  free(st->q);
  pthread_rwlock_destroy(&st->map_lock);
  pthread_mutex_destroy(&st->streams_lock);
  pthread_mutex_destroy(&st->pool_lock);
  pthread_mutex_destroy(&st->q_lock);
  pthread_cond_destroy(&st->q_nonempty);
  pthread_cond_destroy(&st->q_nonfull);
  pthread_cond_destroy(&st->q_done);
  free(st);
}

int sl_store_env_open(const char *dir, const sl_store_opts_t *opts,
                      sl_store_t **stp, char *errstr, size_t errlen) {
  pthread_rwlockattr_t rwa;
  sl_store_t *st;
  char path[4096];
  unsigned flags;
  int rc;

  if (errstr && errlen)
    errstr[0] = '\0';
  if ((rc = validate_opts(opts, errstr, errlen)))
    return rc;
  st = calloc(1, sizeof(*st));
  if (!st)
    return -ENOMEM;
  st->opts = *opts;
  st->rdonly = (opts->flags & SL_STORE_RDONLY) != 0;
  st->lock_fd = -1;
  if (!(st->dir = strdup(dir))) {
    free(st);
    return -ENOMEM;
  }
  pthread_rwlockattr_init(&rwa);
  /* The writer must not starve behind a stream of short readers. */
  pthread_rwlockattr_setkind_np(&rwa,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&st->map_lock, &rwa);
  pthread_rwlockattr_destroy(&rwa);
  pthread_mutex_init(&st->streams_lock, NULL);
  pthread_mutex_init(&st->pool_lock, NULL);
  pthread_mutex_init(&st->q_lock, NULL);
  pthread_cond_init(&st->q_nonempty, NULL);
  pthread_cond_init(&st->q_nonfull, NULL);
  pthread_cond_init(&st->q_done, NULL);
  store__clock_init(st);

  snprintf(path, sizeof(path), "%s/data.mdb", dir);
  if (st->rdonly && access(path, F_OK) < 0) {
    rc = errno == ENOENT ? SL_ENOTFOUND : -errno;
    store__seterr(errstr, errlen, "no store in %s: %s", dir, strerror(errno));
    goto fail;
  }
  if (!st->rdonly) {
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
      rc = -errno;
      store__seterr(errstr, errlen, "cannot create %s: %s", dir,
                    strerror(errno));
      goto fail;
    }
    if ((rc = take_lock(st, dir, errstr, errlen)) ||
        (rc = store__ident_pre(st, errstr, errlen)))
      goto fail;
  }
  if ((rc = store__keys_load(st, errstr, errlen)))
    goto fail;

  if ((rc = mdb_env_create(&st->env)))
    goto fail_mdb;
  if ((rc = mdb_env_set_maxdbs(st->env, 16)) ||
      (rc = mdb_env_set_maxreaders(st->env, 256)))
    goto fail_mdb;
  if (!st->rdonly) {
    uint64_t map = opts->map_size ? opts->map_size : (64ull << 20);
    map = SL_MIN(map, opts->budget_bytes);
    if ((rc = mdb_env_set_mapsize(st->env, map)))
      goto fail_mdb;
  }
  /* Never MDB_WRITEMAP (SIGBUS on a full disk). MDB_NOTLS: read txns are
   * tied to cursors, not threads. Interval mode syncs from the writer. */
  flags = MDB_NOTLS;
  if (st->rdonly)
    flags |= MDB_RDONLY;
  if (opts->sync == SL_STORE_SYNC_INTERVAL)
    flags |= MDB_NOSYNC;
  if ((rc = mdb_env_open(st->env, dir, flags, 0600))) {
    if (rc == MDB_INVALID)
      store__seterr(errstr, errlen, "%s/data.mdb is not an LMDB file", dir);
    else if (rc == MDB_VERSION_MISMATCH)
      store__seterr(errstr, errlen, "%s was written by another LMDB version",
                    dir);
    goto fail_mdb;
  }
  if ((rc = check_file(st, errstr, errlen)))
    goto fail;
  {
    int dead = 0;
    if (mdb_reader_check(st->env, &dead) == 0 && dead > 0)
      atomic_fetch_add(&st->readers_cleared, (uint64_t)dead);
  }
  snprintf(path, sizeof(path), "%s/lock.mdb", dir);
  if (!st->rdonly && (fchmod(st->data_fd, 0600) < 0 || chmod(path, 0600) < 0)) {
    rc = -errno;
    store__seterr(errstr, errlen,
                  "cannot set mode 0600 on data.mdb or lock.mdb: %s",
                  strerror(errno));
    goto fail;
  }
  if ((rc = open_dbs(st, errstr, errlen)))
    goto fail;
  if ((rc = load_state(st))) {
    store__seterr(errstr, errlen, "cannot load streams: %s", sl_strerror(rc));
    goto fail;
  }
  if ((rc = store__ident_post(st, errstr, errlen)))
    goto fail;
  /* Live data stays below the budget minus room for LMDB's free list and
   * copy-on-write pages; the map (never above the budget) is the hard cap
   * on the file. */
  atomic_store(&st->limit_bytes,
               st->opts.budget_bytes -
                   SL_MAX(st->opts.budget_bytes / 8, 32ull * st->psize));
  if (!st->rdonly) {
    st->q_cap = opts->queue_depth;
    st->q = calloc(st->q_cap, sizeof(*st->q));
    if (!st->q) {
      rc = -ENOMEM;
      goto fail;
    }
    if ((rc = store__writer_start(st))) {
      store__seterr(errstr, errlen, "cannot start the writer thread");
      goto fail;
    }
  }
  *stp = st;
  return 0;

fail_mdb:
  if (errstr && errlen && !errstr[0])
    store__seterr(errstr, errlen, "LMDB: %s", mdb_strerror(rc));
  rc = store__err(st, rc);
fail:
  store_free(st);
  return rc;
}

void sl_store_env_close(sl_store_t *st) {
  if (!st)
    return;
  if (!st->rdonly) {
    store__writer_stop(st);
    if (st->opts.sync == SL_STORE_SYNC_INTERVAL && !atomic_load(&st->poisoned))
      mdb_env_sync(st->env, 1);
  }
  store_free(st);
}

int sl_store_env_info(sl_store_t *st, sl_store_info_t *info) {
  struct stat sb;
  MDB_txn *txn;
  int rc;

  memset(info, 0, sizeof(*info));
  info->sync = st->opts.sync;
  info->loss_window_ms =
      st->opts.sync == SL_STORE_SYNC_INTERVAL ? st->opts.sync_interval_ms : 0;
  info->budget_bytes = st->opts.budget_bytes;
  info->limit_bytes = atomic_load(&st->limit_bytes);
  info->map_size = atomic_load(&st->map_size);
  info->page_size = st->psize;
  info->format_version = st->format_version;
  memcpy(info->node_id, st->node_id, sizeof(info->node_id));
  info->created_ns = st->created_ns;
  info->seal_key_id = st->seal ? st->seal->id : 0;
  info->commits = atomic_load(&st->commits);
  info->commit_errors = atomic_load(&st->commit_errors);
  info->corrupt_seen = atomic_load(&st->corrupt_seen);
  info->map_grows = atomic_load(&st->map_grows);
  info->readers_cleared = atomic_load(&st->readers_cleared);
  info->quarantined = atomic_load(&st->quarantined);
  info->last_error = atomic_load(&st->last_error);
  info->poisoned = atomic_load(&st->poisoned);
  info->queue_depth = st->q_cap;
  store__clock_info(st, &info->clock);
  pthread_mutex_lock(&st->q_lock);
  info->queued = st->q_len;
  info->committing = st->q_busy;
  pthread_mutex_unlock(&st->q_lock);
  if (fstat(st->data_fd, &sb) == 0)
    info->file_bytes = (uint64_t)sb.st_size;
  if (info->poisoned)
    return SL_EPOISONED;
  if ((rc = store__rtxn_begin(st, &txn)))
    return rc;
  info->used_bytes = store__used_bytes(st, txn);
  {
    MDB_stat ms;
    if (mdb_stat(txn, st->dbi_quarantine, &ms) == 0)
      info->quarantined = ms.ms_entries;
  }
  store__rtxn_end(st, txn);
  return 0;
}

int sl_store_env_sync(sl_store_t *st) {
  store_waiter_t wt = {0};
  sl_store_group_t *g;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if (st->rdonly)
    return -EROFS;
  if (!(g = store__item_new(st, STORE_OP_SYNC)))
    return -ENOMEM;
  return store__submit_wait(st, g, &wt);
}
