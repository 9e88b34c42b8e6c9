/*
 * fleet/node.c: the node's apply state machine (fleet/fleet.h). It decides,
 * the host acts: every transition is persisted (one state record, one
 * store transaction) before the host is asked to act on it, so a kill -9
 * at any step leaves a state whose boot gives a consistent config:
 *
 *   offer -> verify signature, node id, config hash -> compare generations
 *     (lower than the committed one: CONFLICT; failed before: not retried)
 *   -> validate (the host's check-config) -> wait for the apply window
 *   -> persist pending (trial) -> apply in process, or restart
 *   -> verify for the gate's time -> commit: lkg = pending, in one persist
 *   failure/timeout/crash loop -> persist lkg as running -> apply it.
 *
 * docs/FLEET.md ("The node") tells the same story for operators.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"

#define MSGLEN 1024

struct sl_fleet_node {
  sl_fleet_node_conf_t conf;
  char *node_id, *agent_version;
  sl_fleet_label_t *labels;
  sl_fleet_ops_t ops;
  void *opaque;

  /* The durable state (mirrors FleetNodeState). */
  Sluice__V1__DesiredConfig *lkg;     /* owned, NULL = none */
  Sluice__V1__DesiredConfig *pending; /* owned, NULL = none */
  uint32_t trial_starts;
  uint64_t failed;
  sl_fleet_phase_t phase;
  char reason[64];
  char message[MSGLEN];
  uint64_t observed;
  uint64_t boots;
  int64_t resume_offset;
  bool decommissioned;
  bool trial;

  /* Volatile. */
  uint64_t seq;             /* low half of FleetStatus.seq */
  int64_t verify_start_ns;  /* mono: verification began */
  int64_t healthy_since_ns; /* mono: healthy without a break, 0 = not */
  uint64_t in0, bad0;       /* counters when verification began */
  int64_t last_status_ns;   /* mono: last status published */
  uint64_t n_rejected, n_rolled_back, n_conflicts, n_committed;
  char last_unhealthy[128]; /* what the gate saw failing last */
};

const char *sl_fleet_phase_name(sl_fleet_phase_t p) {
  static const char *const names[] = {
      "UNKNOWN",        "RECEIVED", "VALIDATING",     "REJECTED",
      "WAITING_WINDOW", "APPLYING", "VERIFYING",      "COMMITTED",
      "ROLLED_BACK",    "CONFLICT", "DECOMMISSIONED", "IDLE"};
  return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "UNKNOWN";
}

/* ---- documents --------------------------------------------------------- */

static Sluice__V1__DesiredConfig *doc_copy(const Sluice__V1__DesiredConfig *d) {
  size_t n;
  uint8_t *buf;
  Sluice__V1__DesiredConfig *c;
  if (!d)
    return NULL;
  n = sluice__v1__desired_config__get_packed_size(d);
  if (!(buf = malloc(n ? n : 1)))
    return NULL;
  sluice__v1__desired_config__pack(d, buf);
  c = sluice__v1__desired_config__unpack(NULL, n, buf);
  free(buf);
  return c;
}

static void doc_free(Sluice__V1__DesiredConfig *d) {
  if (d)
    sluice__v1__desired_config__free_unpacked(d, NULL);
}

static const char *doc_json(const Sluice__V1__DesiredConfig *d) {
  return d && d->config_json && *d->config_json ? d->config_json : "{}";
}

static uint64_t doc_gen(const Sluice__V1__DesiredConfig *d) {
  return d ? d->generation : 0;
}

/* ---- state ------------------------------------------------------------- */

static void set_phase(sl_fleet_node_t *n, sl_fleet_phase_t p,
                      const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_phase(sl_fleet_node_t *n, sl_fleet_phase_t p,
                      const char *reason, const char *fmt, ...) {
  n->phase = p;
  n->n_rejected += p == SL_FLEET_REJECTED;
  n->n_rolled_back += p == SL_FLEET_ROLLED_BACK;
  n->n_conflicts += p == SL_FLEET_CONFLICT;
  n->n_committed += p == SL_FLEET_COMMITTED;
  snprintf(n->reason, sizeof(n->reason), "%s", reason ? reason : "");
  n->message[0] = '\0';
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->message, sizeof(n->message), fmt, ap);
    va_end(ap);
  }
}

