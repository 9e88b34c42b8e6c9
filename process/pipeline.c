/*
 * process/pipeline.c: the pipeline set, step compilation and the per-batch
 * run with its commit/rollback.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/process_int.h"

static const char *const reason_names[SL_PROCESS_R_COUNT] = {
    "filter",     "deadband", "sample",  "rate_limit",
    "aggregated", "late",     "overflow"};

const char *sl_process_reason_name(sl_process_reason_t reason) {
  return (unsigned)reason < SL_PROCESS_R_COUNT ? reason_names[reason] : "?";
}

int sl_process_new(sl_process_t **out) {
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : -ENOMEM;
}

static void step_free(pstep_t *s) {
  sl_process_expr_free(s->ex);
  free(s->tag_key);
  free(s->tag_value);
  free(s->group_by);
  free(s->into);
  free(s->stream);
  free(s->topic);
  free(s->key);
  process__magg_conf_free(s);
  process__table_close(&s->tab);
}

static void pipe_free(ppipeline_t *p) {
  free(p->name);
  process__match_free(&p->m);
  for (size_t k = 0; k < p->nsteps; k++)
    step_free(&p->steps[k]);
}

void sl_process_free(sl_process_t *pr) {
  if (!pr)
    return;
  for (size_t i = 0; i < pr->npipes; i++)
    pipe_free(&pr->pipes[i]);
  free(pr->pipes);
  free(pr->undo);
  free(pr->tmarks);
  free(pr->stats_mark);
  free(pr->wm_mark);
  free(pr->keep);
  free(pr->dest);
  free(pr->tags);
  free(pr->erec);
  free(pr->eorder);
  free(pr->ekeys);
  free(pr->emit);
  free(pr->eev);
  free(pr->erd);
  free(pr->eattr);
  free(pr->eattrp);
  process__magg_out_free(pr);
  free(pr->etext);
  free(pr->sbuf);
  free(pr);
}

size_t sl_process_pipeline_count(const sl_process_t *pr) {
  return pr->npipes;
}

static bool name_ok(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (!n || n > max)
    return false;
  for (; *s; s++) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          strchr("._-", *s)))
      return false;
  }
  return true;
}

static int sdup(char **dst, const char *s) {
  if (!s || !*s)
    return 0;
  return (*dst = strdup(s)) ? 0 : -ENOMEM;
}

__attribute__((format(printf, 4, 5))) static int
cerr(char *errstr, size_t errlen, size_t k, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (errlen)
    snprintf(errstr, errlen, "steps[%zu]: %s", k, msg);
  return SL_ECONFIG;
}

static int step_compile(sl_process_t *pr, ppipeline_t *p, pstep_t *s,
                        const sl_process_step_conf_t *c, size_t k, char *errstr,
                        size_t errlen) {
  char why[300];
  int rc;
  s->kind = c->kind;
  s->c = *c;
  /* Owned copies; s->c's string fields are not used after this. */
  s->c.expr = s->c.tag_key = s->c.tag_value = s->c.group_by = s->c.into =
      s->c.stream = s->c.topic = s->c.key = NULL;
  switch (c->kind) {
  case SL_PROCESS_FILTER:
    if (!c->expr || !*c->expr)
      return cerr(errstr, errlen, k, "filter: an expression is required");
    if ((rc = sl_process_expr_compile(c->expr, &s->ex, why, sizeof(why))) < 0)
      return rc == -ENOMEM ? rc : cerr(errstr, errlen, k, "filter: %s", why);
    if (c->action == SL_PROCESS_TAG && (!c->tag_key || !*c->tag_key))
      return cerr(errstr, errlen, k, "filter: action tag needs a tag key");
    if ((unsigned)c->action > SL_PROCESS_TAG)
      return cerr(errstr, errlen, k, "filter: unknown action");
    if (sdup(&s->tag_key, c->tag_key) || sdup(&s->tag_value, c->tag_value))
      return -ENOMEM;
    if (!s->tag_value && s->tag_key && !(s->tag_value = strdup("true")))
      return -ENOMEM;
    return 0;
  case SL_PROCESS_DEADBAND:
    if (!isfinite(c->deadband) || c->deadband < 0)
      return cerr(errstr, errlen, k, "deadband: must be a number >= 0");
    if (c->heartbeat_ns < 0)
      return cerr(errstr, errlen, k, "deadband: heartbeat must be >= 0");
    s->stateful = true;
    return process__table_init(&s->tab, sizeof(pdeadband_t), 0);
  case SL_PROCESS_SAMPLE:
    if (c->every < 1)
      return cerr(errstr, errlen, k, "sample: must be at least 1");
    s->stateful = true;
    return process__table_init(&s->tab, sizeof(pcounter_t), 0);
  case SL_PROCESS_RATE_LIMIT:
    if (c->limit < 1 || c->interval_ns <= 0)
      return cerr(errstr, errlen, k,
                  "rate_limit: needs a limit >= 1 and an interval > 0");
    s->stateful = true;
    return process__table_init(&s->tab, sizeof(pcounter_t), 0);
  case SL_PROCESS_AGGREGATE: {
    const int64_t day = 86400LL * 1000000000LL;
    if (c->window_ns <= 0 || c->window_ns > 7 * day)
      return cerr(errstr, errlen, k, "aggregate: window must be in (0, 7d]");
    s->c.hop_ns = c->hop_ns ? c->hop_ns : c->window_ns;
    if (s->c.hop_ns < 0 || s->c.hop_ns > c->window_ns)
      return cerr(errstr, errlen, k, "aggregate: hop must be in (0, window]");
    if (c->lateness_ns < 0 || c->lateness_ns > 7 * day)
      return cerr(errstr, errlen, k, "aggregate: lateness must be in [0, 7d]");
    int64_t span = c->window_ns + c->lateness_ns;
    s->nwin = (size_t)((span + s->c.hop_ns - 1) / s->c.hop_ns) + 1;
    if (s->nwin > SL_PROCESS_WINDOWS_MAX)
      return cerr(errstr, errlen, k,
                  "aggregate: (window + lateness) / hop is over %d: too "
                  "many windows open per key",
                  SL_PROCESS_WINDOWS_MAX - 1);
    if (!s->c.funcs)
      s->c.funcs = SL_PROCESS_AGG_COUNT | SL_PROCESS_AGG_MEAN |
                   SL_PROCESS_AGG_MIN | SL_PROCESS_AGG_MAX;
    s->inference =
        (s->c.funcs & (SL_PROCESS_AGG_LABELS | SL_PROCESS_AGG_SCORES)) != 0;
    if (!c->into || !name_ok(c->into, SL_PROCESS_NAME_MAX))
      return cerr(errstr, errlen, k,
                  "aggregate: into must name a stream ([a-z0-9._-])");
    if (sdup(&s->into, c->into) || sdup(&s->group_by, c->group_by))
      return -ENOMEM;
    const char *by = c->group_by && *c->group_by ? c->group_by : "source";
    if (!strcmp(by, "source")) {
      s->by = BY_SOURCE;
    } else if (!strcmp(by, "none")) {
      s->by = BY_NONE;
    } else if (!strncmp(by, "attr.", 5) && by[5]) {
      s->by = BY_ATTR;
      s->by_attr = s->group_by + 5;
      s->by_attr_len = strlen(s->by_attr);
    } else {
      s->by = BY_CAPTURE;
      s->by_cap = -1;
      for (size_t i = 0; i < p->m.ncap; i++) {
        if (!strcmp(p->m.capname[i], by))
          s->by_cap = (int)i;
      }
      if (s->by_cap < 0)
        return cerr(errstr, errlen, k,
                    "aggregate: group_by \"%.64s\" is not source, none, "
                    "attr.NAME or a {capture} of match.source",
                    by);
    }
    s->stateful = true;
    return process__table_init(&s->tab, process__aggregate_payload(s),
                               c->max_keys);
  }
  case SL_PROCESS_MODEL_AGG:
    if (!c->into || !name_ok(c->into, SL_PROCESS_NAME_MAX))
      return cerr(errstr, errlen, k,
                  "model_aggregate: into must name a stream ([a-z0-9._-])");
    if (sdup(&s->into, c->into))
      return -ENOMEM;
    return process__magg_compile(pr, s, c, k, errstr, errlen);
  case SL_PROCESS_ROUTE:
    if ((unsigned)c->route > SL_PROCESS_ROUTE_LOCAL ||
        (unsigned)c->format > SL_PROCESS_FORMAT_JSON)
      return cerr(errstr, errlen, k, "route: unknown kind or format");
    if (c->stream && *c->stream && !name_ok(c->stream, SL_PROCESS_NAME_MAX))
      return cerr(errstr, errlen, k, "route: stream must be [a-z0-9._-]");
    if (sdup(&s->stream, c->stream) || sdup(&s->topic, c->topic) ||
        sdup(&s->key, c->key))
      return -ENOMEM;
    return 0;
  default:
    return cerr(errstr, errlen, k, "unknown step kind %d", (int)c->kind);
  }
}

