/*
 * frame_fast.c: the common Publish decoded without protobuf-c (frame_int.h).
 *
 * protobuf-c's generic unpack (two passes over every message, a descriptor
 * lookup per field, an allocation and an init per message) and the
 * descriptor walk of check_message() were two thirds of the daemon's
 * instructions per natively ingested event (docs/BENCHMARKS.md "cost").
 * This decoder knows the v1 schema's hot messages (Frame, Publish, Event,
 * Reading, Attribute) and accepts only bytes that protobuf-c parses
 * unambiguously into the same structure: known fields in their wire type,
 * single-byte keys, singular fields and oneof members at most once,
 * varints that protobuf-c reads without truncation, bool as 0 or 1, strings
 * valid UTF-8 without NUL. Everything else returns NULL and is decoded by
 * protobuf-c as before, so what is accepted, refused and stored does not
 * change (tests/frame/test_frame_fast.c compares both decoders).
 */
#include <string.h>

#include "wire/frame_int.h"
#include "wire/wire.h"

/* The keys of the fields decoded here (one byte each). */
#define K_VARINT(n) SL_WIRE_KEY((n), SL_WIRE_TYPE_VARINT)
#define K_LEN(n) SL_WIRE_KEY((n), SL_WIRE_TYPE_LEN)
#define K_I64(n) SL_WIRE_KEY((n), 1u)
#define MAX_ATTRS 64 /* attributes per event decoded here; more: protobuf-c */

typedef struct {
  const uint8_t *p, *end;
} span_t;

static void *fa_alloc(sl_frame_arena_t *ar, size_t n) {
  return ar->alloc.alloc(ar->alloc.allocator_data, n);
}

/* A varint of at most max bytes whose value protobuf-c reads exactly. */
static int get_varint(span_t *s, size_t max, uint64_t *v) {
  size_t n = sl_wire_varint_get(s->p, s->end, v);
  if (n == 0 || n > max || (n == 10 && s->p[9] > 1))
    return -1;
  s->p += n;
  return 0;
}

/* A length-delimited value: its bytes in *out. */
static int get_len(span_t *s, span_t *out) {
  uint64_t n;
  if (get_varint(s, 5, &n) < 0 || n > 0x7fffffffu ||
      n > (uint64_t)(s->end - s->p))
    return -1;
  out->p = s->p;
  out->end = s->p + n;
  s->p += n;
  return 0;
}

/* Valid UTF-8 without NUL bytes (check_message() reads up to a NUL). */
static int str_ok(const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; n - i >= 8; i += 8) { /* ASCII without NUL, a word at a time */
    uint64_t w;
    memcpy(&w, p + i, sizeof(w));
    if ((w & 0x8080808080808080ull) ||
        ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull))
      break;
  }
  for (; i < n && p[i] && p[i] < 0x80; i++)
    ;
  if (i == n)
    return 0;
  if (memchr(p + i, 0, n - i))
    return -1;
  return wire__utf8_check(p + i, n - i) == n - i ? 0 : -1;
}

/* A string field as protobuf-c unpacks it: a NUL-terminated copy. */
static int get_str(sl_frame_arena_t *ar, span_t *s, char **out) {
  span_t v;
  char *c;
  size_t n;
  if (get_len(s, &v) < 0)
    return -1;
  n = (size_t)(v.end - v.p);
  if (str_ok(v.p, n) < 0 || !(c = fa_alloc(ar, n + 1)))
    return -1;
  memcpy(c, v.p, n);
  c[n] = 0;
  *out = c;
  return 0;
}

/* An enum (int32) or uint32 varint: at most 5 bytes, value < 2^31 for an
 * enum, < 2^32 for a uint32. */
static int get_u32(span_t *s, uint64_t lim, uint32_t *out) {
  uint64_t v;
  if (get_varint(s, 5, &v) < 0 || v > lim)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

static int64_t unzigzag(uint64_t v) {
  return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static Sluice__V1__Reading *reading_decode(sl_frame_arena_t *ar, span_t s) {
  Sluice__V1__Reading *r = fa_alloc(ar, sizeof(*r));
  unsigned seen = 0;
  uint64_t v;
  uint32_t u;
  if (!r)
    return NULL;
  sluice__v1__reading__init(r);
  while (s.p < s.end) {
    uint8_t key = *s.p++;
    unsigned bit;
    if (key & 0x80)
      return NULL;
    bit = 1u << SL_WIRE_KEY_FIELD(key);
    if (seen & bit)
      return NULL;
    seen |= bit;
    switch (key) {
    case K_I64(1):
      if (s.end - s.p < 8)
        return NULL;
      memcpy(&r->double_value, s.p, 8);
      s.p += 8;
      r->value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      break;
    case K_VARINT(2):
      if (get_varint(&s, 10, &v) < 0)
        return NULL;
      r->int_value = unzigzag(v);
      r->value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
      break;
    case K_VARINT(3):
      if (s.p >= s.end || *s.p > 1)
        return NULL;
      r->bool_value = *s.p++;
      r->value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
      break;
    case K_LEN(4):
      if (get_str(ar, &s, &r->string_value) < 0)
        return NULL;
      r->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
      break;
    case K_VARINT(8):
      if (get_varint(&s, 10, &v) < 0)
        return NULL;
      r->uint_value = v;
      r->value_case = SLUICE__V1__READING__VALUE_UINT_VALUE;
      break;
    case K_VARINT(5):
      if (get_u32(&s, 0x7fffffff, &u) < 0)
        return NULL;
      r->quality = (Sluice__V1__Quality)u;
      break;
    case K_LEN(6):
      if (get_str(ar, &s, &r->unit) < 0)
        return NULL;
      break;
    case K_VARINT(7):
      if (get_u32(&s, 0xffffffffu, &r->status_code) < 0)
        return NULL;
      break;
    case K_VARINT(9):
      if (get_u32(&s, 0x7fffffff, &u) < 0)
        return NULL;
      r->datatype = (Sluice__V1__DataType)u;
      break;
    default:
      return NULL;
    }
  }
  /* One member of the value oneof at most (protobuf-c keeps the last). */
  v = seen & ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 8));
  return (v & (v - 1)) ? NULL : r;
}

