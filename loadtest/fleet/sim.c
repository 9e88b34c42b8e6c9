/* Simulated fleet nodes over the real node machine: see sim.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "loadtest/fleet/sim.h"
#include "sluice/v1/fleet.pb-c.h"

typedef struct snode {
  fsim_t *s;
  char id[64];
  char site[24];
  sl_fleet_label_t labels[2];
  sl_fleet_node_t *m;
  void *state; /* persisted */
  size_t state_len;
  bool online;
  char level[32]; /* of the running layer */
  uint64_t bad_events;
  unsigned docs, docs_bad;
  /* the newest desired record not offered yet */
  void *rec;
  size_t rec_len;
  int64_t rec_off;
} snode_t;

typedef struct fleet_index fleet_index_t;

struct fsim {
  fsim_conf_t c;
  sl_fleet_kafka_t *k;
  sl_fleet_reader_t *r;
  sl_fleet_key_t *key;
  snode_t *n;
  size_t count;
  fleet_index_t *ix;
  bool caught_up;
  int32_t parts;
  rd_kafka_topic_t *rkt;
  unsigned bad_partitions;
  int err;
  char errmsg[256];
};

/* ---- a small id -> node index ------------------------------------------- */

struct fleet_index {
  size_t cap;
  int64_t *slot;
};

static size_t lookup(const fsim_t *s, const char *key, size_t klen) {
  size_t h = sl_fleet_murmur2(key, klen) & (s->ix->cap - 1);
  for (;;) {
    int64_t v = s->ix->slot[h];
    if (v < 0)
      return SIZE_MAX;
    if (strlen(s->n[v].id) == klen && !memcmp(s->n[v].id, key, klen))
      return (size_t)v;
    h = (h + 1) & (s->ix->cap - 1);
  }
}

/* ---- ops ------------------------------------------------------------------
 */

static void level_of(const char *json, char *out, size_t len) {
  json_error_t je;
  json_t *j = json_loads(json, 0, &je);
  const char *l =
      json_string_value(json_object_get(json_object_get(j, "log"), "level"));
  snprintf(out, len, "%s", l ? l : "");
  json_decref(j);
}

static int op_validate(void *o, const char *json, char *err, size_t errlen) {
  snode_t *n = o;
  char lvl[32];
  json_error_t je;
  json_t *j = json_loads(json, 0, &je);
  if (!j) {
    snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
    return -1;
  }
  json_decref(j);
  level_of(json, lvl, sizeof(lvl));
  n->docs++;
  if (!strcmp(lvl, "error") || !strcmp(lvl, "invalid"))
    n->docs_bad++;
  if (!strcmp(lvl, "invalid")) {
    snprintf(err, errlen,
             "fleet layer: log.level: 'invalid' is not one of "
             "debug, info, warn, error");
    return -1;
  }
  return 0;
}

static int op_apply(void *o, const char *json, char *err, size_t errlen) {
  snode_t *n = o;
  (void)err;
  (void)errlen;
  level_of(json, n->level, sizeof(n->level));
  return SL_FLEET_APPLIED;
}

static void op_restart(void *o, const char *why) {
  (void)o;
  (void)why;
}

static int op_persist(void *o, const void *state, size_t len) {
  snode_t *n = o;
  void *c = malloc(len ? len : 1);
  if (!c)
    return -ENOMEM;
  memcpy(c, state, len);
  free(n->state);
  n->state = c;
  n->state_len = len;
  return 0;
}

static void op_health(void *o, sl_fleet_health_t *h) {
  snode_t *n = o;
  if (!strcmp(n->level, "error"))
    n->bad_events += 50; /* the bad policy: every event refused */
  h->ready = true;
  h->uplink = true;
  h->events_in = 0;
  h->events_bad = n->bad_events;
  h->backlog = 0;
  h->uplink_state = 1;
}

static void produce(snode_t *n, int topic, const void *rec, size_t len) {
  char err[256];
  if (sl_fleet_kafka_produce(n->s->k, topic, n->id, rec, len, err,
                             sizeof(err)) &&
      !n->s->err) {
    n->s->err = SL_EKAFKA;
    snprintf(n->s->errmsg, sizeof(n->s->errmsg), "%s", err);
  }
}