int sl_process_pipeline_add(sl_process_t *pr,
                            const sl_process_pipeline_conf_t *pc, char *errstr,
                            size_t errlen) {
  ppipeline_t *p;
  int rc;
  if (errlen)
    errstr[0] = '\0';
  if (!name_ok(pc->name, SL_PROCESS_NAME_MAX)) {
    snprintf(errstr, errlen, "name: \"%.64s\" is not 1-%d of [a-z0-9._-]",
             pc->name ? pc->name : "", SL_PROCESS_NAME_MAX);
    return SL_ECONFIG;
  }
  for (size_t i = 0; i < pr->npipes; i++) {
    if (!strcmp(pr->pipes[i].name, pc->name)) {
      snprintf(errstr, errlen, "name: \"%s\" is already used", pc->name);
      return SL_EEXIST;
    }
  }
  if (pc->n_steps > SL_PROCESS_STEPS_MAX) {
    snprintf(errstr, errlen, "steps: more than %d", SL_PROCESS_STEPS_MAX);
    return SL_ETOOBIG;
  }
  if (pr->npipes == pr->capp) {
    size_t n = pr->capp ? pr->capp * 2 : 4;
    ppipeline_t *v = realloc(pr->pipes, n * sizeof(*v));
    if (!v)
      return -ENOMEM;
    pr->pipes = v;
    pr->capp = n;
  }
  p = &pr->pipes[pr->npipes];
  memset(p, 0, sizeof(*p));
  if (!(p->name = strdup(pc->name))) {
    rc = -ENOMEM;
    goto fail;
  }
  if ((rc = process__match_compile(&p->m, pc, errstr, errlen)) < 0)
    goto fail;
  for (size_t k = 0; k < pc->n_steps; k++) {
    p->nsteps = k + 1;
    if ((rc = step_compile(pr, p, &p->steps[k], &pc->steps[k], k, errstr,
                           errlen)) < 0)
      goto fail;
    p->steps[k].fingerprint = process__fingerprint(&p->steps[k]);
  }
  p->stats.name = p->name;
  /* Per-run marks sized for every pipeline and step. */
  size_t nsteps = 0;
  for (size_t i = 0; i <= pr->npipes; i++)
    nsteps += pr->pipes[i].nsteps;
  void *a = realloc(pr->stats_mark, (pr->npipes + 1) * sizeof(*pr->stats_mark));
  if (a)
    pr->stats_mark = a;
  void *b =
      a ? realloc(pr->wm_mark, (nsteps + 1) * sizeof(*pr->wm_mark)) : NULL;
  if (b)
    pr->wm_mark = b;
  void *c = b ? realloc(pr->tmarks, (nsteps + 1) * sizeof(*pr->tmarks)) : NULL;
  if (c)
    pr->tmarks = c;
  if (!c) {
    rc = -ENOMEM;
    goto fail;
  }
  pr->nsteps_all = nsteps;
  pr->npipes++;
  return 0;
fail:
  if (rc == -ENOMEM && errlen)
    snprintf(errstr, errlen, "out of memory");
  pipe_free(p);
  return rc;
}

