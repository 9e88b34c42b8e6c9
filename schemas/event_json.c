#include "schemas/event_json.h"

#include <stdint.h>
#include <stdlib.h>

int sl_event_json_value(json_t *o, const Sluice__V1__Reading *r,
                        const char *int_key) {
  switch (r->value_case) {
  case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
    json_object_set_new(o, "value", json_real(r->double_value));
    return 0;
  case SLUICE__V1__READING__VALUE_INT_VALUE:
    json_object_set_new(o, int_key, json_integer(r->int_value));
    return 0;
  case SLUICE__V1__READING__VALUE_BOOL_VALUE:
    json_object_set_new(o, "value", json_boolean(r->bool_value));
    return 0;
  case SLUICE__V1__READING__VALUE_STRING_VALUE:
    json_object_set_new(o, "value", json_string(r->string_value));
    return 0;
  default:
    return -1;
  }
}

const char *sl_event_quality_name(Sluice__V1__Quality q) {
  static const char *const names[] = {"good", "uncertain", "bad"};
  return (unsigned)q < 3 ? names[q] : "unknown";
}

/* Base64 by hand: twenty lines, where a library (OpenSSL's
 * EVP_EncodeBlock) would make the schemas module depend on libcrypto. */
static void b64(const uint8_t *p, size_t n, char *out) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;

  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n)
      v |= p[i + 2];
    out[o++] = t[v >> 18];
    out[o++] = t[(v >> 12) & 63];
    out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? t[v & 63] : '=';
  }
  out[o] = '\0';
}

static json_t *reading_json(const Sluice__V1__Reading *r) {
  json_t *o = json_object();

  sl_event_json_value(o, r, "value");
  json_object_set_new(o, "quality",
                      json_string(sl_event_quality_name(r->quality)));
  if (r->unit && r->unit[0])
    json_object_set_new(o, "unit", json_string(r->unit));
  if (r->status_code)
    json_object_set_new(o, "status_code", json_integer(r->status_code));
  return o;
}

static json_t *inference_json(const Sluice__V1__Inference *in) {
  json_t *o = json_object(), *labels = json_array(), *boxes = json_array();

  json_object_set_new(o, "model", json_string(in->model));
  json_object_set_new(o, "model_version", json_string(in->model_version));
  for (size_t i = 0; i < in->n_labels; i++)
    json_array_append_new(labels,
                          json_pack("{s:s, s:f}", "name", in->labels[i]->name,
                                    "score", (double)in->labels[i]->score));
  for (size_t i = 0; i < in->n_boxes; i++) {
    const Sluice__V1__Box *b = in->boxes[i];
    json_array_append_new(boxes,
                          json_pack("{s:f, s:f, s:f, s:f, s:s, s:f}", "x",
                                    (double)b->x, "y", (double)b->y, "w",
                                    (double)b->w, "h", (double)b->h, "label",
                                    b->label, "score", (double)b->score));
  }
  json_object_set_new(o, "labels", labels);
  json_object_set_new(o, "boxes", boxes);
  json_object_set_new(o, "latency_us", json_integer(in->latency_us));
  return o;
}

json_t *sl_event_json(const char *stream, uint64_t offset,
                      const Sluice__V1__Event *e, int64_t append_time_ns) {
  json_t *o = json_object();

  json_object_set_new(o, "stream", json_string(stream));
  json_object_set_new(o, "offset", json_integer((json_int_t)offset));
  json_object_set_new(o, "source", json_string(e->source));
  json_object_set_new(o, "time_ns", json_integer(e->time_ns));
  json_object_set_new(
      o, "ingest_time_ns",
      json_integer(e->ingest_time_ns ? e->ingest_time_ns : append_time_ns));
  switch (e->body_case) {
  case SLUICE__V1__EVENT__BODY_READING:
    json_object_set_new(o, "reading", reading_json(e->reading));
    break;
  case SLUICE__V1__EVENT__BODY_INFERENCE:
    json_object_set_new(o, "inference", inference_json(e->inference));
    break;
  case SLUICE__V1__EVENT__BODY_RAW: {
    char *enc = malloc(e->raw->data.len / 3 * 4 + 8);
    if (enc) {
      b64(e->raw->data.data, e->raw->data.len, enc);
      json_object_set_new(o, "raw",
                          json_pack("{s:s, s:s}", "content_type",
                                    e->raw->content_type, "data_b64", enc));
      free(enc);
    }
    break;
  }
  case SLUICE__V1__EVENT__BODY_GAP:
    json_object_set_new(
        o, "gap",
        json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "stream", e->gap->stream,
            "first_offset", (json_int_t)e->gap->first_offset, "last_offset",
            (json_int_t)e->gap->last_offset, "count", (json_int_t)e->gap->count,
            "min_time_ns", (json_int_t)e->gap->min_time_ns, "max_time_ns",
            (json_int_t)e->gap->max_time_ns, "reason", e->gap->reason));
    break;
  case SLUICE__V1__EVENT__BODY_STATUS:
    json_object_set_new(o, "status",
                        json_pack("{s:s, s:s}", "state", e->status->state,
                                  "reason", e->status->reason));
    break;
  default:
    break;
  }
  if (e->n_attributes) {
    json_t *a = json_object();
    for (size_t i = 0; i < e->n_attributes; i++)
      json_object_set_new(a, e->attributes[i]->key,
                          json_string(e->attributes[i]->value));
    json_object_set_new(o, "attributes", a);
  }
  return o;
}
