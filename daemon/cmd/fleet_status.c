/*
 * fleet_status.c: `sluice fleet status [--watch] [--json]` (the nodes'
 * table from the status, inventory and desired topics) and `sluice fleet
 * rollout status|pause|resume` (Rollout records; pause and resume are
 * records written with writer "cli" that the render service adopts).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cmd/fleet_int.h"

static const char *uplink_name(int u) {
  switch (u) {
  case 1:
    return "connected";
  case 2:
    return "disconnected";
  case 3:
    return "fenced";
  case 4:
    return "disabled";
  }
  return "-";
}

static int node_cmp(const void *a, const void *b) {
  const fv_node_t *x = *(fv_node_t *const *)a, *y = *(fv_node_t *const *)b;
  return strcmp(x->id, y->id);
}

static void labels_text(const fv_node_t *n, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (size_t i = 0; i < n->n_labels && at < len; i++) {
    int l = snprintf(buf + at, len - at, "%s%s=%s", i ? "," : "",
                     n->labels[i].key, n->labels[i].value);
    if (l < 0)
      break;
    at += (size_t)l;
  }
  if (!n->n_labels)
    snprintf(buf, len, "-");
}

static json_t *node_json(const fv_node_t *n, int64_t now) {
  json_t *o = json_object(), *l = json_object();
  for (size_t i = 0; i < n->n_labels; i++)
    json_object_set_new(l, n->labels[i].key, json_string(n->labels[i].value));
  json_object_set_new(o, "node", json_string(n->id));
  json_object_set_new(o, "labels", l);
  json_object_set_new(o, "desired_generation",
                      json_integer((json_int_t)n->gen));
  json_object_set_new(o, "decommissioned", json_boolean(n->decommissioned));
  const Sluice__V1__FleetStatus *s = n->st;
  json_object_set_new(o, "observed_generation",
                      json_integer(s ? (json_int_t)s->observed_generation : 0));
  json_object_set_new(o, "applied_generation",
                      json_integer(s ? (json_int_t)s->applied_generation : 0));
  json_object_set_new(o, "lkg_generation",
                      json_integer(s ? (json_int_t)s->lkg_generation : 0));
  json_object_set_new(o, "phase",
                      json_string(s ? fleet_phase_name((int)s->phase) : "-"));
  json_object_set_new(o, "reason", json_string(s ? s->reason : ""));
  json_object_set_new(o, "message", json_string(s ? s->message : ""));
  json_object_set_new(o, "last_seen_ns", json_integer(n->seen_ns));
  json_object_set_new(o, "age_s",
                      n->seen_ns ? json_real((double)(now - n->seen_ns) / 1e9)
                                 : json_null());
  json_object_set_new(o, "backlog_events",
                      json_integer(s ? (json_int_t)s->backlog_events : 0));
  json_object_set_new(o, "uplink",
                      json_string(uplink_name(s ? (int)s->uplink : 0)));
  json_object_set_new(o, "time_ns", json_integer(s ? s->time_ns : 0));
  return o;
}

static void print_table(fleet_view_t *v, bool json) {
  int64_t now = sl_now_wall_ns();
  qsort(v->nodes, v->n_nodes, sizeof(*v->nodes), node_cmp);
  /* the index is by position: rebuild it (a later lookup needs it) */
  for (size_t i = 0; i < v->index_cap; i++)
    v->index[i] = SIZE_MAX;
  for (size_t i = 0; i < v->n_nodes; i++) {
    size_t h = sl_fleet_murmur2(v->nodes[i]->id, strlen(v->nodes[i]->id)) &
               (v->index_cap - 1);
    while (v->index[h] != SIZE_MAX)
      h = (h + 1) & (v->index_cap - 1);
    v->index[h] = i;
  }
  if (json) {
    json_t *a = json_array();
    for (size_t i = 0; i < v->n_nodes; i++)
      json_array_append_new(a, node_json(v->nodes[i], now));
    char *s = json_dumps(a, JSON_INDENT(2));
    printf("%s\n", s ? s : "[]");
    free(s);
    json_decref(a);
    return;
  }
  printf("%-20s %-28s %7s %7s %5s %-14s %-16s %8s %8s %s\n", "NODE", "LABELS",
         "DESIRED", "APPLIED", "LKG", "PHASE", "REASON", "SEEN", "BACKLOG",
         "UPLINK");
  for (size_t i = 0; i < v->n_nodes; i++) {
    const fv_node_t *n = v->nodes[i];
    const Sluice__V1__FleetStatus *s = n->st;
    char lab[256], seen[32];
    labels_text(n, lab, sizeof(lab));
    if (n->seen_ns)
      snprintf(seen, sizeof(seen), "%.0fs", (double)(now - n->seen_ns) / 1e9);
    else
      snprintf(seen, sizeof(seen), "never");
    printf("%-20s %-28.28s %7" PRIu64 " %7" PRIu64 " %5" PRIu64
           " %-14s %-16.16s %8s %8" PRIu64 " %s\n",
           n->id, lab, n->gen, s ? s->applied_generation : 0,
           s ? s->lkg_generation : 0,
           n->decommissioned && (!s || (int)s->phase != SL_FLEET_DECOMMISSIONED)
               ? "(decommission)"
           : s ? fleet_phase_name((int)s->phase)
               : "-",
           s && *s->reason ? s->reason : "-", seen, s ? s->backlog_events : 0,
           uplink_name(s ? (int)s->uplink : 0));
  }
}

