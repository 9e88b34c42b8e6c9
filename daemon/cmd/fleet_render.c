/*
 * fleet_render.c: `sluice fleet render`, the centre's service. It reads the
 * policies, rollouts, desired, status and inventory topics to their end
 * (that is its whole state: it keeps none of its own), then follows them
 * and, whenever something changed (and at least once a second, for
 * deadlines):
 *   1. per policy, makes sure its newest revision has a Rollout and steps
 *      the planner (fleet/centre/plan.c): release the next nodes, advance a
 *      batch, stop on failures or a deadline; Rollout records are written
 *      (and acknowledged) before the documents they release;
 *   2. per node, picks each policy's version it may see (the rolled-out
 *      revision once released, else the rollout's stable one), and when
 *      that set differs from its current desired document renders, signs
 *      and writes generation + 1 to the node's partition.
 * Run one instance per fleet (docs/FLEET.md "Several render instances").
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cmd/fleet_int.h"

typedef struct rpol {
  uint64_t rev_t, rev_s; /* revisions the cache below was built for */
  bool have_t, have_s;
  sl_fleet_sel_t *sel_t, *sel_s, *canary;
  json_t *patch_t, *patch_s;
  uint8_t *rel; /* released flag per node index */
  size_t rel_cap;
  bool loaded;      /* rel built from the Rollout record */
  uint64_t all_rev; /* revision this renderer wrote all_released for */
} rpol_t;

typedef struct render {
  fleet_opts_t *o;
  sl_fleet_kafka_t *k;
  sl_fleet_key_t *key;
  fleet_view_t v;
  rpol_t *rp;
  size_t rp_cap;
  uint64_t docs, rollouts;
} render_t;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static void rpol_clear(rpol_t *r) {
  sl_fleet_sel_free(r->sel_t);
  sl_fleet_sel_free(r->sel_s);
  sl_fleet_sel_free(r->canary);
  json_decref(r->patch_t);
  json_decref(r->patch_s);
  free(r->rel);
  memset(r, 0, sizeof(*r));
}

static bool rel_get(const rpol_t *r, size_t i) {
  return i < r->rel_cap && r->rel[i];
}

static void rel_set(rpol_t *r, size_t i, bool on) {
  if (i >= r->rel_cap) {
    size_t cap = r->rel_cap ? r->rel_cap : 1024;
    while (cap <= i)
      cap *= 2;
    uint8_t *n = realloc(r->rel, cap);
    if (!n)
      return;
    memset(n + r->rel_cap, 0, cap - r->rel_cap);
    r->rel = n;
    r->rel_cap = cap;
  }
  r->rel[i] = on;
}

/* Selector and patch of a policy version (NULL p: none). */
static void compile(const Sluice__V1__Policy *p, sl_fleet_sel_t **sel,
                    json_t **patch) {
  char err[256];
  json_error_t je;
  sl_fleet_sel_free(*sel);
  json_decref(*patch);
  *sel = NULL;
  *patch = NULL;
  if (!p || p->deleted)
    return;
  if (sl_fleet_sel_parse(p->selector, sel, err, sizeof(err)))
    fprintf(stderr, "sluice fleet render: policy %s: %s (matches nothing)\n",
            p->name, err);
  *patch = json_loads(p->patch_json, JSON_DECODE_ANY, &je);
}

static bool node_known(const fv_node_t *n) {
  return !n->decommissioned && (n->inv || n->st);
}

/* Writes r (a copy is kept as fp->ro): 0 or -1. */
static int put_rollout(render_t *R, fv_pol_t *fp, Sluice__V1__Rollout *r) {
  char err[512];
  r->writer = "render";
  r->updated_ns = sl_now_wall_ns();
  size_t n = sluice__v1__rollout__get_packed_size(r);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    return -1;
  sluice__v1__rollout__pack(r, buf);
  Sluice__V1__Rollout *copy = sluice__v1__rollout__unpack(NULL, n, buf);
  int rc = sl_fleet_kafka_produce(R->k, SL_FT_ROLLOUTS, fp->name, buf, n, err,
                                  sizeof(err));
  free(buf);
  if (rc || !copy) {
    fprintf(stderr, "sluice fleet render: rollout of %s: %s\n", fp->name,
            rc ? err : "out of memory");
    if (copy)
      sluice__v1__rollout__free_unpacked(copy, NULL);
    return -1;
  }
  if (fp->ro)
    sluice__v1__rollout__free_unpacked(fp->ro, NULL);
  fp->ro = copy;
  R->rollouts++;
  return 0;
}

/* A new revision: a new Rollout whose stable version is the last finished
 * one. */
