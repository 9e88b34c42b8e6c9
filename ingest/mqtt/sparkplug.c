/*
 * Sparkplug B (schemas/sparkplug_b/sparkplug_b.proto) -> sluice events.
 *
 * Topics: spBv1.0/<group>/<TYPE>/<node>[/<device>].
 *   NBIRTH/DBIRTH  replace the node's (device's) alias table, kept in memory
 *                  and written to the store's state db in the same commit
 *                  as the birth's events (key "sp/<group>/<node>[/<dev>]"),
 *                  so a restart resolves aliases without a new birth; a
 *                  Status "online" event plus the birth's metric values.
 *   NDATA/DDATA    metrics resolved through the alias tables; an unknown
 *                  alias sends the payload to the dead letters and asks the
 *                  node for a rebirth (NCMD "Node Control/Rebirth").
 *   NDEATH/DDEATH  Status "offline" events.
 *   seq            0..255 per node across node and device messages; a gap
 *                  is counted, recorded as a Status "seq_gap" event and
 *                  answered with a rebirth request. The last seq of each
 *                  node is written to the state db with the events of its
 *                  message (key "sq/<group>/<node>"), so the first message
 *                  after a restart of sluice is checked like any other.
 * Values keep their Sparkplug datatype (Reading.datatype, same numbers);
 * UInt64 goes to uint_value, so 2^63..2^64-1 stay positive.
 * Metrics flagged is_historical carry the attribute historical=true and
 * their own timestamp. One event per metric; source "<prefix>/<metric>",
 * the prefix being group/node[/device] or the rule's source template.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"
#include "wire/wire.h"
#include "schemas/event_json.h"
#include "sluice/v1/event.pb-c.h"
#include "sparkplug_b/sparkplug_b.pb-c.h"

typedef Org__Eclipse__Tahu__Protobuf__Payload sp_payload_t;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Metric sp_metric_t;

#define SP_BUCKETS 256
#define SP_MAX_DEPTH 16
#define REBIRTH_INTERVAL_NS (5ull * 1000000000ull)
#define ALIAS_MAGIC 0x31415053u /* "SPA1" little endian */
#define SEQ_MAGIC 0x31515053u   /* "SPQ1" little endian */

typedef struct sp_alias {
  uint64_t alias;
  uint32_t datatype;
  char *name;
} sp_alias_t;

typedef struct sp_table {
  sp_alias_t *v; /* sorted by alias */
  size_t n;
  bool loaded; /* birth seen or state read */
} sp_table_t;

typedef struct sp_device {
  struct sp_device *next;
  char *id;
  sp_table_t t;
} sp_device_t;

typedef struct sp_node {
  struct sp_node *next;
  char *key; /* "group/node" */
  sp_table_t t;
  sp_device_t *devs;
  int last_seq;    /* -1 = unknown */
  bool seq_loaded; /* last_seq read from the state db */
  uint64_t last_rebirth_ns;
} sp_node_t;

/* Peer-driven memory is bounded: node ids and birth sizes come from
 * whoever can publish to the broker (issue 14: 60 forged node ids grew the
 * daemon by 12 MB, without end). */
struct sl_sp {
  sp_node_t *b[SP_BUCKETS];
  size_t nodes, max_nodes;       /* nodes + devices tracked, and cap */
  size_t table_bytes, max_bytes; /* alias tables' memory, and cap */
};

int sl_sp_new(sl_mqtt_t *mq, sl_sp_t **out) {
  if (!(*out = calloc(1, sizeof(**out))))
    return -ENOMEM;
  (*out)->max_nodes = (size_t)mq->cfg->mqtt.sparkplug_max_nodes;
  (*out)->max_bytes = (size_t)mq->cfg->mqtt.sparkplug_max_table_bytes;
  return 0;
}

/* Memory one alias entry holds. */
static size_t alias_bytes(const char *name) {
  return sizeof(sp_alias_t) + strlen(name) + 1;
}

static size_t table_bytes(const sp_table_t *t) {
  size_t b = 0;
  for (size_t i = 0; i < t->n; i++)
    b += alias_bytes(t->v[i].name);
  return b;
}