int sl_process_stats(const sl_process_t *pr, size_t idx,
                     sl_process_stats_t *st) {
  if (idx >= pr->npipes)
    return SL_ENOTFOUND;
  *st = pr->pipes[idx].stats;
  st->keys = 0;
  for (size_t k = 0; k < pr->pipes[idx].nsteps; k++)
    st->keys += pr->pipes[idx].steps[k].tab.count;
  return 0;
}

/* ---- runs ------------------------------------------------------------- */

static int grow_outputs(sl_process_t *pr, size_t n) {
  if (n <= pr->ocap)
    return 0;
  size_t c = pr->ocap ? pr->ocap : 256;
  while (c < n)
    c *= 2;
  uint8_t *k = realloc(pr->keep, c);
  if (!k)
    return -ENOMEM;
  pr->keep = k;
  const char **d = realloc(pr->dest, c * sizeof(*d));
  if (!d)
    return -ENOMEM;
  pr->dest = d;
  pr->ocap = c;
  return 0;
}

static int add_tag(sl_process_t *pr, size_t i, const char *key,
                   const char *value) {
  if (pr->ntags == pr->tcap) {
    size_t n = pr->tcap ? pr->tcap * 2 : 64;
    sl_process_tag_t *t = realloc(pr->tags, n * sizeof(*t));
    if (!t) {
      pr->poisoned = true;
      return -ENOMEM;
    }
    pr->tags = t;
    pr->tcap = n;
  }
  pr->tags[pr->ntags].event = (uint32_t)i;
  pr->tags[pr->ntags].key = key;
  pr->tags[pr->ntags].value = value;
  pr->ntags++;
  return 0;
}

