/*
 * daemon/cmd/fleet_view.c: the latest record per key of the fleet topics,
 * as every `sluice fleet` command reads them (the centre keeps no state of
 * its own: it is all in the compacted topics).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/cmd/fleet_int.h"

void fv_init(fleet_view_t *v) {
  memset(v, 0, sizeof(*v));
}

static void node_free(fv_node_t *n) {
  if (n->inv)
    sluice__v1__inventory__free_unpacked(n->inv, NULL);
  if (n->st)
    sluice__v1__fleet_status__free_unpacked(n->st, NULL);
  free(n->labels);
  free(n->refs);
  free(n->batch_id);
  free(n->id);
  free(n);
}

void fv_free(fleet_view_t *v) {
  for (size_t i = 0; i < v->n_nodes; i++)
    node_free(v->nodes[i]);
  for (size_t i = 0; i < v->n_pols; i++) {
    if (v->pols[i]->p)
      sluice__v1__policy__free_unpacked(v->pols[i]->p, NULL);
    if (v->pols[i]->ro)
      sluice__v1__rollout__free_unpacked(v->pols[i]->ro, NULL);
    free(v->pols[i]->name);
    free(v->pols[i]);
  }
  free(v->nodes);
  free(v->index);
  free(v->pols);
  memset(v, 0, sizeof(*v));
}

static size_t slot(const fleet_view_t *v, const char *id) {
  size_t h = sl_fleet_murmur2(id, strlen(id)) & (v->index_cap - 1);
  while (v->index[h] != SIZE_MAX && strcmp(v->nodes[v->index[h]]->id, id))
    h = (h + 1) & (v->index_cap - 1);
  return h;
}

static int grow_index(fleet_view_t *v) {
  size_t cap = v->index_cap ? v->index_cap * 2 : 1024;
  size_t *ix = malloc(cap * sizeof(*ix));
  if (!ix)
    return -ENOMEM;
  for (size_t i = 0; i < cap; i++)
    ix[i] = SIZE_MAX;
  free(v->index);
  v->index = ix;
  v->index_cap = cap;
  for (size_t i = 0; i < v->n_nodes; i++)
    v->index[slot(v, v->nodes[i]->id)] = i;
  return 0;
}

fv_node_t *fv_node(fleet_view_t *v, const char *id, bool create) {
  if (v->index_cap) {
    size_t h = slot(v, id);
    if (v->index[h] != SIZE_MAX)
      return v->nodes[v->index[h]];
  }
  if (!create)
    return NULL;
  if ((v->n_nodes + 1) * 2 > v->index_cap && grow_index(v))
    return NULL;
  if (v->n_nodes == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 256;
    fv_node_t **nn = realloc(v->nodes, cap * sizeof(*nn));
    if (!nn)
      return NULL;
    v->nodes = nn;
    v->cap = cap;
  }
  fv_node_t *n = calloc(1, sizeof(*n));
  if (!n || !(n->id = strdup(id))) {
    free(n);
    return NULL;
  }
  v->nodes[v->n_nodes] = n;
  v->index[slot(v, id)] = v->n_nodes++;
  return n;
}

size_t fv_node_index(fleet_view_t *v, const char *id) {
  if (!v->index_cap)
    return SIZE_MAX;
  return v->index[slot(v, id)];
}

fv_pol_t *fv_pol(fleet_view_t *v, const char *name, bool create) {
  for (size_t i = 0; i < v->n_pols; i++)
    if (!strcmp(v->pols[i]->name, name))
      return v->pols[i];
  if (!create)
    return NULL;
  fv_pol_t **np = realloc(v->pols, (v->n_pols + 1) * sizeof(*np));
  if (!np)
    return NULL;
  v->pols = np;
  fv_pol_t *p = calloc(1, sizeof(*p));
  if (!p || !(p->name = strdup(name))) {
    free(p);
    return NULL;
  }
  v->pols[v->n_pols++] = p;
  return p;
}

static void set_labels(fv_node_t *n) {
  free(n->labels);
  n->labels = NULL;
  n->n_labels = 0;
  size_t cnt = n->inv ? n->inv->n_labels : n->st ? n->st->n_labels : 0;
  if (!cnt || !(n->labels = calloc(cnt, sizeof(*n->labels))))
    return;
  for (size_t i = 0; i < cnt; i++) {
    if (n->inv)
      n->labels[i] =
          (sl_fleet_label_t){n->inv->labels[i]->key, n->inv->labels[i]->value};
    else
      n->labels[i] =
          (sl_fleet_label_t){n->st->labels[i]->key, n->st->labels[i]->value};
  }
  n->n_labels = cnt;
}

static void desired(fleet_view_t *v, const char *id, const void *val,
                    size_t vlen) {
  Sluice__V1__Signed *s = sluice__v1__signed__unpack(NULL, vlen, val);
  if (!s)
    return;
  fv_node_t *n = fv_node(v, id, true);
  if (!n)
    goto out;
  if (s->kind == SLUICE__V1__SIGNED__KIND__DECOMMISSION) {
    Sluice__V1__Decommission *d =
        sluice__v1__decommission__unpack(NULL, s->payload.len, s->payload.data);
    if (d && d->generation >= n->gen) {
      n->gen = d->generation;
      n->decommissioned = true;
      v->changed = true;
    }
    if (d)
      sluice__v1__decommission__free_unpacked(d, NULL);
    goto out;
  }
  Sluice__V1__DesiredConfig *dc =
      sluice__v1__desired_config__unpack(NULL, s->payload.len, s->payload.data);
  if (!dc)
    goto out;
  /* Once live (the renderer's own writes are in memory before they come
   * back), a newer generation, or the same one with other content, was
   * written by someone else: another renderer. */
  if (v->live && (dc->generation > n->gen ||
                  (dc->generation == n->gen && n->desired_gen == n->gen &&
                   strcmp(dc->config_sha256, n->sha))))
    v->foreign++;
  if (dc->generation > n->gen ||
      (dc->generation == n->gen && dc->generation > n->desired_gen)) {
    char refs[4096] = "";
    size_t at = 0;
    for (size_t i = 0; i < dc->n_policies; i++) {
      int l = snprintf(refs + at, sizeof(refs) - at, "%s%s@%llu", i ? "," : "",
                       dc->policies[i]->name,
                       (unsigned long long)dc->policies[i]->revision);
      if (l < 0 || (size_t)l >= sizeof(refs) - at)
        break;
      at += (size_t)l;
    }
    n->gen = n->desired_gen = dc->generation;
    n->decommissioned = false;
    snprintf(n->sha, sizeof(n->sha), "%s", dc->config_sha256);
    free(n->refs);
    n->refs = strdup(refs);
    free(n->batch_id);
    n->batch_id = strdup(dc->batch_id);
  }
  sluice__v1__desired_config__free_unpacked(dc, NULL);
