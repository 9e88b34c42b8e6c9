/*
 * model/gate.c: the version on trial: the app's load acknowledgement, the
 * quality gate over model_aggregate's windows, commit and rollback (one
 * persisted transition), and what the node reports.
 *
 * The gate's tally is not persisted: after a restart during a trial the
 * gate counts its windows again from the restart (the trial's start and
 * its timeout are persisted, so a crash loop cannot stretch a trial).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/model_node_int.h"

void model__gate_reset(sl_model_t *m) {
  memset(&m->gate, 0, sizeof(m->gate));
}

static void add_window(sl_model_window_t *acc, const sl_model_window_t *w) {
  acc->events += w->events;
  for (int i = 0; i < 5; i++)
    acc->status[i] += w->status[i];
  for (int i = 0; i < SL_MODEL_HIST_BINS; i++)
    acc->score_hist[i] += w->score_hist[i];
  acc->agree += w->agree;
  acc->disagree += w->disagree;
}

/* PSI as model_aggregate computes it (proportions floored at 1e-4). */
static double psi(const uint64_t *hist, const double *ref) {
  uint64_t tot = 0;
  double rtot = 0, p = 0;
  for (int i = 0; i < SL_MODEL_HIST_BINS; i++) {
    tot += hist[i];
    rtot += ref[i];
  }
  if (!tot || rtot <= 0)
    return 0;
  for (int i = 0; i < SL_MODEL_HIST_BINS; i++) {
    double a = (double)hist[i] / (double)tot, r = ref[i] / rtot;
    if (a < 1e-4)
      a = 1e-4;
    if (r < 1e-4)
      r = 1e-4;
    p += (a - r) * log(a / r);
  }
  return p;
}

static double rate(uint64_t n, uint64_t d) {
  return d ? (double)n / (double)d : 0;
}

static int transition_rollback(sl_model_t *m, const char *reason,
                               const char *msg) {
  int rc;
  if (!m->previous.mf)
    return SL_ENOTFOUND;
  if (m->active.mf)
    model__add_failed(m, m->active.mf->m->sha256);
  /* active <- previous in one persisted state; the failed version's files
   * go once that is durable (gc). */
  model__ref_move(&m->active, &m->previous);
  m->acked = true;
  model__gate_reset(m);
  model__set_phase(m, SL_MODEL_ROLLED_BACK, reason, msg);
  if ((rc = model__persist(m)) < 0)
    return rc;
  m->n_rolled_back++;
  model__step(m, "rollback.persisted");
  (void)model__link(m);
  model__announce(m);
  model__report(m);
  model__gc(m);
  return 0;
}

int sl_model_rollback(sl_model_t *m, const char *reason, const char *message) {
  return transition_rollback(m, reason ? reason : "operator",
                             message ? message : "");
}

static void commit(sl_model_t *m, const char *msg) {
  model__set_phase(m, SL_MODEL_COMMITTED, "", msg);
  if (model__persist(m) < 0)
    return;
  m->n_committed++;
  model__report(m);
}

static bool gate_has_limits(const sl_model_gate_limits_t *g) {
  return g->windows || g->min_events || g->max_error_rate ||
         g->max_empty_rate || g->max_p95_latency_ms || g->max_psi ||
         g->min_agreement || g->max_error_rate_delta;
}

void model__gate_check(sl_model_t *m) {
  sl_model_manifest_info_t mi;
  const sl_model_gate_limits_t *g;
  const model_gate_acc_t *a = &m->gate;
  uint32_t need;
  char msg[512];

  if (m->phase != SL_MODEL_TRIAL || !m->active.mf)
    return;
  sl_model_manifest_info(m->active.mf, &mi);
  g = &mi.gate;
  if (!gate_has_limits(g)) {
    if (m->acked || !g->ack_timeout_ms)
      commit(m, "no gate limits");
    return;
  }
  need = g->windows ? g->windows : 1;
  if (a->windows < need || a->cand.events < g->min_events)
    return;
  /* Every limit, the first breach named. */
  double er = rate(a->cand.status[3], a->cand.events);
  double em = rate(a->cand.status[2], a->cand.events);
  msg[0] = 0;
  if (g->max_error_rate && er > g->max_error_rate)
    snprintf(msg, sizeof(msg),
             "error rate %.4f > %.4f over %u windows, %llu "
             "runs",
             er, g->max_error_rate, a->windows,
             (unsigned long long)a->cand.events);
  else if (g->max_empty_rate && em > g->max_empty_rate)
    snprintf(msg, sizeof(msg), "empty rate %.4f > %.4f over %u windows", em,
             g->max_empty_rate, a->windows);
  else if (g->max_p95_latency_ms && a->p95_max > g->max_p95_latency_ms)
    snprintf(msg, sizeof(msg), "p95 latency %.1f ms > %.1f ms", a->p95_max,
             g->max_p95_latency_ms);
  else if (g->max_psi && mi.reference &&
           psi(a->cand.score_hist, mi.reference) > g->max_psi)
    snprintf(msg, sizeof(msg),
             "PSI %.4f > %.4f against the manifest's "
             "reference",
             psi(a->cand.score_hist, mi.reference), g->max_psi);
  else if (g->min_agreement && a->cand.agree + a->cand.disagree &&
           rate(a->cand.agree, a->cand.agree + a->cand.disagree) <
               g->min_agreement)
    snprintf(msg, sizeof(msg), "agreement with the primary %.4f < %.4f",
             rate(a->cand.agree, a->cand.agree + a->cand.disagree),
             g->min_agreement);
  else if (g->max_error_rate_delta && a->have_prim &&
           er - rate(a->prim.status[3], a->prim.events) >
               g->max_error_rate_delta)
    snprintf(msg, sizeof(msg),
             "error rate %.4f is %.4f over the primary's "
             "(limit %.4f)",
             er, er - rate(a->prim.status[3], a->prim.events),
             g->max_error_rate_delta);
  if (msg[0]) {
    (void)transition_rollback(m, "gate", msg);
    return;
  }
  if (m->acked || !g->ack_timeout_ms) {
    snprintf(msg, sizeof(msg),
             "gate passed: %u windows, %llu runs, error "
             "rate %.4f",
             a->windows, (unsigned long long)a->cand.events, er);
    commit(m, msg);
  }
}

