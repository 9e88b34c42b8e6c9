/*
 * Event fields as JSON (jansson), shared by the tools and paths that render
 * events: `sluice store dump`, the MQTT fan-out, the simulator's HTTP/MQTT
 * outputs. Each keeps its own document shape; the value and quality
 * mapping lives here once.
 */
#ifndef SL_SCHEMAS_EVENT_JSON_H
#define SL_SCHEMAS_EVENT_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/v1/event.pb-c.h"

/*
 * Sets the reading's value in o (borrowed): doubles, booleans and strings
 * as "value", integers under int_key ("value" or "int_value", the key HTTP
 * ingest reads back as an integer), and "datatype" when known. JSON has no
 * NaN or infinity: a non-finite double is the string "NaN", "Infinity" or
 * "-Infinity" with "datatype" (double when the source did not say); an
 * unsigned 64-bit value is a decimal string with "datatype": "uint64" (the
 * proto3 JSON mapping of both). Returns 0, or -1 when the reading has no
 * value (o unchanged but for "datatype").
 */
int sl_event_json_value(json_t *o, const Sluice__V1__Reading *r,
                        const char *int_key);

/* "int8" ... "uuid" (docs/SCHEMAS.md), NULL for unspecified or unknown. */
const char *sl_event_datatype_name(int dt);

/* The DataType of a name, -1 when unknown. */
int sl_event_datatype_parse(const char *name);

/* The Reading value case (SLUICE__V1__READING__VALUE_*) of a datatype, 0 for
 * unspecified or unknown. */
int sl_event_datatype_case(int dt);

/* Whether the reading's value is in the field its datatype names and, for
 * the small integer types, in range. 0, or -1 with *why. Unknown datatypes
 * (a newer peer) and readings without a value pass. */
int sl_event_reading_check(const Sluice__V1__Reading *r, const char **why);

/* A scalar a JSON decoder found, for sl_event_value_set(). */
enum { SL_JV_INT, SL_JV_REAL, SL_JV_BOOL, SL_JV_STRING };
typedef struct sl_event_jv {
  int kind;
  bool int_ok; /* SL_JV_INT: i holds it (else only d) */
  int64_t i;
  double d; /* SL_JV_INT and SL_JV_REAL */
  bool b;
  const char *s; /* borrowed */
} sl_event_jv_t;

/*
 * Sets rd's value (and datatype) from a JSON scalar under datatype dt (0:
 * untyped, then the value's JSON type decides: integer -> int_value,
 * number -> double_value, ...). Typed: float/double take a number or
 * "NaN"/"Infinity"/"-Infinity" (a float is rounded to 32 bits); the
 * integer types an integer in range; uint64 an integer >= 0 or a decimal
 * string up to 18446744073709551615; boolean a boolean; string, text and
 * uuid a string. 0, or -1 with *why.
 */
int sl_event_value_set(Sluice__V1__Reading *rd, int dt, const sl_event_jv_t *v,
                       const char **why);

/*
 * The whole event as a JSON object (new reference; NULL on allocation
 * failure): stream, offset, source, time_ns, ingest_time_ns (append_time_ns,
 * the batch's append time, when the event carries none: D7), and the body
 * (reading, inference, raw with base64 data, gap, status) and attributes.
 * The shape of `sluice store dump` and of Kafka values in `format: json`
 * (docs/DELIVERY.md).
 */
json_t *sl_event_json(const char *stream, uint64_t offset,
                      const Sluice__V1__Event *e, int64_t append_time_ns);

/* A reusable output buffer (p: heap, grown as needed; free(p) when done). */
typedef struct sl_jbuf {
  char *p;
  size_t len, cap;
  int err; /* an allocation failed */
} sl_jbuf_t;

/*
 * The bytes of json_dumpb(sl_event_json(stream, offset, e, append_time_ns),
 * JSON_COMPACT), written straight into b (from its start, not terminated)
 * without a jansson tree: Kafka values in `format: json`
 * (schemas/event_json_write.c). Returns the length, or -ENOMEM.
 */
long sl_event_json_write(sl_jbuf_t *b, const char *stream, uint64_t offset,
                         const Sluice__V1__Event *e, int64_t append_time_ns);

/*
 * The compact layout of the same event (`json_layout: compact`,
 * docs/SCHEMAS.md "Compact JSON"): short keys, members at their defaults
 * left out ("" strings, 0 integers, quality good, empty lists), stream and
 * offset not repeated (the record's headers carry them), doubles in the
 * fewest digits that read back the same bits. Expanding it (key names,
 * defaults) gives sl_event_json()'s object. Written into b from its start;
 * returns the length, or -ENOMEM.
 */
long sl_event_json_write_compact(sl_jbuf_t *b, const Sluice__V1__Event *e,
                                 int64_t append_time_ns);

/* "good", "uncertain", "bad", or "unknown" for a value from a newer peer. */
const char *sl_event_quality_name(Sluice__V1__Quality q);

#endif /* SL_SCHEMAS_EVENT_JSON_H */
