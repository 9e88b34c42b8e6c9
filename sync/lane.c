/*
 * sync/lane.c: one lane of one stream: a store cursor, the record it is in
 * and the next offset to send. Events are sliced out of the stored
 * EventBatch without a decode (sl_sync_event_next()); an event without an
 * ingest time gets its batch's append time appended as
 * Event.ingest_time_ns (D7), which protobuf readers take as the field's value.
 *
 * Bandwidth: the live lane takes from the global bucket; the backlog lane
 * also needs its share bucket unless the live lanes have nothing waiting
 * (the cap is work-conserving).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/sync_int.h"
#include "wire/wire.h"

void sync__lane_reset(sync_lane_t *l, uint64_t next, uint64_t end,
                      bool historical) {
  sync__lane_close(l);
  l->start = next;
  l->next = next;
  l->end = end;
  l->historical = historical;
  l->caught_up = false;
}

void sync__lane_close(sync_lane_t *l) {
  sl_store_cursor_close(l->cur);
  l->cur = NULL;
  l->have_rec = false;
}

void sync__note_skip(sync_stream_t *s, uint64_t a, uint64_t b) {
  if (a >= b)
    return;
  if (s->nskipped && s->skipped[s->nskipped - 1].b == a) {
    s->skipped[s->nskipped - 1].b = b;
    return;
  }
  if (s->nskipped == SYNC_SKIP_MAX) {
    s->skip_overflow = true;
    return;
  }
  s->skipped[s->nskipped].a = a;
  s->skipped[s->nskipped++].b = b;
}

static void dlq_count_failure(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  up->stats.dlq_copy_failed++;
  pthread_mutex_unlock(&up->lock);
}

/* On the store's writer thread. A copy that failed leaves the event in its
 * own stream only; it is counted (sluice_uplink_dead_letter_copy_failed). */
static void dlq_done(void *arg, int status, const uint64_t *offsets, size_t n) {
  (void)offsets;
  (void)n;
  if (status < 0)
    dlq_count_failure(arg);
}

void sync__dead_letter(sl_sync_t *up, sync_stream_t *s, uint64_t off,
                       const void *data, size_t len, int64_t append_time_ns) {
  size_t idx = (size_t)(s - up->streams);
  sync_poison_t *p = NULL;
  for (size_t i = 0; i < up->npoison && !p; i++)
    if (up->poison[i].stream == idx && up->poison[i].offset == off)
      p = &up->poison[i];
  if (!up->has_dlq || !p || p->moved)
    return;
  p->moved = true;
  /* The stored event with attributes saying where it came from and why
   * Kafka refused it; bytes that do not parse travel as a raw body. */
  Sluice__V1__Event *e = sluice__v1__event__unpack(NULL, len, data);
  Sluice__V1__Event raw_ev = SLUICE__V1__EVENT__INIT, *ev = e ? e : &raw_ev;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  if (!e) {
    raw.content_type = "application/x-protobuf";
    raw.data.data = (uint8_t *)data;
    raw.data.len = len;
    raw_ev.source = s->name;
    raw_ev.time_ns = append_time_ns;
    raw_ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
    raw_ev.raw = &raw;
  }
  if (!ev->ingest_time_ns)
    ev->ingest_time_ns = append_time_ns;
  char offbuf[24];
  snprintf(offbuf, sizeof(offbuf), "%llu", (unsigned long long)off);
  const char *kv[4][2] = {
      {"dlq.stream", s->name},
      {"dlq.offset", offbuf},
      {"dlq.topic", s->topic},
      {"dlq.reason", p->err < 0
                         ? sl_strerror(p->err)
                         : rd_kafka_err2name((rd_kafka_resp_err_t)p->err)}};
  size_t na = ev->n_attributes;
  Sluice__V1__Attribute a[4], **pa = calloc(na + 4, sizeof(*pa));
  Sluice__V1__Attribute **old = ev->attributes;
  uint8_t *buf = NULL;
  sl_store_batch_t *b = NULL;
  sl_store_group_t *g = NULL;
  if (!pa) {
    dlq_count_failure(up);
    goto out;
  }
  for (size_t i = 0; i < na; i++)
    pa[i] = old[i];
  for (int i = 0; i < 4; i++) {
    sluice__v1__attribute__init(&a[i]);
    a[i].key = (char *)kv[i][0];
    a[i].value = (char *)kv[i][1];
    pa[na + (size_t)i] = &a[i];
  }
  ev->attributes = pa;
  ev->n_attributes = na + 4;
  Sluice__V1__EventBatch eb = SLUICE__V1__EVENT_BATCH__INIT;
  eb.n_events = 1;
  eb.events = &ev;
  size_t blen = sluice__v1__event_batch__get_packed_size(&eb);
  bool submitted = false;
  if ((buf = malloc(blen))) {
    sluice__v1__event_batch__pack(&eb, buf);
    if (sl_store_batch_new(up->st, up->dlq_stream, buf, blen, 1, ev->time_ns,
                           ev->time_ns, &b) == 0 &&
        sl_store_group_new(up->st, &g) == 0 && sl_store_group_add(g, b) == 0) {
      b = NULL;
      if (sl_store_group_submit(g, SL_STORE_SUBMIT_BLOCK, dlq_done, up) == 0) {
        g = NULL;
        submitted = true;
      }
    }
  }
  if (!submitted)
    dlq_count_failure(up);
  ev->attributes = old;
  ev->n_attributes = na;
out:
  sl_store_batch_free(b);
  sl_store_group_free(g);
  free(buf);
  free(pa);
  if (e)
    sluice__v1__event__free_unpacked(e, NULL);
}