/* Marks event i as late for pipeline p's aggregate: attribute
 * sluice.late = the pipeline's name. */
static int add_late_tag(sl_process_t *pr, size_t i, const ppipeline_t *p) {
  return add_tag(pr, i, "sluice.late", p->name);
}

/* Saves what a rollback restores besides slot bytes. */
static void marks_save(sl_process_t *pr) {
  size_t j = 0;
  for (size_t i = 0; i < pr->npipes; i++) {
    ppipeline_t *p = &pr->pipes[i];
    pr->stats_mark[i] = p->stats;
    for (size_t k = 0; k < p->nsteps; k++, j++) {
      pstep_t *s = &p->steps[k];
      pr->wm_mark[j].wm = s->wm;
      pr->wm_mark[j].have_wm = s->have_wm;
      pr->wm_mark[j].flush_future = s->flush_future;
      pr->tmarks[j].t = &s->tab;
      pr->tmarks[j].count = s->tab.count;
      pr->tmarks[j].klen = s->tab.klen;
    }
  }
}

void sl_process_commit(sl_process_t *pr) {
  pr->pending = false;
  pr->undo_len = 0;
}

void sl_process_rollback(sl_process_t *pr) {
  size_t j = 0;
  if (!pr->pending)
    return;
  /* Undo records are [slot bytes][pundo_t]: restore newest first. */
  size_t off = pr->undo_len;
  while (off > 0) {
    pundo_t rec;
    memcpy(&rec, pr->undo + off - sizeof(rec), sizeof(rec));
    off -= sizeof(rec) + rec.t->esize;
    memcpy(ptable_slot(rec.t, rec.slot), pr->undo + off, rec.t->esize);
  }
  for (size_t i = 0; i < pr->npipes; i++) {
    ppipeline_t *p = &pr->pipes[i];
    p->stats = pr->stats_mark[i];
    for (size_t k = 0; k < p->nsteps; k++, j++) {
      pstep_t *s = &p->steps[k];
      s->wm = pr->wm_mark[j].wm;
      s->have_wm = pr->wm_mark[j].have_wm;
      s->flush_future = pr->wm_mark[j].flush_future;
      s->tab.count = pr->tmarks[j].count;
      s->tab.klen = pr->tmarks[j].klen;
    }
  }
  pr->undo_len = 0;
  pr->pending = false;
  pr->ntags = 0;
  pr->nerec = 0;
  process__magg_reset(pr);
}

