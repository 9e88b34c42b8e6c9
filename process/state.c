/*
 * process/state.c: persisted step state.
 *
 * Keys (store state sub-database):
 *   "sl.proc/<pipeline>/<step>/<shard>"  shard 00..3f (hex): the keys of
 *                                        the step whose hash & 63 == shard
 *   "sl.proc/<pipeline>/<step>/m"        step meta (aggregate watermark)
 *
 * Record format, version 1 (integers little-endian):
 *   0  magic "SLPS"
 *   4  u8 version (1)
 *   5  u8 flags: bit 0 = payload written on a little-endian host
 *   6  u8 step kind, u8 shard (0xff for meta)
 *   8  u64 fingerprint of the step's state layout and semantics
 *   16 u32 entry count, u32 payload bytes per entry
 *   24 entries: u16 key length, key bytes, payload (host layout)
 *   .. u64 XXH3-64 of every byte before it
 *
 * Only shards touched since the last put are written, each as one whole
 * record, so one put is always self-consistent. A record whose fingerprint
 * differs (the step's window, hop, lateness, functions or grouping changed
 * in the config) is ignored: that step starts empty rather than mixing
 * windows of different shapes. The payload is the host's struct layout
 * (pdeadband_t, pcounter_t, pagg_t + windows; all 8-byte fields, no
 * padding, no pointers); a store moved to a host of the other byte order
 * starts its steps empty (flags bit 0). model_aggregate entries (~4.6 KB,
 * mostly zero histogram bins) are run-length encoded (flags bit 1): the
 * payload as 32-bit words, in runs of u16 zero words, u16 literal words,
 * the literal words.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "process/process_int.h"

#define HDR 24
#define TRAILER 8
#define VERSION 1
#define META_SHARD 0xff

static bool host_le(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_le32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++)
    v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* ---- run-length encoded payloads (flags bit 1) ------------------------- */

#define FLAG_RLE 2

/* The most an encoding of psize bytes takes: a literal run is broken only
 * by two zero words, so runs cost at most their 4-byte header per 3 words
 * saved, plus one header. */
#define RLE_BOUND(psize) ((psize) + 4)

/* Encodes psize bytes of p (8-byte aligned: a slot's payload) into out;
 * returns the encoded length (<= RLE_BOUND(psize)). */
static size_t rle_encode(const uint8_t *p, size_t psize, uint8_t *out) {
  const uint32_t *w = (const uint32_t *)(const void *)p;
  size_t words = psize / 4, i = 0, n = 0;
  while (i < words) {
    size_t z = 0, l = 0, j, lim = SL_MIN(words, i + 65535);
    /* Zero runs (most of an entry) eight words at a time. */
    j = i;
    while (j + 8 <= lim && !(w[j] | w[j + 1] | w[j + 2] | w[j + 3] | w[j + 4] |
                             w[j + 5] | w[j + 6] | w[j + 7]))
      j += 8;
    while (j < lim && !w[j])
      j++;
    z = j - i;
    /* A literal run ends at two zero words (or a zero at the end). */
    while (j + l < words && l < 65535 &&
           (w[j + l] || (j + l + 1 < words && w[j + l + 1])))
      l++;
    out[n] = (uint8_t)z;
    out[n + 1] = (uint8_t)(z >> 8);
    out[n + 2] = (uint8_t)l;
    out[n + 3] = (uint8_t)(l >> 8);
    memcpy(out + n + 4, w + j, 4 * l);
    n += 4 + 4 * l;
    i = j + l;
  }
  return n;
}

/* Decodes into out (psize bytes) from [q, end); returns the end of the
 * encoded payload or NULL when it is malformed. */
static const uint8_t *rle_decode(const uint8_t *q, const uint8_t *end,
                                 uint8_t *out, size_t psize) {
  size_t words = psize / 4, i = 0;
  while (i < words) {
    if (end - q < 4)
      return NULL;
    size_t z = (size_t)(q[0] | q[1] << 8), l = (size_t)(q[2] | q[3] << 8);
    q += 4;
    if ((!z && !l) || z + l > words - i || (size_t)(end - q) < 4 * l)
      return NULL;
    memset(out + 4 * i, 0, 4 * z);
    i += z;
    memcpy(out + 4 * i, q, 4 * l);
    i += l;
    q += 4 * l;
  }
  return q;
}

