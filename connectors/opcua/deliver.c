/*
 * connectors/opcua/deliver.c: OPC UA values -> sluice readings, and their
 * delivery through the client library.
 *
 * Mapping (docs/CONNECTORS.md "sluice-opcua"): Boolean -> bool_value;
 * SByte..UInt32 -> int_value (datatype INT8..UINT32); Int64 -> int_value;
 * UInt64 -> uint_value; Float, Double -> double_value; String ->
 * string_value; LocalizedText -> its text (TEXT); DateTime -> int_value in
 * ms since the epoch (DATETIME); Guid -> string (UUID); StatusCode ->
 * int_value (UINT32); NodeId, ByteString (base64) and arrays of any of
 * these (a JSON array) -> string_value with datatype UNSPECIFIED. Every
 * reading carries the attribute opcua_type ("Double", "Int32[]"). Status
 * code -> quality by its severity, and the raw code in status_code; a bad
 * one carries no value but the attribute error (the status name).
 *
 * Delivery. As the Modbus poller: publish without waiting; when the
 * library is full, keep events in order in a bounded ring. The session
 * loop sends no Publish request while the ring is not empty, so the server
 * keeps what we cannot take yet. Events are counted as emitted (n_emit) and
 * done (n_done, published or dropped, in order); a notification's
 * acknowledgement waits until its last event is published (its batch id
 * known) and that batch is acked (acked_batch, batches ack in order).
 * Batch ids are kept plus one, so 0 means "no batch": a notification
 * without events (or whose events all failed) is ready at once.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/common/conn.h"
#include "connectors/opcua/opcua_int.h"

/* ---- values ------------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int err;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  if (b->err)
    return;
  if (b->cap - b->len <= n) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= n)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->err = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_printf(sbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n > 0)
    sb_put(b, tmp, SL_MIN((size_t)n, sizeof(tmp) - 1));
}

/* A JSON string (quotes, escapes; bytes >= 0x80 pass as they are). */
static void sb_json_str(sbuf_t *b, const char *s, int32_t n) {
  sb_put(b, "\"", 1);
  for (int32_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      sb_printf(b, "\\%c", c);
    else if (c < 0x20)
      sb_printf(b, "\\u%04x", c);
    else
      sb_put(b, (const char *)&c, 1);
  }
  sb_put(b, "\"", 1);
}

static void sb_base64(sbuf_t *b, const uint8_t *p, size_t n) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 |
                 (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    char o[4] = {t[v >> 18 & 63], t[v >> 12 & 63],
                 i + 1 < n ? t[v >> 6 & 63] : '=', i + 2 < n ? t[v & 63] : '='};
    sb_put(b, o, 4);
  }
}

/* One scalar as JSON (arrays) or as text (json false: strings bare). */
static void sb_scalar(sbuf_t *b, const sl_ua_variant_t *v, bool json) {
  char nb[256];
  switch (v->type) {
  case UA_BOOLEAN:
    sb_printf(b, "%s", v->v.b ? "true" : "false");
    break;
  case UA_SBYTE:
  case UA_INT16:
  case UA_INT32:
  case UA_INT64:
    sb_printf(b, "%" PRId64, v->v.i);
    break;
  case UA_BYTE:
  case UA_UINT16:
  case UA_UINT32:
  case UA_UINT64:
  case UA_STATUSCODE:
    sb_printf(b, "%" PRIu64, v->v.u);
    break;
  case UA_FLOAT:
  case UA_DOUBLE:
    if (isfinite(v->v.d))
      sb_printf(b, "%.17g", v->v.d);
    else
      sb_printf(b, json ? "null" : "%g", v->v.d);
    break;
  case UA_DATETIME:
    sb_printf(b, "%" PRId64, sl_ua_ticks_to_unix_ns(v->v.dt) / 1000000);
    break;
  case UA_STRING:
  case UA_XMLELEMENT:
    if (json)
      sb_json_str(b, v->v.s.p, v->v.s.len < 0 ? 0 : v->v.s.len);
    else if (v->v.s.len > 0)
      sb_put(b, v->v.s.p, (size_t)v->v.s.len);
    break;
  case UA_BYTESTRING:
    if (json)
      sb_put(b, "\"", 1);
    if (v->v.s.len > 0)
      sb_base64(b, (const uint8_t *)v->v.s.p, (size_t)v->v.s.len);
    if (json)
      sb_put(b, "\"", 1);
    break;
  case UA_LOCALIZEDTEXT: {
    sl_ua_str_t t = v->v.lt ? v->v.lt->text : (sl_ua_str_t){NULL, -1};
    if (json)
      sb_json_str(b, t.p, t.len < 0 ? 0 : t.len);
    else if (t.len > 0)
      sb_put(b, t.p, (size_t)t.len);
    break;
  }
  case UA_GUID:
  case UA_NODEID: {
    sl_ua_nodeid_t g = {.kind = UA_NID_GUID, .guid = v->v.guid};
    const sl_ua_nodeid_t *id = v->type == UA_GUID ? &g : v->v.nid;
    const char *s = id ? sl_ua_nodeid_format(id, nb, sizeof(nb)) : "";
    if (v->type == UA_GUID)
      s += 2; /* "g=" */
    if (json)
      sb_json_str(b, s, (int32_t)strlen(s));
    else
      sb_put(b, s, strlen(s));
    break;
  }
  case UA_QUALIFIEDNAME: {
    sl_ua_str_t t = v->v.qn ? v->v.qn->name : (sl_ua_str_t){NULL, -1};
    if (json)
      sb_json_str(b, t.p, t.len < 0 ? 0 : t.len);
    else if (t.len > 0)
      sb_put(b, t.p, (size_t)t.len);
    break;
  }
  default: /* ExtensionObject, DataValue, Variant, DiagnosticInfo */
    sb_printf(b, json ? "null" : "");
  }
}

