/*
 * frame: the native protocol's wire codec (docs/PROTOCOL.md).
 *
 * A frame on the wire is a 4-byte big-endian length N (1 <= N <= the
 * connection's max_frame_bytes) followed by N bytes of a serialized
 * sluice.v1.Frame. Decoding is two steps so that the length check happens
 * before any body is buffered:
 *
 *   1. sl_frame_parse() finds one complete frame in a caller buffer and
 *      returns a view of its body (no copy, no allocation);
 *   2. sl_frame_decode() unpacks that body with protobuf-c into a bounded
 *      arena and validates the protocol's semantic rules.
 *
 * Encoders append complete frames (length prefix included) to a
 * caller-owned, growable sl_frame_buf_t.
 *
 * This module never logs and never asserts on peer input: bad input returns
 * SL_EPROTO (or SL_ETOOBIG / SL_EVERSION) with a reason in errstr.
 * Thread safety: none of these objects are shared; distinct objects may be
 * used from distinct threads.
 */
#ifndef SL_WIRE_FRAME_H
#define SL_WIRE_FRAME_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "sluice/v1/native.pb-c.h"

/* Bytes of the big-endian length prefix. */
#define SL_FRAME_HEADER_BYTES 4u
/* The default (and suggested) limit on a frame body: 4 MiB. */
#define SL_FRAME_DEFAULT_MAX_BYTES (4u << 20)
/* The largest limit the codec accepts: the length field is 32 bits. */
#define SL_FRAME_LIMIT_MAX_BYTES 0xffffffffu
/* The protocol versions this build speaks (Hello.protocol_version). */
#define SL_PROTOCOL_VERSION 1u
#define SL_PROTOCOL_VERSION_MIN 1u
#define SL_PROTOCOL_VERSION_MAX 1u

static_assert(SL_FRAME_HEADER_BYTES == sizeof(uint32_t),
              "the length prefix is one big-endian uint32");
static_assert(SL_FRAME_DEFAULT_MAX_BYTES >= 1 &&
                  SL_FRAME_DEFAULT_MAX_BYTES <= SL_FRAME_LIMIT_MAX_BYTES,
              "the default frame limit fits the length prefix");
static_assert(SL_PROTOCOL_VERSION_MIN <= SL_PROTOCOL_VERSION &&
                  SL_PROTOCOL_VERSION <= SL_PROTOCOL_VERSION_MAX,
              "this build speaks its own protocol version");

/*
 * Bit masks of frame kinds, for sl_frame_decode()'s `allowed` argument: a
 * frame of a kind outside the mask is a protocol violation (a server that
 * receives HelloAck, a client that receives Publish).
 */
#define SL_FRAME_KIND_BIT(kind) (1u << (unsigned)(kind))
#define SL_FRAME_FROM_CLIENT                                                   \
  (SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_HELLO) |                          \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_PUBLISH) |                        \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_PING) |                           \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_PONG))
#define SL_FRAME_FROM_SERVER                                                   \
  (SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_HELLO_ACK) |                      \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_ACK) |                            \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_ERROR) |                          \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_PING) |                           \
   SL_FRAME_KIND_BIT(SLUICE__V1__FRAME__KIND_PONG))
#define SL_FRAME_ANY (SL_FRAME_FROM_CLIENT | SL_FRAME_FROM_SERVER)

/*
 * Finds one frame at the start of buf[0..len).
 *
 * Returns 0 and either
 *   - *consumed > 0: a complete frame; *body and *body_len view its serialized
 *     Frame inside buf (borrowed; valid while buf's bytes are), and the
 *     caller drops *consumed bytes before the next call; or
 *   - *consumed == 0: more bytes are needed (*body is NULL, *body_len is the
 *     total bytes the frame needs when the header is complete, else 0).
 * Returns SL_EPROTO for a zero length and SL_ETOOBIG for a length above
 * max_frame_bytes. Both are decided from the 4-byte header alone, so a
 * hostile 4 GiB length is refused before a byte of its body is buffered.
 * Pure function: no state, no allocation.
 */
