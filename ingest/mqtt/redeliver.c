/*
 * MQTT ingest: QoS 1 redeliveries of messages already stored are
 * recognised and acknowledged without being stored again (docs/MQTT.md,
 * "Redeliveries").
 *
 * A message is taken for a resend of one already stored when a durable
 * record (its commit completed) among the last RECENT QoS 1 messages has
 * the same packet id and hash (XXH3 of topic and payload), the session was
 * resumed, and:
 *   - with the DUP flag (ingest/mqtt/mqtt_dup.h, libmosquitto 2.0): DUP is set.
 *     A PUBLISH without DUP is never taken for a resend;
 *   - without it: the message is part of the run at the start of the
 *     connection. The broker resends unacknowledged QoS 1 messages only
 *     after a reconnect, before anything new, in their original order,
 *     with their packet ids, and what sluice committed is a prefix of what
 *     it read (every QoS 1 message is recorded), so the resends already
 *     stored are such a run; the first message that does not match ends it.
 * The first new message of a connection makes everything recorded before
 * the connection stop being a candidate (the "floor"). A new session
 * (CONNACK session present = 0) forgets everything (a new "epoch"). A
 * record older than RECENT messages is never a candidate: Mosquitto
 * allocates packet ids in sequence, so an id comes back only after 65535
 * others.
 *
 * State db, written in the same store group as the events they describe
 * (so it holds across kill -9 of sluice and restarts of the broker):
 *   "mr/<client id>"           SMR2, epoch, floor, XXH3 checksum
 *   "mr/<client id>/<mid hex>" epoch, counter, hash (one per packet id)
 * On a failed commit the in-memory state goes back to what the store holds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"
#include "ingest/mqtt/mqtt_dup.h"

#define META_MAGIC "SMR2"
#define META_LEN 24  /* magic, epoch (4), floor (8), checksum (8) */
#define ENTRY_LEN 20 /* epoch (4), counter (8), hash (8) */
#define NMID 65536u
#define RECENT 32768u /* records younger than this many messages */

typedef struct mr_entry {
  uint64_t counter; /* 0 = none */
  uint64_t hash;
} mr_entry_t;

struct mqtt_redeliver {
  char key[200]; /* meta key; entries append "/%04x" */
  size_t klen;
  mr_entry_t *e;   /* by packet id */
  uint8_t *dirty;  /* bitmap: entry to write with the next group */
  uint16_t *dlist; /* dirty ids, in order */
  size_t ndirty;
  uint32_t epoch;      /* bumped by every new session */
  uint64_t floor;      /* records at or below are not candidates */
  uint64_t counter;    /* last QoS 1 message recorded */
  uint64_t durable;    /* records up to here are committed */
  uint64_t conn_start; /* counter when this connection began */
  bool matching;       /* this connection has only seen matching messages */
  bool meta_dirty;
  bool dup_known;    /* the DUP flag can be read (ingest/mqtt/mqtt_dup.h) */
  bool warned;       /* a repeat not taken for a resend was logged */
  sl_metric_t *dups; /* redeliveries acknowledged without storing */
};

static size_t entry_key(const mqtt_redeliver_t *r, uint16_t mid, char *out) {
  memcpy(out, r->key, r->klen);
  return r->klen + (size_t)sprintf(out + r->klen, "/%04x", mid);
}

/* Loads the records from the store: all of them come from earlier
 * connections. A missing or corrupt meta record forgets them (then a
 * redelivery is stored again: a duplicate, never a loss). */
