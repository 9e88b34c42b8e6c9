/*
 * libFuzzer target for the native frame codec: the input is a byte stream
 * as a peer would send it. Every frame is parsed, decoded and, when valid,
 * re-encoded; the re-encoding must decode again and be a fixed point.
 * The same entry point replays the seed corpus in the normal build
 * (tests/frame/corpus_replay.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FRAME (64u << 10)
#define FUZZ_ARENA (256u << 10)

/* Our own invariants, not peer input: a violation is a codec bug. */
static void check_reencode(const Sluice__V1__Frame *fr, sl_frame_arena_t *ar2) {
  sl_frame_buf_t a, b;
  const Sluice__V1__Frame *fr2;
  size_t consumed, blen;
  const uint8_t *body;

  sl_frame_buf_init(&a);
  sl_frame_buf_init(&b);
  if (sl_frame_encode(&a, fr, SL_FRAME_LIMIT_MAX_BYTES) != 0)
    abort();
  if (sl_frame_parse(a.data, a.len, SL_FRAME_LIMIT_MAX_BYTES, &consumed, &body,
                     &blen) != 0 ||
      consumed != a.len)
    abort();
  if (sl_frame_decode(ar2, body, blen, SL_FRAME_ANY, &fr2, NULL, 0) != 0)
    abort();
  if (sl_frame_encode(&b, fr2, SL_FRAME_LIMIT_MAX_BYTES) != 0)
    abort();
  if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
    abort();
  sl_frame_buf_close(&a);
  sl_frame_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sl_frame_arena_t *ar, *ar2;
  size_t off = 0, consumed, blen;
  const uint8_t *body;
  const Sluice__V1__Frame *fr;
  char err[256];

  if (!ar && (sl_frame_arena_new(FUZZ_ARENA, &ar) != 0 ||
              sl_frame_arena_new(4 * FUZZ_ARENA, &ar2) != 0))
    abort();
  while (off < size) {
    int rc = sl_frame_parse(data + off, size - off, FUZZ_MAX_FRAME, &consumed,
                            &body, &blen);
    if (rc != 0 || consumed == 0)
      break;
    off += consumed;
    rc = sl_frame_decode(ar, body, blen, SL_FRAME_ANY, &fr, err, sizeof(err));
    if (rc == 0)
      check_reencode(fr, ar2);
    else if (err[0] == '\0')
      abort(); /* every failure must say why */
  }
  return 0;
}