static const char *group_key(const pstep_t *s, const Sluice__V1__Event *ev,
                             const pcapture_t *caps, size_t *klen) {
  const char *v;
  switch (s->by) {
  case BY_NONE:
    *klen = 0;
    return "";
  case BY_ATTR:
    v = process__attr(ev, s->by_attr, s->by_attr_len);
    v = v ? v : "";
    *klen = strlen(v);
    return v;
  case BY_CAPTURE:
    *klen = caps[s->by_cap].len;
    return caps[s->by_cap].s;
  default:
    v = ev->source ? ev->source : "";
    *klen = strlen(v);
    return v;
  }
}

static void run_pipeline(sl_process_t *pr, ppipeline_t *p, const char *stream,
                         const Sluice__V1__Event *const *events, size_t n) {
  pcapture_t caps[SL_PROCESS_CAPTURES];
  for (size_t i = 0; i < n && !pr->poisoned; i++) {
    const Sluice__V1__Event *ev = events[i];
    uint64_t hsrc = 0;
    bool have_hsrc = false;
    if (!process__match(&p->m, stream, ev, caps))
      continue;
    p->stats.events_in++;
    for (size_t k = 0; k < p->nsteps; k++) {
      pstep_t *s = &p->steps[k];
      sl_process_reason_t reason = SL_PROCESS_R_FILTER;
      pstep_verdict_t v = STEP_PASS;
      if (s->stateful && !have_hsrc &&
          (s->kind != SL_PROCESS_AGGREGATE || s->by == BY_SOURCE)) {
        const char *src = ev->source ? ev->source : "";
        hsrc = process__hash(src, strlen(src));
        have_hsrc = true;
      }
      switch (s->kind) {
      case SL_PROCESS_FILTER: {
        bool m = sl_process_expr_match(s->ex, ev, stream);
        if (s->c.action == SL_PROCESS_TAG) {
          if (m && add_tag(pr, i, s->tag_key, s->tag_value) == 0)
            p->stats.tagged++;
        } else if (m == (s->c.action == SL_PROCESS_DROP)) {
          v = STEP_DROP;
        }
        break;
      }
      case SL_PROCESS_DEADBAND:
        v = process__deadband(pr, s, ev, hsrc, &reason);
        break;
      case SL_PROCESS_SAMPLE:
        v = process__sample(pr, s, ev, hsrc, &reason);
        break;
      case SL_PROCESS_RATE_LIMIT:
        v = process__rate_limit(pr, s, ev, hsrc, &reason);
        break;
      case SL_PROCESS_AGGREGATE: {
        size_t klen;
        const char *key = group_key(s, ev, caps, &klen);
        uint64_t h = s->by == BY_SOURCE ? hsrc : process__hash(key, klen);
        v = process__aggregate(pr, p, s, ev, key, klen, h, &reason);
        break;
      }
      case SL_PROCESS_MODEL_AGG:
        v = process__magg(pr, p, s, ev, &reason);
        break;
      case SL_PROCESS_ROUTE:
        if (!pr->dest[i] && s->stream)
          pr->dest[i] = s->stream;
        break;
      default:
        break;
      }
      if (v == STEP_LATE) {
        /* Kept raw (never lost to a watermark), marked for consumers. */
        if (add_late_tag(pr, i, p) < 0)
          break;
        continue;
      }
      if (v == STEP_DROP) {
        pr->keep[i] = 0;
        p->stats.dropped[reason]++;
        break;
      }
    }
  }
}