void ua_pending_from_dv(ua_srv_t *s, uint32_t i, const sl_ua_datavalue_t *dv,
                        pending_t *p) {
  const sl_ua_variant_t *v = &dv->value;
  unsigned sev = sl_ua_severity(dv->status);
  char nb[64];
  (void)s;
  memset(p, 0, sizeof(*p));
  p->kind = EV_READING;
  p->item = i;
  p->status = dv->status;
  p->server_ns = sl_ua_ticks_to_unix_ns(dv->server_ts);
  p->time_ns = sl_ua_ticks_to_unix_ns(dv->source_ts);
  if (!p->time_ns)
    p->time_ns = p->server_ns ? p->server_ns : sl_now_wall_ns();
  p->quality = sev == 0   ? SLUICE__V1__QUALITY__QUALITY_GOOD
               : sev == 1 ? SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                          : SLUICE__V1__QUALITY__QUALITY_BAD;
  p->ua_type = v->type;
  p->ua_array = v->is_array;
  p->value_case = SLUICE__V1__READING__VALUE__NOT_SET;
  if (sev >= 2 || v->type == 0) {
    /* No value: why, from the status (a good empty value says so). */
    p->str = strdup(sev >= 2 ? sl_ua_status_name(dv->status, nb, sizeof(nb))
                             : "empty value");
    if (sev < 2)
      p->quality = SLUICE__V1__QUALITY__QUALITY_BAD;
    return;
  }
  if (v->is_array) {
    sbuf_t b = {0};
    sb_put(&b, "[", 1);
    for (uint32_t k = 0; k < v->n; k++) {
      if (k)
        sb_put(&b, ",", 1);
      sb_scalar(&b, &v->arr[k], true);
    }
    sb_put(&b, "]", 1);
    p->str = b.err ? NULL : b.p;
    if (b.err)
      free(b.p);
    p->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
    p->datatype = SLUICE__V1__DATA_TYPE__DATA_TYPE_UNSPECIFIED;
    return;
  }
  static const int dts[] = {
      [UA_BOOLEAN] = SLUICE__V1__DATA_TYPE__DATA_TYPE_BOOLEAN,
      [UA_SBYTE] = SLUICE__V1__DATA_TYPE__DATA_TYPE_INT8,
      [UA_BYTE] = SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT8,
      [UA_INT16] = SLUICE__V1__DATA_TYPE__DATA_TYPE_INT16,
      [UA_UINT16] = SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT16,
      [UA_INT32] = SLUICE__V1__DATA_TYPE__DATA_TYPE_INT32,
      [UA_UINT32] = SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT32,
      [UA_INT64] = SLUICE__V1__DATA_TYPE__DATA_TYPE_INT64,
      [UA_UINT64] = SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT64,
      [UA_FLOAT] = SLUICE__V1__DATA_TYPE__DATA_TYPE_FLOAT,
      [UA_DOUBLE] = SLUICE__V1__DATA_TYPE__DATA_TYPE_DOUBLE,
      [UA_STRING] = SLUICE__V1__DATA_TYPE__DATA_TYPE_STRING,
      [UA_DATETIME] = SLUICE__V1__DATA_TYPE__DATA_TYPE_DATETIME,
      [UA_GUID] = SLUICE__V1__DATA_TYPE__DATA_TYPE_UUID,
      [UA_STATUSCODE] = SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT32,
      [UA_LOCALIZEDTEXT] = SLUICE__V1__DATA_TYPE__DATA_TYPE_TEXT,
      [UA_DIAGNOSTICINFO] = 0,
  };
  p->datatype = dts[v->type];
  switch (v->type) {
  case UA_BOOLEAN:
    p->value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
    p->v.b = v->v.b;
    return;
  case UA_SBYTE:
  case UA_INT16:
  case UA_INT32:
  case UA_INT64:
    p->value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
    p->v.i = v->v.i;
    return;
  case UA_BYTE:
  case UA_UINT16:
  case UA_UINT32:
  case UA_STATUSCODE:
    p->value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
    p->v.i = (int64_t)v->v.u;
    return;
  case UA_UINT64:
    p->value_case = SLUICE__V1__READING__VALUE_UINT_VALUE;
    p->v.u = v->v.u;
    return;
  case UA_FLOAT:
  case UA_DOUBLE:
    p->value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    p->v.d = v->v.d;
    return;
  case UA_DATETIME:
    p->value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
    p->v.i = sl_ua_ticks_to_unix_ns(v->v.dt) / 1000000;
    return;
  default: {
    sbuf_t b = {0};
    sb_put(&b, "", 0);
    sb_scalar(&b, v, false);
    p->str = b.err ? NULL : b.p;
    if (b.err)
      free(b.p);
    p->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
  }
  }
}

