/*
 * MQTT ingest: QoS 1 redeliveries of messages already stored are
 * recognised and acknowledged without being stored again (docs/MQTT.md,
 * "Redeliveries").
 *
 * libmosquitto does not hand the DUP flag to on_message, so the rule rests
 * on what MQTT guarantees about a persistent session instead:
 *   - the broker resends unacknowledged QoS 1 messages only after a
 *     reconnect, first, in their original order, with their packet ids;
 *   - it never has more than its in-flight window W (our MQTT 5 receive
 *     maximum) unacknowledged, and PUBACKs are processed in order, so of
 *     the messages of one connection only the last W can still be
 *     unacknowledged;
 *   - what sluice committed is a prefix of what it read.
 * So the redeliveries that sluice already stored are exactly a run at the
 * start of a resumed session whose (packet id, hash of topic and payload)
 * match the last W messages committed on earlier connections ("prev").
 * The first message of a connection that does not match ends the run:
 * prev is forgotten, and nothing later on that connection is compared.
 * A new session (CONNACK session present = 0) forgets prev at once.
 *
 * State: prev and the ring of the current connection's last W messages,
 * written to the state db (key "mr/<client id>") in the same store group
 * as the events they describe, so it holds across kill -9 of sluice and
 * restarts of the broker. On a failed commit the in-memory state goes back
 * to what the store holds.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "broker/log.h"
#include "broker/mqtt.h"

#define REC_MAGIC "SMR1"
#define REC_HEAD 13         /* magic, version, nprev, nring */
#define REC_ENTRY 10        /* mid (2), hash (8) */
#define PREV_MAX 65535u     /* packet ids are 16 bits */
#define RING_MIN 20u        /* Mosquitto's default max_inflight_messages */
#define RING_MAX 32768u     /* well below the packet id cycle */

typedef struct mr_entry {
  uint16_t mid;
  uint64_t hash;
} mr_entry_t;

struct mqtt_redeliver {
  char key[200];     /* state db key */
  mr_entry_t *prev;  /* last W committed on earlier connections */
  size_t nprev;
  bool matching;     /* this connection has only seen matching messages */
  mr_entry_t *ring;  /* the current connection's last W QoS 1 messages */
  size_t cap, head, n;
  bool dirty;        /* differs from what the store holds */
  sl_metric_t *dups; /* redeliveries acknowledged without storing */
};

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static mr_entry_t *ring_at(mqtt_redeliver_t *r, size_t i) {
  return &r->ring[(r->head + r->cap - r->n + i) % r->cap];
}

/* Loads prev from the store: everything recorded before this process came
 * from an earlier connection. A missing or corrupt record leaves it empty
 * (then a redelivery is stored again: a duplicate, never a loss). */
static void load(sl_mqtt_t *mq) {
  mqtt_redeliver_t *r = mq->rd;
  size_t vlen = 0, cap = REC_HEAD + (size_t)(PREV_MAX + RING_MAX) * REC_ENTRY + 8;
  uint8_t *buf = malloc(cap);
  r->nprev = 0;
  r->n = r->head = 0;
  r->dirty = false;
  r->matching = true;
  if (!buf)
    return;
  if (sl_store_state_get(mq->dm->st, r->key, strlen(r->key), buf, cap,
                         &vlen) < 0)
    goto out;
  if (vlen < REC_HEAD + 8 || memcmp(buf, REC_MAGIC, 4) || buf[4] != 1 ||
      get_le(buf + vlen - 8, 8) != XXH3_64bits(buf, vlen - 8))
    goto corrupt;
  size_t n = get_le(buf + 5, 4) + get_le(buf + 9, 4);
  if (vlen != REC_HEAD + n * REC_ENTRY + 8)
    goto corrupt;
  /* The newest PREV_MAX (the rest cannot be unacknowledged). */
  for (size_t i = n > PREV_MAX ? n - PREV_MAX : 0; i < n; i++) {
    const uint8_t *e = buf + REC_HEAD + i * REC_ENTRY;
    r->prev[r->nprev].mid = (uint16_t)get_le(e, 2);
    r->prev[r->nprev].hash = get_le(e + 2, 8);
    r->nprev++;
  }
  goto out;
corrupt:
  sl_warn(SL_LOG_CTX_MQTT, "ingest",
          "stored MQTT redelivery record is corrupt; redeliveries of the "
          "last messages before the restart may be stored twice");
out:
  free(buf);
}