static void table_clear(sp_table_t *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->v[i].name);
  free(t->v);
  t->v = NULL;
  t->n = 0;
  t->loaded = false;
}

void sl_sp_free(sl_sp_t *sp) {
  if (!sp)
    return;
  for (int i = 0; i < SP_BUCKETS; i++)
    while (sp->b[i]) {
      sp_node_t *n = sp->b[i];
      sp->b[i] = n->next;
      while (n->devs) {
        sp_device_t *d = n->devs;
        n->devs = d->next;
        table_clear(&d->t);
        free(d->id);
        free(d);
      }
      table_clear(&n->t);
      free(n->key);
      free(n);
    }
  free(sp);
}

static uint32_t hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static uint64_t fnv64(const uint8_t *p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* ---- alias tables: memory and the store's state db ---------------------- */

static int alias_cmp(const void *a, const void *b) {
  const sp_alias_t *x = a, *y = b;
  return x->alias < y->alias ? -1 : x->alias > y->alias;
}

static const sp_alias_t *table_find(const sp_table_t *t, uint64_t alias) {
  sp_alias_t k = {.alias = alias};
  return t->n ? bsearch(&k, t->v, t->n, sizeof(k), alias_cmp) : NULL;
}

/* Record: magic u32 | version u8 | count u32 | count x (alias u64,
 * datatype u32, name length u16, name) | FNV-1a 64 of all before. Little
 * endian. */
static int table_encode(const sp_table_t *t, uint8_t **out, size_t *len) {
  size_t n = 4 + 1 + 4 + 8;
  uint8_t *b, *p;
  for (size_t i = 0; i < t->n; i++)
    n += 8 + 4 + 2 + strlen(t->v[i].name);
  if (!(b = malloc(n)))
    return -ENOMEM;
  p = b;
#define PUT(v, sz)                                                             \
  do {                                                                         \
    uint64_t x_ = (v);                                                         \
    for (int i_ = 0; i_ < (sz); i_++)                                          \
      *p++ = (uint8_t)(x_ >> (8 * i_));                                        \
  } while (0)
  PUT(ALIAS_MAGIC, 4);
  PUT(1, 1);
  PUT(t->n, 4);
  for (size_t i = 0; i < t->n; i++) {
    size_t nl = strlen(t->v[i].name);
    PUT(t->v[i].alias, 8);
    PUT(t->v[i].datatype, 4);
    PUT(nl, 2);
    memcpy(p, t->v[i].name, nl);
    p += nl;
  }
  PUT(fnv64(b, (size_t)(p - b)), 8);
#undef PUT
  *out = b;
  *len = (size_t)(p - b);
  return 0;
}

static int table_decode(sp_table_t *t, const uint8_t *b, size_t len) {
  const uint8_t *p = b + 9, *end = b + len - 8;
  uint64_t n;
  if (len < 17 || sl_get_le(b, 4) != ALIAS_MAGIC || b[4] != 1 ||
      sl_get_le(end, 8) != fnv64(b, len - 8))
    return SL_ECORRUPT;
  n = sl_get_le(b + 5, 4);
  if (n > len / 14 || !(t->v = calloc(n ? n : 1, sizeof(*t->v))))
    return SL_ECORRUPT;
  for (t->n = 0; t->n < n; t->n++) {
    sp_alias_t *a = &t->v[t->n];
    size_t nl;
    if (end - p < 14)
      goto bad;
    a->alias = sl_get_le(p, 8);
    a->datatype = (uint32_t)sl_get_le(p + 8, 4);
    nl = (size_t)sl_get_le(p + 12, 2);
    p += 14;
    if ((size_t)(end - p) < nl || !(a->name = strndup((const char *)p, nl)))
      goto bad;
    p += nl;
  }
  t->loaded = true;
  return 0;
bad:
  table_clear(t);
  return SL_ECORRUPT;
}

/* Loads a table from the state db once after a restart. */
static void table_load(sl_mqtt_t *mq, sp_table_t *t, const char *key) {
  size_t vlen = 0;
  uint8_t small[4096], *buf = small;
  int rc;
  if (t->loaded)
    return;
  t->loaded = true; /* try once; a birth replaces it */
  rc = sl_store_state_get(mq->ic->st, key, strlen(key), buf, sizeof(small),
                          &vlen);
  if (rc == SL_ETOOBIG && (buf = malloc(vlen)))
    rc = sl_store_state_get(mq->ic->st, key, strlen(key), buf, vlen, &vlen);
  if (rc == 0 && table_decode(t, buf, vlen) < 0) {
    sl_warn(SL_LOG_CTX_MQTT, key,
            "stored Sparkplug alias table is corrupt; "
            "waiting for a rebirth");
    t->loaded = true;
  } else if (rc == 0) {
    size_t b = table_bytes(t);
    if (mq->sp->table_bytes + b > mq->sp->max_bytes) {
      /* Over the cap: forget it, the node's data asks for a rebirth. */
      table_clear(t);
      t->loaded = true;
    } else {
      mq->sp->table_bytes += b;
    }
  }
  if (buf != small)
    free(buf);
}

/* ---- last seq per node in the state db ----------------------------------
 * Record: magic u32 | seq i16 (-1 unknown), little endian. */

static void seq_key(char *k, size_t kl, const char *node_key) {
  snprintf(k, kl, "sq/%s", node_key);
}

/* Reads the node's last seq once after a restart (or first sight). */
static void seq_load(sl_mqtt_t *mq, sp_node_t *n) {
  char k[820];
  uint8_t b[16];
  size_t vlen = 0;
  if (n->seq_loaded)
    return;
  n->seq_loaded = true;
  seq_key(k, sizeof(k), n->key);
  if (strlen(k) > 200 ||
      sl_store_state_get(mq->ic->st, k, strlen(k), b, sizeof(b), &vlen) < 0)
    return;
  if (vlen == 6 && sl_get_le(b, 4) == SEQ_MAGIC) {
    int16_t s = (int16_t)sl_get_le(b + 4, 2);
    n->last_seq = s >= 0 && s <= 255 ? s : -1;
  }
}

/* Commits the node's last seq with the events being built. */
static void seq_save(sl_mqtt_t *mq, const sp_node_t *n) {
  char k[820];
  uint8_t *b;
  uint16_t s = (uint16_t)(int16_t)n->last_seq;
  seq_key(k, sizeof(k), n->key);
  if (strlen(k) > 200 || !(b = malloc(6)))
    return;
  for (int i = 0; i < 4; i++)
    b[i] = (uint8_t)(SEQ_MAGIC >> (8 * i));
  b[4] = (uint8_t)s;
  b[5] = (uint8_t)(s >> 8);
  mqtt__state_put(mq, k, b, 6);
}

/* ---- nodes -------------------------------------------------------------- */

/* The node's state, made on first sight; NULL at the cap (*full set) or
 * without memory. */
static sp_node_t *node_get(sl_sp_t *sp, const char *key, bool *full) {
  uint32_t h = hash(key) % SP_BUCKETS;
  sp_node_t *n;
  for (n = sp->b[h]; n; n = n->next)
    if (!strcmp(n->key, key))
      return n;
  if (sp->nodes >= sp->max_nodes) {
    *full = true;
    return NULL;
  }
  if (!(n = calloc(1, sizeof(*n))) || !(n->key = strdup(key))) {
    free(n);
    return NULL;
  }
  n->last_seq = -1;
  n->next = sp->b[h];
  sp->b[h] = n;
  sp->nodes++;
  return n;
}

static sp_device_t *dev_get(sl_sp_t *sp, sp_node_t *n, const char *id,
                            bool *full) {
  sp_device_t *d;
  for (d = n->devs; d; d = d->next)
    if (!strcmp(d->id, id))
      return d;
  if (sp->nodes >= sp->max_nodes) {
    *full = true;
    return NULL;
  }
  if (!(d = calloc(1, sizeof(*d))) || !(d->id = strdup(id))) {
    free(d);
    return NULL;
  }
  sp->nodes++;
  d->next = n->devs;
  n->devs = d;
  return d;
}

/* ---- rebirth ------------------------------------------------------------ */

static void request_rebirth(sl_mqtt_t *mq, sp_node_t *n, const char *group,
                            const char *node, const char *why) {
  Org__Eclipse__Tahu__Protobuf__Payload pl =
      ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__INIT;
  Org__Eclipse__Tahu__Protobuf__Payload__Metric m =
      ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__INIT;
  Org__Eclipse__Tahu__Protobuf__Payload__Metric *pm = &m;
  uint8_t buf[128];
  char topic[600];
  uint64_t now = sl_now_mono_ns();

  if (n->last_rebirth_ns && now - n->last_rebirth_ns < REBIRTH_INTERVAL_NS)
    return;
  n->last_rebirth_ns = now;
  pl.has_timestamp = true;
  pl.timestamp = (uint64_t)(sl_now_wall_ns() / 1000000);
  pl.n_metrics = 1;
  pl.metrics = &pm;
  m.name = "Node Control/Rebirth";
  m.has_datatype = true;
  m.datatype = ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Boolean;
  m.value_case =
      ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE;
  m.boolean_value = true;
  snprintf(topic, sizeof(topic), "spBv1.0/%s/NCMD/%s", group, node);
  size_t len = org__eclipse__tahu__protobuf__payload__pack(&pl, buf);
  if (mqtt__publish(mq, topic, buf, len, 0, false, 0) == 0) {
    sl_metric_add(mq->sp_rebirths, 1);
    sl_info(SL_LOG_CTX_MQTT, topic, "Sparkplug rebirth requested: %s", why);
  }
}

/* ---- events ------------------------------------------------------------- */

static void add_status(sl_mqtt_t *mq, const mqtt_rule_t *r, const char *source,
                       const char *state, const char *reason, int64_t t) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Status st = SLUICE__V1__STATUS__INIT;
  ev.source = (char *)source;
  ev.time_ns = t;
  ev.body_case = SLUICE__V1__EVENT__BODY_STATUS;
  ev.status = &st;
  st.state = (char *)state;
  st.reason = (char *)reason;
  if (sl_json_batch_add(mqtt__batch(mq, r->stream), &ev) == 0)
    mq->built_events++;
}

