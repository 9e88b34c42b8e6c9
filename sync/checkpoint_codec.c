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
#include <string.h>

#include "sync/sync.h"

#define CKPT_MAGIC "SLCK"
#define CKPT_VERSION 1

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
  memcpy(buf, CKPT_MAGIC, 4);
  buf[4] = CKPT_VERSION;
  sl_put_be64(buf + 8, c->backlog_next);
  sl_put_be64(buf + 16, c->live_start);
  sl_put_be64(buf + 24, c->live_next);
  memcpy(buf + 32, c->store_id, strnlen(c->store_id, 32));
  sl_put_be32(buf + 64, fnv1a(buf, 64));
}

int sl_sync_ckpt_decode(const void *buf, size_t len, sl_sync_ckpt_t *c) {
  const uint8_t *p = buf;
  if (len != SL_SYNC_CKPT_BYTES || memcmp(p, CKPT_MAGIC, 4))
    return SL_ECORRUPT;
  if (sl_get_be32(p + 64) != fnv1a(p, 64))
    return SL_ECORRUPT;
  if (p[4] != CKPT_VERSION)
    return p[4] > CKPT_VERSION ? SL_EVERSION : SL_ECORRUPT;
  c->backlog_next = sl_get_be64(p + 8);
  c->live_start = sl_get_be64(p + 16);
  c->live_next = sl_get_be64(p + 24);
  if (c->backlog_next > c->live_start || c->live_start > c->live_next)
    return SL_ECORRUPT;
  memcpy(c->store_id, p + 32, 32);
  c->store_id[32] = '\0';
  return 0;
}

/* Reads a base-128 varint at *pos (< len). Returns 0 or -1. */
static int varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *pos < len; shift += 7) {
    uint8_t b = p[(*pos)++];
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

/* Walks the Event's top-level fields: finds source (1) and whether
 * ingest_time_ns (3) is set to something other than 0. */
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
    switch (key & 7) {
    case 0:
      if (varint(p, len, &pos, &v))
        return SL_ECORRUPT;
      if ((key >> 3) == 3 && v != 0)
        ev->has_ingest_time = 1;
      if ((key >> 3) == 2) /* sint64: zigzag */
        ev->time_ns = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
      break;
    case 1:
      if (len - pos < 8)
        return SL_ECORRUPT;
      pos += 8;
      break;
    case 2:
      if (varint(p, len, &pos, &v) || v > len - pos)
        return SL_ECORRUPT;
      if ((key >> 3) == 1) {
        ev->source = (const char *)p + pos;
        ev->source_len = (size_t)v;
      }
      pos += (size_t)v;
      break;
    case 5:
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
    if (key == 0x0a) /* EventBatch.events, length-delimited */
      break;
    /* An unknown field of a newer EventBatch: skip it. */
    if ((key & 7) != 2 || varint(p, len, pos, &n) || n > len - *pos)
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