uint64_t process__fingerprint(const pstep_t *s) {
  struct {
    int64_t kind, esize, window, hop, lateness, funcs, by, nwin;
  } f = {s->kind, (int64_t)s->tab.esize, 0, 0, 0, 0, 0, 0};
  uint64_t h;
  if (s->kind == SL_PROCESS_MODEL_AGG) {
    f.window = s->c.window_ns;
    f.lateness = s->c.lateness_ns;
    f.funcs = s->c.reference_windows;
    f.by = s->c.max_keys;
    f.nwin = s->c.n_reference;
  }
  if (s->kind == SL_PROCESS_AGGREGATE) {
    f.window = s->c.window_ns;
    f.hop = s->c.hop_ns;
    f.lateness = s->c.lateness_ns;
    f.funcs = s->c.funcs;
    f.by = s->by;
    f.nwin = (int64_t)s->nwin;
  }
  h = XXH3_64bits(&f, sizeof(f));
  if (s->group_by)
    h ^= XXH3_64bits(s->group_by, strlen(s->group_by));
  return h;
}

static int key_of(char *buf, size_t len, const ppipeline_t *p, size_t k,
                  unsigned shard) {
  int n = shard == META_SHARD
              ? snprintf(buf, len, "sl.proc/%s/%zu/m", p->name, k)
              : snprintf(buf, len, "sl.proc/%s/%zu/%02x", p->name, k, shard);
  return n;
}

static int sbuf_reserve(sl_process_t *pr, size_t n) {
  if (n <= pr->scap)
    return 0;
  size_t c = pr->scap ? pr->scap : 4096;
  while (c < n)
    c *= 2;
  uint8_t *b = realloc(pr->sbuf, c);
  if (!b)
    return -ENOMEM;
  pr->sbuf = b;
  pr->scap = c;
  return 0;
}

static void header(uint8_t *p, const pstep_t *s, unsigned shard, uint32_t count,
                   uint32_t psize) {
  memcpy(p, "SLPS", 4);
  p[4] = VERSION;
  p[5] = host_le() ? 1 : 0;
  p[6] = (uint8_t)s->kind;
  p[7] = (uint8_t)shard;
  put_le64(p + 8, s->fingerprint);
  put_le32(p + 16, count);
  put_le32(p + 20, psize);
}

/*
 * Encodes every dirty shard of s into pr->sbuf: two passes over the table
 * (sizes per shard, then entries into each shard's region) so the cost is
 * O(table) per put, not O(table * shards).
 */
static int put_step(sl_process_t *pr, const ppipeline_t *p, pstep_t *s,
                    size_t k, sl_process_put_cb cb, void *arg) {
  ptable_t *t = &s->tab;
  size_t psize = t->esize - sizeof(pslot_t);
  size_t off[PSHARDS], pos[PSHARDS];
  uint32_t cnt[PSHARDS] = {0};
  size_t total = 0;
  char key[SL_PROCESS_NAME_MAX + 40];
  bool rle = s->kind == SL_PROCESS_MODEL_AGG;
  int rc;

  if (!t->dirty)
    return 0;
  for (unsigned sh = 0; sh < PSHARDS; sh++)
    off[sh] = 0;
  for (size_t i = 0; i < t->cap; i++) {
    pslot_t *sl = ptable_slot(t, i);
    unsigned sh = (unsigned)(sl->hash & (PSHARDS - 1));
    if (!sl->used || !(t->dirty & (1ull << sh)))
      continue;
    cnt[sh]++;
    /* Run-length entries: room for the worst case; each record is handed
     * on with its real length. */
    off[sh] += 2 + sl->klen + (rle ? RLE_BOUND(psize) : psize);
  }
  for (unsigned sh = 0; sh < PSHARDS; sh++) {
    size_t body = off[sh];
    if (!(t->dirty & (1ull << sh)))
      continue;
    off[sh] = total;
    total += HDR + body + TRAILER;
  }
  if (sbuf_reserve(pr, total) < 0)
    return -ENOMEM;
  for (unsigned sh = 0; sh < PSHARDS; sh++) {
    if (!(t->dirty & (1ull << sh)))
      continue;
    header(pr->sbuf + off[sh], s, sh, cnt[sh], (uint32_t)psize);
    if (rle)
      pr->sbuf[off[sh] + 5] |= FLAG_RLE;
    pos[sh] = off[sh] + HDR;
  }
  for (size_t i = 0; i < t->cap; i++) {
    pslot_t *sl = ptable_slot(t, i);
    unsigned sh = (unsigned)(sl->hash & (PSHARDS - 1));
    uint8_t *q;
    if (!sl->used || !(t->dirty & (1ull << sh)))
      continue;
    q = pr->sbuf + pos[sh];
    q[0] = (uint8_t)sl->klen;
    q[1] = (uint8_t)(sl->klen >> 8);
    if (sl->klen) /* model_aggregate keys live in the payload: no arena */
      memcpy(q + 2, t->keys + sl->koff, sl->klen);
    if (rle) {
      pos[sh] +=
          2 + sl->klen + rle_encode(pslot_data(sl), psize, q + 2 + sl->klen);
      continue;
    }
    memcpy(q + 2 + sl->klen, pslot_data(sl), psize);
    pos[sh] += 2 + sl->klen + psize;
  }
  for (unsigned sh = 0; sh < PSHARDS; sh++) {
    if (!(t->dirty & (1ull << sh)))
      continue;
    size_t len = pos[sh] - off[sh];
    put_le64(pr->sbuf + pos[sh], XXH3_64bits(pr->sbuf + off[sh], len));
    key_of(key, sizeof(key), p, k, sh);
    if (cnt[sh] == 0)
      rc = cb(arg, key, strlen(key), NULL, 0); /* emptied shard: delete */
    else
      rc = cb(arg, key, strlen(key), pr->sbuf + off[sh], len + TRAILER);
    if (rc < 0)
      return rc;
  }
  t->dirty = 0;
  return 0;
}

