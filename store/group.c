/*
 * group.c: groups (the unit of atomic change callers build), the writer's
 * bounded queue, and the synchronous calls built on it (consumer commit,
 * gap ack, stream create).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

sl_store_group_t *store__item_new(sl_store_t *st, store_op_t op) {
  sl_store_group_t *g = calloc(1, sizeof(*g));

  if (g) {
    g->st = st;
    g->op = op;
  }
  return g;
}

void store__item_free(sl_store_group_t *g) {
  for (size_t i = 0; i < g->nbatches; i++)
    sl_store_batch_free(g->batches[i]);
  for (size_t i = 0; i < g->nkvs; i++) {
    free(g->kvs[i].key);
    free(g->kvs[i].val);
  }
  free(g->batches);
  free(g->offsets);
  free(g->csets);
  free(g->kvs);
  free(g->blob);
  free(g);
}

int store__enqueue(sl_store_t *st, sl_store_group_t *g, bool block) {
  bool on_writer;
  int rc = 0;

  pthread_mutex_lock(&st->q_lock);
  /* The writer thread (a completion callback) must never wait for itself. */
  on_writer = st->writer_started && pthread_equal(pthread_self(), st->writer);
  for (;;) {
    if (st->stopping) {
      rc = SL_ECLOSED;
      break;
    }
    if (atomic_load(&st->poisoned)) {
      rc = SL_EPOISONED;
      break;
    }
    if (st->q_len < st->q_cap)
      break;
    if (!block || on_writer) {
      rc = SL_EBACKPRESSURE;
      break;
    }
    pthread_cond_wait(&st->q_nonfull, &st->q_lock);
  }
  if (rc == 0) {
    st->q[(st->q_head + st->q_len) % st->q_cap] = g;
    st->q_len++;
    pthread_cond_signal(&st->q_nonempty);
  }
  pthread_mutex_unlock(&st->q_lock);
  return rc;
}

int store__submit_wait(sl_store_t *st, sl_store_group_t *g,
                       store_waiter_t *wt) {
  int rc;

  if (st->writer_started && pthread_equal(pthread_self(), st->writer)) {
    store__item_free(g);
    return -EDEADLK;
  }
  g->waiter = wt;
  if ((rc = store__enqueue(st, g, true))) {
    store__item_free(g);
    return rc;
  }
  pthread_mutex_lock(&st->q_lock);
  while (!wt->done)
    pthread_cond_wait(&st->q_done, &st->q_lock);
  pthread_mutex_unlock(&st->q_lock);
  return wt->status;
}

int sl_store_group_new(sl_store_t *st, sl_store_group_t **gp) {
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if (st->rdonly)
    return -EROFS;
  if (!(*gp = store__item_new(st, STORE_OP_GROUP)))
    return -ENOMEM;
  return 0;
}

void sl_store_group_free(sl_store_group_t *g) {
  if (g)
    store__item_free(g);
}

int sl_store_group_add(sl_store_group_t *g, sl_store_batch_t *b) {
  if (b->st != g->st)
    return SL_ECONFIG;
  if (g->nbatches == g->bcap) {
    size_t ncap = g->bcap ? g->bcap * 2 : 4;
    sl_store_batch_t **nb = realloc(g->batches, ncap * sizeof(*nb));
    uint64_t *no;
    if (!nb)
      return -ENOMEM;
    g->batches = nb;
    if (!(no = realloc(g->offsets, ncap * sizeof(*no))))
      return -ENOMEM;
    g->offsets = no;
    g->bcap = ncap;
  }
  g->batches[g->nbatches++] = b;
  return 0;
}

int sl_store_group_consumer_set(sl_store_group_t *g, const char *consumer,
                                uint32_t stream, uint64_t next_offset) {
  size_t n = strlen(consumer);

  if (n == 0 || n > SL_STORE_NAME_MAX)
    return SL_ECONFIG;
  if (g->ncsets == g->ccap) {
    size_t ncap = g->ccap ? g->ccap * 2 : 2;
    store_cset_t *nc = realloc(g->csets, ncap * sizeof(*nc));
    if (!nc)
      return -ENOMEM;
    g->csets = nc;
    g->ccap = ncap;
  }
  g->csets[g->ncsets].stream = stream;
  g->csets[g->ncsets].next = next_offset;
  memcpy(g->csets[g->ncsets].name, consumer, n + 1);
  g->ncsets++;
  return 0;
}

