/*
 * The native protocol's frame codec: see frame.h for the contract and
 * docs/PROTOCOL.md for the wire format.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/frame.h"
#include "wire/frame_int.h"
#include "wire/wire.h"

/* Field keys (field number << 3 | wire type) used by the raw encoders. */
#define TAG_VARINT(n) ((uint8_t)SL_WIRE_KEY((n), SL_WIRE_TYPE_VARINT))
#define TAG_LEN(n) ((uint8_t)SL_WIRE_KEY((n), SL_WIRE_TYPE_LEN))
/* The deepest nesting we walk; the v1 schema is 5 deep and not recursive. */
#define MAX_DEPTH 16

static void fail_reason(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_reason(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!errstr || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
}

/* ---- parse ------------------------------------------------------------ */

int sl_frame_parse(const uint8_t *buf, size_t len, size_t max_frame_bytes,
                   size_t *consumed, const uint8_t **body, size_t *body_len) {
  uint32_t n;

  *consumed = 0;
  *body = NULL;
  *body_len = 0;
  if (len < SL_FRAME_HEADER_BYTES)
    return 0;
  n = sl_get_be32(buf);
  if (n == 0)
    return SL_EPROTO;
  if (n > max_frame_bytes)
    return SL_ETOOBIG;
  if (len - SL_FRAME_HEADER_BYTES < n) {
    *body_len = SL_FRAME_HEADER_BYTES + (size_t)n;
    return 0;
  }
  *consumed = SL_FRAME_HEADER_BYTES + (size_t)n;
  *body = buf + SL_FRAME_HEADER_BYTES;
  *body_len = n;
  return 0;
}

/* ---- arena ------------------------------------------------------------ */

static void *arena_alloc(void *data, size_t size) {
  sl_frame_arena_t *ar = data;
  const size_t align = alignof(max_align_t);
  size_t start = (ar->used + align - 1) & ~(align - 1);
  void *p;

  if (start > ar->cap || size > ar->cap - start) {
    ar->exhausted = true;
    return NULL;
  }
  p = ar->mem + start;
  ar->used = start + size;
  if (ar->used > ar->peak)
    ar->peak = ar->used;
  return p;
}

/* Everything is released at once by the next reset. */
static void arena_free(void *data, void *ptr) {}

int sl_frame_arena_new(size_t cap, sl_frame_arena_t **out) {
  sl_frame_arena_t *ar;

  if (cap < 1024)
    return -EINVAL;
  ar = calloc(1, sizeof(*ar));
  if (!ar)
    return -ENOMEM;
  ar->mem = malloc(cap);
  if (!ar->mem) {
    free(ar);
    return -ENOMEM;
  }
  ar->cap = cap;
  ar->alloc.alloc = arena_alloc;
  ar->alloc.free = arena_free;
  ar->alloc.allocator_data = ar;
  *out = ar;
  return 0;
}

void sl_frame_arena_free(sl_frame_arena_t *ar) {
  if (!ar)
    return;
  free(ar->mem);
  free(ar);
}

size_t sl_frame_arena_used(const sl_frame_arena_t *ar) {
  return ar->used;
}

size_t sl_frame_arena_peak(const sl_frame_arena_t *ar) {
  return ar->peak;
}

/* ---- validation ------------------------------------------------------- */

/*
 * Strict UTF-8 (Unicode Table 3-7): no overlong forms, no surrogates, nothing
 * above U+10FFFF. Returns the offset of the first bad byte, or len.
 */
size_t wire__utf8_check(const uint8_t *s, size_t len) {
  size_t i = 0;

  while (i < len) {
    uint8_t c = s[i];
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;

    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      n = 1;
    else if (c >= 0xe0 && c <= 0xef)
      n = 2;
    else if (c >= 0xf0 && c <= 0xf4)
      n = 3;
    else
      return i;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;
    else if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
    if (len - i - 1 < n)
      return i;
    if (s[i + 1] < lo || s[i + 1] > hi)
      return i;
    for (size_t k = 2; k <= n; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        return i;
    i += n + 1;
  }
  return len;
}

static int check_string(const ProtobufCMessageDescriptor *desc,
                        const ProtobufCFieldDescriptor *f, const char *s,
                        char *errstr, size_t errlen) {
  size_t len, bad;

  if (!s)
    return 0;
  len = strlen(s);
  bad = wire__utf8_check((const uint8_t *)s, len);
  if (bad == len)
    return 0;
  fail_reason(errstr, errlen, "invalid UTF-8 in %s.%s at byte %zu",
              desc->short_name, f->name, bad);
  return SL_EPROTO;
}

/*
 * Walks every set string field of m at any depth, through the descriptors,
 * so a field added to the schema later is checked without code changes.
 * Oneof members share storage: only the active member is read.
 * Also rejects unknown fields with an invalid field number (0 or above
 * 2^29 - 1): protobuf-c keeps a non-canonically encoded tag 0, but refuses
 * it once re-encoded, so such a frame could not be forwarded intact
 * (found by fuzz_frame).
 */
static int check_message(const ProtobufCMessage *m, int depth, char *errstr,
                         size_t errlen) {
  const ProtobufCMessageDescriptor *desc = m->descriptor;
  const char *base = (const char *)m;
  int rc;

  if (depth > MAX_DEPTH) {
    fail_reason(errstr, errlen, "message nesting deeper than %d", MAX_DEPTH);
    return SL_EPROTO;
  }
  for (size_t i = 0; i < m->n_unknown_fields; i++) {
    uint32_t tag = m->unknown_fields[i].tag;
    if (tag == 0 || tag > 0x1fffffffu) {
      fail_reason(errstr, errlen, "invalid field number %u in %s", tag,
                  desc->short_name);
      return SL_EPROTO;
    }
  }
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &desc->fields[i];
    const void *slot = base + f->offset;

    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      uint32_t active;
      memcpy(&active, base + f->quantifier_offset, sizeof(active));
      if (active != f->id)
        continue;
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n;
      void *const *arr;
      memcpy(&n, base + f->quantifier_offset, sizeof(n));
      memcpy(&arr, slot, sizeof(arr));
      for (size_t k = 0; k < n; k++) {
        if (f->type == PROTOBUF_C_TYPE_STRING)
          rc = check_string(desc, f, arr[k], errstr, errlen);
        else
          rc = arr[k] ? check_message(arr[k], depth + 1, errstr, errlen) : 0;
        if (rc)
          return rc;
      }
      continue;
    }
    if (f->type == PROTOBUF_C_TYPE_STRING) {
      const char *s;
      memcpy(&s, slot, sizeof(s));
      rc = check_string(desc, f, s, errstr, errlen);
    } else {
      const ProtobufCMessage *sub;
      memcpy(&sub, slot, sizeof(sub));
      rc = sub ? check_message(sub, depth + 1, errstr, errlen) : 0;
    }
    if (rc)
      return rc;
  }
  return 0;
}