static void hdr(rd_kafka_vu_t *h, const char *name, const void *val,
                ssize_t size) {
  h->vtype = RD_KAFKA_VTYPE_HEADER;
  h->u.header.name = name;
  h->u.header.val = val;
  h->u.header.size = size;
}

/* Opens the cursor and loads the next record. Returns 0, SL_ENOTFOUND
 * (nothing more now) or an error. */
static int next_record(sl_sync_t *up, sync_stream_t *s, sync_lane_t *l) {
  int rc;
  if (!l->cur &&
      (rc = sl_store_cursor_open(up->st, s->id, l->next, l->end, &l->cur)) < 0)
    return rc;
  for (;;) {
    if ((rc = sl_store_cursor_next(l->cur, &l->rec)) < 0)
      return rc;
    uint64_t rend = l->rec.first_offset + l->rec.count;
    if (rend <= l->next)
      continue; /* wholly before our position */
    if (l->rec.status != 0) {
      /* Evicted or corrupt: the store wrote gap records for the range. */
      sync__note_skip(s, SL_MAX(l->next, l->rec.first_offset),
                      SL_MIN(rend, l->end));
      l->next = SL_MIN(rend, l->end);
      continue;
    }
    if (l->rec.first_offset > l->next) {
      /* A hole the store reported as gap. */
      sync__note_skip(s, l->next, SL_MIN(l->rec.first_offset, l->end));
      l->next = l->rec.first_offset;
    }
    l->have_rec = true;
    l->pos = 0;
    l->rec_off = l->rec.first_offset;
    return 0;
  }
}

/* Copies the event into up->scratch with the record's append time added
 * as Event.ingest_time_ns (a zigzag varint after the event's last field:
 * protobuf readers take the last occurrence). Returns the value's length
 * or -ENOMEM. */
static long with_ingest_time(sl_sync_t *up, const sl_sync_event_t *ev,
                             int64_t t) {
  if (up->scratch_cap < ev->len + 16) {
    size_t cap = (ev->len + 16) * 2;
    uint8_t *p = realloc(up->scratch, cap);
    if (!p)
      return -ENOMEM;
    up->scratch = p;
    up->scratch_cap = cap;
  }
  memcpy(up->scratch, ev->data, ev->len);
  uint64_t zz = ((uint64_t)t << 1) ^ (uint64_t)(t >> 63);
  up->scratch[ev->len] = SL_WIRE_KEY_EVENT_INGEST_TIME;
  return (long)(ev->len + 1 +
                sl_wire_varint_put(up->scratch + ev->len + 1, zz));
}

/* The bandwidth cap, on bytes about to be sent by lane l: true when the
 * lane must wait (up->throttle_ns holds the shortest wait), else the
 * tokens are taken. */
static bool cap_wait(sl_sync_t *up, const sync_lane_t *l, double bytes) {
  if (!(up->bucket.rate > 0))
    return false;
  uint64_t now = sl_now_mono_ns();
  uint64_t w = sl_sync_bucket_wait_ns(&up->bucket, bytes, now);
  if (!w && l->historical && up->live_throttled)
    w = sl_sync_bucket_wait_ns(&up->backlog_bucket, bytes, now);
  if (w) {
    if (!l->historical)
      up->live_throttled = true;
    if (!up->throttle_ns || w < up->throttle_ns)
      up->throttle_ns = w;
    return true;
  }
  sl_sync_bucket_take(&up->bucket, bytes);
  if (l->historical)
    sl_sync_bucket_take(&up->backlog_bucket, bytes);
  return false;
}

/* The headers of the record of event off (at most 5, fewer with
 * kafka.omit_headers; they borrow offbuf). Returns their number. */