static int put_meta(sl_process_t *pr, const ppipeline_t *p, pstep_t *s,
                    size_t k, sl_process_put_cb cb, void *arg) {
  uint8_t rec[HDR + 16 + TRAILER];
  char key[SL_PROCESS_NAME_MAX + 40];
  int rc;
  header(rec, s, META_SHARD, 1, 16);
  put_le64(rec + HDR, (uint64_t)s->wm);
  put_le64(rec + HDR + 8, s->have_wm);
  put_le64(rec + HDR + 16, XXH3_64bits(rec, HDR + 16));
  key_of(key, sizeof(key), p, k, META_SHARD);
  if ((rc = cb(arg, key, strlen(key), rec, sizeof(rec))) < 0)
    return rc;
  s->meta_dirty = false;
  return 0;
}

int sl_process_state_put(sl_process_t *pr, sl_process_put_cb cb, void *arg) {
  int rc;
  for (size_t i = 0; i < pr->npipes; i++) {
    ppipeline_t *p = &pr->pipes[i];
    for (size_t k = 0; k < p->nsteps; k++) {
      pstep_t *s = &p->steps[k];
      if (!s->stateful)
        continue;
      if ((rc = put_step(pr, p, s, k, cb, arg)) < 0)
        return rc;
      if (process__windowed(s) && s->meta_dirty &&
          (rc = put_meta(pr, p, s, k, cb, arg)) < 0)
        return rc;
    }
  }
  return 0;
}

static int group_put(void *arg, const void *key, size_t klen, const void *val,
                     size_t vlen) {
  return sl_store_group_state_put(arg, key, klen, val, vlen);
}

int sl_process_state_put_group(sl_process_t *pr, sl_store_group_t *g) {
  return sl_process_state_put(pr, group_put, g);
}

/* ---- load ------------------------------------------------------------- */

/* Checks a record's frame; returns the entry count or -1. */
static long check(const uint8_t *b, size_t len, const pstep_t *s,
                  unsigned shard, size_t psize, bool *foreign) {
  *foreign = false;
  if (len < HDR + TRAILER || memcmp(b, "SLPS", 4) ||
      get_le64(b + len - TRAILER) != XXH3_64bits(b, len - TRAILER))
    return -1;
  if (b[4] != VERSION || b[7] != shard)
    return -1;
  if (b[6] != (uint8_t)s->kind || get_le64(b + 8) != s->fingerprint ||
      (b[5] & 1) != (host_le() ? 1 : 0) || get_le32(b + 20) != psize) {
    *foreign = true; /* valid, but for another configuration or host */
    return 0;
  }
  return (long)get_le32(b + 16);
}

static int fetch(sl_process_t *pr, sl_process_get_cb cb, void *arg,
                 const char *key, size_t *len) {
  int rc;
  for (;;) {
    rc = cb(arg, key, strlen(key), pr->sbuf, pr->scap, len);
    if (rc != SL_ETOOBIG)
      return rc;
    if (sbuf_reserve(pr, *len) < 0)
      return -ENOMEM;
  }
}

static void table_clear(ptable_t *t) {
  memset(t->slots, 0, t->cap * t->esize);
  t->count = 0;
  t->klen = 0;
  t->dirty = 0;
}

/* Inserts a loaded entry (no undo: not inside a run). */
static int table_insert(sl_process_t *pr, ptable_t *t, const uint8_t *key,
                        size_t klen, const uint8_t *payload) {
  bool full;
  int rc;
  if ((rc = process__table_reserve(t, 1)) < 0)
    return rc;
  uint64_t h = process__hash(key, klen);
  void *d = process__table_get(pr, t, h, (const char *)key, klen, true, &full);
  if (!d)
    return full ? 0 : -ENOMEM;
  memcpy(d, payload, t->esize - sizeof(pslot_t));
  return 0;
}

