/*
 * sync/checkpoint_codec.c: the checkpoint record's value and the slicing of
 * Events out of a stored EventBatch (both pure functions, unit tested).
 *
 * Checkpoint value, 68 bytes, big endian:
 *   0  "SLCK" magic
 *   4  format version (1), 3 bytes zero
 *   8  backlog_next   16 live_start   24 live_next
 *   32 store id: 32 hex characters (sl_store_info_t.node_id)
 *   64 FNV-1a 32 of bytes 0..63
 * Readers accept version 1 only and refuse newer versions (SL_EVERSION).
 */
#include <assert.h>
#include <string.h>

#include "sync/sync.h"
#include "wire/wire.h"

#define CKPT_MAGIC "SLCK"
#define CKPT_VERSION 1

/* The layout above, by offset. */
enum {
  CKPT_OFF_MAGIC = 0,
  CKPT_OFF_VERSION = 4,
  CKPT_OFF_BACKLOG_NEXT = 8,
  CKPT_OFF_LIVE_START = 16,
  CKPT_OFF_LIVE_NEXT = 24,
  CKPT_OFF_STORE_ID = 32,
  CKPT_STORE_ID_BYTES = 32,
  CKPT_OFF_SUM = 64, /* the checksum covers [0, CKPT_OFF_SUM) */
};

static_assert(sizeof(CKPT_MAGIC) - 1 == CKPT_OFF_VERSION,
              "the magic fills bytes 0..3");
static_assert(CKPT_OFF_STORE_ID + CKPT_STORE_ID_BYTES == CKPT_OFF_SUM,
              "the store id ends where the checksum starts");
static_assert(CKPT_OFF_SUM + 4 == SL_SYNC_CKPT_BYTES,
              "a checkpoint is 68 bytes on disk (format version 1)");
static_assert(sizeof(((sl_sync_ckpt_t *)0)->store_id) ==
                  CKPT_STORE_ID_BYTES + 1,
              "store_id holds the 32 hex characters and a NUL");

static uint32_t fnv1a(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

void sl_sync_ckpt_encode(const sl_sync_ckpt_t *c, uint8_t *buf) {
  memset(buf, 0, SL_SYNC_CKPT_BYTES);
  memcpy(buf + CKPT_OFF_MAGIC, CKPT_MAGIC, 4);
  buf[CKPT_OFF_VERSION] = CKPT_VERSION;
  sl_put_be64(buf + CKPT_OFF_BACKLOG_NEXT, c->backlog_next);
  sl_put_be64(buf + CKPT_OFF_LIVE_START, c->live_start);
  sl_put_be64(buf + CKPT_OFF_LIVE_NEXT, c->live_next);
  memcpy(buf + CKPT_OFF_STORE_ID, c->store_id,
         strnlen(c->store_id, CKPT_STORE_ID_BYTES));
  sl_put_be32(buf + CKPT_OFF_SUM, fnv1a(buf, CKPT_OFF_SUM));
}

int sl_sync_ckpt_decode(const void *buf, size_t len, sl_sync_ckpt_t *c) {
  const uint8_t *p = buf;
  if (len != SL_SYNC_CKPT_BYTES || memcmp(p + CKPT_OFF_MAGIC, CKPT_MAGIC, 4))
    return SL_ECORRUPT;
  if (sl_get_be32(p + CKPT_OFF_SUM) != fnv1a(p, CKPT_OFF_SUM))
    return SL_ECORRUPT;
  if (p[CKPT_OFF_VERSION] != CKPT_VERSION)
    return p[CKPT_OFF_VERSION] > CKPT_VERSION ? SL_EVERSION : SL_ECORRUPT;
  c->backlog_next = sl_get_be64(p + CKPT_OFF_BACKLOG_NEXT);
  c->live_start = sl_get_be64(p + CKPT_OFF_LIVE_START);
  c->live_next = sl_get_be64(p + CKPT_OFF_LIVE_NEXT);
  if (c->backlog_next > c->live_start || c->live_start > c->live_next)
    return SL_ECORRUPT;
  memcpy(c->store_id, p + CKPT_OFF_STORE_ID, CKPT_STORE_ID_BYTES);
  c->store_id[CKPT_STORE_ID_BYTES] = '\0';
  return 0;
}

/* Reads a base-128 varint at *pos (< len). Returns 0 or -1. */
static int varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
  size_t k = sl_wire_varint_get(p + *pos, p + len, v);
  *pos += k;
  return k ? 0 : -1;
}

/* Walks the Event's top-level fields: finds source and time_ns, and whether
 * ingest_time_ns is set to something other than 0. */
static int scan_event(sl_sync_event_t *ev) {
  const uint8_t *p = ev->data;
  size_t pos = 0, len = ev->len;
  uint64_t key, v;
  ev->source = "";
  ev->source_len = 0;
  ev->has_ingest_time = 0;
  ev->time_ns = 0;
  while (pos < len) {
    if (varint(p, len, &pos, &key))
      return SL_ECORRUPT;
    switch (SL_WIRE_KEY_TYPE(key)) {
    case SL_WIRE_TYPE_VARINT:
      if (varint(p, len, &pos, &v))
        return SL_ECORRUPT;
      if (SL_WIRE_KEY_FIELD(key) == SL_WIRE_EVENT_INGEST_TIME_NS && v != 0)
        ev->has_ingest_time = 1;
      if (SL_WIRE_KEY_FIELD(key) == SL_WIRE_EVENT_TIME_NS) /* sint64 */
        ev->time_ns = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
      break;
    case SL_WIRE_TYPE_I64:
      if (len - pos < 8)
        return SL_ECORRUPT;
      pos += 8;
      break;
    case SL_WIRE_TYPE_LEN:
      if (varint(p, len, &pos, &v) || v > len - pos)
        return SL_ECORRUPT;
      if (SL_WIRE_KEY_FIELD(key) == SL_WIRE_EVENT_SOURCE) {
        ev->source = (const char *)p + pos;
        ev->source_len = (size_t)v;
      }
      pos += (size_t)v;
      break;
    case SL_WIRE_TYPE_I32:
      if (len - pos < 4)
        return SL_ECORRUPT;
      pos += 4;
      break;
    default:
      return SL_ECORRUPT;
    }
  }
  return 0;
}

int sl_sync_event_next(const void *payload, size_t len, size_t *pos,
                       sl_sync_event_t *ev) {
  const uint8_t *p = payload;
  uint64_t key, n;
  for (;;) {
    if (*pos >= len)
      return SL_ENOTFOUND;
    if (varint(p, len, pos, &key))
      return SL_ECORRUPT;
    if (key == SL_WIRE_KEY_BATCH_EVENTS)
      break;
    /* An unknown field of a newer EventBatch: skip it. */
    if (SL_WIRE_KEY_TYPE(key) != SL_WIRE_TYPE_LEN || varint(p, len, pos, &n) ||
        n > len - *pos)
      return SL_ECORRUPT;
    *pos += (size_t)n;
  }
  if (varint(p, len, pos, &n) || n > len - *pos)
    return SL_ECORRUPT;
  ev->data = p + *pos;
  ev->len = (size_t)n;
  *pos += (size_t)n;
  return scan_event(ev);
}