out:
  sluice__v1__signed__free_unpacked(s, NULL);
}

void fv_record(void *opaque, int topic, int32_t partition, int64_t offset,
               const char *key, size_t klen, const void *val, size_t vlen) {
  fleet_view_t *v = opaque;
  char id[512];
  (void)partition;
  (void)offset;
  if (!key || !klen || klen >= sizeof(id) || !val)
    return; /* tombstones and unkeyed records are not fleet records */
  memcpy(id, key, klen);
  id[klen] = 0;
  v->records++;
  switch (topic) {
  case SL_FT_POLICIES: {
    Sluice__V1__Policy *p = sluice__v1__policy__unpack(NULL, vlen, val);
    fv_pol_t *fp = p ? fv_pol(v, id, true) : NULL;
    if (!fp) {
      if (p)
        sluice__v1__policy__free_unpacked(p, NULL);
      return;
    }
    if (fp->p && fp->p->revision > p->revision) {
      sluice__v1__policy__free_unpacked(p, NULL);
      return;
    }
    if (fp->p)
      sluice__v1__policy__free_unpacked(fp->p, NULL);
    fp->p = p;
    v->changed = true;
    return;
  }
  case SL_FT_ROLLOUTS: {
    Sluice__V1__Rollout *r = sluice__v1__rollout__unpack(NULL, vlen, val);
    fv_pol_t *fp = r ? fv_pol(v, id, true) : NULL;
    if (!fp) {
      if (r)
        sluice__v1__rollout__free_unpacked(r, NULL);
      return;
    }
    if (fp->ro && (fp->ro->revision > r->revision ||
                   fp->ro->updated_ns > r->updated_ns)) {
      sluice__v1__rollout__free_unpacked(r, NULL);
      return;
    }
    if (fp->ro)
      sluice__v1__rollout__free_unpacked(fp->ro, NULL);
    fp->ro = r;
    if (!strcmp(r->writer, "cli"))
      fp->ro_dirty = true;
    v->changed = true;
    return;
  }
  case SL_FT_DESIRED:
    desired(v, id, val, vlen);
    return;
  case SL_FT_STATUS: {
    Sluice__V1__FleetStatus *s =
        sluice__v1__fleet_status__unpack(NULL, vlen, val);
    fv_node_t *n = s ? fv_node(v, id, true) : NULL;
    if (!n) {
      if (s)
        sluice__v1__fleet_status__free_unpacked(s, NULL);
      return;
    }
    if (n->st)
      sluice__v1__fleet_status__free_unpacked(n->st, NULL);
    n->st = s;
    if (s->time_ns > n->seen_ns)
      n->seen_ns = s->time_ns;
    if (!n->inv)
      set_labels(n);
    v->changed = true;
    return;
  }
  case SL_FT_INVENTORY: {
    Sluice__V1__Inventory *iv = sluice__v1__inventory__unpack(NULL, vlen, val);
    fv_node_t *n = iv ? fv_node(v, id, true) : NULL;
    if (!n) {
      if (iv)
        sluice__v1__inventory__free_unpacked(iv, NULL);
      return;
    }
    if (n->inv)
      sluice__v1__inventory__free_unpacked(n->inv, NULL);
    n->inv = iv;
    if (iv->time_ns > n->seen_ns)
      n->seen_ns = iv->time_ns;
    set_labels(n);
    v->changed = true;
    return;
  }
  }
}