static void load(sl_mqtt_t *mq) {
  mqtt_redeliver_t *r = mq->rd;
  uint8_t b[META_LEN + ENTRY_LEN];
  char k[220];
  size_t vlen = 0;
  int rc;
  memset(r->e, 0, NMID * sizeof(*r->e));
  memset(r->dirty, 0, NMID / 8);
  r->ndirty = 0;
  r->counter = r->floor = 0;
  r->epoch = 0;
  r->matching = true;
  r->meta_dirty = false;
  rc = sl_store_state_get(mq->ic->st, r->key, r->klen, b, sizeof(b), &vlen);
  if (rc == SL_ENOTFOUND) {
    r->meta_dirty = true; /* entries are read only under a meta record */
    return;
  }
  if (rc < 0 || vlen != META_LEN || memcmp(b, META_MAGIC, 4) ||
      sl_get_le(b + 16, 8) != XXH3_64bits(b, 16)) {
    sl_warn(SL_LOG_CTX_MQTT, "ingest",
            "stored MQTT redelivery record is unreadable; redeliveries of "
            "the last messages before the restart may be stored twice");
    r->epoch = 1 + (uint32_t)XXH3_64bits(b, sizeof(b)); /* not the old one */
    r->meta_dirty = true;
    return;
  }
  r->epoch = (uint32_t)sl_get_le(b + 4, 4);
  r->floor = sl_get_le(b + 8, 8);
  for (uint32_t mid = 1; mid < NMID; mid++) {
    size_t kl = entry_key(r, (uint16_t)mid, k);
    if (sl_store_state_get(mq->ic->st, k, kl, b, sizeof(b), &vlen) < 0 ||
        vlen != ENTRY_LEN || sl_get_le(b, 4) != r->epoch)
      continue;
    r->e[mid].counter = sl_get_le(b + 4, 8);
    r->e[mid].hash = sl_get_le(b + 12, 8);
    r->counter = SL_MAX(r->counter, r->e[mid].counter);
  }
  r->floor = SL_MIN(r->floor, r->counter);
  r->durable = r->counter;
}

int mqtt__redeliver_init(sl_mqtt_t *mq, const char *client_id) {
  mqtt_redeliver_t *r = calloc(1, sizeof(*r));
  if (!r)
    return -ENOMEM;
  mq->rd = r;
  snprintf(r->key, sizeof(r->key), "mr/%s", client_id);
  r->klen = strlen(r->key);
  if (!(r->e = calloc(NMID, sizeof(*r->e))) ||
      !(r->dirty = calloc(NMID / 8, 1)) ||
      !(r->dlist = calloc(NMID, sizeof(*r->dlist))))
    return -ENOMEM;
  r->dups = sl_metrics_counter(
      mq->ic->mx, "sluice_mqtt_redeliveries_dropped_total",
      "QoS 1 redeliveries of messages already stored, acknowledged without "
      "storing them again",
      NULL);
  r->dup_known = sl_mqtt_dup_known();
  if (!r->dup_known) {
    int maj, min, rev;
    mosquitto_lib_version(&maj, &min, &rev);
    sl_warn(SL_LOG_CTX_MQTT, "ingest",
            "libmosquitto %d.%d.%d: the DUP flag of a PUBLISH cannot be read; "
            "redeliveries are recognised by packet id and content only "
            "(docs/MQTT.md, Redeliveries)",
            maj, min, rev);
  }
  load(mq);
  return 0;
}

void mqtt__redeliver_free(sl_mqtt_t *mq) {
  if (!mq->rd)
    return;
  free(mq->rd->e);
  free(mq->rd->dirty);
  free(mq->rd->dlist);
  free(mq->rd);
  mq->rd = NULL;
}

void mqtt__redeliver_connected(sl_mqtt_t *mq, bool session_present) {
  mqtt_redeliver_t *r = mq->rd;
  if (!r)
    return;
  if (!session_present && r->counter > r->floor) {
    /* A new session: the broker has nothing to resend. */
    r->epoch++;
    r->floor = r->counter;
    r->meta_dirty = true;
  }
  r->conn_start = r->counter;
  r->matching = true;
  r->warned = false;
}

static void mark(mqtt_redeliver_t *r, uint16_t mid) {
  if (r->dirty[mid / 8] & (1u << (mid % 8)))
    return;
  r->dirty[mid / 8] |= (uint8_t)(1u << (mid % 8));
  r->dlist[r->ndirty++] = mid;
}

