/*
 * sync/checkpoint.c: where delivery resumes, and how that is recorded.
 *
 * Each transaction carries, for every stream it touched, a record keyed
 * "<node>/<stream>" in the compacted checkpoint topic whose value is the
 * stream's delivered set after the transaction (sl_sync_ckpt_t, encoded by
 * sync/checkpoint_codec.c), and, when it forwarded gap records, a record
 * keyed "<node>/_gaps" holding the next gap sequence. Both commit or abort
 * with the records, so the checkpoint topic read back read_committed is
 * exactly what Kafka holds. The same values are then written to the store
 * (state "sync/<consumer>/<stream>", and the consumer cursor = the start of
 * the first undelivered range) in one group: the local copy is what
 * at-least-once mode resumes from, and what exactly-once falls back to when
 * the checkpoint topic has no entry.
 *
 * A checkpoint names the store it counts offsets of (the store's own id,
 * made when the store was created): a checkpoint of another store (the data
 * directory was wiped, or another daemon uses the same node id) is ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/v1/event.pb-c.h"
#include "sync/sync_int.h"

#define GAPS_KEY "_gaps"

static void state_key(const sl_sync_t *up, const char *stream, char *buf,
                      size_t cap) {
  snprintf(buf, cap, "sync/%s/%s", up->consumer, stream);
}

static int local_ckpt(sl_sync_t *up, const char *stream, sl_sync_ckpt_t *c) {
  char key[SL_STORE_NAME_MAX * 2 + 16];
  uint8_t buf[SL_SYNC_CKPT_BYTES];
  size_t vlen;
  int rc;
  state_key(up, stream, key, sizeof(key));
  if ((rc = sl_store_state_get(up->st, key, strlen(key), buf, sizeof(buf),
                               &vlen)) < 0)
    return rc;
  if ((rc = sl_sync_ckpt_decode(buf, vlen, c)) < 0)
    return rc;
  return strcmp(c->store_id, up->store_id) ? SL_ENOTFOUND : 0;
}

/* The checkpoint reader: a read_committed consumer with the uplink's
 * TLS/SASL properties. Returns it, or NULL with errstr. */