static size_t headers(const sl_sync_t *up, const sync_stream_t *s,
                      const sync_lane_t *l, uint64_t off, char *offbuf,
                      size_t offlen, rd_kafka_vu_t *h) {
  uint32_t omit = up->o.omit_headers;
  size_t nh = 0;
  if (!(omit & SL_SYNC_HDR_NODE))
    hdr(&h[nh++], "node", up->node_id, -1);
  if (!(omit & SL_SYNC_HDR_STREAM))
    hdr(&h[nh++], "stream", s->name, -1);
  if (!(omit & SL_SYNC_HDR_OFFSET)) {
    int on = snprintf(offbuf, offlen, "%llu", (unsigned long long)off);
    hdr(&h[nh++], "offset", offbuf, on);
  }
  if (!(omit & SL_SYNC_HDR_SCHEMA))
    hdr(&h[nh++], "schema", sync__schema(s), -1);
  if (l->historical && !(omit & SL_SYNC_HDR_HISTORICAL))
    hdr(&h[nh++], "historical", "1", 1);
  return nh;
}

long sync__lane_pump(sl_sync_t *up, sync_stream_t *s, sync_lane_t *l,
                     uint64_t max) {
  size_t idx = (size_t)(s - up->streams);
  long sent = 0;
  char offbuf[24];
  int rc;

  l->caught_up = false;
  while ((uint64_t)sent < max && l->next < l->end) {
    sl_sync_event_t ev;
    if (!l->have_rec) {
      rc = next_record(up, s, l);
      if (rc == SL_ENOTFOUND) {
        l->caught_up = true;
        break;
      }
      if (rc < 0)
        return rc;
    }
    if (l->rec_off >= l->end) {
      l->have_rec = false;
      l->caught_up = true;
      break;
    }
    size_t save = l->pos;
    rc = sl_sync_event_next(l->rec.payload, l->rec.len, &l->pos, &ev);
    if (rc == SL_ENOTFOUND || rc == SL_ECORRUPT) {
      /* End of the batch (or a batch whose checksum held but whose
       * protobuf does not parse): move past the record's range. */
      uint64_t rend = l->rec.first_offset + l->rec.count;
      if (rc == SL_ECORRUPT)
        sync__set_error(up, SL_ECORRUPT,
                        "stream %s: batch at %llu does not parse", s->name,
                        (unsigned long long)l->rec.first_offset);
      l->next = SL_MAX(l->next, SL_MIN(rend, l->end));
      l->have_rec = false;
      continue;
    }
    uint64_t off = l->rec_off++;
    if (off < l->next)
      continue;
    if (ev.len > up->o.max_record_bytes)
      sync__poison_add(up, idx, off, SL_ETOOBIG);
    if (sync__poisoned(up, idx, off)) {
      /* Dead-lettered: counted, copied, and the lane goes on. */
      sync__dead_letter(up, s, off, ev.data, ev.len, l->rec.append_time_ns);
      l->next = off + 1;
      continue;
    }
    const void *val = ev.data;
    size_t vlen = ev.len;
    if (s->json) {
      /* format: json: decoded and rendered (the protobuf path slices the
       * stored bytes without a decode). */
      bool own;
      Sluice__V1__Event *e = sync__event_unpack(up, ev.data, ev.len, &own);
      long jl = e ? sync__json_value(up, s, off, e, l->rec.append_time_ns)
                  : SL_ECORRUPT;
      if (e && own)
        sluice__v1__event__free_unpacked(e, NULL);
      if (jl == SL_ECORRUPT) {
        sync__poison_add(up, idx, off, SL_ECORRUPT);
        sync__dead_letter(up, s, off, ev.data, ev.len, l->rec.append_time_ns);
        l->next = off + 1;
        continue;
      }
      if (jl < 0) {
        l->pos = save;
        l->rec_off--;
        return jl;
      }
      val = up->jbuf;
      vlen = (size_t)jl;
    } else if (!ev.has_ingest_time) {
      long n = with_ingest_time(up, &ev, l->rec.append_time_ns);
      if (n < 0)
        return n;
      val = up->scratch;
      vlen = (size_t)n;
    }
    /* Bandwidth cap, on what is sent: the value as produced (ingest time
     * appended, or the JSON), the key and ~96 bytes of headers. */
    if (cap_wait(up, l, (double)(vlen + ev.source_len + 96))) {
      l->pos = save; /* the same event, next time */
      l->rec_off--;
      break;
    }
    rd_kafka_vu_t h[5];
    size_t nh = headers(up, s, l, off, offbuf, sizeof(offbuf), h);
    rc = sync__produce(up, s->rkt, ev.source, ev.source_len, val, vlen, h, nh,
                       sync__opaque(idx, off),
                       sync__record_ts_ms(up, ev.time_ns));
    if (rc == SL_ETOOBIG) {
      sync__poison_add(up, idx, off, rc);
      sync__dead_letter(up, s, off, ev.data, ev.len, l->rec.append_time_ns);
      l->next = off + 1;
      continue;
    }
    if (rc < 0) {
      l->pos = save;
      l->rec_off--;
      return rc;
    }
    l->next = off + 1;
    s->txn_events++;
    s->txn_bytes += vlen + ev.source_len;
    s->touched = true;
    sent++;
  }
  if (l->next >= l->end)
    l->caught_up = true;
  return sent;
}