static int check_version(const char *what, uint32_t v, char *errstr,
                         size_t errlen) {
  if (v >= SL_PROTOCOL_VERSION_MIN && v <= SL_PROTOCOL_VERSION_MAX)
    return 0;
  fail_reason(errstr, errlen,
              "%s protocol_version %u not supported (this build speaks %u..%u)",
              what, v, SL_PROTOCOL_VERSION_MIN, SL_PROTOCOL_VERSION_MAX);
  return SL_EVERSION;
}

/* Per-kind rules; the oneof member is known to be set and non-NULL. */
static int check_kind(const Sluice__V1__Frame *fr, char *errstr,
                      size_t errlen) {
  switch (fr->kind_case) {
  case SLUICE__V1__FRAME__KIND_HELLO:
    if (!fr->hello->client_id || !fr->hello->client_id[0]) {
      fail_reason(errstr, errlen, "hello without client_id");
      return SL_EPROTO;
    }
    return check_version("hello", fr->hello->protocol_version, errstr, errlen);
  case SLUICE__V1__FRAME__KIND_HELLO_ACK:
    return check_version("hello_ack", fr->hello_ack->protocol_version, errstr,
                         errlen);
  case SLUICE__V1__FRAME__KIND_PUBLISH:
    if (fr->publish->batch_id == 0) {
      fail_reason(errstr, errlen, "publish with batch_id 0");
      return SL_EPROTO;
    }
    if (fr->publish->n_events == 0) {
      fail_reason(errstr, errlen, "publish %llu without events",
                  (unsigned long long)fr->publish->batch_id);
      return SL_EPROTO;
    }
    for (size_t i = 0; i < fr->publish->n_events; i++) {
      if (!fr->publish->events[i]) {
        fail_reason(errstr, errlen, "publish with a null event");
        return SL_EPROTO;
      }
    }
    return 0;
  case SLUICE__V1__FRAME__KIND_ACK:
    if (fr->ack->batch_id == 0 || fr->ack->count == 0) {
      fail_reason(errstr, errlen, "ack with batch_id %llu and count %u",
                  (unsigned long long)fr->ack->batch_id, fr->ack->count);
      return SL_EPROTO;
    }
    return 0;
  case SLUICE__V1__FRAME__KIND_ERROR:
    if (fr->error->code >= 0) {
      fail_reason(errstr, errlen, "error frame with non-negative code %d",
                  (int)fr->error->code);
      return SL_EPROTO;
    }
    return 0;
  case SLUICE__V1__FRAME__KIND_PING:
  case SLUICE__V1__FRAME__KIND_PONG:
    return 0;
  default:
    break;
  }
  fail_reason(errstr, errlen, "frame of unknown kind %d", (int)fr->kind_case);
  return SL_EPROTO;
}

