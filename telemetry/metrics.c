#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/metrics.h"

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype_t;

struct sl_metric {
  struct sl_metric *next; /* next series of the same family */
  char *labels;           /* pre-formatted label list or NULL */
  _Atomic uint64_t u;     /* counter value, or gauge double bits */
  /* Histogram only: */
  size_t nbounds;
  double *bounds;
  _Atomic uint64_t *buckets; /* nbounds + 1 (the last is +Inf) */
  _Atomic uint64_t sum_bits; /* double bits, updated by CAS */
  _Atomic uint64_t count;
};

typedef struct family {
  struct family *next;
  char *name;
  char *help;
  mtype_t type;
  sl_metric_t *series; /* in registration order */
  sl_metric_t **tail;
} family_t;

struct sl_metrics {
  pthread_mutex_t lock; /* guards registration and rendering */
  family_t *families;
  family_t **tail;
};

const double sl_metrics_latency_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
const size_t sl_metrics_latency_nbuckets =
    sizeof(sl_metrics_latency_buckets) / sizeof(sl_metrics_latency_buckets[0]);

static uint64_t dbits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

static double bitsd(uint64_t u) {
  double v;
  memcpy(&v, &u, sizeof(v));
  return v;
}

int sl_metrics_new(sl_metrics_t **out) {
  sl_metrics_t *mx = calloc(1, sizeof(*mx));
  if (!mx)
    return -ENOMEM;
  pthread_mutex_init(&mx->lock, NULL);
  mx->tail = &mx->families;
  *out = mx;
  return 0;
}

static void metric_free(sl_metric_t *m) {
  free(m->labels);
  free(m->bounds);
  free((void *)m->buckets);
  free(m);
}

void sl_metrics_free(sl_metrics_t *mx) {
  if (!mx)
    return;
  family_t *f = mx->families;
  while (f) {
    family_t *fn = f->next;
    sl_metric_t *m = f->series;
    while (m) {
      sl_metric_t *mn = m->next;
      metric_free(m);
      m = mn;
    }
    free(f->name);
    free(f->help);
    free(f);
    f = fn;
  }
  pthread_mutex_destroy(&mx->lock);
  free(mx);
}

static int same_labels(const char *a, const char *b) {
  if (!a || !b)
    return a == b;
  return !strcmp(a, b);
}

static sl_metric_t *reg(sl_metrics_t *mx, mtype_t type, const char *name,
                        const char *help, const char *labels,
                        const double *bounds, size_t nbounds) {
  sl_metric_t *m = NULL;
  family_t *f;

  pthread_mutex_lock(&mx->lock);
  for (f = mx->families; f; f = f->next)
    if (!strcmp(f->name, name))
      break;
  if (f && f->type != type)
    goto fail;
  if (f) {
    for (m = f->series; m; m = m->next)
      if (same_labels(m->labels, labels))
        goto done;
  } else {
    f = calloc(1, sizeof(*f));
    if (!f)
      goto fail;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help) {
      free(f->name);
      free(f->help);
      free(f);
      goto fail;
    }
    f->type = type;
    f->tail = &f->series;
    *mx->tail = f;
    mx->tail = &f->next;
  }
  m = calloc(1, sizeof(*m));
  if (!m)
    goto fail;
  if (labels && *labels && !(m->labels = strdup(labels)))
    goto fail_m;
  if (type == M_HISTOGRAM) {
    m->nbounds = nbounds;
    m->bounds = malloc(nbounds * sizeof(double));
    m->buckets = calloc(nbounds + 1, sizeof(*m->buckets));
    if (!m->bounds || !m->buckets)
      goto fail_m;
    memcpy(m->bounds, bounds, nbounds * sizeof(double));
  }
  *f->tail = m;
  f->tail = &m->next;
done:
  pthread_mutex_unlock(&mx->lock);
  return m;
fail_m:
  metric_free(m);
fail:
  pthread_mutex_unlock(&mx->lock);
  return NULL;
}

sl_metric_t *sl_metrics_counter(sl_metrics_t *mx, const char *name,
                                const char *help, const char *labels) {
  return reg(mx, M_COUNTER, name, help, labels, NULL, 0);
}

sl_metric_t *sl_metrics_gauge(sl_metrics_t *mx, const char *name,
                              const char *help, const char *labels) {
  return reg(mx, M_GAUGE, name, help, labels, NULL, 0);
}

sl_metric_t *sl_metrics_histogram(sl_metrics_t *mx, const char *name,
                                  const char *help, const char *labels,
                                  const double *bounds, size_t nbounds) {
  return reg(mx, M_HISTOGRAM, name, help, labels, bounds, nbounds);
}