int mqtt__redeliver_init(sl_mqtt_t *mq, const char *client_id) {
  mqtt_redeliver_t *r = calloc(1, sizeof(*r));
  uint64_t w = mq->cfg->mqtt.receive_maximum;
  if (!r)
    return -ENOMEM;
  mq->rd = r;
  snprintf(r->key, sizeof(r->key), "mr/%s", client_id);
  r->cap = (size_t)SL_MIN(SL_MAX(w, RING_MIN), RING_MAX);
  if (!(r->ring = calloc(r->cap, sizeof(*r->ring))) ||
      !(r->prev = calloc(PREV_MAX, sizeof(*r->prev))))
    return -ENOMEM;
  r->dups = sl_metrics_counter(
      mq->dm->mx, "sluice_mqtt_redeliveries_dropped_total",
      "QoS 1 redeliveries of messages already stored, acknowledged without "
      "storing them again",
      NULL);
  load(mq);
  return 0;
}

void mqtt__redeliver_free(sl_mqtt_t *mq) {
  if (!mq->rd)
    return;
  free(mq->rd->ring);
  free(mq->rd->prev);
  free(mq->rd);
  mq->rd = NULL;
}

void mqtt__redeliver_connected(sl_mqtt_t *mq, bool session_present) {
  mqtt_redeliver_t *r = mq->rd;
  if (!r)
    return;
  if (!session_present) {
    /* A new session: the broker has nothing to resend. */
    if (r->nprev || r->n)
      r->dirty = true;
    r->nprev = r->n = r->head = 0;
    r->matching = true;
    return;
  }
  /* What the last connection committed joins the candidates (a packet id
   * seen again replaces its older entry). */
  for (size_t i = 0; i < r->n; i++) {
    const mr_entry_t *e = ring_at(r, i);
    size_t j;
    for (j = 0; j < r->nprev && r->prev[j].mid != e->mid; j++)
      ;
    if (j < r->nprev) {
      memmove(&r->prev[j], &r->prev[j + 1],
              (r->nprev - j - 1) * sizeof(*r->prev));
      r->nprev--;
    }
    if (r->nprev == PREV_MAX) {
      memmove(&r->prev[0], &r->prev[1], (r->nprev - 1) * sizeof(*r->prev));
      r->nprev--;
    }
    r->prev[r->nprev++] = *e;
  }
  r->n = r->head = 0;
  r->matching = true;
}

bool mqtt__redeliver_seen(sl_mqtt_t *mq, const struct mosquitto_message *msg) {
  mqtt_redeliver_t *r = mq->rd;
  bool dup = false;
  if (!r || msg->qos < 1 || msg->mid <= 0 || msg->mid > 65535)
    return false;
  uint64_t h = XXH3_64bits_withSeed(
      msg->payload ? msg->payload : "", (size_t)SL_MAX(msg->payloadlen, 0),
      XXH3_64bits(msg->topic, strlen(msg->topic)));
  uint16_t mid = (uint16_t)msg->mid;
  if (r->matching) {
    for (size_t j = 0; j < r->nprev; j++)
      if (r->prev[j].mid == mid && r->prev[j].hash == h) {
        dup = true;
        break;
      }
    if (!dup) {
      /* The run of already stored redeliveries is over. */
      r->matching = false;
      if (r->nprev)
        r->dirty = true;
      r->nprev = 0;
    }
  }
  r->ring[r->head] = (mr_entry_t){.mid = mid, .hash = h};
  r->head = (r->head + 1) % r->cap;
  if (r->n < r->cap)
    r->n++;
  r->dirty = true;
  if (dup)
    sl_metric_add(r->dups, 1);
  return dup;
}

bool mqtt__redeliver_dirty(const sl_mqtt_t *mq) {
  return mq->rd && mq->rd->dirty;
}

int mqtt__redeliver_put(sl_mqtt_t *mq, sl_store_group_t *g) {
  mqtt_redeliver_t *r = mq->rd;
  size_t n, len;
  uint8_t *buf;
  int rc;
  if (!r || !r->dirty)
    return 0;
  n = r->nprev + r->n;
  len = REC_HEAD + n * REC_ENTRY + 8;
  if (!(buf = malloc(len)))
    return -ENOMEM;
  memcpy(buf, REC_MAGIC, 4);
  buf[4] = 1;
  put_le(buf + 5, r->nprev, 4);
  put_le(buf + 9, r->n, 4);
  for (size_t i = 0; i < n; i++) {
    const mr_entry_t *e = i < r->nprev ? &r->prev[i] : ring_at(r, i - r->nprev);
    put_le(buf + REC_HEAD + i * REC_ENTRY, e->mid, 2);
    put_le(buf + REC_HEAD + i * REC_ENTRY + 2, e->hash, 8);
  }
  put_le(buf + len - 8, XXH3_64bits(buf, len - 8), 8);
  rc = sl_store_group_state_put(g, r->key, strlen(r->key), buf, len);
  free(buf);
  return rc;
}

void mqtt__redeliver_submitted(sl_mqtt_t *mq) {
  if (mq->rd)
    mq->rd->dirty = false;
}

void mqtt__redeliver_failed(sl_mqtt_t *mq) {
  /* Entries of messages that are not durable must never match a
   * redelivery (that would lose them): back to what the store holds. */
  if (mq->rd)
    load(mq);
}