static int start_rollout(render_t *R, fv_pol_t *fp, rpol_t *rp) {
  Sluice__V1__Rollout r = SLUICE__V1__ROLLOUT__INIT;
  const Sluice__V1__Rollout *old = fp->ro;
  r.policy = fp->name;
  r.revision = fp->p->revision;
  r.state = (Sluice__V1__RolloutState)SL_FLEET_RO_RUNNING;
  r.target = fp->p;
  r.stable =
      old ? ((int)old->state == SL_FLEET_RO_DONE ? old->target : old->stable)
          : NULL;
  r.batch_started_ns = sl_now_wall_ns();
  r.reason = "started";
  for (size_t i = 0; i < rp->rel_cap; i++)
    rp->rel[i] = 0;
  rp->loaded = true;
  fprintf(stderr,
          "sluice fleet render: policy %s revision %llu: rollout started "
          "(stable: %s)\n",
          fp->name, (unsigned long long)r.revision,
          r.stable ? "previous revision" : "none");
  fleet_event(R->k, fp->name, "rollout", 0, r.revision, "started", NULL);
  return put_rollout(R, fp, &r);
}

static int outcome(const fv_node_t *n) {
  const Sluice__V1__FleetStatus *s = n->st;
  uint64_t d = n->desired_gen;
  if (!s || !d)
    return SL_FLEET_OUT_PENDING;
  if (s->lkg_generation >= d)
    return SL_FLEET_OUT_COMMITTED;
  if (((int)s->phase == SL_FLEET_REJECTED ||
       (int)s->phase == SL_FLEET_ROLLED_BACK) &&
      s->observed_generation >= d)
    return SL_FLEET_OUT_FAILED;
  return SL_FLEET_OUT_PENDING;
}