void sl_metric_add(sl_metric_t *m, uint64_t n) {
  if (m)
    atomic_fetch_add_explicit(&m->u, n, memory_order_relaxed);
}

void sl_metric_set(sl_metric_t *m, double v) {
  if (m)
    atomic_store_explicit(&m->u, dbits(v), memory_order_relaxed);
}

static void add_double(_Atomic uint64_t *bits, double delta) {
  uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      bits, &old, dbits(bitsd(old) + delta), memory_order_relaxed,
      memory_order_relaxed))
    ;
}

void sl_metric_gauge_add(sl_metric_t *m, double delta) {
  if (m)
    add_double(&m->u, delta);
}

void sl_metric_observe(sl_metric_t *m, double v) {
  size_t i;
  if (!m || !m->buckets)
    return;
  for (i = 0; i < m->nbounds && v > m->bounds[i]; i++)
    ;
  atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
  add_double(&m->sum_bits, v);
}

double sl_metric_value(const sl_metric_t *m) {
  return m ? bitsd(atomic_load_explicit(&m->u, memory_order_relaxed)) : 0;
}

uint64_t sl_metric_count(const sl_metric_t *m) {
  return m ? atomic_load_explicit(&m->u, memory_order_relaxed) : 0;
}

char *sl_metrics_escape(char *buf, size_t cap, const char *value) {
  size_t n = 0;
  for (; *value && n + 3 < cap; value++) {
    if (*value == '\\' || *value == '"') {
      buf[n++] = '\\';
      buf[n++] = *value;
    } else if (*value == '\n') {
      buf[n++] = '\\';
      buf[n++] = 'n';
    } else {
      buf[n++] = *value;
    }
  }
  buf[n] = 0;
  return buf;
}

/* Prometheus floats: integers print exactly, others with full precision. */
static void put_num(FILE *f, double v) {
  if (isnan(v))
    fputs("NaN", f);
  else if (isinf(v))
    fputs(v > 0 ? "+Inf" : "-Inf", f);
  else if (v == (double)(int64_t)v && fabs(v) < 9e15)
    fprintf(f, "%lld", (long long)v);
  else
    fprintf(f, "%.17g", v);
}

static void put_series(FILE *f, const char *name, const char *suffix,
                       const char *labels, const char *extra) {
  fputs(name, f);
  fputs(suffix, f);
  if ((labels && *labels) || extra) {
    fputc('{', f);
    if (labels && *labels)
      fputs(labels, f);
    if (extra) {
      if (labels && *labels)
        fputc(',', f);
      fputs(extra, f);
    }
    fputc('}', f);
  }
  fputc(' ', f);
}

static void render_histogram(FILE *f, const family_t *fam,
                             const sl_metric_t *m) {
  uint64_t cum = 0;
  char le[64];
  for (size_t i = 0; i <= m->nbounds; i++) {
    cum += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
    if (i < m->nbounds)
      snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[i]);
    else
      snprintf(le, sizeof(le), "le=\"+Inf\"");
    put_series(f, fam->name, "_bucket", m->labels, le);
    fprintf(f, "%llu\n", (unsigned long long)cum);
  }
  put_series(f, fam->name, "_sum", m->labels, NULL);
  put_num(f, bitsd(atomic_load_explicit(&m->sum_bits, memory_order_relaxed)));
  fputc('\n', f);
  put_series(f, fam->name, "_count", m->labels, NULL);
  /* _count equals the +Inf bucket: use the same cumulative sum so a scrape
   * racing an observe never shows them disagreeing. */
  fprintf(f, "%llu\n", (unsigned long long)cum);
}

int sl_metrics_render(sl_metrics_t *mx, char **out, size_t *len) {
  static const char *const tnames[] = {"counter", "gauge", "histogram"};
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (!f)
    return -ENOMEM;
  pthread_mutex_lock(&mx->lock);
  for (const family_t *fam = mx->families; fam; fam = fam->next) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name,
            tnames[fam->type]);
    for (const sl_metric_t *m = fam->series; m; m = m->next) {
      if (fam->type == M_HISTOGRAM) {
        render_histogram(f, fam, m);
        continue;
      }
      put_series(f, fam->name, "", m->labels, NULL);
      uint64_t u = atomic_load_explicit(&m->u, memory_order_relaxed);
      if (fam->type == M_COUNTER)
        fprintf(f, "%llu\n", (unsigned long long)u);
      else {
        put_num(f, bitsd(u));
        fputc('\n', f);
      }
    }
  }
  pthread_mutex_unlock(&mx->lock);
  if (fclose(f) != 0) {
    free(buf);
    return -ENOMEM;
  }
  *out = buf;
  *len = n;
  return 0;
}