/* Sign-extends (or masks) Sparkplug's unsigned carriers by datatype. */
static int64_t as_signed(uint64_t v, uint32_t dt) {
  switch (dt) {
  case ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Int8:
    return (int8_t)v;
  case ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Int16:
    return (int16_t)v;
  case ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Int32:
    return (int32_t)v;
  case ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__UInt8:
    return (uint8_t)v;
  case ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__UInt16:
    return (uint16_t)v;
  case ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__UInt32:
    return (uint32_t)v;
  default:
    return (int64_t)v;
  }
}

/* One metric -> one event. Returns 1 stored, 0 skipped (unsupported). */
static int add_metric(sl_mqtt_t *mq, const mqtt_rule_t *r, const char *prefix,
                      const char *name, uint32_t dt, const sp_metric_t *m,
                      int64_t t) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  Sluice__V1__Attribute hist = SLUICE__V1__ATTRIBUTE__INIT, *ph = &hist;
  char source[1024];

  if (snprintf(source, sizeof(source), "%s/%s", prefix, name) >=
      (int)sizeof(source))
    return 0;
  ev.source = source;
  ev.time_ns = m->has_timestamp && m->timestamp < 9000000000000ull
                   ? (int64_t)m->timestamp * 1000000
                   : t;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  if (m->has_is_historical && m->is_historical) {
    hist.key = "historical";
    hist.value = "true";
    ev.n_attributes = 1;
    ev.attributes = &ph;
  }
  if (m->has_is_null && m->is_null) {
    rd.quality = SLUICE__V1__QUALITY__QUALITY_BAD;
  } else {
    switch (m->value_case) {
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_INT_VALUE:
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_LONG_VALUE: {
      uint64_t v =
          m->value_case ==
                  ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_INT_VALUE
              ? m->int_value
              : m->long_value;
      if (dt == ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__UInt64) {
        rd.value_case = SLUICE__V1__READING__VALUE_UINT_VALUE;
        rd.uint_value = v;
      } else {
        rd.value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
        rd.int_value = as_signed(v, dt);
      }
      break;
    }
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_FLOAT_VALUE:
      rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      rd.double_value = m->float_value;
      break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_DOUBLE_VALUE:
      rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      rd.double_value = m->double_value;
      break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE:
      rd.value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
      rd.bool_value = m->boolean_value;
      break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_STRING_VALUE:
      if (!mqtt__utf8_ok(m->string_value, strlen(m->string_value)))
        return 0;
      rd.value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
      rd.string_value = m->string_value;
      break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BYTES_VALUE:
      ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
      ev.raw = &raw;
      raw.data = m->bytes_value;
      raw.content_type = "application/octet-stream";
      break;
    default:
      /* DataSet, Template, extensions: not mapped to events. */
      mqtt__count_error(mq, "sparkplug_unsupported_type");
      return 0;
    }
  }
  /* The datatype, numbered alike, when the value is where it says
   * (a Double sent in int_value stays untyped rather than mislabelled). */
  if (ev.body_case == SLUICE__V1__EVENT__BODY_READING && dt > 0 && dt <= 15 &&
      (rd.value_case == SLUICE__V1__READING__VALUE__NOT_SET ||
       sl_event_datatype_case((int)dt) == (int)rd.value_case))
    rd.datatype = (Sluice__V1__DataType)dt;
  char why[160];
  int rc = sl_json_batch_add_client(mqtt__batch(mq, r->stream), &ev, why,
                                    sizeof(why));
  if (rc == SL_EPROTO)
    mqtt__count_error(mq, "invalid_event");
  return rc == 0 ? 1 : 0;
}