static rd_kafka_t *reader_new(sl_sync_t *up, char *errstr, size_t errlen) {
  char e[512], group[200];
  rd_kafka_t *c;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(group, sizeof(group), "%s-checkpoint-reader", up->txn_id);
  if (rd_kafka_conf_set(conf, "bootstrap.servers", up->brokers, e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "isolation.level", "read_committed", e,
                        sizeof(e))) {
    snprintf(errstr, errlen, "checkpoint reader: %s", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_conf_set_opaque(conf, up);
  sync__conf_link(up, conf);
  for (size_t i = 0; i < up->o.nprops; i++) {
    /* TLS/SASL apply to the reader too; producer-only keys are refused
     * by a consumer config, which is fine to ignore here. */
    char *eq = strchr(up->props[i], '=');
    if (!eq)
      continue;
    *eq = '\0';
    rd_kafka_conf_set(conf, up->props[i], eq + 1, e, sizeof(e));
    *eq = '=';
  }
  if (!(c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
    snprintf(errstr, errlen, "checkpoint reader: %s", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return c;
}

/* One record of the checkpoint topic: a checkpoint of this node and this
 * store sets the gap cursor or its stream's cp (later records win). */
static void read_record(sl_sync_t *up, const rd_kafka_message_t *m,
                        bool *found) {
  size_t prefix = strlen(up->node_id);
  if (m->key_len > prefix + 1 && !memcmp(m->key, up->node_id, prefix) &&
      ((const char *)m->key)[prefix] == '/') {
    const char *name = (const char *)m->key + prefix + 1;
    size_t nlen = m->key_len - prefix - 1;
    sl_sync_ckpt_t cp;
    if (m->payload && sl_sync_ckpt_decode(m->payload, m->len, &cp) == 0 &&
        !strcmp(cp.store_id, up->store_id)) {
      if (nlen == strlen(GAPS_KEY) && !memcmp(name, GAPS_KEY, nlen)) {
        up->gap_cp = cp.backlog_next;
        *found = true;
      }
      for (size_t i = 0; i < up->nstreams; i++) {
        if (strlen(up->streams[i].name) == nlen &&
            !memcmp(up->streams[i].name, name, nlen)) {
          up->streams[i].cp = cp; /* later records win */
          found[1 + i] = true;
        }
      }
    }
  }
}

/* Reads the checkpoint topic to its end, read_committed, into the
 * streams' cp (only entries of this node and this store). */
static int read_kafka(sl_sync_t *up, bool *found, char *errstr, size_t errlen) {
  int rc = SL_EKAFKA;
  rd_kafka_t *c = NULL;
  rd_kafka_topic_partition_list_t *parts = NULL;
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = NULL;
  int nparts = 0, eofs = 0;
  uint64_t deadline = sl_now_mono_ns() + 60000000000ull;

  if (!(c = reader_new(up, errstr, errlen)))
    return SL_ECONFIG;
  rkt = rd_kafka_topic_new(c, up->ckpt_topic, NULL);
  /* 15 s at most, in slices a stop can cut short. */
  rd_kafka_resp_err_t err;
  uint64_t md_deadline = sl_now_mono_ns() + 15000000000ull;
  while ((err = rd_kafka_metadata(c, 0, rkt, &md, 500)) &&
         sl_now_mono_ns() < md_deadline && !sync__stopping(up)) {
    if (md)
      rd_kafka_metadata_destroy(md);
    md = NULL;
  }
  if (err || md->topic_cnt != 1 || md->topics[0].err) {
    snprintf(
        errstr, errlen, "checkpoint topic %s: metadata: %s", up->ckpt_topic,
        rd_kafka_err2str(err             ? err
                         : md->topic_cnt ? md->topics[0].err
                                         : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    goto fail;
  }
  nparts = md->topics[0].partition_cnt;
  parts = rd_kafka_topic_partition_list_new(nparts);
  for (int p = 0; p < nparts; p++)
    rd_kafka_topic_partition_list_add(parts, up->ckpt_topic, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  if ((err = rd_kafka_assign(c, parts))) {
    snprintf(errstr, errlen, "checkpoint reader: assign: %s",
             rd_kafka_err2str(err));
    goto fail;
  }
  while (eofs < nparts) {
    if (sync__stopping(up)) {
      snprintf(errstr, errlen, "checkpoint topic %s: stopped", up->ckpt_topic);
      rc = SL_ECLOSED;
      goto fail;
    }
    if (sl_now_mono_ns() > deadline) {
      snprintf(errstr, errlen,
               "checkpoint topic %s: not read to its end "
               "within 60 s",
               up->ckpt_topic);
      goto fail;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eofs++;
    } else if (m->err) {
      snprintf(errstr, errlen, "checkpoint topic %s: %s", up->ckpt_topic,
               rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      goto fail;
    } else {
      read_record(up, m, found);
    }
    rd_kafka_message_destroy(m);
  }
  rc = 0;
fail:
  if (parts)
    rd_kafka_topic_partition_list_destroy(parts);
  if (md)
    rd_kafka_metadata_destroy(md);
  if (rkt)
    rd_kafka_topic_destroy(rkt);
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  return rc;
}

int sync__resume(sl_sync_t *up, char *errstr, size_t errlen) {
  bool *found = calloc(up->nstreams + 1, sizeof(bool));
  int rc = 0;
  if (!found)
    return -ENOMEM;
  up->gap_cp = 0;
  if (!up->o.at_least_once) {
    if ((rc = read_kafka(up, found, errstr, errlen)) < 0)
      goto fail;
  }
  if (!found[0]) {
    char key[SL_STORE_NAME_MAX * 2 + 16];
    uint8_t buf[SL_SYNC_CKPT_BYTES];
    size_t vlen;
    sl_sync_ckpt_t cp;
    state_key(up, GAPS_KEY, key, sizeof(key));
    if (sl_store_state_get(up->st, key, strlen(key), buf, sizeof(buf), &vlen) ==
            0 &&
        sl_sync_ckpt_decode(buf, vlen, &cp) == 0 &&
        !strcmp(cp.store_id, up->store_id))
      up->gap_cp = cp.backlog_next;
  }
  up->gap_pend = up->gap_cp;
  up->gap_store_seq = 0;
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    uint64_t next = 0;
    if (!found[1 + i] && local_ckpt(up, s->name, &s->cp) < 0) {
      if (sl_store_consumer_get(up->st, up->consumer, s->id, &next) < 0)
        next = 0;
      s->cp.backlog_next = s->cp.live_start = s->cp.live_next = next;
    }
    snprintf(s->cp.store_id, sizeof(s->cp.store_id), "%s", up->store_id);
    s->pend = s->cp;
    s->touched = false;
    s->txn_events = s->txn_bytes = 0;
  }
fail:
  free(found);
  return rc;
}

void sync__local_positions(sl_sync_t *up) {
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    sl_sync_ckpt_t cp;
    uint64_t next = 0;
    if (local_ckpt(up, s->name, &cp) < 0) {
      if (sl_store_consumer_get(up->st, up->consumer, s->id, &next) < 0)
        next = 0;
      cp.backlog_next = cp.live_start = cp.live_next = next;
    }
    s->st.next_offset = cp.backlog_next;
    s->st.live_start = cp.live_start;
    s->st.live_next = cp.live_next;
  }
}

int sync__produce_ckpt(sl_sync_t *up, sync_stream_t *s) {
  uint8_t val[SL_SYNC_CKPT_BYTES];
  sl_sync_ckpt_encode(&s->pend, val);
  return sync__produce(up, up->ckpt_rkt, s->ckpt_key, strlen(s->ckpt_key), val,
                       sizeof(val), NULL, 0, sync__opaque(0xffff, 0),
                       sync__record_ts_ms(up, 0));
}

/* Gap -> Event{gap} record on the stream's topic (or the gap topic). */
typedef struct gap_rng {
  uint64_t a, b;
} gap_rng_t;

static int rng_cmp(const void *x, const void *y) {
  const gap_rng_t *p = x, *q = y;
  return p->a < q->a ? -1 : p->a > q->a;
}

/*
 * The store counts everything at or above the uplink's local cursor as
 * undelivered when it evicts, but the live lane's range and the records of
 * transactions not yet committed lie above it. So a gap [a, b) is clipped
 * to the offsets stream s did not send as records: those outside the
 * delivered ranges of pend, plus the evicted ranges the lanes stepped over
 * (inside those ranges but never sent). Returns the pieces in out (sorted,
 * merged), or -1 when they are more than cap or the stepped-over list
 * overflowed (send the gap whole: nothing lost, overlaps possible).
 */
static int gap_pieces(const sync_stream_t *s, uint64_t a, uint64_t b,
                      gap_rng_t *out, int cap) {
  const sl_sync_ckpt_t *p = &s->pend;
  gap_rng_t c[2 + SYNC_SKIP_MAX];
  int n = 0, m = 0;
  if (s->skip_overflow)
    return -1;
  c[n].a = SL_MAX(a, p->backlog_next);
  c[n++].b = SL_MIN(b, p->live_start);
  c[n].a = SL_MAX(a, p->live_next);
  c[n++].b = b;
  for (size_t k = 0; k < s->nskipped; k++) {
    c[n].a = SL_MAX(a, s->skipped[k].a);
    c[n++].b = SL_MIN(b, s->skipped[k].b);
  }
  qsort(c, (size_t)n, sizeof(c[0]), rng_cmp);
  for (int i = 0; i < n; i++) {
    if (c[i].a >= c[i].b)
      continue;
    if (m && c[i].a <= out[m - 1].b) {
      out[m - 1].b = SL_MAX(out[m - 1].b, c[i].b);
      continue;
    }
    if (m == cap)
      return -1;
    out[m++] = c[i];
  }
  return m;
}

static int produce_gap(sl_sync_t *up, sync_stream_t *s,
                       const sl_store_gap_t *g) {
  Sluice__V1__Gap gap = SLUICE__V1__GAP__INIT;
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  char source[SL_STORE_NAME_MAX + 64], offbuf[24];
  uint8_t buf[1024];
  gap.stream = s->name;
  gap.first_offset = g->first_offset;
  gap.last_offset = g->first_offset + g->count - 1;
  gap.count = g->count;
  gap.min_time_ns = g->min_time_ns;
  gap.max_time_ns = g->max_time_ns;
  gap.reason = (char *)sl_store_reason_name(g->reason);
  snprintf(source, sizeof(source), "%s/%s", up->node_id, s->name);
  ev.source = source;
  ev.time_ns = g->recorded_ns;
  ev.ingest_time_ns = g->recorded_ns;
  ev.body_case = SLUICE__V1__EVENT__BODY_GAP;
  ev.gap = &gap;
  const void *val = buf;
  size_t len;
  if (s->json) {
    long jl = sync__json_value(up, s, g->first_offset, &ev, g->recorded_ns);
    if (jl < 0)
      return (int)jl;
    val = up->jbuf;
    len = (size_t)jl;
  } else {
    if (sluice__v1__event__get_packed_size(&ev) > sizeof(buf))
      return SL_ETOOBIG;
    len = sluice__v1__event__pack(&ev, buf);
  }
  int on = snprintf(offbuf, sizeof(offbuf), "%llu",
                    (unsigned long long)g->first_offset);
  rd_kafka_vu_t h[5];
  const char *names[5] = {"node", "stream", "offset", "schema", "gap"};
  const char *vals[5] = {up->node_id, s->name, offbuf, sync__schema(s), "1"};
  for (int i = 0; i < 5; i++) {
    h[i].vtype = RD_KAFKA_VTYPE_HEADER;
    h[i].u.header.name = names[i];
    h[i].u.header.val = vals[i];
    h[i].u.header.size = i == 2 ? on : -1;
  }
  return sync__produce(up, up->gap_rkt ? up->gap_rkt : s->rkt, source,
                       strlen(source), val, len, h, 5, sync__opaque(0xffff, 0),
                       sync__record_ts_ms(up, g->recorded_ns));
}

int sync__produce_gaps(sl_sync_t *up) {
  sl_store_gap_t gaps[SYNC_GAPS_PER_TXN];
  size_t n = 0;
  int rc;
  if ((rc = sl_store_gap_list(up->st, up->gap_pend, gaps, SL_ARRAY_SIZE(gaps),
                              &n)) < 0)
    return rc;
  for (size_t i = 0; i < n; i++) {
    sync_stream_t *s = NULL;
    for (size_t k = 0; k < up->nstreams; k++)
      if (up->streams[k].id == gaps[i].stream)
        s = &up->streams[k];
    if (s) { /* else a stream this uplink does not forward */
      uint64_t a = gaps[i].first_offset, b = a + gaps[i].count;
      gap_rng_t pc[SYNC_GAP_PIECES];
      int np = gap_pieces(s, a, b, pc, SYNC_GAP_PIECES);
      if (np < 0) {
        np = 1;
        pc[0].a = a;
        pc[0].b = b;
      }
      for (int k = 0; k < np; k++) {
        sl_store_gap_t g = gaps[i];
        g.first_offset = pc[k].a;
        g.count = pc[k].b - pc[k].a;
        if ((rc = produce_gap(up, s, &g)) < 0)
          return rc;
      }
      if (up->ngap_skip < SYNC_GAPS_PER_TXN) {
        up->gap_skip[up->ngap_skip].stream = (size_t)(s - up->streams);
        up->gap_skip[up->ngap_skip].first = a;
        up->gap_skip[up->ngap_skip++].end = b;
      }
    }
    up->gap_pend = gaps[i].seq + 1;
    up->gap_txn_n++;
  }
  if (n && !up->o.at_least_once) {
    sl_sync_ckpt_t cp = {.backlog_next = up->gap_pend,
                         .live_start = up->gap_pend,
                         .live_next = up->gap_pend};
    uint8_t val[SL_SYNC_CKPT_BYTES];
    char key[160];
    snprintf(cp.store_id, sizeof(cp.store_id), "%s", up->store_id);
    snprintf(key, sizeof(key), "%s/%s", up->node_id, GAPS_KEY);
    sl_sync_ckpt_encode(&cp, val);
    rc = sync__produce(up, up->ckpt_rkt, key, strlen(key), val, sizeof(val),
                       NULL, 0, sync__opaque(0xffff, 0),
                       sync__record_ts_ms(up, 0));
  }
  return rc;
}

static void on_local_done(void *arg, int status, const uint64_t *offsets,
                          size_t n) {
  (void)arg;
  (void)offsets;
  (void)n;
  (void)status; /* the next commit or the Kafka checkpoint covers a loss */
}

void sync__commit_local(sl_sync_t *up) {
  sl_store_group_t *g = NULL;
  char key[SL_STORE_NAME_MAX * 2 + 16];
  uint8_t val[SL_SYNC_CKPT_BYTES];
  size_t in_group = 0;
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    if (!s->cm_touched)
      continue;
    /* A group holds at most 16 streams: submit full ones. */
    if (g && in_group == 16) {
      if (sl_store_group_submit(g, SL_STORE_SUBMIT_BLOCK, on_local_done, NULL) <
          0)
        sl_store_group_free(g);
      g = NULL;
      in_group = 0;
    }
    if (!g && sl_store_group_new(up->st, &g) < 0)
      return;
    sl_store_group_consumer_set(g, up->consumer, s->id, s->cp.backlog_next);
    state_key(up, s->name, key, sizeof(key));
    sl_sync_ckpt_encode(&s->cp, val);
    sl_store_group_state_put(g, key, strlen(key), val, sizeof(val));
    in_group++;
  }
  if (up->cm_gap_n) {
    sl_sync_ckpt_t cp = {.backlog_next = up->gap_cp,
                         .live_start = up->gap_cp,
                         .live_next = up->gap_cp};
    snprintf(cp.store_id, sizeof(cp.store_id), "%s", up->store_id);
    if (!g && sl_store_group_new(up->st, &g) < 0)
      return;
    state_key(up, GAPS_KEY, key, sizeof(key));
    sl_sync_ckpt_encode(&cp, val);
    sl_store_group_state_put(g, key, strlen(key), val, sizeof(val));
  }
  if (g &&
      sl_store_group_submit(g, SL_STORE_SUBMIT_BLOCK, on_local_done, NULL) < 0)
    sl_store_group_free(g);
}