int sl_frame_decode(sl_frame_arena_t *ar, const uint8_t *body, size_t body_len,
                    unsigned allowed, const Sluice__V1__Frame **out,
                    char *errstr, size_t errlen) {
  Sluice__V1__Frame *fr;
  int rc;

  *out = NULL;
  ar->used = 0;
  ar->exhausted = false;
  if (body_len == 0) {
    fail_reason(errstr, errlen, "empty frame");
    return SL_EPROTO;
  }
  /* The common Publish without protobuf-c (frame_int.h); anything else,
   * and every refusal, goes through protobuf-c and the checks below. */
  if ((allowed & SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_PUBLISH)) &&
      (*out = wire__publish_fast(ar, body, body_len)))
    return 0;
  ar->used = 0;
  ar->exhausted = false;
  fr = sluice__v1__frame__unpack(&ar->alloc, body_len, body);
  if (!fr) {
    if (ar->exhausted) {
      fail_reason(errstr, errlen,
                  "frame of %zu bytes needs more than %zu bytes decoded",
                  body_len, ar->cap);
      return SL_ETOOBIG;
    }
    fail_reason(errstr, errlen, "malformed protobuf in a frame of %zu bytes",
                body_len);
    return SL_EPROTO;
  }
  /*
   * protobuf-c leaves kind_case at an unknown value's number only for known
   * members; a frame carrying only a newer kind decodes as NOT_SET.
   */
  if (fr->kind_case == SLUICE__V1__FRAME__KIND__NOT_SET) {
    fail_reason(errstr, errlen, "frame has no known kind");
    return SL_EPROTO;
  }
  if ((unsigned)fr->kind_case >= 32 ||
      !(allowed & SL_FRAME_KIND_BIT(fr->kind_case))) {
    fail_reason(errstr, errlen, "unexpected %s frame",
                sl_frame_kind_name(fr->kind_case));
    return SL_EPROTO;
  }
  /* Every kind is a message; protobuf-c sets it non-NULL when present. */
  if (!fr->hello) {
    fail_reason(errstr, errlen, "empty %s member",
                sl_frame_kind_name(fr->kind_case));
    return SL_EPROTO;
  }
  rc = check_kind(fr, errstr, errlen);
  if (rc)
    return rc;
  rc = check_message(&fr->base, 0, errstr, errlen);
  if (rc)
    return rc;
  *out = fr;
  return 0;
}

const char *sl_frame_kind_name(Sluice__V1__Frame__KindCase kind) {
  switch (kind) {
  case SLUICE__V1__FRAME__KIND_HELLO:
    return "hello";
  case SLUICE__V1__FRAME__KIND_HELLO_ACK:
    return "hello_ack";
  case SLUICE__V1__FRAME__KIND_PUBLISH:
    return "publish";
  case SLUICE__V1__FRAME__KIND_ACK:
    return "ack";
  case SLUICE__V1__FRAME__KIND_ERROR:
    return "error";
  case SLUICE__V1__FRAME__KIND_PING:
    return "ping";
  case SLUICE__V1__FRAME__KIND_PONG:
    return "pong";
  default:
    return "none";
  }
}

/* ---- buffers ---------------------------------------------------------- */