void sl_model_gate_window(sl_model_t *m, const sl_model_window_t *cand,
                          const sl_model_window_t *primary) {
  if (m->phase != SL_MODEL_TRIAL || !cand)
    return;
  m->gate.windows++;
  add_window(&m->gate.cand, cand);
  if (cand->p95_latency_ms > m->gate.p95_max)
    m->gate.p95_max = cand->p95_latency_ms;
  if (primary) {
    add_window(&m->gate.prim, primary);
    m->gate.have_prim = true;
  }
  model__gate_check(m);
}

int sl_model_ack(sl_model_t *m, const char *version, bool ok,
                 const char *message) {
  char msg[512];
  int rc;
  if (!m->active.mf || strcmp(m->active.mf->m->version, version))
    return SL_ENOTFOUND;
  if (!ok) {
    if (m->phase != SL_MODEL_TRIAL && m->phase != SL_MODEL_COMMITTED)
      return SL_ENOTFOUND;
    snprintf(msg, sizeof(msg), "the app could not load %s: %s", version,
             message ? message : "");
    return transition_rollback(m, "load", msg);
  }
  if (m->phase != SL_MODEL_TRIAL || m->acked)
    return 0;
  m->acked = true;
  if ((rc = model__persist(m)) < 0)
    return rc;
  model__gate_check(m);
  return 0;
}

void sl_model_tick(sl_model_t *m) {
  sl_model_manifest_info_t mi;
  int64_t now, age_ms;
  char msg[256];
  if (m->phase != SL_MODEL_TRIAL || !m->active.mf)
    return;
  sl_model_manifest_info(m->active.mf, &mi);
  now = model__now(m);
  age_ms = (now - m->trial_start_ns) / 1000000;
  if (!m->acked && mi.gate.ack_timeout_ms &&
      age_ms >= (int64_t)mi.gate.ack_timeout_ms) {
    snprintf(msg, sizeof(msg), "no load acknowledgement of %s within %llu ms",
             mi.version, (unsigned long long)mi.gate.ack_timeout_ms);
    (void)transition_rollback(m, "ack_timeout", msg);
    return;
  }
  if (mi.gate.timeout_ms && age_ms >= (int64_t)mi.gate.timeout_ms) {
    snprintf(msg, sizeof(msg),
             "gate not passed within %llu ms (%u windows, "
             "%llu runs seen)",
             (unsigned long long)mi.gate.timeout_ms, m->gate.windows,
             (unsigned long long)m->gate.cand.events);
    (void)transition_rollback(m, "timeout", msg);
  }
}

void sl_model_info(const sl_model_t *m, sl_model_info_t *info) {
  memset(info, 0, sizeof(*info));
  info->phase = m->phase;
  info->reason = m->reason;
  info->message = m->message;
  info->active_version = model__ref_version(&m->active);
  info->active_sha256 = model__ref_sha(&m->active);
  info->previous_version = model__ref_version(&m->previous);
  info->previous_sha256 = model__ref_sha(&m->previous);
  info->pending_version = m->pending ? m->pending->m->version : "";
  if (m->pending) {
    uint32_t n = (uint32_t)m->pending->m->n_chunk_sha256;
    info->chunks_total = n;
    for (uint32_t i = 0; i < n; i++)
      if (m->have && (m->have[i / 8] & (1u << (i % 8))))
        info->chunks_have++;
  }
  info->bytes_fetched = m->bytes_fetched;
  info->acked = m->acked;
  info->gate_events = m->gate.cand.events;
  info->gate_windows = m->gate.windows;
  info->n_activated = m->n_activated;
  info->n_committed = m->n_committed;
  info->n_rolled_back = m->n_rolled_back;
  info->n_rejected = m->n_rejected;
  info->n_corrupt = m->n_corrupt;
}

int sl_model_status(sl_model_t *m, uint8_t **out, size_t *len) {
  Sluice__V1__ModelStatus s = SLUICE__V1__MODEL_STATUS__INIT;
  sl_model_info_t in;
  sl_model_info(m, &in);
  s.node_id = m->node_id;
  s.model = m->name;
  s.phase = (Sluice__V1__ModelPhase)in.phase;
  s.reason = (char *)in.reason;
  s.message = (char *)in.message;
  s.active_version = (char *)in.active_version;
  s.active_sha256 = (char *)in.active_sha256;
  s.previous_version = (char *)in.previous_version;
  s.pending_version = (char *)in.pending_version;
  s.chunks_have = in.chunks_have;
  s.chunks_total = in.chunks_total;
  s.bytes_fetched = in.bytes_fetched;
  s.time_ns = model__now(m);
  s.seq = m->seq;
  *len = sluice__v1__model_status__get_packed_size(&s);
  if (!(*out = malloc(*len ? *len : 1)))
    return -ENOMEM;
  sluice__v1__model_status__pack(&s, *out);
  return 0;
}
