/*
 * Per-stream dedupe window (ingest/dedupe.h).
 *
 * A window remembers the 64-bit XXH3 of each key with the node clock when
 * its event was stored, in nb hash buckets (a power of two, about 16 keys
 * each) of at most per entries: a full bucket forgets its oldest key, so
 * memory and state are bounded by about dedupe_max_keys x 16 bytes. A run
 * snapshots each bucket it changes; finish keeps or restores them. Each
 * changed bucket is written whole to the state db (key
 * "dd/<stream>/<bucket, 4 hex digits>": SDD1, count, entries, XXH3) in the
 * group of the events, so what is remembered is what is stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "ingest/ingest.h"
#include "ingest/dedupe.h"
#include "telemetry/log.h"

#define DD_MAGIC "SDD1"
#define DD_MAX_BUCKETS 4096u

typedef struct dd_ent {
  uint64_t h;
  int64_t t; /* node clock when stored */
} dd_ent_t;

typedef struct dd_bucket {
  dd_ent_t *v; /* per entries, allocated on first use */
  uint32_t n;
  dd_ent_t *saved; /* snapshot for rollback (touched in this run) */
  uint32_t nsaved;
  bool touched;
} dd_bucket_t;

typedef struct dd_win {
  const char *stream; /* borrowed from the config */
  const char *attr;   /* attribute name, NULL = source+time */
  int64_t window_ns;
  uint32_t nb, per;
  dd_bucket_t *b;
  uint32_t *touched; /* bucket indexes changed in this run */
  size_t ntouched;
  uint64_t pending; /* dropped in this run, counted when final */
  sl_metric_t *dups;
} dd_win_t;

struct sl_dedupe {
  sl_ingest_t *ic;
  dd_win_t *w;
  size_t nw;
  dd_win_t **by_sidx; /* per stream index, NULL = no window */
};

static int bucket_key(const dd_win_t *w, uint32_t i, char *k, size_t cap) {
  return snprintf(k, cap, "dd/%s/%04x", w->stream, i);
}

/* Adds (h, t) to bucket b, forgetting its oldest key when full. */
static int bucket_add(dd_win_t *w, dd_bucket_t *b, uint64_t h, int64_t t) {
  if (!b->v && !(b->v = malloc(w->per * sizeof(*b->v))))
    return -ENOMEM;
  if (b->n == w->per) {
    uint32_t old = 0;
    for (uint32_t i = 1; i < b->n; i++)
      if (b->v[i].t < b->v[old].t)
        old = i;
    b->v[old] = b->v[--b->n];
  }
  b->v[b->n++] = (dd_ent_t){.h = h, .t = t};
  return 0;
}

static void load_win(sl_dedupe_t *dd, dd_win_t *w) {
  size_t cap = 8 + (size_t)w->per * 16 * 4 + 8, vlen;
  uint8_t *buf = malloc(cap);
  char k[128];
  for (uint32_t i = 0; i < w->nb; i++)
    w->b[i].n = 0;
  if (!buf)
    return;
  for (uint32_t i = 0; i < w->nb; i++) {
    int kl = bucket_key(w, i, k, sizeof(k));
    vlen = 0;
    if (sl_store_state_get(dd->ic->st, k, (size_t)kl, buf, cap, &vlen) < 0)
      continue;
    size_t n = vlen >= 16 ? sl_get_le(buf + 4, 4) : 0;
    if (vlen < 16 || memcmp(buf, DD_MAGIC, 4) || vlen != 16 + n * 16 ||
        sl_get_le(buf + vlen - 8, 8) != XXH3_64bits(buf, vlen - 8)) {
      sl_warn(SL_LOG_CTX_STORE, w->stream,
              "dedupe: a corrupt state record was skipped (%s): replays of "
              "its keys are stored again",
              k);
      continue;
    }
    for (size_t j = 0; j < n; j++) {
      uint64_t h = sl_get_le(buf + 8 + j * 16, 8);
      int64_t t = (int64_t)sl_get_le(buf + 16 + j * 16, 8);
      /* A changed dedupe_max_keys re-buckets what it can. */
      if (bucket_add(w, &w->b[h & (w->nb - 1)], h, t) < 0)
        break;
    }
  }
  free(buf);
}

