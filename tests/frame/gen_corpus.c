/*
 * Writes the fuzz seed corpus for fuzz_frame: real encoded frames of every
 * kind, a pipelined stream, and a few boundary cases.
 * Usage: frame_gen_corpus DIR
 */
#include <stdio.h>
#include <string.h>

#include "wire/frame.h"

static int write_seed(const char *dir, const char *name,
                      const sl_frame_buf_t *b) {
  char path[4096];
  FILE *f;

  snprintf(path, sizeof(path), "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (!f)
    return -1;
  if (fwrite(b->data, 1, b->len, f) != b->len) {
    fclose(f);
    return -1;
  }
  return fclose(f);
}

int main(int argc, char **argv) {
  sl_frame_buf_t b, events;
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Inference inf = SLUICE__V1__INFERENCE__INIT;
  Sluice__V1__Label lb = SLUICE__V1__LABEL__INIT;
  Sluice__V1__Label *lbs[1] = {&lb};
  Sluice__V1__Attribute at = SLUICE__V1__ATTRIBUTE__INIT;
  Sluice__V1__Attribute *ats[1] = {&at};
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  Sluice__V1__Event *evs[1] = {&ev};
  int rc = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  sl_frame_buf_init(&b);
  sl_frame_buf_init(&events);
#define SEED(name, expr)                                                       \
  do {                                                                         \
    b.len = 0;                                                                 \
    rc |= (expr);                                                              \
    rc |= write_seed(argv[1], name, &b);                                       \
  } while (0)
  SEED("hello", sl_frame_encode_hello(&b, 1, "modbus-1", "secret"));
  SEED("hello_ack", sl_frame_encode_hello_ack(&b, "node-1", 1 << 22, 10000));
  SEED("ack", sl_frame_encode_ack(&b, 42, 1000000, 17));
  SEED("error", sl_frame_encode_error(&b, 3, SL_ESTORE, "disk", true));
  SEED("ping", sl_frame_encode_ping(&b, 1));
  SEED("pong", sl_frame_encode_pong(&b, 0xffffffffffffull));

  ev.source = "plant/line1/temp";
  ev.time_ns = 1700000000000000000ll;
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = 21.5;
  rd.unit = "degC";
  rd.quality = SLUICE__V1__QUALITY__QUALITY_GOOD;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  at.key = "site";
  at.value = "m\xc3\xbcnchen";
  ev.n_attributes = 1;
  ev.attributes = ats;
  SEED("publish_reading", sl_frame_encode_publish(&b, 1, "plant", evs, 1,
                                                  SL_FRAME_DEFAULT_MAX_BYTES));
  lb.name = "cat";
  lb.score = 0.9f;
  inf.model = "resnet";
  inf.model_version = "3";
  inf.n_labels = 1;
  inf.labels = lbs;
  ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  ev.inference = &inf;
  SEED("publish_inference",
       sl_frame_encode_publish(&b, 2, "", evs, 1, SL_FRAME_DEFAULT_MAX_BYTES));
  raw.data.data = (uint8_t *)"\x00\x01\x02";
  raw.data.len = 3;
  raw.content_type = "application/octet-stream";
  ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
  ev.raw = &raw;
  SEED("publish_raw", sl_frame_encode_publish(&b, 3, "raw", evs, 1,
                                              SL_FRAME_DEFAULT_MAX_BYTES));

  /* A pipelined stream: hello, ten publishes, acks and pings. */
  b.len = 0;
  rc |= sl_frame_encode_hello(&b, 1, "sim", "");
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  for (int i = 0; i < 10; i++) {
    events.len = 0;
    for (int k = 0; k <= i; k++)
      rc |= sl_frame_event_append(&events, &ev);
    rc |= sl_frame_encode_publish_raw(&b, (uint64_t)i + 1, "s", events.data,
                                      events.len, SL_FRAME_DEFAULT_MAX_BYTES);
    rc |= sl_frame_encode_ack(&b, (uint64_t)i + 1, (uint64_t)i * 10,
                              (uint32_t)i + 1);
  }
  rc |= sl_frame_encode_ping(&b, 7);
  rc |= write_seed(argv[1], "stream", &b);
  /* Boundary cases: zero length, huge length, truncated body. */
  static const uint8_t zero[] = {0, 0, 0, 0};
  static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x32, 0x00};
  static const uint8_t trunc[] = {0, 0, 0, 9, 0x32, 0x02, 0x08};
  b.len = 0;
  rc |= sl_frame_buf_reserve(&b, sizeof(huge));
  memcpy(b.data, zero, sizeof(zero));
  b.len = sizeof(zero);
  rc |= write_seed(argv[1], "zero_len", &b);
  memcpy(b.data, huge, sizeof(huge));
  b.len = sizeof(huge);
  rc |= write_seed(argv[1], "huge_len", &b);
  memcpy(b.data, trunc, sizeof(trunc));
  b.len = sizeof(trunc);
  rc |= write_seed(argv[1], "truncated", &b);
#undef SEED
  sl_frame_buf_close(&b);
  sl_frame_buf_close(&events);
  if (rc) {
    fprintf(stderr, "failed to write the corpus\n");
    return 1;
  }
  return 0;
}