static int load_step(sl_process_t *pr, ppipeline_t *p, pstep_t *s, size_t k,
                     sl_process_get_cb cb, void *arg, char *bad, size_t badlen,
                     bool *corrupt) {
  ptable_t *t = &s->tab;
  size_t psize = t->esize - sizeof(pslot_t), len;
  char key[SL_PROCESS_NAME_MAX + 40];
  bool foreign;
  int rc;

  /* Decoded run-length payloads (model_aggregate; load time only). */
  uint8_t *dec = NULL;
  if (s->kind == SL_PROCESS_MODEL_AGG && !(dec = malloc(psize)))
    return -ENOMEM;
  table_clear(t);
  s->wm = 0;
  s->have_wm = 0;
  s->flush_future = false;
  for (unsigned sh = 0; sh < PSHARDS; sh++) {
    key_of(key, sizeof(key), p, k, sh);
    if ((rc = fetch(pr, cb, arg, key, &len)) == SL_ENOTFOUND)
      continue;
    if (rc < 0)
      goto out;
    long n = check(pr->sbuf, len, s, sh, psize, &foreign);
    if (foreign) {
      table_clear(t); /* whole step starts empty */
      rc = 0;
      goto out;
    }
    const uint8_t *q = pr->sbuf + HDR, *end = pr->sbuf + len - TRAILER;
    bool rle = n > 0 && (pr->sbuf[5] & FLAG_RLE);
    if (rle && !dec)
      n = -1; /* only model_aggregate writes it */
    for (long e = 0; n >= 0 && e < n; e++) {
      size_t kl;
      if (rle) {
        const uint8_t *nx;
        if (end - q < 2 ||
            (size_t)(end - q) < 2 + (kl = (size_t)(q[0] | q[1] << 8)) ||
            !(nx = rle_decode(q + 2 + kl, end, dec, psize))) {
          n = -1;
          break;
        }
        if ((rc = process__magg_load(pr, s, dec)) < 0)
          goto out;
        q = nx;
        continue;
      }
      if (end - q < 2 ||
          (size_t)(end - q) < 2 + (kl = (size_t)(q[0] | q[1] << 8)) + psize) {
        n = -1;
        break;
      }
      /* Copy out: the insert may reuse nothing of sbuf, but stay safe. */
      if (s->kind == SL_PROCESS_MODEL_AGG)
        rc = process__magg_load(pr, s, q + 2 + kl);
      else
        rc = table_insert(pr, t, q + 2, kl, q + 2 + kl);
      if (rc < 0)
        goto out;
      q += 2 + kl + psize;
    }
    if (n < 0 || q != end) {
      if (!*corrupt)
        snprintf(bad, badlen, "corrupt state record %s", key);
      *corrupt = true;
    }
  }
  if (process__windowed(s)) {
    key_of(key, sizeof(key), p, k, META_SHARD);
    rc = fetch(pr, cb, arg, key, &len);
    if (rc == 0) {
      long n = check(pr->sbuf, len, s, META_SHARD, 16, &foreign);
      if (foreign) {
        table_clear(t);
      } else if (n != 1 || len != HDR + 16 + TRAILER) {
        if (!*corrupt)
          snprintf(bad, badlen, "corrupt state record %s", key);
        *corrupt = true;
      } else {
        s->wm = (int64_t)get_le64(pr->sbuf + HDR);
        s->have_wm = get_le64(pr->sbuf + HDR + 8) != 0;
      }
    } else if (rc != SL_ENOTFOUND) {
      goto out;
    }
  }
  t->dirty = 0;
  s->meta_dirty = false;
  rc = 0;
out:
  free(dec);
  return rc;
}

int sl_process_state_load(sl_process_t *pr, sl_process_get_cb cb, void *arg,
                          char *errstr, size_t errlen) {
  bool corrupt = false;
  int rc;
  if (errlen)
    errstr[0] = '\0';
  if (sbuf_reserve(pr, 4096) < 0)
    return -ENOMEM;
  pr->pending = false;
  pr->undo_len = 0;
  pr->epoch++;
  for (size_t i = 0; i < pr->npipes; i++) {
    ppipeline_t *p = &pr->pipes[i];
    for (size_t k = 0; k < p->nsteps; k++) {
      if (!p->steps[k].stateful)
        continue;
      if ((rc = load_step(pr, p, &p->steps[k], k, cb, arg, errstr, errlen,
                          &corrupt)) < 0)
        return rc;
    }
  }
  /* The loads went through the undo-saving path; nothing to undo. */
  pr->undo_len = 0;
  return corrupt ? SL_ECORRUPT : 0;
}

static int store_get(void *arg, const void *key, size_t klen, void *buf,
                     size_t cap, size_t *vlen) {
  return sl_store_state_get(arg, key, klen, buf, cap, vlen);
}

int sl_process_state_load_store(sl_process_t *pr, sl_store_t *st, char *errstr,
                                size_t errlen) {
  return sl_process_state_load(pr, store_get, st, errstr, errlen);
}
