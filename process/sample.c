/*
 * process/sample.c: sample (keep 1 in N per source: the 1st, the N+1st,
 * ...) and rate_limit (at most N per source per interval; intervals are
 * aligned on event time, floor(time / interval), so the decision does not
 * depend on when the node sees the event). A device clock going backwards
 * counts its events against the current interval: it never resets it.
 */
#include <string.h>

#include "process/process_int.h"

static pcounter_t *counter(sl_process_t *pr, pstep_t *s,
                           const Sluice__V1__Event *ev, uint64_t hash) {
  const char *src = ev->source ? ev->source : "";
  bool full;
  return process__table_get(pr, &s->tab, hash, src, strlen(src), true, &full);
}

pstep_verdict_t process__sample(sl_process_t *pr, pstep_t *s,
                                const Sluice__V1__Event *ev, uint64_t hash,
                                sl_process_reason_t *reason) {
  pcounter_t *c = counter(pr, s, ev, hash);
  if (!c)
    return STEP_PASS;
  if (c->n++ % s->c.every == 0)
    return STEP_PASS;
  *reason = SL_PROCESS_R_SAMPLE;
  return STEP_DROP;
}

/* floor(t / d) for negative t too. */
static int64_t floordiv(int64_t t, int64_t d) {
  int64_t q = t / d;
  return (t % d != 0 && t < 0) ? q - 1 : q;
}

pstep_verdict_t process__rate_limit(sl_process_t *pr, pstep_t *s,
                                    const Sluice__V1__Event *ev, uint64_t hash,
                                    sl_process_reason_t *reason) {
  pcounter_t *c = counter(pr, s, ev, hash);
  int64_t iv = floordiv(ev->time_ns, s->c.interval_ns);
  if (!c)
    return STEP_PASS;
  if (iv > c->interval || c->n == 0) {
    c->interval = c->n == 0 && iv < c->interval ? c->interval : iv;
    c->n = 0;
  }
  if (c->n < s->c.limit) {
    c->n++;
    return STEP_PASS;
  }
  *reason = SL_PROCESS_R_RATE_LIMIT;
  return STEP_DROP;
}