/* Steps one policy's rollout; writes its record when it changed. */
static void step_policy(render_t *R, size_t pi) {
  fv_pol_t *fp = R->v.pols[pi];
  rpol_t *rp = &R->rp[pi];
  fleet_view_t *v = &R->v;

  if (!fp->p)
    return;
  if (!fp->ro || fp->ro->revision < fp->p->revision) {
    if (start_rollout(R, fp, rp))
      return;
  }
  Sluice__V1__Rollout *ro = fp->ro;
  if (ro->revision != fp->p->revision)
    return; /* a rollout record ahead of the policies topic: wait */
  if (!rp->have_t || rp->rev_t != ro->revision) {
    compile(ro->target, &rp->sel_t, &rp->patch_t);
    sl_fleet_sel_free(rp->canary);
    rp->canary = NULL;
    if (ro->target && ro->target->rollout &&
        *ro->target->rollout->canary_selector) {
      char err[256];
      (void)sl_fleet_sel_parse(ro->target->rollout->canary_selector,
                               &rp->canary, err, sizeof(err));
    }
    rp->have_t = true;
    rp->rev_t = ro->revision;
    rp->loaded = false;
  }
  uint64_t srev = ro->stable ? ro->stable->revision : 0;
  if (!rp->have_s || rp->rev_s != srev) {
    compile(ro->stable, &rp->sel_s, &rp->patch_s);
    rp->have_s = true;
    rp->rev_s = srev;
  }
  if (!rp->loaded || fp->ro_dirty) {
    /* A record from `rollout pause|resume` carries the released nodes the
     * command read, maybe fewer than released since: it may add to them,
     * never take any back (that would send a node back to the stable
     * revision). */
    if (!rp->loaded)
      for (size_t i = 0; i < rp->rel_cap; i++)
        rp->rel[i] = 0;
    if (rp->all_rev == ro->revision)
      ro->all_released = true;
    for (size_t i = 0; i < ro->n_released_nodes; i++) {
      size_t j = fv_node_index(v, ro->released_nodes[i]);
      if (j != SIZE_MAX)
        rel_set(rp, j, true);
    }
    rp->loaded = true;
    if (fp->ro_dirty)
      fprintf(stderr, "sluice fleet render: rollout of %s: %s (%s)\n", fp->name,
              sl_fleet_rollout_state_name(ro->state), ro->reason);
    fp->ro_dirty = false;
  }
  if ((int)ro->state == SL_FLEET_RO_DONE)
    return;

  /* the target nodes: covered by the new or the stable version */
  sl_fleet_plan_node_t *pn = calloc(v->n_nodes ? v->n_nodes : 1, sizeof(*pn));
  size_t *idx = calloc(v->n_nodes ? v->n_nodes : 1, sizeof(*idx));
  size_t m = 0;
  if (!pn || !idx)
    goto out;
  for (size_t i = 0; i < v->n_nodes; i++) {
    fv_node_t *n = v->nodes[i];
    if (!node_known(n))
      continue;
    bool t = rp->sel_t && sl_fleet_sel_match(rp->sel_t, n->labels, n->n_labels);
    bool s = rp->sel_s && sl_fleet_sel_match(rp->sel_s, n->labels, n->n_labels);
    if (!t && !s)
      continue;
    bool rel = ro->all_released || rel_get(rp, i);
    pn[m] = (sl_fleet_plan_node_t){.id = n->id,
                                   .labels = n->labels,
                                   .n_labels = n->n_labels,
                                   .released = rel,
                                   .outcome =
                                       rel ? outcome(n) : SL_FLEET_OUT_PENDING};
    idx[m++] = i;
  }
  const Sluice__V1__RolloutSpec *rs = ro->target ? ro->target->rollout : NULL;
  sl_fleet_plan_spec_t spec = {0};
  spec.canary = rp->canary;
  if (rs) {
    spec.steps = rs->steps_percent;
    spec.n_steps = rs->n_steps_percent;
    spec.threshold = rs->success_threshold;
    spec.deadline_ms = rs->batch_deadline_ms;
    spec.max_failures = rs->max_failures;
    spec.group_label = rs->group_label;
    spec.max_unavailable_per_group = rs->max_unavailable_per_group;
  }
  sl_fleet_plan_t p = {.state = ro->state,
                       .batch = ro->batch,
                       .batches = ro->batches,
                       .batch_started_ns = ro->batch_started_ns,
                       .failed_base = ro->failed_base,
                       .released = ro->released,
                       .committed = ro->committed,
                       .failed = ro->failed};
  snprintf(p.reason, sizeof(p.reason), "%s", ro->reason);
  int before_state = p.state;
  uint32_t before_batch = p.batch;
  if (!sl_fleet_plan_step(&spec, fp->name, ro->revision, pn, m, &p,
                          sl_now_wall_ns()))
    goto out;
  bool all = true;
  for (size_t j = 0; j < m; j++) {
    rel_set(rp, idx[j], pn[j].released);
    all &= pn[j].released;
  }
  Sluice__V1__Rollout r = *ro;
  char **names = calloc(m ? m : 1, sizeof(char *));
  size_t nn = 0;
  r.all_released = ro->all_released || (all && p.batch + 1 >= p.batches) ||
                   (int)p.state == SL_FLEET_RO_DONE;
  if (!r.all_released && names)
    for (size_t j = 0; j < m; j++)
      if (pn[j].released)
        names[nn++] = (char *)pn[j].id;
  r.released_nodes = names;
  r.n_released_nodes = nn;
  r.state = (Sluice__V1__RolloutState)p.state;
  r.batch = p.batch;
  r.batches = p.batches;
  r.batch_started_ns = p.batch_started_ns;
  r.failed_base = p.failed_base;
  r.released = p.released;
  r.committed = p.committed;
  r.failed = p.failed;
  r.reason = p.reason;
  if (p.state != before_state || p.batch != before_batch) {
    fprintf(stderr,
            "sluice fleet render: rollout of %s revision %llu: %s, batch "
            "%u/%u, %u released, %u committed, %u failed: %s\n",
            fp->name, (unsigned long long)r.revision,
            sl_fleet_rollout_state_name(p.state), p.batch + 1, p.batches,
            p.released, p.committed, p.failed, p.reason);
    fleet_event(R->k, fp->name, "rollout", 0, r.revision,
                sl_fleet_rollout_state_name(p.state), p.reason);
  }
  if (r.all_released)
    rp->all_rev = r.revision;
  (void)put_rollout(R, fp, &r);
  free(names);
out:
  free(pn);
  free(idx);
}

typedef struct eff {
  const Sluice__V1__Policy *p;
  const json_t *patch;
  const char *batch;
} eff_t;

static int pol_name_cmp(const void *a, const void *b) {
  const fv_pol_t *x = *(fv_pol_t *const *)a, *y = *(fv_pol_t *const *)b;
  return strcmp(x->name, y->name);
}