static int persist(sl_fleet_node_t *n) {
  Sluice__V1__FleetNodeState s = SLUICE__V1__FLEET_NODE_STATE__INIT;
  uint8_t *buf;
  size_t len;
  int rc;

  s.lkg = n->lkg;
  s.pending = n->pending;
  s.trial_starts = n->trial_starts;
  s.failed_generation = n->failed;
  s.phase = (Sluice__V1__FleetPhase)n->phase;
  s.reason = n->reason;
  s.message = n->message;
  s.observed_generation = n->observed;
  s.boots = n->boots;
  s.resume_offset = n->resume_offset;
  s.decommissioned = n->decommissioned;
  s.trial = n->trial;
  len = sluice__v1__fleet_node_state__get_packed_size(&s);
  if (!(buf = malloc(len ? len : 1)))
    return -ENOMEM;
  sluice__v1__fleet_node_state__pack(&s, buf);
  rc = n->ops.persist(n->opaque, buf, len);
  free(buf);
  return rc;
}

int sl_fleet_node_status(sl_fleet_node_t *n, uint8_t **out, size_t *len) {
  Sluice__V1__FleetStatus st = SLUICE__V1__FLEET_STATUS__INIT;
  Sluice__V1__FleetStatus__LabelsEntry *ents = NULL, **ep = NULL;
  sl_fleet_health_t h = {0};
  int rc = 0;

  *out = NULL;
  if (n->conf.n_labels) {
    ents = calloc(n->conf.n_labels, sizeof(*ents));
    ep = calloc(n->conf.n_labels, sizeof(*ep));
    if (!ents || !ep) {
      rc = -ENOMEM;
      goto done;
    }
    for (size_t i = 0; i < n->conf.n_labels; i++) {
      sluice__v1__fleet_status__labels_entry__init(&ents[i]);
      ents[i].key = (char *)n->labels[i].key;
      ents[i].value = (char *)n->labels[i].value;
      ep[i] = &ents[i];
    }
  }
  n->ops.health(n->opaque, &h);
  st.node_id = n->node_id;
  st.observed_generation = n->observed;
  st.lkg_generation = doc_gen(n->lkg);
  st.applied_generation =
      n->trial && n->pending ? n->pending->generation : doc_gen(n->lkg);
  st.phase = (Sluice__V1__FleetPhase)n->phase;
  st.reason = n->reason;
  st.message = n->message;
  st.running_sha256 = n->trial && n->pending ? n->pending->config_sha256
                      : n->lkg               ? n->lkg->config_sha256
                                             : "";
  st.healthy = h.ready && h.uplink;
  st.agent_version = n->agent_version;
  st.n_labels = n->conf.n_labels;
  st.labels = ep;
  st.seq = n->boots << 32 | ++n->seq;
  st.time_ns = n->ops.now_ns(n->opaque);
  st.batch_id = n->pending && n->trial ? n->pending->batch_id
                : n->lkg               ? n->lkg->batch_id
                                       : "";
  st.backlog_events = h.backlog;
  st.uplink = (Sluice__V1__UplinkState)h.uplink_state;
  *len = sluice__v1__fleet_status__get_packed_size(&st);
  if (!(*out = malloc(*len ? *len : 1))) {
    rc = -ENOMEM;
    goto done;
  }
  sluice__v1__fleet_status__pack(&st, *out);
done:
  free(ents);
  free(ep);
  return rc;
}

/* Publishes the status and one event for the transition just made. */
static void report(sl_fleet_node_t *n, uint64_t generation) {
  Sluice__V1__FleetEvent ev = SLUICE__V1__FLEET_EVENT__INIT;
  uint8_t *buf;
  size_t len;

  if (sl_fleet_node_status(n, &buf, &len) == 0) {
    n->ops.publish_status(n->opaque, buf, len);
    free(buf);
  }
  n->last_status_ns = n->ops.mono_ns(n->opaque);
  ev.subject = n->node_id;
  ev.what = "phase";
  ev.phase = (Sluice__V1__FleetPhase)n->phase;
  ev.generation = generation;
  ev.reason = n->reason;
  ev.message = n->message;
  ev.time_ns = n->ops.now_ns(n->opaque);
  ev.actor = n->node_id;
  len = sluice__v1__fleet_event__get_packed_size(&ev);
  if ((buf = malloc(len ? len : 1))) {
    sluice__v1__fleet_event__pack(&ev, buf);
    n->ops.publish_event(n->opaque, buf, len);
    free(buf);
  }
}