int sl_dedupe_new(sl_ingest_t *ic, sl_dedupe_t **out) {
  const sl_config_t *cfg = ic->cfg;
  sl_dedupe_t *dd;
  char labels[200], esc[160];
  *out = NULL;
  size_t nw = 0;
  for (size_t i = 0; i < cfg->streams.n; i++)
    nw += *cfg->streams.v[i].dedupe_key != 0;
  if (!nw)
    return 0;
  if (!(dd = calloc(1, sizeof(*dd))) || !(dd->w = calloc(nw, sizeof(*dd->w))) ||
      !(dd->by_sidx = calloc(ic->nstreams, sizeof(*dd->by_sidx))))
    goto nomem;
  dd->ic = ic;
  for (size_t s = 0; s < ic->nstreams; s++) {
    const sl_config_stream_t *cs = NULL;
    for (size_t i = 0; i < cfg->streams.n && !cs; i++)
      if (!strcmp(cfg->streams.v[i].name, ic->streams[s].name))
        cs = &cfg->streams.v[i];
    if (!cs || !*cs->dedupe_key)
      continue;
    dd_win_t *w = &dd->w[dd->nw++];
    uint64_t keys = cs->dedupe_max_keys;
    w->stream = cs->name;
    w->attr = strncmp(cs->dedupe_key, "attr.", 5) ? NULL : cs->dedupe_key + 5;
    w->window_ns =
        (int64_t)SL_MIN(cs->dedupe_window_ms, (uint64_t)INT64_MAX / 1000000) *
        1000000;
    w->nb = 1;
    while (w->nb < DD_MAX_BUCKETS && (uint64_t)w->nb * 16 < keys)
      w->nb <<= 1;
    /* A quarter more than the average, so few keys go before their time. */
    w->per = (uint32_t)SL_MAX((keys + w->nb - 1) / w->nb * 5 / 4, 2);
    if (!(w->b = calloc(w->nb, sizeof(*w->b))) ||
        !(w->touched = calloc(w->nb, sizeof(*w->touched))))
      goto nomem;
    sl_metrics_escape(esc, sizeof(esc), cs->name);
    snprintf(labels, sizeof(labels), "stream=\"%s\"", esc);
    w->dups = sl_metrics_counter(
        ic->mx, "sluice_ingest_duplicates_total",
        "Events dropped by a stream's dedupe window (their key was stored "
        "within dedupe_window)",
        labels);
    dd->by_sidx[s] = w;
    load_win(dd, w);
  }
  *out = dd;
  return 0;
nomem:
  sl_dedupe_free(dd);
  return -ENOMEM;
}

void sl_dedupe_free(sl_dedupe_t *dd) {
  if (!dd)
    return;
  for (size_t i = 0; i < dd->nw; i++) {
    dd_win_t *w = &dd->w[i];
    for (uint32_t j = 0; w->b && j < w->nb; j++) {
      free(w->b[j].v);
      free(w->b[j].saved);
    }
    free(w->b);
    free(w->touched);
  }
  free(dd->w);
  free(dd->by_sidx);
  free(dd);
}

bool sl_dedupe_wants(const sl_dedupe_t *dd, size_t sidx) {
  return dd && sidx < dd->ic->nstreams && dd->by_sidx[sidx];
}

/* The key's hash, or false when the event has no key. */
static bool key_of(const dd_win_t *w, const Sluice__V1__Event *ev,
                   uint64_t *h) {
  if (!w->attr) {
    const char *src = ev->source ? ev->source : "";
    *h = XXH3_64bits_withSeed(src, strlen(src), (uint64_t)ev->time_ns);
    return true;
  }
  for (size_t i = 0; i < ev->n_attributes; i++) {
    const Sluice__V1__Attribute *a = ev->attributes[i];
    if (a && a->key && a->value && !strcmp(a->key, w->attr)) {
      *h = XXH3_64bits(a->value, strlen(a->value));
      return true;
    }
  }
  return false;
}