void sl_frame_buf_init(sl_frame_buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void sl_frame_buf_close(sl_frame_buf_t *b) {
  free(b->data);
  sl_frame_buf_init(b);
}

int sl_frame_buf_reserve(sl_frame_buf_t *b, size_t n) {
  size_t cap;
  uint8_t *p;

  if (n <= b->cap - b->len)
    return 0;
  if (n > SIZE_MAX / 2 - b->len)
    return -ENOMEM;
  cap = b->cap ? b->cap : 256;
  while (cap - b->len < n)
    cap *= 2;
  p = realloc(b->data, cap);
  if (!p)
    return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

void sl_frame_buf_consume(sl_frame_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

/* ---- encoders --------------------------------------------------------- */

int sl_frame_encode(sl_frame_buf_t *out, const Sluice__V1__Frame *fr,
                    size_t max_frame_bytes) {
  size_t n = sluice__v1__frame__get_packed_size(fr);
  int rc;

  if (n == 0)
    return -EINVAL;
  if (n > max_frame_bytes || n > SL_FRAME_LIMIT_MAX_BYTES)
    return SL_ETOOBIG;
  rc = sl_frame_buf_reserve(out, SL_FRAME_HEADER_BYTES + n);
  if (rc)
    return rc;
  sl_put_be32(out->data + out->len, (uint32_t)n);
  sluice__v1__frame__pack(fr, out->data + out->len + SL_FRAME_HEADER_BYTES);
  out->len += SL_FRAME_HEADER_BYTES + n;
  return 0;
}

static char *str_or_empty(const char *s) {
  return (char *)(s ? s : "");
}

int sl_frame_encode_hello(sl_frame_buf_t *out, uint32_t protocol_version,
                          const char *client_id, const char *token) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Hello m = SLUICE__V1__HELLO__INIT;

  m.protocol_version = protocol_version;
  m.client_id = str_or_empty(client_id);
  m.token = str_or_empty(token);
  fr.kind_case = SLUICE__V1__FRAME__KIND_HELLO;
  fr.hello = &m;
  return sl_frame_encode(out, &fr, SL_FRAME_DEFAULT_MAX_BYTES);
}

int sl_frame_encode_hello_ack(sl_frame_buf_t *out, const char *node_id,
                              uint32_t max_frame_bytes,
                              uint32_t max_batch_events) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__HelloAck m = SLUICE__V1__HELLO_ACK__INIT;

  m.protocol_version = SL_PROTOCOL_VERSION;
  m.node_id = str_or_empty(node_id);
  m.max_frame_bytes = max_frame_bytes;
  m.max_batch_events = max_batch_events;
  fr.kind_case = SLUICE__V1__FRAME__KIND_HELLO_ACK;
  fr.hello_ack = &m;
  return sl_frame_encode(out, &fr, SL_FRAME_DEFAULT_MAX_BYTES);
}

int sl_frame_encode_publish(sl_frame_buf_t *out, uint64_t batch_id,
                            const char *stream,
                            Sluice__V1__Event *const *events, size_t n_events,
                            size_t max_frame_bytes) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Publish m = SLUICE__V1__PUBLISH__INIT;

  m.batch_id = batch_id;
  m.stream = str_or_empty(stream);
  m.n_events = n_events;
  m.events = (Sluice__V1__Event **)events;
  fr.kind_case = SLUICE__V1__FRAME__KIND_PUBLISH;
  fr.publish = &m;
  return sl_frame_encode(out, &fr, max_frame_bytes);
}

int sl_frame_encode_ack(sl_frame_buf_t *out, uint64_t batch_id,
                        uint64_t first_offset, uint32_t count) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Ack m = SLUICE__V1__ACK__INIT;

  m.batch_id = batch_id;
  m.first_offset = first_offset;
  m.count = count;
  fr.kind_case = SLUICE__V1__FRAME__KIND_ACK;
  fr.ack = &m;
  return sl_frame_encode(out, &fr, SL_FRAME_DEFAULT_MAX_BYTES);
}

int sl_frame_encode_error(sl_frame_buf_t *out, uint64_t batch_id, int code,
                          const char *reason, bool fatal) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Error m = SLUICE__V1__ERROR__INIT;

  m.code = code;
  m.name = str_or_empty(sl_errname(code));
  m.reason = str_or_empty(reason);
  m.batch_id = batch_id;
  m.fatal = fatal;
  fr.kind_case = SLUICE__V1__FRAME__KIND_ERROR;
  fr.error = &m;
  return sl_frame_encode(out, &fr, SL_FRAME_DEFAULT_MAX_BYTES);
}

int sl_frame_encode_ping(sl_frame_buf_t *out, uint64_t nonce) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Ping m = SLUICE__V1__PING__INIT;

  m.nonce = nonce;
  fr.kind_case = SLUICE__V1__FRAME__KIND_PING;
  fr.ping = &m;
  return sl_frame_encode(out, &fr, SL_FRAME_DEFAULT_MAX_BYTES);
}

int sl_frame_encode_pong(sl_frame_buf_t *out, uint64_t nonce) {
  Sluice__V1__Frame fr = SLUICE__V1__FRAME__INIT;
  Sluice__V1__Pong m = SLUICE__V1__PONG__INIT;

  m.nonce = nonce;
  fr.kind_case = SLUICE__V1__FRAME__KIND_PONG;
  fr.pong = &m;
  return sl_frame_encode(out, &fr, SL_FRAME_DEFAULT_MAX_BYTES);
}