static Sluice__V1__Attribute *attr_decode(sl_frame_arena_t *ar, span_t s) {
  Sluice__V1__Attribute *a = fa_alloc(ar, sizeof(*a));
  unsigned seen = 0;
  if (!a)
    return NULL;
  sluice__v1__attribute__init(a);
  while (s.p < s.end) {
    uint8_t key = *s.p++;
    char **dst;
    if (key == K_LEN(1))
      dst = &a->key;
    else if (key == K_LEN(2))
      dst = &a->value;
    else
      return NULL;
    if (seen & (1u << (key >> 3)))
      return NULL;
    seen |= 1u << (key >> 3);
    if (get_str(ar, &s, dst) < 0)
      return NULL;
  }
  return a;
}

static Sluice__V1__Event *event_decode(sl_frame_arena_t *ar, span_t s) {
  Sluice__V1__Event *e = fa_alloc(ar, sizeof(*e));
  span_t attrs[MAX_ATTRS], v;
  size_t na = 0;
  unsigned seen = 0;
  uint64_t x;
  if (!e)
    return NULL;
  sluice__v1__event__init(e);
  while (s.p < s.end) {
    uint8_t key = *s.p++;
    if (key == K_LEN(9)) { /* repeated: decoded below */
      if (na == MAX_ATTRS || get_len(&s, &attrs[na++]) < 0)
        return NULL;
      continue;
    }
    if (key & 0x80 || (seen & (1u << (key >> 3))))
      return NULL;
    seen |= 1u << (key >> 3);
    switch (key) {
    case K_LEN(1):
      if (get_str(ar, &s, &e->source) < 0)
        return NULL;
      break;
    case K_VARINT(2):
      if (get_varint(&s, 10, &x) < 0)
        return NULL;
      e->time_ns = unzigzag(x);
      break;
    case K_VARINT(3):
      if (get_varint(&s, 10, &x) < 0)
        return NULL;
      e->ingest_time_ns = unzigzag(x);
      break;
    case K_LEN(4):
      if (get_len(&s, &v) < 0 || !(e->reading = reading_decode(ar, v)))
        return NULL;
      e->body_case = SLUICE__V1__EVENT__BODY_READING;
      break;
    default:
      return NULL;
    }
  }
  if (na) {
    if (!(e->attributes = fa_alloc(ar, na * sizeof(*e->attributes))))
      return NULL;
    for (size_t i = 0; i < na; i++)
      if (!(e->attributes[i] = attr_decode(ar, attrs[i])))
        return NULL;
    e->n_attributes = na;
  }
  return e;
}

const Sluice__V1__Frame *wire__publish_fast(sl_frame_arena_t *ar,
                                            const uint8_t *body, size_t len) {
  span_t s = {body, body + len}, pub, v;
  Sluice__V1__Frame *fr;
  Sluice__V1__Publish *p;
  unsigned seen = 0;
  size_t n = 0;

  /* Frame: exactly one field, publish. */
  if (s.p >= s.end || *s.p++ != K_LEN(3) || get_len(&s, &pub) < 0 ||
      s.p != s.end)
    return NULL;
  /* Count the events first: protobuf-c allocates the array at its size. */
  for (s = pub; s.p < s.end;) {
    uint8_t key = *s.p++;
    uint64_t x;
    if (key == K_LEN(3)) {
      if (get_len(&s, &v) < 0)
        return NULL;
      n++;
    } else if (key == K_VARINT(1) || key == K_LEN(2)) {
      if (seen & (1u << (key >> 3)))
        return NULL;
      seen |= 1u << (key >> 3);
      if (key == K_VARINT(1) ? get_varint(&s, 10, &x) < 0 : get_len(&s, &v) < 0)
        return NULL;
    } else {
      return NULL;
    }
  }
  if (n == 0 || !(fr = fa_alloc(ar, sizeof(*fr))) ||
      !(p = fa_alloc(ar, sizeof(*p))))
    return NULL;
  sluice__v1__publish__init(p);
  if (!(p->events = fa_alloc(ar, n * sizeof(*p->events))))
    return NULL;
  sluice__v1__frame__init(fr);
  fr->kind_case = SLUICE__V1__FRAME__KIND_PUBLISH;
  fr->publish = p;
  for (s = pub; s.p < s.end;) {
    uint8_t key = *s.p++;
    if (key == K_VARINT(1)) {
      get_varint(&s, 10, &p->batch_id);
    } else if (key == K_LEN(2)) {
      if (get_str(ar, &s, &p->stream) < 0)
        return NULL;
    } else {
      get_len(&s, &v);
      if (!(p->events[p->n_events] = event_decode(ar, v)))
        return NULL;
      p->n_events++;
    }
  }
  /* check_kind()'s refusals keep their reasons: protobuf-c's path. */
  return p->batch_id ? fr : NULL;
}