static int load_state(sl_fleet_node_t *n, const void *state, size_t len) {
  Sluice__V1__FleetNodeState *s;
  if (!state || !len)
    return 0;
  if (!(s = sluice__v1__fleet_node_state__unpack(NULL, len, state)))
    return SL_ECORRUPT;
  n->lkg = doc_copy(s->lkg);
  n->pending = doc_copy(s->pending);
  if ((s->lkg && !n->lkg) || (s->pending && !n->pending)) {
    sluice__v1__fleet_node_state__free_unpacked(s, NULL);
    return -ENOMEM;
  }
  n->trial_starts = s->trial_starts;
  n->failed = s->failed_generation;
  n->phase = (sl_fleet_phase_t)s->phase;
  snprintf(n->reason, sizeof(n->reason), "%s", s->reason ? s->reason : "");
  snprintf(n->message, sizeof(n->message), "%s", s->message ? s->message : "");
  n->observed = s->observed_generation;
  n->boots = s->boots;
  n->resume_offset = s->resume_offset;
  n->decommissioned = s->decommissioned;
  n->trial = s->trial;
  sluice__v1__fleet_node_state__free_unpacked(s, NULL);
  return 0;
}

int sl_fleet_node_open(const sl_fleet_node_conf_t *conf,
                       const sl_fleet_ops_t *ops, void *opaque,
                       const void *state, size_t len, sl_fleet_node_t **out) {
  sl_fleet_node_t *n;
  int rc;

  *out = NULL;
  if (!(n = calloc(1, sizeof(*n))))
    return -ENOMEM;
  n->conf = *conf;
  n->ops = *ops;
  n->opaque = opaque;
  n->phase = SL_FLEET_IDLE;
  if (!(n->node_id = strdup(conf->node_id)) ||
      !(n->agent_version =
            strdup(conf->agent_version ? conf->agent_version : "")) ||
      (conf->n_labels &&
       !(n->labels = calloc(conf->n_labels, sizeof(*n->labels))))) {
    rc = -ENOMEM;
    goto fail;
  }
  for (size_t i = 0; i < conf->n_labels; i++) {
    n->labels[i].key = strdup(conf->labels[i].key);
    n->labels[i].value = strdup(conf->labels[i].value);
    if (!n->labels[i].key || !n->labels[i].value) {
      n->conf.n_labels = i + 1;
      rc = -ENOMEM;
      goto fail;
    }
  }
  n->conf.labels = n->labels;
  n->conf.node_id = n->node_id;
  n->conf.agent_version = n->agent_version;
  if (!n->conf.max_trial_starts)
    n->conf.max_trial_starts = 3;
  if (!n->conf.heartbeat_ns)
    n->conf.heartbeat_ns = 30 * (int64_t)1000000000;
  if ((rc = load_state(n, state, len)) < 0)
    goto fail;
  *out = n;
  return 0;
fail:
  sl_fleet_node_free(n);
  return rc;
}

void sl_fleet_node_free(sl_fleet_node_t *n) {
  if (!n)
    return;
  for (size_t i = 0; n->labels && i < n->conf.n_labels; i++) {
    free((char *)n->labels[i].key);
    free((char *)n->labels[i].value);
  }
  free(n->labels);
  free(n->node_id);
  free(n->agent_version);
  doc_free(n->lkg);
  doc_free(n->pending);
  free(n);
}

int64_t sl_fleet_node_resume_offset(const sl_fleet_node_t *n) {
  return n->resume_offset > 0 ? n->resume_offset : -1;
}

void sl_fleet_node_info(const sl_fleet_node_t *n, sl_fleet_node_info_t *info) {
  info->phase = n->phase;
  info->observed = n->observed;
  info->applied =
      n->trial && n->pending ? n->pending->generation : doc_gen(n->lkg);
  info->lkg = doc_gen(n->lkg);
  info->failed = n->failed;
  info->reason = n->reason;
  info->message = n->message;
  info->running_sha256 = n->trial && n->pending ? n->pending->config_sha256
                         : n->lkg               ? n->lkg->config_sha256
                                                : "";
  info->decommissioned = n->decommissioned;
  info->n_rejected = n->n_rejected;
  info->n_rolled_back = n->n_rolled_back;
  info->n_conflicts = n->n_conflicts;
  info->n_committed = n->n_committed;
}

