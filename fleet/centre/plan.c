/*
 * fleet/centre/plan.c: rendering a node's remote layer from its policies,
 * and the rollout planner: which of a revision's target nodes are released
 * now, when a batch is done, when the rollout stops. Pure functions over
 * what the render service (daemon/cmd/fleet_render.c) read from Kafka.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/centre/centre.h"

static int pol_cmp(const void *a, const void *b) {
  const sl_fleet_rpol_t *x = a, *y = b;
  if (x->priority != y->priority)
    return x->priority < y->priority ? -1 : 1;
  if (x->updated_ns != y->updated_ns)
    return x->updated_ns < y->updated_ns ? -1 : 1;
  return strcmp(x->name, y->name);
}

int sl_fleet_render(sl_fleet_rpol_t *pols, size_t n, char **json,
                    char sha256[65]) {
  json_t *doc = json_object();

  *json = NULL;
  if (!doc)
    return -ENOMEM;
  if (n > 1)
    qsort(pols, n, sizeof(*pols), pol_cmp);
  for (size_t i = 0; i < n; i++)
    if (pols[i].patch && !(doc = sl_fleet_merge_patch(doc, pols[i].patch)))
      return -ENOMEM;
  if (!json_is_object(doc)) { /* a non-object patch replaced everything */
    json_decref(doc);
    doc = json_object();
  }
  *json = sl_fleet_json_canon(doc);
  json_decref(doc);
  if (!*json)
    return -ENOMEM;
  sl_fleet_sha256_hex(*json, strlen(*json), sha256);
  return 0;
}

const char *sl_fleet_rollout_state_name(int s) {
  switch (s) {
  case SL_FLEET_RO_RUNNING:
    return "RUNNING";
  case SL_FLEET_RO_PAUSED:
    return "PAUSED";
  case SL_FLEET_RO_STOPPED:
    return "STOPPED";
  case SL_FLEET_RO_DONE:
    return "DONE";
  }
  return "UNKNOWN";
}

/* Rank of a node in a revision's rollout order. */
static uint32_t node_hash(const char *policy, uint64_t revision,
                          const char *id) {
  char buf[512];
  int l = snprintf(buf, sizeof(buf), "%s\n%llu\n%s", policy,
                   (unsigned long long)revision, id);
  if (l < 0)
    l = 0;
  if ((size_t)l >= sizeof(buf))
    l = (int)sizeof(buf) - 1;
  return sl_fleet_murmur2(buf, (size_t)l);
}

typedef struct ranked {
  uint32_t h;
  size_t i;
  const char *id;
} ranked_t;

static int ranked_cmp(const void *a, const void *b) {
  const ranked_t *x = a, *y = b;
  if (x->h != y->h)
    return x->h < y->h ? -1 : 1;
  return strcmp(x->id, y->id);
}

/* Sets nodes[].batch; returns the number of batches. */
static uint32_t assign_batches(const sl_fleet_plan_spec_t *spec,
                               const char *policy, uint64_t revision,
                               sl_fleet_plan_node_t *nodes, size_t n) {
  static const uint32_t all[] = {100};
  const uint32_t *steps = spec->n_steps ? spec->steps : all;
  size_t n_steps = spec->n_steps ? spec->n_steps : 1;
  bool last_all = steps[n_steps - 1] >= 100;
  uint32_t first = spec->canary ? 1 : 0;
  uint32_t batches = first + (uint32_t)n_steps + (last_all ? 0 : 1);
  ranked_t *r = calloc(n ? n : 1, sizeof(*r));
  size_t m = 0;

  for (size_t i = 0; i < n; i++) {
    if (spec->canary &&
        sl_fleet_sel_match(spec->canary, nodes[i].labels, nodes[i].n_labels)) {
      nodes[i].batch = 0;
      continue;
    }
    nodes[i].batch = (int)batches - 1;
    if (r)
      r[m++] =
          (ranked_t){node_hash(policy, revision, nodes[i].id), i, nodes[i].id};
  }
  if (!r)
    return batches;
  qsort(r, m, sizeof(*r), ranked_cmp);
  size_t at = 0;
  for (size_t s = 0; s < n_steps; s++) {
    uint32_t pct = steps[s] > 100 ? 100 : steps[s];
    size_t cut = (size_t)ceil((double)pct * (double)m / 100.0);
    for (; at < cut && at < m; at++)
      nodes[r[at].i].batch = (int)(first + s);
  }
  free(r);
  return batches;
}