int sl_store_group_state_put(sl_store_group_t *g, const void *key, size_t klen,
                             const void *val, size_t vlen) {
  store_kv_t kv = {0};

  if (klen == 0 || klen > STORE_STATE_KEY_MAX)
    return SL_ECONFIG;
  if (val && vlen > STORE_STATE_VAL_MAX)
    return SL_ETOOBIG;
  if (g->nkvs == g->kcap) {
    size_t ncap = g->kcap ? g->kcap * 2 : 2;
    store_kv_t *nk = realloc(g->kvs, ncap * sizeof(*nk));
    if (!nk)
      return -ENOMEM;
    g->kvs = nk;
    g->kcap = ncap;
  }
  if (!(kv.key = malloc(klen)) ||
      (val && !(kv.val = malloc(vlen ? vlen : 1)))) {
    free(kv.key);
    return -ENOMEM;
  }
  memcpy(kv.key, key, klen);
  kv.klen = klen;
  if (val) {
    memcpy(kv.val, val, vlen);
    kv.vlen = vlen;
  }
  g->kvs[g->nkvs++] = kv;
  return 0;
}

int sl_store_group_submit(sl_store_group_t *g, unsigned flags,
                          sl_store_done_cb cb, void *arg) {
  g->cb = cb;
  g->arg = arg;
  return store__enqueue(g->st, g, (flags & SL_STORE_SUBMIT_BLOCK) != 0);
}

int sl_store_group_commit(sl_store_group_t *g, uint64_t *offsets, size_t cap) {
  store_waiter_t wt = {0};

  wt.offsets = offsets;
  wt.cap = offsets ? cap : 0;
  return store__submit_wait(g->st, g, &wt);
}

int sl_store_consumer_commit(sl_store_t *st, const char *consumer,
                             uint32_t stream, uint64_t next) {
  sl_store_group_t *g;
  int rc;

  if ((rc = sl_store_group_new(st, &g)))
    return rc;
  if ((rc = sl_store_group_consumer_set(g, consumer, stream, next))) {
    sl_store_group_free(g);
    return rc;
  }
  return sl_store_group_commit(g, NULL, 0);
}

int sl_store_gap_ack(sl_store_t *st, uint64_t upto_seq) {
  store_waiter_t wt = {0};
  sl_store_group_t *g;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if (st->rdonly)
    return -EROFS;
  if (!(g = store__item_new(st, STORE_OP_GAP_ACK)))
    return -ENOMEM;
  g->u64 = upto_seq;
  return store__submit_wait(st, g, &wt);
}

static int valid_name(const char *name) {
  size_t n = strlen(name);

  if (n == 0 || n > SL_STORE_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
      return 0;
  return 1;
}

int sl_store_stream_create(sl_store_t *st, const char *name,
                           const sl_store_stream_conf_t *conf, uint32_t *id) {
  store_waiter_t wt = {0};
  sl_store_group_t *g;
  int rc;

  if ((rc = store__check(st)))
    return rc;
  if (st->rdonly)
    return -EROFS;
  if (!valid_name(name) || conf->priority > SL_STORE_PRIORITY_MAX ||
      conf->policy < SL_STORE_POLICY_BLOCK ||
      conf->policy > SL_STORE_POLICY_EVICT_PRIORITY || conf->ttl_ns < 0)
    return SL_ECONFIG;
  if (!(g = store__item_new(st, STORE_OP_STREAM)))
    return -ENOMEM;
  strcpy(g->name, name);
  g->conf = *conf;
  if ((rc = store__submit_wait(st, g, &wt)))
    return rc;
  *id = wt.id;
  return 0;
}