/* First change of bucket i in this run: snapshot it, forget expired keys. */
static int touch(dd_win_t *w, uint32_t i, int64_t now) {
  dd_bucket_t *b = &w->b[i];
  if (!b->touched) {
    if (b->n) {
      if (!(b->saved = malloc(b->n * sizeof(*b->saved))))
        return -ENOMEM;
      memcpy(b->saved, b->v, b->n * sizeof(*b->saved));
    }
    b->nsaved = b->n;
    b->touched = true;
    w->touched[w->ntouched++] = i;
    for (uint32_t j = 0; j < b->n;)
      if (b->v[j].t < now - w->window_ns)
        b->v[j] = b->v[--b->n];
      else
        j++;
  }
  return 0;
}

static int put_bucket(const dd_win_t *w, uint32_t i, sl_store_group_t *g) {
  const dd_bucket_t *b = &w->b[i];
  size_t len = 16 + (size_t)b->n * 16;
  uint8_t *buf = malloc(len);
  char k[128];
  int rc, kl = bucket_key(w, i, k, sizeof(k));
  if (!buf)
    return -ENOMEM;
  memcpy(buf, DD_MAGIC, 4);
  sl_put_le(buf + 4, b->n, 4);
  for (uint32_t j = 0; j < b->n; j++) {
    sl_put_le(buf + 8 + j * 16, b->v[j].h, 8);
    sl_put_le(buf + 16 + j * 16, (uint64_t)b->v[j].t, 8);
  }
  sl_put_le(buf + len - 8, XXH3_64bits(buf, len - 8), 8);
  /* An empty bucket is deleted. */
  rc = sl_store_group_state_put(g, k, (size_t)kl, b->n ? buf : NULL,
                                b->n ? len : 0);
  free(buf);
  return rc;
}

int sl_dedupe_run(sl_dedupe_t *dd, size_t sidx,
                  const Sluice__V1__Event *const *events, size_t n,
                  uint8_t *keep, sl_store_group_t *g) {
  dd_win_t *w = sl_dedupe_wants(dd, sidx) ? dd->by_sidx[sidx] : NULL;
  int64_t now = sl_now_wall_ns();
  int dropped = 0, rc;
  for (size_t i = 0; i < n; i++)
    keep[i] = 1;
  if (!w)
    return 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t h;
    bool seen = false;
    if (!key_of(w, events[i], &h))
      continue; /* no key: never a duplicate */
    uint32_t bi = (uint32_t)(h & (w->nb - 1));
    if ((rc = touch(w, bi, now)) < 0)
      return rc;
    dd_bucket_t *b = &w->b[bi];
    for (uint32_t j = 0; j < b->n && !seen; j++)
      seen = b->v[j].h == h;
    if (seen) {
      keep[i] = 0;
      dropped++;
    } else if ((rc = bucket_add(w, b, h, now)) < 0) {
      return rc;
    }
  }
  for (size_t i = 0; i < w->ntouched; i++)
    if ((rc = put_bucket(w, w->touched[i], g)) < 0)
      return rc;
  w->pending += (uint64_t)dropped;
  return dropped;
}

void sl_dedupe_finish(sl_dedupe_t *dd, int submitted) {
  for (size_t k = 0; dd && k < dd->nw; k++) {
    dd_win_t *w = &dd->w[k];
    for (size_t i = 0; i < w->ntouched; i++) {
      dd_bucket_t *b = &w->b[w->touched[i]];
      if (!submitted) {
        if (b->nsaved)
          memcpy(b->v, b->saved, b->nsaved * sizeof(*b->v));
        b->n = b->nsaved;
      }
      free(b->saved);
      b->saved = NULL;
      b->nsaved = 0;
      b->touched = false;
    }
    w->ntouched = 0;
    if (submitted && w->pending)
      sl_metric_add(w->dups, w->pending);
    w->pending = 0;
  }
}

void sl_dedupe_reload(sl_dedupe_t *dd) {
  for (size_t k = 0; dd && k < dd->nw; k++)
    load_win(dd, &dd->w[k]);
}