int fleet_exit_for(int rc) {
  if (rc == SL_ENOTFOUND)
    return FLEET_EXIT_NOTOPICS;
  if (rc == SL_ECONFIG)
    return FLEET_EXIT_USAGE;
  return FLEET_EXIT_FAIL;
}

int fleet_connect(const fleet_opts_t *o, sl_fleet_kafka_t **k) {
  char err[512];
  int rc = sl_fleet_kafka_open(&o->k, k, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sluice fleet: %s\n", err);
    return fleet_exit_for(rc);
  }
  return 0;
}

int fleet_read_all(sl_fleet_kafka_t *k, unsigned topics, fleet_view_t *v,
                   sl_fleet_reader_t **keep) {
  sl_fleet_reader_t *r;
  char err[512];
  bool end = false;
  int rc = sl_fleet_reader_open(k, topics, &r, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sluice fleet: %s\n", err);
    return fleet_exit_for(rc);
  }
  while (!end) {
    rc = sl_fleet_reader_poll(r, 30000, true, fv_record, v, &end, err,
                              sizeof(err));
    if (rc < 0) {
      fprintf(stderr, "sluice fleet: %s\n", err);
      sl_fleet_reader_close(r);
      return FLEET_EXIT_FAIL;
    }
    if (!end && rc == 0) {
      fprintf(stderr, "sluice fleet: the fleet topics were not read to their "
                      "end within 30 s (brokers unreachable?)\n");
      sl_fleet_reader_close(r);
      return FLEET_EXIT_FAIL;
    }
  }
  if (keep)
    *keep = r;
  else
    sl_fleet_reader_close(r);
  return 0;
}

void fleet_event(sl_fleet_kafka_t *k, const char *subject, const char *what,
                 int phase, uint64_t gen, const char *reason,
                 const char *message) {
  Sluice__V1__FleetEvent e = SLUICE__V1__FLEET_EVENT__INIT;
  char actor[300], host[256] = "?", err[256];
  uint8_t buf[2048];
  gethostname(host, sizeof(host) - 1);
  snprintf(actor, sizeof(actor), "fleet:%s", host);
  e.subject = (char *)subject;
  e.what = (char *)what;
  e.phase = phase;
  e.generation = gen;
  e.reason = (char *)(reason ? reason : "");
  e.message = (char *)(message ? message : "");
  e.time_ns = sl_now_wall_ns();
  e.actor = actor;
  if (sluice__v1__fleet_event__get_packed_size(&e) > sizeof(buf))
    return;
  size_t n = sluice__v1__fleet_event__pack(&e, buf);
  (void)sl_fleet_kafka_produce(k, SL_FT_EVENTS, subject, buf, n, err,
                               sizeof(err));
}

const char *fleet_phase_name(int p) {
  static const char *const names[] = {
      "UNKNOWN",        "RECEIVED", "VALIDATING",     "REJECTED",
      "WAITING_WINDOW", "APPLYING", "VERIFYING",      "COMMITTED",
      "ROLLED_BACK",    "CONFLICT", "DECOMMISSIONED", "IDLE"};
  return p >= 0 && p < (int)(sizeof(names) / sizeof(names[0])) ? names[p]
                                                               : "UNKNOWN";
}