int fleet_cmd_status(fleet_opts_t *o) {
  sl_fleet_kafka_t *k = NULL;
  sl_fleet_reader_t *r = NULL;
  fleet_view_t v;
  char err[512];
  int rc;
  fv_init(&v);
  if ((rc = fleet_connect(o, &k)) ||
      (rc = fleet_read_all(
           k, 1u << SL_FT_DESIRED | 1u << SL_FT_STATUS | 1u << SL_FT_INVENTORY,
           &v, o->watch ? &r : NULL)))
    goto out;
  if (!o->watch) {
    print_table(&v, o->json);
    goto out;
  }
  for (;;) {
    if (!o->json)
      printf("\033[H\033[2J");
    print_table(&v, o->json);
    fflush(stdout);
    if (sl_fleet_reader_poll(r, 1000, false, fv_record, &v, NULL, err,
                             sizeof(err)) < 0) {
      fprintf(stderr, "sluice fleet status: %s\n", err);
      rc = FLEET_EXIT_FAIL;
      break;
    }
  }
out:
  sl_fleet_reader_close(r);
  fv_free(&v);
  sl_fleet_kafka_close(k);
  return rc;
}

static json_t *rollout_json(const fv_pol_t *fp) {
  const Sluice__V1__Rollout *r = fp->ro;
  json_t *o = json_object();
  json_object_set_new(o, "policy", json_string(fp->name));
  json_object_set_new(o, "revision", json_integer((json_int_t)r->revision));
  json_object_set_new(o, "state",
                      json_string(sl_fleet_rollout_state_name(r->state)));
  json_object_set_new(o, "batch", json_integer(r->batch));
  json_object_set_new(o, "batches", json_integer(r->batches));
  json_object_set_new(o, "released", json_integer(r->released));
  json_object_set_new(o, "committed", json_integer(r->committed));
  json_object_set_new(o, "failed", json_integer(r->failed));
  json_object_set_new(o, "reason", json_string(r->reason));
  json_object_set_new(o, "updated_ns", json_integer(r->updated_ns));
  json_object_set_new(o, "policy_revision",
                      json_integer(fp->p ? (json_int_t)fp->p->revision : 0));
  return o;
}

static int write_rollout(sl_fleet_kafka_t *k, Sluice__V1__Rollout *r) {
  char err[512];
  size_t n = sluice__v1__rollout__get_packed_size(r);
  uint8_t *buf = malloc(n ? n : 1);
  int rc;
  if (!buf)
    return FLEET_EXIT_FAIL;
  sluice__v1__rollout__pack(r, buf);
  rc = sl_fleet_kafka_produce(k, SL_FT_ROLLOUTS, r->policy, buf, n, err,
                              sizeof(err));
  free(buf);
  if (!rc)
    rc = sl_fleet_kafka_flush(k, 30000, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sluice fleet rollout: %s\n", err);
    return fleet_exit_for(rc);
  }
  return 0;
}