/* Renders node i when the versions it may see changed. */
static void render_node(render_t *R, size_t i, fv_pol_t **byname,
                        size_t *order) {
  fleet_view_t *v = &R->v;
  fv_node_t *n = v->nodes[i];
  eff_t e[64];
  size_t ne = 0;
  char refs[4096] = "", batch[300] = "";
  size_t at = 0;

  for (size_t q = 0; q < v->n_pols && ne < 64; q++) {
    fv_pol_t *fp = byname[q];
    rpol_t *rp = &R->rp[order[q]];
    const Sluice__V1__Rollout *ro = fp->ro;
    if (!fp->p || !ro || ro->revision != fp->p->revision)
      continue;
    bool rel = (int)ro->state == SL_FLEET_RO_DONE || ro->all_released ||
               rel_get(rp, i);
    const Sluice__V1__Policy *ver = rel ? ro->target : ro->stable;
    const sl_fleet_sel_t *sel = rel ? rp->sel_t : rp->sel_s;
    const json_t *patch = rel ? rp->patch_t : rp->patch_s;
    if (!ver || ver->deleted || !sel || !patch ||
        !sl_fleet_sel_match(sel, n->labels, n->n_labels))
      continue;
    if (rel && (int)ro->state != SL_FLEET_RO_DONE && !*batch)
      snprintf(batch, sizeof(batch), "%s@%llu#%u", fp->name,
               (unsigned long long)ro->revision, ro->batch);
    e[ne++] = (eff_t){ver, patch, NULL};
    int l = snprintf(refs + at, sizeof(refs) - at, "%s%s@%llu", at ? "," : "",
                     ver->name, (unsigned long long)ver->revision);
    if (l > 0 && (size_t)l < sizeof(refs) - at)
      at += (size_t)l;
  }
  if (!strcmp(refs, n->refs ? n->refs : ""))
    return;
  sl_fleet_rpol_t rp[64];
  for (size_t q = 0; q < ne; q++)
    rp[q] = (sl_fleet_rpol_t){e[q].p->name, e[q].p->revision, e[q].p->priority,
                              e[q].p->updated_ns, e[q].patch};
  char *json = NULL, sha[65];
  if (sl_fleet_render(rp, ne, &json, sha))
    return;
  /* the highest-priority policy with a gate / window gives them */
  const Sluice__V1__Policy *gp = NULL, *wp = NULL;
  for (size_t q = 0; q < ne; q++) {
    const Sluice__V1__Policy *p = NULL;
    for (size_t z = 0; z < ne; z++)
      if (!strcmp(e[z].p->name, rp[q].name))
        p = e[z].p;
    if (p && p->gate)
      gp = p;
    if (p && p->window)
      wp = p;
  }
  Sluice__V1__PolicyRef refv[64], *refp[64];
  for (size_t q = 0; q < ne; q++) {
    sluice__v1__policy_ref__init(&refv[q]);
    refv[q].name = e[q].p->name;
    refv[q].revision = e[q].p->revision;
    refp[q] = &refv[q];
  }
  Sluice__V1__DesiredConfig dc = SLUICE__V1__DESIRED_CONFIG__INIT;
  dc.node_id = n->id;
  dc.generation = n->gen + 1;
  dc.policies = refp;
  dc.n_policies = ne;
  dc.config_json = json;
  dc.config_sha256 = sha;
  dc.gate = gp ? gp->gate : NULL;
  dc.on_failure = gp ? gp->on_failure : 0;
  dc.window = wp ? wp->window : NULL;
  dc.batch_id = batch;
  dc.rendered_ns = sl_now_wall_ns();
  size_t len = sluice__v1__desired_config__get_packed_size(&dc);
  uint8_t *buf = malloc(len ? len : 1), *env = NULL;
  size_t envlen;
  char err[512];
  if (!buf)
    goto out;
  sluice__v1__desired_config__pack(&dc, buf);
  if (sl_fleet_sign(R->key, SL_FLEET_DESIRED, buf, len, &env, &envlen) ||
      sl_fleet_kafka_produce(R->k, SL_FT_DESIRED, n->id, env, envlen, err,
                             sizeof(err))) {
    fprintf(stderr, "sluice fleet render: node %s: cannot write: %s\n", n->id,
            err);
    goto out;
  }
  n->gen = n->desired_gen = dc.generation;
  snprintf(n->sha, sizeof(n->sha), "%s", sha);
  free(n->refs);
  n->refs = strdup(refs);
  free(n->batch_id);
  n->batch_id = strdup(batch);
  R->docs++;
  fleet_event(R->k, n->id, "desired", 0, dc.generation, batch, refs);
out:
  free(env);
  free(buf);
  free(json);
}