/* Nesting depth of the recursive Sparkplug messages (Template <-> Metric,
 * PropertySet <-> PropertyValue): protobuf-c unpacks recursively, so a
 * crafted payload must be refused before it can exhaust the stack. */
enum { T_PAYLOAD, T_METRIC, T_TEMPLATE, T_PSET, T_PVALUE, T_PSLIST, T_NONE };

static int sub_type(int type, uint32_t field) {
  switch (type) {
  case T_PAYLOAD:
    return field == 2 ? T_METRIC : T_NONE;
  case T_METRIC:
    return field == 9 ? T_PSET : field == 18 ? T_TEMPLATE : T_NONE;
  case T_TEMPLATE:
    return field == 2 ? T_METRIC : T_NONE;
  case T_PSET:
    return field == 2 ? T_PVALUE : T_NONE;
  case T_PVALUE:
    return field == 9 ? T_PSET : field == 10 ? T_PSLIST : T_NONE;
  case T_PSLIST:
    return field == 1 ? T_PSET : T_NONE;
  default:
    return T_NONE;
  }
}

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  size_t k = sl_wire_varint_get(*p, end, v);
  *p += k;
  return k ? 0 : -1;
}

static int depth_ok(const uint8_t *p, const uint8_t *end, int type, int depth) {
  if (depth > SP_MAX_DEPTH)
    return 0;
  while (p < end) {
    uint64_t key, n;
    if (varint(&p, end, &key) < 0)
      return 1; /* malformed: protobuf-c says so */
    switch (key & 7) {
    case 0:
      if (varint(&p, end, &n) < 0)
        return 1;
      break;
    case 1:
      p += 8;
      break;
    case 5:
      p += 4;
      break;
    case 2: {
      int st;
      if (varint(&p, end, &n) < 0 || n > (uint64_t)(end - p))
        return 1;
      st = sub_type(type, (uint32_t)(key >> 3));
      if (st != T_NONE && !depth_ok(p, p + n, st, depth + 1))
        return 0;
      p += n;
      break;
    }
    default:
      return 1;
    }
  }
  return 1;
}

