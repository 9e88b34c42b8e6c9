/*
 * base.c: the ground floor of the store, used by every other part and using
 * none: error strings and the LMDB-to-store error mapping (with poisoning),
 * short read transactions under the map lock, map growth, live bytes, and
 * meta puts. env.c opens and closes the store on top of the parts.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "store/store_int.h"

void store__seterr(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!errstr || !errlen)
    return;
  va_start(ap, fmt);
  vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
}

void store__poison(sl_store_t *st) {
  atomic_store(&st->poisoned, 1);
}

int store__check(sl_store_t *st) {
  return atomic_load(&st->poisoned) ? SL_EPOISONED : 0;
}

int store__err(sl_store_t *st, int rc) {
  if (rc == 0)
    return 0;
  if (rc > 0)
    return -rc; /* LMDB passes errno values through */
  if (rc > -4096 || (rc > SL__EFIRST && rc < SL__ELAST))
    return rc; /* already ours: -errno or SL_E* */
  switch (rc) {
  case MDB_PANIC:
    store__poison(st);
    return SL_EPOISONED;
  case MDB_NOTFOUND:
    return SL_ENOTFOUND;
  case MDB_KEYEXIST:
    return SL_EEXIST;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
  case MDB_BAD_VALSIZE:
    return SL_ECORRUPT;
  case MDB_VERSION_MISMATCH:
    return SL_EVERSION;
  case MDB_MAP_FULL:
    return SL_EBACKPRESSURE;
  case MDB_READERS_FULL:
    return -EAGAIN;
  default:
    return SL_ESTORE;
  }
}

int store__rtxn_begin(sl_store_t *st, MDB_txn **txn) {
  int rc;

  if (atomic_load(&st->poisoned))
    return SL_EPOISONED;
  for (int tries = 0;; tries++) {
    pthread_rwlock_rdlock(&st->map_lock);
    rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
    if (rc == 0)
      return 0;
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != MDB_MAP_RESIZED || tries == 3)
      return store__err(st, rc);
    /* Another process grew the map: adopt its size. LMDB requires that no
     * txn of ours is live, hence the exclusive lock. */
    pthread_rwlock_wrlock(&st->map_lock);
    rc = mdb_env_set_mapsize(st->env, 0);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc)
      return store__err(st, rc);
  }
}

void store__rtxn_end(sl_store_t *st, MDB_txn *txn) {
  mdb_txn_abort(txn);
  pthread_rwlock_unlock(&st->map_lock);
}

int store__map_grow(sl_store_t *st) {
  uint64_t cur = atomic_load(&st->map_size);
  uint64_t next = SL_MIN(cur * 2, st->opts.budget_bytes);
  int rc;

  next -= next % st->psize;
  if (next <= cur)
    return SL_EBACKPRESSURE;
  pthread_rwlock_wrlock(&st->map_lock);
  rc = mdb_env_set_mapsize(st->env, next);
  pthread_rwlock_unlock(&st->map_lock);
  if (rc)
    return store__err(st, rc);
  atomic_store(&st->map_size, next);
  atomic_fetch_add(&st->map_grows, 1);
  return 0;
}

uint64_t store__used_bytes(sl_store_t *st, MDB_txn *txn) {
  const MDB_dbi dbis[] = {1 /* main */,    st->dbi_streams,    st->dbi_log,
                          st->dbi_cursors, st->dbi_state,      st->dbi_meta,
                          st->dbi_dlq,     st->dbi_quarantine, st->dbi_gaps,
                          st->dbi_dicts};
  uint64_t pages = 2; /* the two meta pages */
  MDB_stat ms;

  for (size_t i = 0; i < SL_ARRAY_SIZE(dbis); i++) {
    if (mdb_stat(txn, dbis[i], &ms) == 0)
      pages += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
  }
  return pages * st->psize;
}

int store__meta_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                    const void *val, size_t len) {
  MDB_val k = {klen, (void *)key}, v = {len, (void *)val};
  return mdb_put(txn, dbi, &k, &v, 0);
}
