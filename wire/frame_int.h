/*
 * frame_int.h: what frame.c shares with frame_fast.c (the arena, the UTF-8
 * check) and the fast Publish decoder, which tests call directly.
 */
#ifndef SL_WIRE_FRAME_INT_H
#define SL_WIRE_FRAME_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/frame.h"

struct sl_frame_arena {
  ProtobufCAllocator alloc; /* handed to protobuf-c; data points here */
  uint8_t *mem;             /* cap bytes, owned */
  size_t cap;               /* capacity in bytes */
  size_t used;              /* bump pointer */
  size_t peak;              /* high-water mark of used */
  bool exhausted;           /* an allocation failed since the last reset */
};

/* Strict UTF-8: the offset of the first bad byte, or len. */
size_t wire__utf8_check(const uint8_t *s, size_t len);

/*
 * Decodes a frame holding one Publish of the common shape into ar, without
 * protobuf-c: every field known, in its canonical wire type, each singular
 * field at most once, events with a Reading body, strings valid UTF-8
 * without NUL bytes, batch_id and events present. It builds exactly the
 * structure protobuf-c's unpack builds for such bytes, and such a frame
 * passes every check of sl_frame_decode(). Anything else (and an arena too
 * small) returns NULL, and the caller decodes with protobuf-c, which then
 * accepts or refuses it with its usual reason: the set of frames accepted
 * and the errors given do not change. The arena is not reset on NULL.
 */
const Sluice__V1__Frame *wire__publish_fast(sl_frame_arena_t *ar,
                                            const uint8_t *body, size_t len);

#endif