int sl_frame_parse(const uint8_t *buf, size_t len, size_t max_frame_bytes,
                   size_t *consumed, const uint8_t **body, size_t *body_len);

/*
 * A bounded bump allocator for protobuf-c unpacking. A decoded frame is at
 * most `cap` bytes of memory however it is crafted; an exhausted arena
 * makes sl_frame_decode() fail with SL_ETOOBIG.
 */
typedef struct sl_frame_arena sl_frame_arena_t;

/*
 * Creates an arena of cap bytes (cap >= 1024). Returns 0, -ENOMEM or
 * -EINVAL. Returns owned in *out; free with sl_frame_arena_free().
 */
int sl_frame_arena_new(size_t cap, sl_frame_arena_t **out);

/* Frees the arena and every frame decoded into it. NULL is a no-op. */
void sl_frame_arena_free(sl_frame_arena_t *ar);

/* Bytes in use now, and the most ever used (a high-water mark). */
size_t sl_frame_arena_used(const sl_frame_arena_t *ar);
size_t sl_frame_arena_peak(const sl_frame_arena_t *ar);

/*
 * Unpacks body[0..body_len) (a view from sl_frame_parse()) and validates it.
 *
 * The arena is reset first: the frame decoded by the previous call on the
 * same arena becomes invalid. *out is valid until the next sl_frame_decode()
 * on ar or sl_frame_arena_free(ar); it borrows nothing from body (protobuf-c
 * copies strings and bytes into the arena).
 *
 * Rules checked (violations return SL_EPROTO with a reason in errstr):
 *   - the body parses as a sluice.v1.Frame; unknown fields are accepted
 *     (forward compatibility) and kept in the arena;
 *   - exactly one known kind is set and it is in `allowed` (a mask of
 *     SL_FRAME_KIND_BIT()s, e.g. SL_FRAME_FROM_CLIENT);
 *   - Hello: non-empty client_id; HelloAck: protocol_version set;
 *     Publish: batch_id != 0 and at least one event; Ack: batch_id != 0 and
 *     count >= 1; Error: a negative code;
 *   - every string field, at any depth, is valid UTF-8. protobuf-c 1.4 does
 *     NOT check this for `string` fields (it copies the bytes and adds a
 *     NUL; tests/frame checks that behaviour), so this codec does. A string
 *     with an embedded NUL is valid UTF-8 and passes; C code sees it
 *     truncated at the NUL.
 * Returns SL_EVERSION when a Hello or HelloAck names a protocol_version
 * outside SL_PROTOCOL_VERSION_MIN..MAX, and SL_ETOOBIG when the decoded frame
 * needs more than the arena's capacity. errstr may be NULL.
 */
int sl_frame_decode(sl_frame_arena_t *ar, const uint8_t *body, size_t body_len,
                    unsigned allowed, const Sluice__V1__Frame **out,
                    char *errstr, size_t errlen);

/*
 * A growable byte buffer the encoders append to. Caller-allocated: init with
 * sl_frame_buf_init() (or zero it), release with sl_frame_buf_close().
 */
typedef struct sl_frame_buf {
  uint8_t *data; /* bytes [0, len) are valid; owned by the buffer */
  size_t len;    /* bytes written */
  size_t cap;    /* bytes allocated */
} sl_frame_buf_t;

void sl_frame_buf_init(sl_frame_buf_t *b);
void sl_frame_buf_close(sl_frame_buf_t *b);
/* Makes room for n more bytes. Returns 0 or -ENOMEM (buffer unchanged). */
int sl_frame_buf_reserve(sl_frame_buf_t *b, size_t n);
/* Drops the first n bytes (n <= len), keeping the rest in order. */
void sl_frame_buf_consume(sl_frame_buf_t *b, size_t n);

/*
 * Encoders. Each appends one complete frame (length prefix and body) to out.
 * On error out is unchanged. They return 0, -ENOMEM, or SL_ETOOBIG when the
 * body would exceed max_frame_bytes (SL_FRAME_DEFAULT_MAX_BYTES for the
 * helpers without that argument). Strings are borrowed; NULL means "".
 * The encoders do not validate: sl_frame_decode() is the gatekeeper.
 */