static void op_status(void *o, const void *rec, size_t len) {
  produce(o, SL_FT_STATUS, rec, len);
}

static void op_event(void *o, const void *rec, size_t len) {
  produce(o, SL_FT_EVENTS, rec, len);
}

static int64_t op_now(void *o) {
  (void)o;
  return sl_now_wall_ns();
}

static int64_t op_mono(void *o) {
  (void)o;
  return (int64_t)sl_now_mono_ns();
}

static const sl_fleet_ops_t ops = {.validate = op_validate,
                                   .apply = op_apply,
                                   .restart = op_restart,
                                   .persist = op_persist,
                                   .health = op_health,
                                   .publish_status = op_status,
                                   .publish_event = op_event,
                                   .now_ns = op_now,
                                   .mono_ns = op_mono};

/* ---- the simulator --------------------------------------------------------
 */

static void publish_inventory(snode_t *n) {
  Sluice__V1__Inventory iv = SLUICE__V1__INVENTORY__INIT;
  Sluice__V1__Inventory__LabelsEntry e[2], *ep[2];
  size_t cnt = 0;
  uint8_t buf[1024];
  for (size_t i = 0; i < 2; i++) {
    if (!n->labels[i].key)
      continue;
    sluice__v1__inventory__labels_entry__init(&e[cnt]);
    e[cnt].key = (char *)n->labels[i].key;
    e[cnt].value = (char *)n->labels[i].value;
    ep[cnt] = &e[cnt];
    cnt++;
  }
  iv.node_id = n->id;
  iv.labels = ep;
  iv.n_labels = cnt;
  iv.agent_version = "sim";
  iv.hostname = "sim";
  iv.time_ns = sl_now_wall_ns();
  produce(n, SL_FT_INVENTORY, buf, sluice__v1__inventory__pack(&iv, buf));
}

int fsim_open(const fsim_conf_t *c, fsim_t **out, char *err, size_t errlen) {
  fsim_t *s = calloc(1, sizeof(*s));
  sl_fleet_kconf_t kc = {.brokers = c->brokers, .prefix = c->prefix};
  int rc;

  *out = NULL;
  if (!s)
    return -ENOMEM;
  s->c = *c;
  s->count = c->nodes;
  if ((rc = sl_fleet_key_load(c->verify_key, false, &s->key, err, errlen)) ||
      (rc = sl_fleet_kafka_open(&kc, &s->k, err, errlen)) ||
      (rc = sl_fleet_kafka_partitions(s->k, SL_FT_DESIRED, &s->parts, err,
                                      errlen)))
    goto fail;
  s->rkt = rd_kafka_topic_new(sl_fleet_kafka_handle(s->k),
                              sl_fleet_kafka_topic(s->k, SL_FT_DESIRED), NULL);
  rc = -ENOMEM;
  if (!(s->n = calloc(s->count ? s->count : 1, sizeof(*s->n))) ||
      !(s->ix = calloc(1, sizeof(*s->ix))))
    goto fail;
  s->ix->cap = 1024;
  while (s->ix->cap < s->count * 2)
    s->ix->cap *= 2;
  if (!(s->ix->slot = malloc(s->ix->cap * sizeof(int64_t))))
    goto fail;
  for (size_t i = 0; i < s->ix->cap; i++)
    s->ix->slot[i] = -1;
  for (size_t i = 0; i < s->count; i++) {
    snode_t *n = &s->n[i];
    n->s = s;
    n->online = true;
    snprintf(n->id, sizeof(n->id), "%s-%05zu", c->id_prefix, i);
    size_t nl = 0;
    if (c->sites) {
      snprintf(n->site, sizeof(n->site), "s%zu", i % c->sites);
      n->labels[nl++] = (sl_fleet_label_t){"site", n->site};
    }
    n->labels[nl++] = (sl_fleet_label_t){i < c->canaries ? "canary" : "role",
                                         i < c->canaries ? "yes" : "edge"};
    sl_fleet_node_conf_t nc = {
        .node_id = n->id,
        .verify_key = s->key,
        .labels = n->labels,
        .n_labels = nl,
        .agent_version = "sim",
        .max_trial_starts = 3,
        .heartbeat_ns = (c->heartbeat_ms ? c->heartbeat_ms : 5000) * 1000000};
    const char *boot;
    if ((rc = sl_fleet_node_open(&nc, &ops, n, NULL, 0, &n->m)) ||
        (rc = sl_fleet_node_boot(n->m, &boot))) {
      snprintf(err, errlen, "node %s: %s", n->id, sl_strerror(rc));
      goto fail;
    }
    size_t h = sl_fleet_murmur2(n->id, strlen(n->id)) & (s->ix->cap - 1);
    while (s->ix->slot[h] >= 0)
      h = (h + 1) & (s->ix->cap - 1);
    s->ix->slot[h] = (int64_t)i;
    publish_inventory(n);
  }
  if ((rc = sl_fleet_kafka_flush(s->k, 60000, err, errlen)) ||
      (rc =
           sl_fleet_reader_open(s->k, 1u << SL_FT_DESIRED, &s->r, err, errlen)))
    goto fail;
  *out = s;
  return 0;
fail:
  fsim_close(s);
  return rc;
}

