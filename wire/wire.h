/*
 * wire: the one home of the event wire format (docs/PROTOCOL.md).
 *
 * The .proto files under schemas/sluice/v1/ are the source of truth; protobuf-c
 * generates the full codec. A few hot paths move encoded messages around
 * without decoding them (the daemon retags Publish.events as EventBatch.events,
 * the pipeline glue re-wraps one Event, the uplink slices Events out of a
 * stored EventBatch and appends an ingest time, checkpoints walk an Event's
 * header). Those paths name the fields they touch here, never as numbers.
 *
 * Each constant is checked against the generated code: at compile time
 * where protobuf-c emits a constant (the oneof case enums), and by the unit
 * test tests/frame/test_wire_fields.c against the message descriptors for
 * the rest (protobuf-c keeps plain field numbers only in descriptor
 * tables, which are not constant expressions).
 *
 * The native frame codec is wire/frame.h; both are the library sl_wire.
 */
#ifndef SL_WIRE_WIRE_H
#define SL_WIRE_WIRE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/event.pb-c.h"
#include "sluice/v1/native.pb-c.h"

/* Protobuf wire types (the low 3 bits of a field key). */
enum {
  SL_WIRE_TYPE_VARINT = 0, /* int*, uint*, sint*, bool, enum */
  SL_WIRE_TYPE_I64 = 1,    /* fixed64, sfixed64, double */
  SL_WIRE_TYPE_LEN = 2,    /* string, bytes, messages, packed repeated */
  SL_WIRE_TYPE_I32 = 5,    /* fixed32, sfixed32, float */
};

/* Base-128 varints, the protobuf encoding of every integer, key and length:
 * the one reader and writer of the tree (inline: the native ingest, the
 * uplink and the Sparkplug depth check run them per field). */

/* The bytes v takes (1 to 10). */
static inline size_t sl_wire_varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Writes v at p, which has room for sl_wire_varint_size(v) bytes. Returns
 * the bytes written. */
static inline size_t sl_wire_varint_put(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* Reads a varint from [p, end) (peer or disk input). Returns the bytes it
 * took (1 to 10) with the value in *v, or 0 when it is truncated or longer
 * than 10 bytes (*v untouched). */
static inline size_t sl_wire_varint_get(const uint8_t *p, const uint8_t *end,
                                        uint64_t *v) {
  uint64_t x = 0;
  for (size_t i = 0; p + i < end && i < 10; i++) {
    x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *v = x;
      return i + 1;
    }
  }
  return 0;
}

/* A field key: field number << 3 | wire type. */
#define SL_WIRE_KEY(field, type) ((((uint32_t)(field)) << 3) | (uint32_t)(type))
/* The field number and wire type of a key. */
#define SL_WIRE_KEY_FIELD(key) ((key) >> 3)
#define SL_WIRE_KEY_TYPE(key) ((key)&7u)

/* sluice.v1.Event (event.proto). */
enum {
  SL_WIRE_EVENT_SOURCE = 1,         /* string */
  SL_WIRE_EVENT_TIME_NS = 2,        /* sint64 (zigzag varint) */
  SL_WIRE_EVENT_INGEST_TIME_NS = 3, /* sint64 (zigzag varint) */
  SL_WIRE_EVENT_READING = 4,        /* oneof body */
  SL_WIRE_EVENT_INFERENCE = 5,
  SL_WIRE_EVENT_RAW = 6,
  SL_WIRE_EVENT_GAP = 7,
  SL_WIRE_EVENT_STATUS = 8,
  SL_WIRE_EVENT_ATTRIBUTES = 9, /* repeated Attribute */
};

/* sluice.v1.EventBatch: the payload of every store record. */
enum {
  SL_WIRE_BATCH_EVENTS = 1, /* repeated Event */
};

/* sluice.v1.Frame (native.proto): its oneof kind. */
enum {
  SL_WIRE_FRAME_HELLO = 1,
  SL_WIRE_FRAME_HELLO_ACK = 2,
  SL_WIRE_FRAME_PUBLISH = 3,
  SL_WIRE_FRAME_ACK = 4,
  SL_WIRE_FRAME_ERROR = 5,
  SL_WIRE_FRAME_PING = 6,
  SL_WIRE_FRAME_PONG = 7,
};