bool mqtt__redeliver_seen(sl_mqtt_t *mq, const struct mosquitto_message *msg) {
  mqtt_redeliver_t *r = mq->rd;
  bool dup = false;
  if (!r || msg->qos < 1 || msg->mid <= 0 || msg->mid >= (int)NMID)
    return false;
  uint64_t h = XXH3_64bits_withSeed(
      msg->payload ? msg->payload : "", (size_t)SL_MAX(msg->payloadlen, 0),
      XXH3_64bits(msg->topic, strlen(msg->topic)));
  uint16_t mid = (uint16_t)msg->mid;
  const mr_entry_t *e = &r->e[mid];
  /* A PUBLISH without DUP is sent for the first time: never a
   * redelivery, whatever it looks like. */
  int dupflag = sl_mqtt_dup(msg, r->dup_known);
  /* Only a durable record: one whose commit is still in flight may yet
   * fail, and its message must then be stored from the redelivery. */
  bool same = e->counter > r->floor && e->counter <= r->durable &&
              e->counter + RECENT > r->counter && e->hash == h;
  if (dupflag == 1)
    dup = same; /* a resend, whenever it comes */
  else if (dupflag < 0 && r->matching)
    dup = same && e->counter <= r->conn_start; /* the run, without DUP */
  if (same && !dup && !r->warned) {
    /* Looks like a copy of a stored message but cannot be taken for one
     * (no DUP flag, or after new messages without it): stored again. */
    r->warned = true;
    sl_warn(SL_LOG_CTX_MQTT, "ingest",
            "packet id %u came again with the content of a message stored "
            "%llu QoS 1 messages earlier, DUP %s: stored again (a duplicate "
            "if the broker sent it twice); logged once per connection",
            mid, (unsigned long long)(r->counter + 1 - e->counter),
            dupflag < 0 ? "unknown"
            : dupflag   ? "set"
                        : "not set");
  }
  if (!dup && dupflag != 1 && r->matching) {
    /* A new message: the run of resends is over, nothing recorded before
     * this connection can come back on it. */
    r->matching = false;
    if (r->floor != r->conn_start) {
      r->floor = r->conn_start;
      r->meta_dirty = true;
    }
  }
  /* Recorded again when it is a redelivery: its PUBACK is queued again
   * and may be lost again. */
  r->e[mid].counter = ++r->counter;
  r->e[mid].hash = h;
  mark(r, mid);
  if (dup)
    sl_metric_add(r->dups, 1);
  return dup;
}

bool mqtt__redeliver_dirty(const sl_mqtt_t *mq) {
  return mq->rd && (mq->rd->ndirty || mq->rd->meta_dirty);
}

int mqtt__redeliver_put(sl_mqtt_t *mq, sl_store_group_t *g) {
  mqtt_redeliver_t *r = mq->rd;
  uint8_t b[META_LEN];
  char k[220];
  int rc;
  if (!r)
    return 0;
  if (r->meta_dirty) {
    memcpy(b, META_MAGIC, 4);
    sl_put_le(b + 4, r->epoch, 4);
    sl_put_le(b + 8, r->floor, 8);
    sl_put_le(b + 16, XXH3_64bits(b, 16), 8);
    if ((rc = sl_store_group_state_put(g, r->key, r->klen, b, META_LEN)) < 0)
      return rc;
  }
  for (size_t i = 0; i < r->ndirty; i++) {
    uint16_t mid = r->dlist[i];
    size_t kl = entry_key(r, mid, k);
    sl_put_le(b, r->epoch, 4);
    sl_put_le(b + 4, r->e[mid].counter, 8);
    sl_put_le(b + 12, r->e[mid].hash, 8);
    if ((rc = sl_store_group_state_put(g, k, kl, b, ENTRY_LEN)) < 0)
      return rc;
  }
  return 0;
}

uint64_t mqtt__redeliver_submitted(sl_mqtt_t *mq) {
  mqtt_redeliver_t *r = mq->rd;
  if (!r)
    return 0;
  for (size_t i = 0; i < r->ndirty; i++)
    r->dirty[r->dlist[i] / 8] = 0;
  r->ndirty = 0;
  r->meta_dirty = false;
  return r->counter;
}

void mqtt__redeliver_durable(sl_mqtt_t *mq, uint64_t upto) {
  if (mq->rd && upto > mq->rd->durable)
    mq->rd->durable = SL_MIN(upto, mq->rd->counter);
}

void mqtt__redeliver_failed(sl_mqtt_t *mq) {
  /* Records of messages that are not durable must never match a
   * redelivery (that would lose them): back to what the store holds. */
  if (mq->rd) {
    bool matching = mq->rd->matching;
    load(mq);
    mq->rd->matching = matching;
  }
}