int fleet_cmd_rollout(fleet_opts_t *o, const char *verb) {
  sl_fleet_kafka_t *k = NULL;
  fleet_view_t v;
  const char *name = o->n_args ? o->args[0] : NULL;
  int rc;
  bool pause = !strcmp(verb, "pause"), resume = !strcmp(verb, "resume");

  if ((!pause && !resume && strcmp(verb, "status")) || o->n_args > 1 ||
      ((pause || resume) && !name)) {
    fprintf(stderr, "usage: sluice fleet rollout status [NAME] | pause NAME | "
                    "resume NAME\n");
    return FLEET_EXIT_USAGE;
  }
  fv_init(&v);
  sl_fleet_reader_t *rd = NULL;
  if ((rc = fleet_connect(o, &k)) ||
      (rc = fleet_read_all(k, 1u << SL_FT_POLICIES | 1u << SL_FT_ROLLOUTS, &v,
                           &rd)))
    goto out;
  fv_pol_t *fp = name ? fv_pol(&v, name, false) : NULL;
  /* a revision just applied: give the renderer 10 s to start its rollout,
   * so pause and resume act on the newest revision */
  uint64_t until = sl_now_mono_ns() + 10000000000ull;
  while ((pause || resume) && fp && fp->p &&
         (!fp->ro || fp->ro->revision < fp->p->revision) &&
         sl_now_mono_ns() < until) {
    char err[256];
    if (sl_fleet_reader_poll(rd, 200, false, fv_record, &v, NULL, err,
                             sizeof(err)) < 0)
      break;
  }
  if (name && (!fp || !fp->ro)) {
    fprintf(stderr,
            "sluice fleet rollout: no rollout of policy '%s' (is "
            "`sluice fleet render` running?)\n",
            name);
    rc = FLEET_EXIT_NOTFOUND;
    goto out;
  }
  if (!pause && !resume) {
    json_t *a = json_array();
    if (!o->json)
      printf("%-24s %5s %-8s %7s %8s %9s %6s  %s\n", "POLICY", "REV", "STATE",
             "BATCH", "RELEASED", "COMMITTED", "FAILED", "REASON");
    for (size_t i = 0; i < v.n_pols; i++) {
      fv_pol_t *p = v.pols[i];
      if (!p->ro || (name && p != fp))
        continue;
      if (o->json) {
        json_array_append_new(a, rollout_json(p));
        continue;
      }
      char batch[24];
      snprintf(batch, sizeof(batch), "%u/%u", p->ro->batch + 1, p->ro->batches);
      printf("%-24s %5llu %-8s %7s %8u %9u %6u  %s\n", p->name,
             (unsigned long long)p->ro->revision,
             sl_fleet_rollout_state_name(p->ro->state), batch, p->ro->released,
             p->ro->committed, p->ro->failed, p->ro->reason);
    }
    if (o->json) {
      char *s = json_dumps(a, JSON_INDENT(2));
      printf("%s\n", s ? s : "[]");
      free(s);
    }
    json_decref(a);
    goto out;
  }
  Sluice__V1__Rollout *r = fp->ro;
  if ((int)r->state == SL_FLEET_RO_DONE) {
    fprintf(stderr, "sluice fleet rollout %s: %s revision %llu is done\n", verb,
            name, (unsigned long long)r->revision);
    rc = FLEET_EXIT_FAIL;
    goto out;
  }
  char *keep_reason = r->reason;
  if (pause) {
    r->state = (Sluice__V1__RolloutState)SL_FLEET_RO_PAUSED;
    r->reason = "paused by the operator";
  } else {
    if ((int)r->state == SL_FLEET_RO_STOPPED)
      r->failed_base = r->failed; /* forgive the failures seen so far */
    r->state = (Sluice__V1__RolloutState)SL_FLEET_RO_RUNNING;
    r->batch_started_ns = sl_now_wall_ns();
    r->reason = "resumed by the operator";
  }
  char *keep_writer = r->writer;
  r->writer = "cli";
  r->updated_ns = sl_now_wall_ns();
  rc = write_rollout(k, r);
  r->writer = keep_writer;
  r->reason = keep_reason;
  if (!rc) {
    fleet_event(k, name, "rollout", 0, r->revision,
                pause ? "paused" : "resumed", NULL);
    char err[256];
    sl_fleet_kafka_flush(k, 5000, err, sizeof(err));
    printf("rollout of %s revision %llu %s\n", name,
           (unsigned long long)r->revision, pause ? "paused" : "resumed");
  }
out:
  sl_fleet_reader_close(rd);
  fv_free(&v);
  sl_fleet_kafka_close(k);
  return rc;
}