/* sluice.v1.Publish (native.proto). */
enum {
  SL_WIRE_PUBLISH_BATCH_ID = 1, /* uint64 */
  SL_WIRE_PUBLISH_STREAM = 2,   /* string */
  SL_WIRE_PUBLISH_EVENTS = 3,   /* repeated Event */
};

/*
 * One-byte keys the raw paths read and write. A key is one byte while its
 * field number is below 16; the in-place retag of Publish.events as
 * EventBatch.events (ingest/native/native.c) depends on both being one byte.
 */
#define SL_WIRE_KEY_BATCH_EVENTS                                               \
  SL_WIRE_KEY(SL_WIRE_BATCH_EVENTS, SL_WIRE_TYPE_LEN)
#define SL_WIRE_KEY_PUBLISH_EVENTS                                             \
  SL_WIRE_KEY(SL_WIRE_PUBLISH_EVENTS, SL_WIRE_TYPE_LEN)
#define SL_WIRE_KEY_FRAME_PUBLISH                                              \
  SL_WIRE_KEY(SL_WIRE_FRAME_PUBLISH, SL_WIRE_TYPE_LEN)
#define SL_WIRE_KEY_EVENT_INGEST_TIME                                          \
  SL_WIRE_KEY(SL_WIRE_EVENT_INGEST_TIME_NS, SL_WIRE_TYPE_VARINT)

static_assert(SL_WIRE_KEY_BATCH_EVENTS < 0x80 &&
                  SL_WIRE_KEY_PUBLISH_EVENTS < 0x80 &&
                  SL_WIRE_KEY_FRAME_PUBLISH < 0x80 &&
                  SL_WIRE_KEY_EVENT_INGEST_TIME < 0x80,
              "the raw paths write these keys as one byte");
static_assert(SL_WIRE_KEY_BATCH_EVENTS == 0x0a &&
                  SL_WIRE_KEY_PUBLISH_EVENTS == 0x1a &&
                  SL_WIRE_KEY_EVENT_INGEST_TIME == 0x18,
              "the keys the raw paths' comments and tests name");

/* Against protobuf-c's oneof case enums (compile-time constants; the
 * casts compare two enum types). */
static_assert(
    (int)SL_WIRE_FRAME_HELLO == (int)SLUICE__V1__FRAME__KIND_HELLO &&
        (int)SL_WIRE_FRAME_HELLO_ACK ==
            (int)SLUICE__V1__FRAME__KIND_HELLO_ACK &&
        (int)SL_WIRE_FRAME_PUBLISH == (int)SLUICE__V1__FRAME__KIND_PUBLISH &&
        (int)SL_WIRE_FRAME_ACK == (int)SLUICE__V1__FRAME__KIND_ACK &&
        (int)SL_WIRE_FRAME_ERROR == (int)SLUICE__V1__FRAME__KIND_ERROR &&
        (int)SL_WIRE_FRAME_PING == (int)SLUICE__V1__FRAME__KIND_PING &&
        (int)SL_WIRE_FRAME_PONG == (int)SLUICE__V1__FRAME__KIND_PONG,
    "Frame kinds match native.proto");
static_assert((int)SL_WIRE_EVENT_READING ==
                      (int)SLUICE__V1__EVENT__BODY_READING &&
                  (int)SL_WIRE_EVENT_INFERENCE ==
                      (int)SLUICE__V1__EVENT__BODY_INFERENCE &&
                  (int)SL_WIRE_EVENT_RAW == (int)SLUICE__V1__EVENT__BODY_RAW &&
                  (int)SL_WIRE_EVENT_GAP == (int)SLUICE__V1__EVENT__BODY_GAP &&
                  (int)SL_WIRE_EVENT_STATUS ==
                      (int)SLUICE__V1__EVENT__BODY_STATUS,
              "Event body fields match event.proto");

#endif /* SL_WIRE_WIRE_H */