/* ---- transitions ------------------------------------------------------- */

static void begin_verify(sl_fleet_node_t *n) {
  sl_fleet_health_t h = {0};
  n->ops.health(n->opaque, &h);
  n->verify_start_ns = n->ops.mono_ns(n->opaque);
  n->healthy_since_ns = 0;
  n->in0 = h.events_in;
  n->bad0 = h.events_bad;
  n->last_unhealthy[0] = '\0';
}

/*
 * Ends a trial that failed: the last known good runs again. The state is
 * persisted first (pending gone, failed recorded), so a crash or a restart
 * from here boots on the last known good.
 */
static void roll_back(sl_fleet_node_t *n, const char *reason, const char *msg) {
  uint64_t gen = doc_gen(n->pending);
  char err[MSGLEN];
  int rc;

  n->failed = gen > n->failed ? gen : n->failed;
  doc_free(n->pending);
  n->pending = NULL;
  n->trial = false;
  n->trial_starts = 0;
  set_phase(n, SL_FLEET_ROLLED_BACK, reason, "%s", msg);
  if (persist(n) < 0) {
    /* Not durable: the pending trial would come back at the next start and
     * count as one more start there (its crash-loop guard still holds). */
  }
  rc = n->ops.apply(n->opaque, doc_json(n->lkg), err, sizeof(err));
  report(n, gen);
  if (rc == SL_FLEET_NEEDS_RESTART)
    n->ops.restart(n->opaque, "fleet: rolling back to the last known good");
}

/* Starts the trial of n->pending (validated, inside its window). */
static void start_trial(sl_fleet_node_t *n) {
  char err[MSGLEN];
  int rc;

  n->trial = true;
  n->trial_starts = 0;
  set_phase(n, SL_FLEET_APPLYING, "", NULL);
  if ((rc = persist(n)) < 0) {
    n->trial = false;
    set_phase(n, SL_FLEET_REJECTED, "persist",
              "cannot store the pending generation: %s", sl_strerror(rc));
    doc_free(n->pending);
    n->pending = NULL;
    report(n, n->observed);
    return;
  }
  report(n, n->pending->generation);
  rc = n->ops.apply(n->opaque, doc_json(n->pending), err, sizeof(err));
  if (rc == SL_FLEET_NEEDS_RESTART) {
    /* Persisted as APPLYING with trial set: the next boot runs it and
     * verifies. */
    n->ops.restart(n->opaque, "fleet: applying a generation that needs a "
                              "restart");
    return;
  }
  if (rc < 0) {
    roll_back(n, "apply", err);
    return;
  }
  set_phase(n, SL_FLEET_VERIFYING, "", NULL);
  (void)persist(n);
  begin_verify(n);
  report(n, n->pending->generation);
}

static bool in_window(sl_fleet_node_t *n, const Sluice__V1__DesiredConfig *d) {
  const Sluice__V1__ApplyWindow *w = d->window;
  if (!w || w->start_minute == w->end_minute)
    return true;
  int64_t now = n->ops.now_ns(n->opaque);
  uint32_t minute =
      (uint32_t)((now / 1000000000 / 60) % (24 * 60)); /* UTC minute */
  uint32_t s = w->start_minute % 1440, e = w->end_minute % 1440;
  return s < e ? minute >= s && minute < e : minute >= s || minute < e;
}

int sl_fleet_node_boot(sl_fleet_node_t *n, const char **config_json) {
  int rc;

  n->boots++;
  n->seq = 0;
  if (n->pending && n->trial) {
    n->trial_starts++;
    if (n->trial_starts > n->conf.max_trial_starts) {
      uint64_t gen = n->pending->generation;
      char msg[200];
      snprintf(msg, sizeof(msg),
               "generation %llu: %u starts without a commit (the daemon "
               "kept failing during its trial); starting on the last known "
               "good",
               (unsigned long long)gen, n->trial_starts - 1);
      n->failed = gen > n->failed ? gen : n->failed;
      doc_free(n->pending);
      n->pending = NULL;
      n->trial = false;
      n->trial_starts = 0;
      set_phase(n, SL_FLEET_ROLLED_BACK, "crash_loop", "%s", msg);
    } else {
      set_phase(n, SL_FLEET_VERIFYING, "", NULL);
    }
  }
  if ((rc = persist(n)) < 0)
    return rc;
  *config_json =
      n->pending && n->trial ? doc_json(n->pending) : doc_json(n->lkg);
  if (n->pending && n->trial)
    begin_verify(n);
  /* The first tick publishes the status (the host's producer may not be
   * up yet). */
  n->last_status_ns = 0;
  return 0;
}