void sl_sp_handle(sl_mqtt_t *mq, const mqtt_rule_t *r, const char *topic,
                  const void *payload, size_t len, int64_t now_ns) {
  char parts[5][256], key[800], prefix[1100], why[128];
  const char *type;
  sp_payload_t *pl = NULL;
  sp_node_t *n;
  sp_device_t *d = NULL;
  sp_table_t *t;
  size_t np = 0;
  bool birth, death, data, dev;
  int64_t t0;

  /* spBv1.0/group/TYPE/node[/device] */
  const char *p = topic;
  while (p && np < 5) {
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l >= sizeof(parts[0]) || l == 0)
      break;
    memcpy(parts[np], p, l);
    parts[np++][l] = '\0';
    p = e ? e + 1 : NULL;
  }
  if (p || np < 4 || strcmp(parts[0], "spBv1.0") != 0) {
    mqtt__dead_letter(mq, topic, payload, len, "sparkplug", "sparkplug_topic",
                      "not spBv1.0/group/TYPE/node[/device]");
    return;
  }
  type = parts[2];
  dev = type[0] == 'D';
  if (!strcmp(type + 1, "CMD") || !strcmp(parts[1], "STATE"))
    return; /* commands to nodes and host states: not data */
  birth = !strcmp(type + 1, "BIRTH");
  death = !strcmp(type + 1, "DEATH");
  data = !strcmp(type + 1, "DATA");
  if ((!birth && !death && !data) || (type[0] != 'N' && type[0] != 'D') ||
      (dev ? np != 5 : np != 4)) {
    mqtt__dead_letter(mq, topic, payload, len, "sparkplug", "sparkplug_topic",
                      "unknown message type or topic shape");
    return;
  }
  if (!depth_ok(payload, (const uint8_t *)payload + len, T_PAYLOAD, 0)) {
    mqtt__dead_letter(mq, topic, payload, len, "sparkplug", "too_deep",
                      "Sparkplug payload nested too deep");
    return;
  }
  if (!(pl = org__eclipse__tahu__protobuf__payload__unpack(NULL, len,
                                                           payload))) {
    mqtt__dead_letter(mq, topic, payload, len, "sparkplug", "sparkplug_decode",
                      "not a Sparkplug B payload");
    return;
  }
  snprintf(key, sizeof(key), "%s/%s", parts[1], parts[3]);
  bool full = false;
  if (!(n = node_get(mq->sp, key, &full)) ||
      (dev && !(d = dev_get(mq->sp, n, parts[4], &full)))) {
    if (full)
      mqtt__dead_letter(mq, topic, payload, len, "sparkplug", "sparkplug_limit",
                        "mqtt.sparkplug_max_nodes nodes and devices are "
                        "tracked already");
    else
      mqtt__count_error(mq, "no_memory");
    goto out;
  }
  if (r->conf->source[0] && strcmp(r->conf->source, "{topic}") != 0) {
    const char *caps[MQTT_MAX_CAPTURES];
    size_t caplens[MQTT_MAX_CAPTURES];
    mqtt__rule_match(mq, topic, caps, caplens);
    if (mqtt__source_expand(r, r->conf->source, topic, caps, caplens, prefix,
                            sizeof(prefix)) < 0)
      snprintf(prefix, sizeof(prefix), "%s", key);
  } else if (dev) {
    snprintf(prefix, sizeof(prefix), "%s/%s", key, parts[4]);
  } else {
    snprintf(prefix, sizeof(prefix), "%s", key);
  }
  t0 = pl->has_timestamp && pl->timestamp < 9000000000000ull
           ? (int64_t)pl->timestamp * 1000000
           : now_ns;

  /* seq: every node message but NDEATH carries it, 0..255. */
  seq_load(mq, n);
  if (!(death && !dev)) {
    int seq = pl->has_seq ? (int)(pl->seq & 0xff) : -1;
    if (birth && !dev) {
      n->last_seq = seq;
    } else if (seq >= 0 && n->last_seq >= 0 && seq != (n->last_seq + 1) % 256) {
      snprintf(why, sizeof(why), "seq %d after %d", seq, n->last_seq);
      sl_metric_add(mq->sp_gaps, 1);
      add_status(mq, r, prefix, "seq_gap", why, t0);
      request_rebirth(mq, n, parts[1], parts[3], why);
      n->last_seq = seq;
    } else if (seq >= 0) {
      n->last_seq = seq;
    }
    if (seq >= 0 || birth)
      seq_save(mq, n);
  }

  snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s%s", dev ? "/" : "",
           dev ? parts[4] : "");
  t = dev ? &d->t : &n->t;
  if (death) {
    add_status(mq, r, prefix, "offline", type, t0);
    if (!dev) {
      n->last_seq = -1;
      seq_save(mq, n);
    }
    goto out;
  }
  if (birth) {
    char skey[820];
    uint8_t *blob;
    size_t blen, freed = table_bytes(t), need = 0;
    if (!dev)
      for (sp_device_t *x = n->devs; x; x = x->next)
        freed += table_bytes(&x->t);
    for (size_t i = 0; i < pl->n_metrics; i++)
      if (pl->metrics[i]->name && pl->metrics[i]->has_alias)
        need += alias_bytes(pl->metrics[i]->name);
    if (mq->sp->table_bytes - freed + need > mq->sp->max_bytes) {
      mqtt__dead_letter(mq, topic, payload, len, "sparkplug", "sparkplug_limit",
                        "the birth's alias table would pass "
                        "mqtt.sparkplug_max_table_bytes");
      goto out;
    }
    mq->sp->table_bytes -= freed;
    if (!dev)
      for (sp_device_t *x = n->devs; x; x = x->next)
        table_clear(&x->t); /* NBIRTH: devices must be born again */
    table_clear(t);
    t->v = calloc(pl->n_metrics ? pl->n_metrics : 1, sizeof(*t->v));
    for (size_t i = 0; t->v && i < pl->n_metrics; i++) {
      sp_metric_t *m = pl->metrics[i];
      if (!m->name || !m->has_alias)
        continue;
      t->v[t->n].alias = m->alias;
      t->v[t->n].datatype = m->has_datatype ? m->datatype : 0;
      if ((t->v[t->n].name = strdup(m->name)))
        t->n++;
    }
    if (t->n)
      qsort(t->v, t->n, sizeof(*t->v), alias_cmp);
    mq->sp->table_bytes += table_bytes(t);
    t->loaded = true;
    snprintf(skey, sizeof(skey), "sp/%s", key);
    if (strlen(skey) <= 200 && table_encode(t, &blob, &blen) == 0)
      mqtt__state_put(mq, skey, blob, blen);
    add_status(mq, r, prefix, "online", type, t0);
  } else {
    char skey[820];
    snprintf(skey, sizeof(skey), "sp/%s", key);
    if (strlen(skey) <= 200)
      table_load(mq, t, skey);
  }

  /* Metric values (births carry the current values too). */
  size_t unknown = 0;
  for (size_t i = 0; i < pl->n_metrics; i++) {
    sp_metric_t *m = pl->metrics[i];
    const char *name = m->name;
    uint32_t dt = m->has_datatype ? m->datatype : 0;
    if (!name && m->has_alias) {
      const sp_alias_t *a = table_find(t, m->alias);
      if (!a) {
        unknown++;
        continue;
      }
      name = a->name;
      if (!m->has_datatype)
        dt = a->datatype;
    }
    if (!name || !*name || !mqtt__utf8_ok(name, strlen(name))) {
      mqtt__count_error(mq, "sparkplug_bad_metric");
      continue;
    }
    mq->built_events += (uint32_t)add_metric(mq, r, prefix, name, dt, m, t0);
  }
  if (unknown) {
    snprintf(why, sizeof(why), "%zu metrics with unknown aliases", unknown);
    mqtt__dead_letter(mq, topic, payload, len, "sparkplug",
                      "sparkplug_unknown_alias", why);
    request_rebirth(mq, n, parts[1], parts[3], why);
  }
out:
  org__eclipse__tahu__protobuf__payload__free_unpacked(pl, NULL);
}