/* ---- raw publish ------------------------------------------------------ */

int sl_frame_event_append(sl_frame_buf_t *events, const Sluice__V1__Event *ev) {
  size_t n = sluice__v1__event__get_packed_size(ev);
  size_t need = 1 + sl_wire_varint_size(n) + n;
  uint8_t *p;
  int rc;

  rc = sl_frame_buf_reserve(events, need);
  if (rc)
    return rc;
  p = events->data + events->len;
  *p++ = TAG_LEN(SL_WIRE_PUBLISH_EVENTS);
  p += sl_wire_varint_put(p, n);
  sluice__v1__event__pack(ev, p);
  events->len += need;
  return 0;
}

int sl_frame_publish_header(uint8_t *dst, size_t room, uint64_t batch_id,
                            const char *stream, size_t events_len,
                            size_t max_frame_bytes, size_t *hdr_len) {
  size_t slen = stream ? strlen(stream) : 0;
  size_t pub = 0, body, hdr;
  uint8_t *p;

  /* protobuf-c omits proto3 fields at their default: so do we. */
  if (batch_id)
    pub += 1 + sl_wire_varint_size(batch_id);
  if (slen)
    pub += 1 + sl_wire_varint_size(slen) + slen;
  if (events_len > SIZE_MAX / 2 - pub)
    return SL_ETOOBIG;
  pub += events_len;
  body = 1 + sl_wire_varint_size(pub) + pub;
  if (body > max_frame_bytes || body > SL_FRAME_LIMIT_MAX_BYTES)
    return SL_ETOOBIG;
  hdr = SL_FRAME_HEADER_BYTES + body - events_len;
  if (hdr > room)
    return -ENOSPC;
  p = dst + room - hdr;
  sl_put_be32(p, (uint32_t)body);
  p += SL_FRAME_HEADER_BYTES;
  *p++ = TAG_LEN(SL_WIRE_FRAME_PUBLISH);
  p += sl_wire_varint_put(p, pub);
  if (batch_id) {
    *p++ = TAG_VARINT(SL_WIRE_PUBLISH_BATCH_ID);
    p += sl_wire_varint_put(p, batch_id);
  }
  if (slen) {
    *p++ = TAG_LEN(SL_WIRE_PUBLISH_STREAM);
    p += sl_wire_varint_put(p, slen);
    memcpy(p, stream, slen);
  }
  *hdr_len = hdr;
  return 0;
}

int sl_frame_encode_publish_raw(sl_frame_buf_t *out, uint64_t batch_id,
                                const char *stream, const uint8_t *events,
                                size_t events_len, size_t max_frame_bytes) {
  size_t room = SL_FRAME_PUBLISH_HEADER_MAX(stream ? strlen(stream) : 0);
  size_t hdr;
  uint8_t *start;
  int rc;

  if (events_len > SIZE_MAX / 2)
    return SL_ETOOBIG;
  rc = sl_frame_buf_reserve(out, room + events_len);
  if (rc)
    return rc;
  start = out->data + out->len;
  rc = sl_frame_publish_header(start, room, batch_id, stream, events_len,
                               max_frame_bytes, &hdr);
  if (rc)
    return rc;
  memmove(start, start + room - hdr, hdr);
  if (events_len)
    memcpy(start + hdr, events, events_len);
  out->len += hdr + events_len;
  return 0;
}

const uint8_t *sl_pb_next_field(const uint8_t *p, const uint8_t *end,
                                uint64_t *key, const uint8_t **val,
                                size_t *vlen) {
  uint64_t l;
  size_t k;

  *val = NULL;
  *vlen = 0;
  if (p >= end || !(k = sl_wire_varint_get(p, end, key)))
    return NULL;
  p += k;
  switch (SL_WIRE_KEY_TYPE(*key)) {
  case SL_WIRE_TYPE_VARINT:
    return (k = sl_wire_varint_get(p, end, &l)) ? p + k : NULL;
  case SL_WIRE_TYPE_I64:
    return (size_t)(end - p) >= 8 ? p + 8 : NULL;
  case SL_WIRE_TYPE_I32:
    return (size_t)(end - p) >= 4 ? p + 4 : NULL;
  case SL_WIRE_TYPE_LEN:
    if (!(k = sl_wire_varint_get(p, end, &l)) || l > (uint64_t)(end - p) - k)
      return NULL;
    *val = p + k;
    *vlen = (size_t)l;
    return p + k + l;
  default: /* groups and invalid wire types */
    return NULL;
  }
}