int sl_fleet_node_offer(sl_fleet_node_t *n, const void *rec, size_t len,
                        int64_t offset) {
  const uint8_t *payload;
  size_t plen;
  void *hold = NULL;
  int kind = 0, rc;
  char err[MSGLEN];
  Sluice__V1__DesiredConfig *d = NULL;
  char sha[65];

  n->resume_offset = offset + 1;
  if (n->decommissioned)
    return 0;
  rc = sl_fleet_verify(n->conf.verify_key, rec, len, &kind, &payload, &plen,
                       &hold, err, sizeof(err));
  if (rc < 0) {
    set_phase(n, SL_FLEET_REJECTED,
              rc == SL_ESIGNATURE ? "signature" : "schema",
              "desired document at offset %lld: %s", (long long)offset, err);
    goto report;
  }
  if (kind == SL_FLEET_DECOMMISSION) {
    Sluice__V1__Decommission *dc =
        sluice__v1__decommission__unpack(NULL, plen, payload);
    if (!dc || strcmp(dc->node_id, n->node_id) != 0) {
      set_phase(n, SL_FLEET_REJECTED, "schema",
                "decommission document at offset %lld is %s", (long long)offset,
                dc ? "for another node" : "not a Decommission");
    } else {
      n->decommissioned = true;
      set_phase(n, SL_FLEET_DECOMMISSIONED, "decommission", "%s",
                dc->reason ? dc->reason : "");
    }
    if (dc)
      sluice__v1__decommission__free_unpacked(dc, NULL);
    goto report;
  }
  if (kind != SL_FLEET_DESIRED ||
      !(d = sluice__v1__desired_config__unpack(NULL, plen, payload))) {
    set_phase(n, SL_FLEET_REJECTED, "schema",
              "record at offset %lld is not a desired document",
              (long long)offset);
    goto report;
  }
  if (strcmp(d->node_id, n->node_id) != 0) {
    set_phase(n, SL_FLEET_REJECTED, "node_id",
              "generation %llu is addressed to node '%.64s'",
              (unsigned long long)d->generation, d->node_id);
    goto report;
  }
  sl_fleet_sha256_hex(d->config_json, strlen(d->config_json), sha);
  if (strcmp(sha, d->config_sha256) != 0) {
    set_phase(n, SL_FLEET_REJECTED, "schema",
              "generation %llu: config_sha256 does not match config_json",
              (unsigned long long)d->generation);
    goto report;
  }
  /* Generations. */
  if (d->generation < doc_gen(n->lkg)) {
    set_phase(n, SL_FLEET_CONFLICT, "lower_generation",
              "generation %llu is below the committed generation %llu: "
              "ignored",
              (unsigned long long)d->generation,
              (unsigned long long)doc_gen(n->lkg));
    goto report;
  }
  if (d->generation == doc_gen(n->lkg) ||
      (n->pending && d->generation == n->pending->generation) ||
      d->generation <= n->failed) {
    /* Already running, in progress, or failed before (never retried):
     * the status says which. */
    sluice__v1__desired_config__free_unpacked(d, NULL);
    free(hold);
    (void)persist(n); /* the resume offset */
    return 0;
  }
  n->observed = d->generation > n->observed ? d->generation : n->observed;
  set_phase(n, SL_FLEET_VALIDATING, "", NULL);
  report(n, d->generation);
  if (n->ops.validate(n->opaque, doc_json(d), err, sizeof(err)) < 0) {
    n->failed = d->generation > n->failed ? d->generation : n->failed;
    set_phase(n, SL_FLEET_REJECTED, "validate", "%s", err);
    goto report;
  }
  /* A newer generation supersedes one waiting or in trial: the config is
   * whole, not a diff, so it applies over whatever runs. */
  doc_free(n->pending);
  n->pending = d;
  d = NULL;
  if (!in_window(n, n->pending)) {
    n->trial = false;
    set_phase(n, SL_FLEET_WAITING_WINDOW, "window", NULL);
    (void)persist(n);
    report(n, n->pending->generation);
  } else {
    start_trial(n);
  }
  free(hold);
  return 0;
report:
  (void)persist(n);
  report(n, d ? d->generation : n->observed);
  if (d)
    sluice__v1__desired_config__free_unpacked(d, NULL);
  free(hold);
  return 0;
}