/* ---- publishing --------------------------------------------------------- */

static const char *status_stream(const sl_opcua_config_t *cfg) {
  return cfg->status_stream[0] ? cfg->status_stream : cfg->stream;
}

static int publish(ua_srv_t *s, const pending_t *p, uint64_t *batch) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Status st = SLUICE__V1__STATUS__INIT;
  Sluice__V1__Attribute at[3], *atp[3];
  char tname[40], sts[24];
  size_t na = 0;

  ev.time_ns = p->time_ns;
  if (p->kind == EV_STATUS) {
    ev.source = (char *)s->cfg->source;
    st.state = (char *)p->state;
    st.reason = p->str ? p->str : "";
    ev.body_case = SLUICE__V1__EVENT__BODY_STATUS;
    ev.status = &st;
    return sl_client_publish(s->ua->cl, status_stream(s->ua->cfg), &ev, batch);
  }
  ev.source = s->sources[p->item];
  rd.quality = p->quality;
  rd.status_code = p->status;
  rd.unit = s->cfg->items[p->item].unit;
  rd.datatype = p->datatype;
  rd.value_case = p->value_case;
  switch (p->value_case) {
  case SLUICE__V1__READING__VALUE_BOOL_VALUE:
    rd.bool_value = p->v.b;
    break;
  case SLUICE__V1__READING__VALUE_INT_VALUE:
    rd.int_value = p->v.i;
    break;
  case SLUICE__V1__READING__VALUE_UINT_VALUE:
    rd.uint_value = p->v.u;
    break;
  case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
    rd.double_value = p->v.d;
    break;
  case SLUICE__V1__READING__VALUE_STRING_VALUE:
    rd.string_value = p->str ? p->str : "";
    break;
  default:
    break;
  }
  for (size_t k = 0; k < 3; k++) {
    sluice__v1__attribute__init(&at[k]);
    atp[k] = &at[k];
  }
  if (p->ua_type) {
    snprintf(tname, sizeof(tname), "%s%s", sl_ua_type_name(p->ua_type),
             p->ua_array ? "[]" : "");
    at[na].key = "opcua_type";
    at[na++].value = tname;
  }
  if (p->server_ns) {
    snprintf(sts, sizeof(sts), "%" PRId64, p->server_ns);
    at[na].key = "server_time_ns";
    at[na++].value = sts;
  }
  if (p->value_case == SLUICE__V1__READING__VALUE__NOT_SET) {
    at[na].key = "error";
    at[na++].value = p->str ? p->str : "";
  }
  ev.attributes = atp;
  ev.n_attributes = na;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  return sl_client_publish(s->ua->cl, s->ua->cfg->stream, &ev, batch);
}

/* One more event is done (published, failed or dropped), in order: the
 * acknowledgements waiting for it learn their batch. */
static void done_one(ua_srv_t *s, uint64_t batch) {
  s->n_done++;
  if (batch)
    s->last_batch = batch;
  for (size_t k = 0; k < s->alen; k++) {
    ack_wait_t *a = &s->acks[(s->ahead + k) % s->acap];
    if (a->assigned)
      continue;
    if (a->need > s->n_done)
      break;
    a->assigned = true;
    a->batch = s->last_batch;
  }
}

/* 0 published (or failed: counted), SL_EBACKPRESSURE: keep it. */
static int try_publish(ua_srv_t *s, pending_t *p) {
  uint64_t batch = 0;
  int rc = publish(s, p, &batch);
  if (rc == SL_EBACKPRESSURE)
    return rc;
  if (rc == 0) {
    atomic_fetch_add(&s->ua->published, 1);
  } else {
    atomic_fetch_add(&s->ua->failed, 1);
    SL_CLOG(SL_CONN_LOG_WARN, "server %s: publish failed: %s", s->cfg->name,
            sl_strerror(rc));
  }
  free(p->str);
  p->str = NULL;
  /* Batches are kept as id + 1 here: 0 means "none". */
  done_one(s, rc == 0 ? batch + 1 : 0);
  return 0;
}