int sl_process_run(sl_process_t *pr, const char *stream,
                   const Sluice__V1__Event *const *events, size_t n,
                   sl_process_result_t *res) {
  if (pr->pending)
    sl_process_commit(pr);
  if (pr->poisoned)
    return SL_EPOISONED;
  memset(res, 0, sizeof(*res));
  /* Everything that can fail before a state change: outputs and room for
   * every key the batch could add (so no rehash during the run). */
  if (grow_outputs(pr, n) < 0)
    return -ENOMEM;
  for (size_t i = 0; i < pr->npipes; i++) {
    for (size_t k = 0; k < pr->pipes[i].nsteps; k++) {
      pstep_t *s = &pr->pipes[i].steps[k];
      /* model_aggregate tables are whole from the start (fixed memory). */
      if (s->stateful && s->kind != SL_PROCESS_MODEL_AGG &&
          process__table_reserve(&s->tab, n) < 0)
        return -ENOMEM;
    }
  }
  pr->epoch++;
  pr->undo_len = 0;
  pr->ntags = 0;
  pr->nerec = 0;
  pr->eklen = 0;
  process__magg_reset(pr);
  marks_save(pr);
  pr->pending = true;
  memset(pr->keep, 1, n);
  for (size_t i = 0; i < n; i++)
    pr->dest[i] = NULL;
  for (size_t i = 0; i < pr->npipes && !pr->poisoned; i++) {
    ppipeline_t *p = &pr->pipes[i];
    if (p->m.stream && (!stream || strcmp(p->m.stream, stream)))
      continue;
    /* Windows a cap or a rebase left ahead of the watermark go out first,
     * before this run's events are judged against the new watermark. */
    for (size_t k = 0; k < p->nsteps && !pr->poisoned; k++) {
      if (p->steps[k].kind == SL_PROCESS_AGGREGATE && p->steps[k].flush_future)
        process__aggregate_sweep(pr, p, &p->steps[k]);
      if (p->steps[k].kind == SL_PROCESS_MODEL_AGG && p->steps[k].flush_future)
        process__magg_sweep(pr, p, &p->steps[k]);
    }
    run_pipeline(pr, p, stream, events, n);
    for (size_t k = 0; k < p->nsteps && !pr->poisoned; k++) {
      if (p->steps[k].kind == SL_PROCESS_AGGREGATE)
        process__aggregate_sweep(pr, p, &p->steps[k]);
      if (p->steps[k].kind == SL_PROCESS_MODEL_AGG)
        process__magg_sweep(pr, p, &p->steps[k]);
    }
  }
  /* Room for both kinds of results first: materialising one must not move
   * the other's. */
  if (!pr->poisoned && process__magg_count(pr) &&
      process__emit_reserve(pr, pr->nerec + process__magg_count(pr), 0) < 0)
    pr->poisoned = true;
  if (!pr->poisoned)
    process__emit_materialise(pr);
  if (!pr->poisoned)
    process__magg_materialise(pr, pr->nerec);
  if (pr->poisoned)
    return SL_EPOISONED;
  for (size_t i = 0; i < pr->nerec; i++)
    ((ppipeline_t *)pr->erec[i].p)->stats.emitted++;
  res->n = n;
  res->keep = pr->keep;
  res->dest = pr->dest;
  for (size_t i = 0; i < n; i++)
    res->kept += pr->keep[i];
  res->tags = pr->tags;
  res->ntags = pr->ntags;
  res->emit = pr->emit;
  res->nemit = pr->nerec + process__magg_count(pr);
  return 0;
}
