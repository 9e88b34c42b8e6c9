/*
 * JSON -> sluice.v1.Event decoding, shared by HTTP ingest and (later) MQTT's
 * JSON decoder. The accepted shape is documented in docs/HTTP.md.
 */
#ifndef SL_DECODE_JSON_H
#define SL_DECODE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "schemas/frame.h"

/* Decoded events are appended to an EventBatch being built, plus the
 * metadata the store needs. */
typedef struct sl_json_batch {
  sl_frame_buf_t buf; /* serialized EventBatch so far (owned) */
  uint32_t count;     /* events in buf */
  int64_t min_time_ns, max_time_ns;
} sl_json_batch_t;

void sl_json_batch_init(sl_json_batch_t *jb);
void sl_json_batch_reset(sl_json_batch_t *jb);
void sl_json_batch_close(sl_json_batch_t *jb);

/*
 * Decodes a request body holding one JSON object, a JSON array of objects,
 * or JSON lines (one object per line), and appends every event to jb.
 * default_time_ns is used for events without a time. At most max_events
 * events are accepted. On error nothing is appended (jb is reset) and
 * errstr names the line (1-based for JSON lines; the array index for
 * arrays) and the problem.
 * Errors: SL_EPROTO (bad JSON or a bad event), SL_ETOOBIG (more than
 * max_events), -ENOMEM.
 */
int sl_json_decode_body(const char *body, size_t len, int64_t default_time_ns,
                        uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                        size_t errlen);

#endif /* SL_DECODE_JSON_H */
