/*
 * Event fields as JSON (jansson), shared by the tools and paths that render
 * events: `sluice store dump`, the MQTT fan-out, the simulator's HTTP/MQTT
 * outputs. Each keeps its own document shape; the value and quality
 * mapping lives here once.
 */
#ifndef SL_SCHEMAS_EVENT_JSON_H
#define SL_SCHEMAS_EVENT_JSON_H

#include <jansson.h>

#include "sluice/v1/event.pb-c.h"

/*
 * Sets the reading's value in o (borrowed): doubles, booleans and strings
 * as "value", integers under int_key ("value" or "int_value", the key HTTP
 * ingest reads back as an integer). Returns 0, or -1 when the reading has
 * no value (o unchanged).
 */
int sl_event_json_value(json_t *o, const Sluice__V1__Reading *r,
                        const char *int_key);

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

/* "good", "uncertain", "bad", or "unknown" for a value from a newer peer. */
const char *sl_event_quality_name(Sluice__V1__Quality q);

#endif /* SL_SCHEMAS_EVENT_JSON_H */