int ua_drain(ua_srv_t *s) {
  while (s->rlen) {
    if (try_publish(s, &s->ring[s->rhead]))
      return 0;
    s->rhead = (s->rhead + 1) % s->rcap;
    s->rlen--;
  }
  return 1;
}

static void enqueue(ua_srv_t *s, pending_t *p) {
  if (!s->ring) {
    s->rcap = s->ua->cfg->retry_buffer;
    if (!(s->ring = malloc(s->rcap * sizeof(*s->ring)))) {
      s->rcap = 0;
      atomic_fetch_add(&s->ua->dropped, 1);
      free(p->str);
      done_one(s, 0);
      return;
    }
  }
  if (s->rlen == s->rcap) {
    if (atomic_fetch_add(&s->ua->dropped, 1) % 10000 == 0)
      SL_CLOG(SL_CONN_LOG_WARN,
              "server %s: retry buffer full (%zu), dropping oldest readings",
              s->cfg->name, s->rcap);
    free(s->ring[s->rhead].str);
    s->rhead = (s->rhead + 1) % s->rcap;
    s->rlen--;
    done_one(s, 0);
  }
  s->ring[(s->rhead + s->rlen) % s->rcap] = *p;
  s->rlen++;
}

void ua_emit(ua_srv_t *s, pending_t *p) {
  s->n_emit++;
  if (p->kind == EV_READING) {
    ua_item_state_t *st = &s->items[p->item];
    st->quality = p->quality;
    st->status = p->status;
  }
  if (!ua_drain(s) || try_publish(s, p))
    enqueue(s, p);
}

void ua_emit_bad(ua_srv_t *s, uint32_t i, uint32_t status, const char *reason) {
  pending_t p;
  if (s->items[i].quality == SLUICE__V1__QUALITY__QUALITY_BAD &&
      s->items[i].status == status)
    return;
  memset(&p, 0, sizeof(p));
  p.kind = EV_READING;
  p.item = i;
  p.time_ns = sl_now_wall_ns();
  p.status = status;
  p.quality = SLUICE__V1__QUALITY__QUALITY_BAD;
  p.value_case = SLUICE__V1__READING__VALUE__NOT_SET;
  p.str = strdup(reason);
  ua_emit(s, &p);
}

void ua_emit_status(ua_srv_t *s, const char *state, const char *reason) {
  pending_t p;
  memset(&p, 0, sizeof(p));
  p.kind = EV_STATUS;
  p.time_ns = sl_now_wall_ns();
  snprintf(p.state, sizeof(p.state), "%s", state);
  p.str = strdup(reason);
  ua_emit(s, &p);
}

/* ---- acknowledgements to the server ------------------------------------ */

void ua_ack_wait_add(ua_srv_t *s, uint32_t sub_id, uint32_t seq) {
  ack_wait_t a = {.sub_id = sub_id, .seq = seq, .need = s->n_emit};
  if (a.need <= s->n_done) {
    a.assigned = true;
    a.batch = s->last_batch;
  }
  if (s->alen == s->acap) {
    size_t cap = s->acap ? s->acap * 2 : 64;
    ack_wait_t *n = malloc(cap * sizeof(*n));
    if (!n)
      return; /* unacked: the server keeps it until the subscription ends */
    for (size_t k = 0; k < s->alen; k++)
      n[k] = s->acks[(s->ahead + k) % s->acap];
    free(s->acks);
    s->acks = n;
    s->acap = cap;
    s->ahead = 0;
  }
  s->acks[(s->ahead + s->alen) % s->acap] = a;
  s->alen++;
}

uint32_t ua_acks_ready(ua_srv_t *s, sl_ua_sub_ack_t *out, uint32_t max) {
  uint64_t acked = atomic_load(&s->ua->acked_batch);
  uint32_t n = 0;
  while (s->alen && n < max) {
    ack_wait_t *a = &s->acks[s->ahead];
    if (!a->assigned || a->batch > acked)
      break;
    out[n].sub_id = a->sub_id;
    out[n++].seq = a->seq;
    s->ahead = (s->ahead + 1) % s->acap;
    s->alen--;
  }
  return n;
}

void ua_acks_clear(ua_srv_t *s) {
  s->alen = s->ahead = 0;
}

void ua_srv_free_delivery(ua_srv_t *s) {
  for (size_t k = 0; k < s->rlen; k++)
    free(s->ring[(s->rhead + k) % s->rcap].str);
  free(s->ring);
  free(s->acks);
  s->ring = NULL;
  s->acks = NULL;
  s->rlen = s->alen = 0;
}
