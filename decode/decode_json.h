/*
 * JSON -> sluice.v1.Event decoding, shared by HTTP ingest and MQTT's JSON
 * decoders, both on the one scanner json_scan.c (jansson's checks without
 * a tree): decode_json.c for sluice's own event JSON, decode_json_mapped.c
 * for mapped MQTT payloads. The accepted shape is documented in
 * docs/HTTP.md and docs/MQTT.md.
 */
#ifndef SL_DECODE_JSON_H
#define SL_DECODE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "decode/event_check.h"
#include "wire/frame.h"

/* Decoded events are appended to an EventBatch being built, plus the
 * metadata the store needs. */
typedef struct sl_json_batch {
  sl_frame_buf_t buf; /* serialized EventBatch so far (owned) */
  uint32_t count;     /* events in buf */
  int64_t min_time_ns, max_time_ns;
  /* Rules for events from clients (borrowed; NULL = none): set by the
   * ingest path, read by sl_json_batch_add_client(). */
  const sl_ingest_rules_t *rules;
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
 * arrays) and the problem: the messages and their order are those of the
 * jansson decoder this replaced (a syntax error anywhere in a JSON value
 * first), but for the wording after "line N: invalid JSON: ". No
 * allocation per event (one per body, plus growth for unusually large
 * events).
 * Errors: SL_EPROTO (bad JSON or a bad event), SL_ETOOBIG (more than
 * max_events), -ENOMEM.
 */
int sl_json_decode_body(const char *body, size_t len, int64_t default_time_ns,
                        uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                        size_t errlen);

/* ---- MQTT JSON payloads: configurable field paths ---------------------- */

/* Where a reading's parts are in each JSON object of a payload. Paths are
 * dotted ("data.temp"); "" for value means the whole JSON value (a bare
 * number, string or boolean payload); "" for the others means absent. */
typedef struct sl_json_map {
  const char *value;    /* path of the value */
  const char *time;     /* path of the event time: RFC 3339 or a number */
  int64_t time_unit_ns; /* nanoseconds per unit of a numeric time */
  const char *quality;  /* path of the quality (name or status code) */
  const char *unit;     /* path of the engineering unit */
  const char *datatype; /* path of the datatype name; NULL or "" = none */
} sl_json_map_t;

/* One attribute attached to every event of a mapped payload. */
typedef struct sl_json_attr {
  const char *key;
  const char *value;
} sl_json_attr_t;

/*
 * Decodes an MQTT payload: one JSON object, a JSON array of objects, or
 * (with map->value "") a bare scalar, into readings for source, appended
 * to jb. Events without a time get default_time_ns. attrs (nattrs) are
 * attached to every event. At most max_events events per payload. On error
 * jb is left exactly as it was, *reason gets a static short name for the
 * metrics (bad_json, too_deep, bad_number, bad_type, no_value, bad_time,
 * invalid_event (the rules of decode/event_check.h),
 * too_many, no_memory) and errstr the details. The JSON checks are
 * jansson's (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, the first error in
 * the payload wins), without building a tree. payload need not be
 * terminated. payload, map, source, attrs: borrowed.
 * Errors: SL_EPROTO (also for too_many), -ENOMEM.
 */
int sl_json_decode_mapped(const char *payload, size_t len,
                          const sl_json_map_t *map, const char *source,
                          const sl_json_attr_t *attrs, size_t nattrs,
                          int64_t default_time_ns, uint32_t max_events,
                          sl_json_batch_t *jb, const char **reason,
                          char *errstr, size_t errlen);

/* Appends one packed event to jb (EventBatch field 1) and updates its count
 * and time range. ev: borrowed (a Sluice__V1__Event). Errors: -ENOMEM. */
int sl_json_batch_add(sl_json_batch_t *jb, const void *ev);

/* sl_json_batch_add() for an event a client sent: first checks it with
 * jb->rules (decode/event_check.h; none when NULL), which may clamp its
 * time (counted in jb->clamped; ev is as it was on return but for the
 * time). Errors: SL_EPROTO with the reason in why, -ENOMEM. */
int sl_json_batch_add_client(sl_json_batch_t *jb, void *ev, char *why,
                             size_t len);

#endif /* SL_DECODE_JSON_H */