static int reconcile(render_t *R) {
  fleet_view_t *v = &R->v;
  char err[512];
  if (v->n_pols > R->rp_cap) {
    rpol_t *n = realloc(R->rp, v->n_pols * sizeof(*n));
    if (!n)
      return -1;
    memset(n + R->rp_cap, 0, (v->n_pols - R->rp_cap) * sizeof(*n));
    R->rp = n;
    R->rp_cap = v->n_pols;
  }
  uint64_t ro0 = R->rollouts, docs0 = R->docs, t0 = sl_now_mono_ns();
  for (size_t i = 0; i < v->n_pols; i++)
    step_policy(R, i);
  /* rollout records are acknowledged before the documents they release */
  if (R->rollouts != ro0 &&
      sl_fleet_kafka_flush(R->k, 30000, err, sizeof(err))) {
    fprintf(stderr, "sluice fleet render: %s\n", err);
    return -1;
  }
  fv_pol_t **byname = calloc(v->n_pols ? v->n_pols : 1, sizeof(*byname));
  size_t *order = calloc(v->n_pols ? v->n_pols : 1, sizeof(*order));
  if (!byname || !order) {
    free(byname);
    free(order);
    return -1;
  }
  for (size_t i = 0; i < v->n_pols; i++)
    byname[i] = v->pols[i];
  qsort(byname, v->n_pols, sizeof(*byname), pol_name_cmp);
  for (size_t q = 0; q < v->n_pols; q++)
    for (size_t i = 0; i < v->n_pols; i++)
      if (v->pols[i] == byname[q])
        order[q] = i;
  for (size_t i = 0; i < v->n_nodes; i++)
    if (node_known(v->nodes[i]))
      render_node(R, i, byname, order);
  free(byname);
  free(order);
  if (R->docs != docs0) {
    if (sl_fleet_kafka_flush(R->k, 30000, err, sizeof(err))) {
      fprintf(stderr, "sluice fleet render: %s\n", err);
      return -1;
    }
    fprintf(stderr,
            "sluice fleet render: %llu desired document(s) written and "
            "acknowledged in %.0f ms\n",
            (unsigned long long)(R->docs - docs0),
            (double)(sl_now_mono_ns() - t0) / 1e6);
  }
  return 0;
}

int fleet_cmd_render(fleet_opts_t *o) {
  render_t R = {.o = o};
  sl_fleet_reader_t *r = NULL;
  char err[512];
  int rc;

  fv_init(&R.v);
  if (!o->signing_key) {
    fprintf(stderr, "sluice fleet render: --signing-key PEM is required "
                    "(nodes only apply signed documents)\n");
    return FLEET_EXIT_USAGE;
  }
  if ((rc =
           sl_fleet_key_load(o->signing_key, true, &R.key, err, sizeof(err)))) {
    fprintf(stderr, "sluice fleet render: %s: %s\n", o->signing_key, err);
    return FLEET_EXIT_USAGE;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if ((rc = fleet_connect(o, &R.k)) ||
      (rc = fleet_read_all(R.k,
                           1u << SL_FT_POLICIES | 1u << SL_FT_ROLLOUTS |
                               1u << SL_FT_DESIRED | 1u << SL_FT_STATUS |
                               1u << SL_FT_INVENTORY,
                           &R.v, &r)))
    goto out;
  fprintf(stderr,
          "sluice fleet render: %zu node(s), %zu policy(ies) read; signing "
          "key %s; rendering\n",
          R.v.n_nodes, R.v.n_pols, sl_fleet_key_id(R.key));
  uint64_t last = 0;
  int wait_ms = (int)(o->interval_s * 1000);
  if (wait_ms < 10)
    wait_ms = 10;
  R.v.changed = true;
  R.v.live = true;
  uint64_t foreign = 0;
  while (!stop_flag) {
    if (R.v.foreign != foreign) {
      fprintf(stderr,
              "sluice fleet render: WARNING: %llu desired document(s) written "
              "by another writer (a second renderer?): run one renderer per "
              "fleet (docs/FLEET.md); taking their generations over\n",
              (unsigned long long)(R.v.foreign - foreign));
      foreign = R.v.foreign;
    }
    uint64_t now = sl_now_mono_ns();
    if (R.v.changed || now - last > 1000000000ull) {
      R.v.changed = false;
      last = now;
      if (reconcile(&R)) {
        rc = FLEET_EXIT_FAIL;
        break;
      }
    }
    if (sl_fleet_reader_poll(r, wait_ms, false, fv_record, &R.v, NULL, err,
                             sizeof(err)) < 0) {
      fprintf(stderr, "sluice fleet render: %s\n", err);
      rc = FLEET_EXIT_FAIL;
      break;
    }
  }
  fprintf(stderr, "sluice fleet render: stopping (%llu documents written)\n",
          (unsigned long long)R.docs);
out:
  sl_fleet_reader_close(r);
  for (size_t i = 0; i < R.rp_cap; i++)
    rpol_clear(&R.rp[i]);
  free(R.rp);
  fv_free(&R.v);
  sl_fleet_kafka_close(R.k);
  sl_fleet_key_free(R.key);
  return rc;
}