int sl_frame_encode(sl_frame_buf_t *out, const Sluice__V1__Frame *fr,
                    size_t max_frame_bytes);
int sl_frame_encode_hello(sl_frame_buf_t *out, uint32_t protocol_version,
                          const char *client_id, const char *token);
int sl_frame_encode_hello_ack(sl_frame_buf_t *out, const char *node_id,
                              uint32_t max_frame_bytes,
                              uint32_t max_batch_events);
int sl_frame_encode_publish(sl_frame_buf_t *out, uint64_t batch_id,
                            const char *stream,
                            Sluice__V1__Event *const *events, size_t n_events,
                            size_t max_frame_bytes);
int sl_frame_encode_ack(sl_frame_buf_t *out, uint64_t batch_id,
                        uint64_t first_offset, uint32_t count);
/* name is derived from code with sl_errname(). */
int sl_frame_encode_error(sl_frame_buf_t *out, uint64_t batch_id, int code,
                          const char *reason, bool fatal);
int sl_frame_encode_ping(sl_frame_buf_t *out, uint64_t nonce);
int sl_frame_encode_pong(sl_frame_buf_t *out, uint64_t nonce);

/*
 * Incremental Publish building for clients that batch: serialize each event
 * once with sl_frame_event_append() into an events buffer (it appends the
 * Publish.events field tag, the length and the Event), then wrap the whole
 * buffer with sl_frame_encode_publish_raw(). The frame is byte-identical to
 * sl_frame_encode_publish() over the same events.
 * sl_frame_event_append() returns 0 or -ENOMEM (events unchanged).
 */
int sl_frame_event_append(sl_frame_buf_t *events, const Sluice__V1__Event *ev);
int sl_frame_encode_publish_raw(sl_frame_buf_t *out, uint64_t batch_id,
                                const char *stream, const uint8_t *events,
                                size_t events_len, size_t max_frame_bytes);

/*
 * Zero-copy variant for batchers that keep events in one buffer with room
 * in front: writes the length prefix, Frame and Publish headers for a
 * Publish whose events field bytes are events_len, right-aligned so that it
 * ends at dst + room (immediately before the events). Room needed is at
 * most SL_FRAME_PUBLISH_HEADER_MAX(strlen(stream)). Returns 0 with the
 * header's size in *hdr_len, -ENOSPC when room is too small, or SL_ETOOBIG
 * when the body would exceed max_frame_bytes.
 */
#define SL_FRAME_PUBLISH_HEADER_MAX(stream_len)                                \
  (SL_FRAME_HEADER_BYTES + 3 * 11 + (size_t)(stream_len))
int sl_frame_publish_header(uint8_t *dst, size_t room, uint64_t batch_id,
                            const char *stream, size_t events_len,
                            size_t max_frame_bytes, size_t *hdr_len);

/* Returns the static name of a frame kind ("publish"), "none" if unset. */
const char *sl_frame_kind_name(Sluice__V1__Frame__KindCase kind);

/*
 * Protobuf wire walking without decoding, for code that moves encoded
 * messages around (the daemon turns Publish.events into EventBatch.events
 * without re-encoding; the uplink slices single Events out of a stored
 * EventBatch). Reads the field at *p (bounded by end): its key (field
 * number << 3 | wire type) into *key and, for a length-delimited field,
 * a view of its payload into *val and *vlen (NULL and 0 for other wire
 * types).
 * Returns the position after the field, or NULL when the field is
 * malformed or does not fit (never reads past end). Groups (wire types 3
 * and 4) are refused. All pointers are views into the caller's buffer.
 */
const uint8_t *sl_pb_next_field(const uint8_t *p, const uint8_t *end,
                                uint64_t *key, const uint8_t **val,
                                size_t *vlen);

#endif /* SL_WIRE_FRAME_H */
