/*
 * process/table.c: per-key state tables (open addressing, linear probing)
 * with a per-run undo log.
 *
 * Tables grow only between runs (process__table_reserve() before a run
 * makes room for every key the batch could add), so slot indexes are
 * stable during a run and the undo log can name slots by index. The first
 * time a run touches a slot its old bytes go to the undo log; a rollback
 * copies them back in reverse order, which also empties slots the run
 * filled (probe chains stay intact because only slots filled by this run
 * are emptied, and in reverse order of filling).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "process/process_int.h"

uint64_t process__hash(const void *p, size_t n) {
  return XXH3_64bits(p, n);
}

int process__table_init(ptable_t *t, size_t payload, size_t max_keys) {
  memset(t, 0, sizeof(*t));
  t->esize = (sizeof(pslot_t) + payload + 7) & ~(size_t)7;
  t->max_keys = max_keys ? max_keys : 100000;
  t->cap = 64;
  if (!(t->slots = calloc(t->cap, t->esize)))
    return -ENOMEM;
  return 0;
}

void process__table_close(ptable_t *t) {
  free(t->slots);
  free(t->keys);
  memset(t, 0, sizeof(*t));
}

static void place(uint8_t *slots, size_t cap, size_t esize, const pslot_t *s) {
  size_t i = (size_t)s->hash & (cap - 1);
  for (;; i = (i + 1) & (cap - 1)) {
    pslot_t *d = (pslot_t *)(void *)(slots + i * esize);
    if (!d->used) {
      memcpy(d, s, esize);
      return;
    }
  }
}

int process__table_reserve(ptable_t *t, size_t extra) {
  size_t want = t->count + SL_MIN(extra, t->max_keys);
  size_t cap = t->cap;
  uint8_t *ns;
  /* Load factor at most 1/2: short probe chains. */
  while (want * 2 > cap)
    cap *= 2;
  if (cap == t->cap)
    return 0;
  if (!(ns = calloc(cap, t->esize)))
    return -ENOMEM;
  for (size_t i = 0; i < t->cap; i++) {
    pslot_t *s = ptable_slot(t, i);
    if (s->used)
      place(ns, cap, t->esize, s);
  }
  free(t->slots);
  t->slots = ns;
  t->cap = cap;
  return 0;
}

static int undo_save(sl_process_t *pr, ptable_t *t, size_t idx) {
  size_t need = sizeof(pundo_t) + t->esize;
  if (pr->undo_len + need > pr->undo_cap) {
    size_t n = pr->undo_cap ? pr->undo_cap : 4096;
    while (n < pr->undo_len + need)
      n *= 2;
    uint8_t *u = realloc(pr->undo, n);
    if (!u)
      return -ENOMEM;
    pr->undo = u;
    pr->undo_cap = n;
  }
  /* [slot bytes][pundo_t]: the header last, so a rollback walks back. */
  pundo_t rec = {.t = t, .slot = idx};
  memcpy(pr->undo + pr->undo_len, ptable_slot(t, idx), t->esize);
  memcpy(pr->undo + pr->undo_len + t->esize, &rec, sizeof(rec));
  pr->undo_len += need;
  return 0;
}

int process__table_touch(sl_process_t *pr, ptable_t *t, pslot_t *s) {
  size_t idx = (size_t)((uint8_t *)s - t->slots) / t->esize;
  if (s->epoch != pr->epoch) {
    if (undo_save(pr, t, idx) < 0) {
      pr->poisoned = true;
      return -ENOMEM;
    }
    s->epoch = pr->epoch;
  }
  t->dirty |= 1ull << (s->hash & (PSHARDS - 1));
  return 0;
}

void *process__table_get(sl_process_t *pr, ptable_t *t, uint64_t hash,
                         const char *key, size_t klen, bool create,
                         bool *full) {
  size_t i = (size_t)hash & (t->cap - 1);
  *full = false;
  if (klen > UINT16_MAX)
    klen = UINT16_MAX; /* keys are bounded by the frame size; cap anyway */
  for (;; i = (i + 1) & (t->cap - 1)) {
    pslot_t *s = ptable_slot(t, i);
    if (!s->used)
      break;
    if (s->hash == hash && s->klen == klen &&
        !memcmp(t->keys + s->koff, key, klen)) {
      if (process__table_touch(pr, t, s) < 0)
        return NULL;
      return pslot_data(s);
    }
  }
  if (!create)
    return NULL;
  /* The reserve before the run guarantees a free slot within the load
   * factor; max_keys bounds memory against a flood of new sources. */
  if (t->count >= t->max_keys || (t->count + 1) * 2 > t->cap) {
    *full = true;
    return NULL;
  }
  if (t->klen + klen > t->kcap) {
    size_t n = t->kcap ? t->kcap : 4096;
    while (n < t->klen + klen)
      n *= 2;
    char *k = realloc(t->keys, n);
    if (!k) {
      pr->poisoned = true;
      return NULL;
    }
    t->keys = k;
    t->kcap = n;
  }
  pslot_t *s = ptable_slot(t, i);
  if (undo_save(pr, t, i) < 0) {
    pr->poisoned = true;
    return NULL;
  }
  memset(s, 0, t->esize);
  s->hash = hash;
  s->koff = (uint32_t)t->klen;
  s->klen = (uint16_t)klen;
  s->used = 1;
  s->epoch = pr->epoch;
  memcpy(t->keys + t->klen, key, klen);
  t->klen += klen;
  t->count++;
  t->dirty |= 1ull << (hash & (PSHARDS - 1));
  return pslot_data(s);
}