bool sl_fleet_plan_step(const sl_fleet_plan_spec_t *spec, const char *policy,
                        uint64_t revision, sl_fleet_plan_node_t *nodes,
                        size_t n, sl_fleet_plan_t *p, int64_t now_ns) {
  sl_fleet_plan_t before = *p;
  bool flags = false;
  double thr = spec->threshold > 0 ? spec->threshold : 1.0;
  uint32_t maxf = spec->max_failures ? spec->max_failures : 1;
  const char *glabel =
      spec->group_label && *spec->group_label ? spec->group_label : NULL;

  p->batches = assign_batches(spec, policy, revision, nodes, n);
  if (p->batch >= p->batches)
    p->batch = p->batches - 1;
  if (!p->state)
    p->state = SL_FLEET_RO_RUNNING;
  if (!p->batch_started_ns)
    p->batch_started_ns = now_ns;

  for (;;) {
    uint32_t released = 0, committed = 0, failed = 0;
    uint32_t in_batch = 0, batch_committed = 0;
    for (size_t i = 0; i < n; i++) {
      if (nodes[i].released) {
        released++;
        committed += nodes[i].outcome == SL_FLEET_OUT_COMMITTED;
        failed += nodes[i].outcome == SL_FLEET_OUT_FAILED;
      }
      if (nodes[i].batch == (int)p->batch) {
        in_batch++;
        batch_committed +=
            nodes[i].released && nodes[i].outcome == SL_FLEET_OUT_COMMITTED;
      }
    }
    p->released = released;
    p->committed = committed;
    p->failed = failed;
    if (p->state != SL_FLEET_RO_RUNNING)
      break;
    if (failed >= p->failed_base + maxf) {
      p->state = SL_FLEET_RO_STOPPED;
      snprintf(p->reason, sizeof(p->reason),
               "failures: %u node(s) refused or rolled back (max_failures %u) "
               "in batch %u",
               failed - p->failed_base, maxf, p->batch);
      break;
    }
    /* release the current batch (and anything left behind before it) */
    for (size_t i = 0; i < n; i++) {
      if (nodes[i].released || nodes[i].batch > (int)p->batch)
        continue;
      if (glabel && spec->max_unavailable_per_group) {
        const char *g =
            sl_fleet_label_get(nodes[i].labels, nodes[i].n_labels, glabel);
        uint32_t busy = 0;
        for (size_t j = 0; j < n; j++) {
          if (!nodes[j].released || nodes[j].outcome != SL_FLEET_OUT_PENDING)
            continue;
          const char *h =
              sl_fleet_label_get(nodes[j].labels, nodes[j].n_labels, glabel);
          busy += (!g && !h) || (g && h && !strcmp(g, h));
        }
        if (busy >= spec->max_unavailable_per_group)
          continue;
      }
      nodes[i].released = true;
      nodes[i].outcome = SL_FLEET_OUT_PENDING;
      flags = true;
      p->released++;
    }
    if (batch_committed >= (uint32_t)ceil(thr * (double)in_batch - 1e-9)) {
      if (p->batch + 1 >= p->batches) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
          all &= nodes[i].released;
        if (all) {
          p->state = SL_FLEET_RO_DONE;
          snprintf(p->reason, sizeof(p->reason),
                   "every batch reached its threshold");
        }
        break;
      }
      p->batch++;
      p->batch_started_ns = now_ns;
      continue;
    }
    if (spec->deadline_ms &&
        now_ns - p->batch_started_ns > (int64_t)spec->deadline_ms * 1000000) {
      p->state = SL_FLEET_RO_STOPPED;
      snprintf(p->reason, sizeof(p->reason),
               "deadline: batch %u had %u of %u node(s) committed after %llu "
               "ms (threshold %.2f)",
               p->batch, batch_committed, in_batch,
               (unsigned long long)spec->deadline_ms, thr);
    }
    break;
  }
  return flags || memcmp(&before, p, sizeof(*p)) != 0;
}