static void gate_tick(sl_fleet_node_t *n) {
  const Sluice__V1__HealthGate *g = n->pending->gate;
  uint64_t min_ms = g ? g->min_healthy_ms : 10000;
  uint64_t timeout_ms = g && g->timeout_ms ? g->timeout_ms : 120000;
  bool need_uplink = g ? g->require_uplink : false;
  double max_err = g && g->max_error_rate > 0 ? g->max_error_rate : 1.0;
  sl_fleet_health_t h = {0};
  int64_t now = n->ops.mono_ns(n->opaque);
  bool healthy;

  n->ops.health(n->opaque, &h);
  uint64_t in = h.events_in - n->in0, bad = h.events_bad - n->bad0;
  double rate = in + bad ? (double)bad / (double)(in + bad) : 0.0;
  if (in + bad >= 20 && rate > max_err) {
    char msg[200];
    snprintf(msg, sizeof(msg),
             "generation %llu: %.1f%% of events refused while verifying "
             "(gate: at most %.1f%%)",
             (unsigned long long)n->pending->generation, rate * 100,
             max_err * 100);
    roll_back(n, "health", msg);
    return;
  }
  healthy = h.ready && (!need_uplink || h.uplink);
  if (!healthy) {
    snprintf(n->last_unhealthy, sizeof(n->last_unhealthy), "%s",
             !h.ready ? "not ready" : "uplink not connected");
    n->healthy_since_ns = 0;
  } else if (!n->healthy_since_ns) {
    n->healthy_since_ns = now;
  }
  if (healthy && now - n->healthy_since_ns >= (int64_t)min_ms * 1000000) {
    uint64_t gen = n->pending->generation;
    doc_free(n->lkg);
    n->lkg = n->pending;
    n->pending = NULL;
    n->trial = false;
    n->trial_starts = 0;
    set_phase(n, SL_FLEET_COMMITTED, "", NULL);
    (void)persist(n);
    report(n, gen);
    return;
  }
  if (now - n->verify_start_ns >= (int64_t)timeout_ms * 1000000) {
    char msg[300];
    snprintf(msg, sizeof(msg),
             "generation %llu: not healthy for %llu ms within %llu ms (%s)",
             (unsigned long long)n->pending->generation,
             (unsigned long long)min_ms, (unsigned long long)timeout_ms,
             n->last_unhealthy[0] ? n->last_unhealthy : "no reason seen");
    if (n->pending->on_failure == SLUICE__V1__ON_FAILURE__ON_FAILURE_KEEP) {
      uint64_t gen = n->pending->generation;
      doc_free(n->lkg);
      n->lkg = n->pending;
      n->pending = NULL;
      n->trial = false;
      set_phase(n, SL_FLEET_COMMITTED, "gate_failed_kept", "%s", msg);
      (void)persist(n);
      report(n, gen);
      return;
    }
    roll_back(n, "timeout", msg);
  }
}

void sl_fleet_node_tick(sl_fleet_node_t *n) {
  int64_t now = n->ops.mono_ns(n->opaque);

  if (n->pending && n->trial &&
      (n->phase == SL_FLEET_VERIFYING || n->phase == SL_FLEET_APPLYING)) {
    if (n->phase == SL_FLEET_APPLYING) {
      /* Booted into a trial without passing through start_trial(). */
      set_phase(n, SL_FLEET_VERIFYING, "", NULL);
      begin_verify(n);
    }
    gate_tick(n);
  } else if (n->pending && !n->trial && n->phase == SL_FLEET_WAITING_WINDOW &&
             in_window(n, n->pending)) {
    start_trial(n);
  }
  if (!n->last_status_ns || now - n->last_status_ns >= n->conf.heartbeat_ns) {
    uint8_t *buf;
    size_t len;
    if (sl_fleet_node_status(n, &buf, &len) == 0) {
      n->ops.publish_status(n->opaque, buf, len);
      free(buf);
    }
    n->last_status_ns = now ? now : 1;
  }
}