static void on_desired(void *opaque, int topic, int32_t partition,
                       int64_t offset, const char *key, size_t klen,
                       const void *val, size_t vlen) {
  fsim_t *s = opaque;
  (void)topic;
  if (!key || !val)
    return;
  int32_t java = sl_fleet_partition(key, klen, s->parts);
  int32_t rdk = rd_kafka_msg_partitioner_murmur2_random(s->rkt, key, klen,
                                                        s->parts, NULL, NULL);
  if (partition != java || partition != rdk)
    s->bad_partitions++;
  size_t i = lookup(s, key, klen);
  if (i == SIZE_MAX)
    return; /* another node's document */
  snode_t *n = &s->n[i];
  void *c = malloc(vlen);
  if (!c)
    return;
  memcpy(c, val, vlen);
  free(n->rec);
  n->rec = c;
  n->rec_len = vlen;
  n->rec_off = offset;
}

int fsim_poll(fsim_t *s, int ms, char *err, size_t errlen) {
  bool end = false;
  int rc =
      sl_fleet_reader_poll(s->r, ms, false, on_desired, s, &end, err, errlen);
  if (rc < 0)
    return rc;
  if (end)
    s->caught_up = true;
  for (size_t i = 0; i < s->count; i++) {
    snode_t *n = &s->n[i];
    if (!n->online)
      continue;
    if (s->caught_up && n->rec) {
      sl_fleet_node_offer(n->m, n->rec, n->rec_len, n->rec_off);
      free(n->rec);
      n->rec = NULL;
    }
    sl_fleet_node_tick(n->m);
  }
  rd_kafka_poll(sl_fleet_kafka_handle(s->k), 0);
  if (s->err) {
    snprintf(err, errlen, "%s", s->errmsg);
    return s->err;
  }
  return 0;
}

void fsim_close(fsim_t *s) {
  if (!s)
    return;
  sl_fleet_reader_close(s->r);
  for (size_t i = 0; s->n && i < s->count; i++) {
    sl_fleet_node_free(s->n[i].m);
    free(s->n[i].state);
    free(s->n[i].rec);
  }
  free(s->n);
  if (s->ix)
    free(s->ix->slot);
  free(s->ix);
  if (s->rkt)
    rd_kafka_topic_destroy(s->rkt);
  sl_fleet_kafka_close(s->k);
  sl_fleet_key_free(s->key);
  free(s);
}

size_t fsim_count(const fsim_t *s) {
  return s->count;
}
const char *fsim_id(const fsim_t *s, size_t i) {
  return s->n[i].id;
}
void fsim_set_online(fsim_t *s, size_t i, bool on) {
  s->n[i].online = on;
}
void fsim_info(const fsim_t *s, size_t i, sl_fleet_node_info_t *info) {
  sl_fleet_node_info(s->n[i].m, info);
}
void fsim_docs(const fsim_t *s, size_t i, unsigned *docs, unsigned *bad) {
  *docs = s->n[i].docs;
  *bad = s->n[i].docs_bad;
}
const char *fsim_level(const fsim_t *s, size_t i) {
  return s->n[i].level;
}
unsigned fsim_bad_partitions(const fsim_t *s) {
  return s->bad_partitions;
}
