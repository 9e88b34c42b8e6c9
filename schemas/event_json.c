#include "schemas/event_json.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dt_names[] = {
    NULL,     "int8",     "int16",  "int32", "int64",  "uint8",
    "uint16", "uint32",   "uint64", "float", "double", "boolean",
    "string", "datetime", "text",   "uuid"};
#define DT_N (sizeof(dt_names) / sizeof(dt_names[0]))

const char *sl_event_datatype_name(int dt) {
  return dt > 0 && (size_t)dt < DT_N ? dt_names[dt] : NULL;
}

int sl_event_datatype_parse(const char *name) {
  for (size_t i = 1; i < DT_N; i++)
    if (!strcmp(name, dt_names[i]))
      return (int)i;
  return -1;
}

/* The value field a datatype's values go in (0: none, unknown type). */
static int dt_case(int dt) {
  switch (dt) {
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT64:
    return SLUICE__V1__READING__VALUE_UINT_VALUE;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_FLOAT:
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_DOUBLE:
    return SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_BOOLEAN:
    return SLUICE__V1__READING__VALUE_BOOL_VALUE;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_STRING:
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_TEXT:
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UUID:
    return SLUICE__V1__READING__VALUE_STRING_VALUE;
  default:
    return dt > 0 && (size_t)dt < DT_N ? SLUICE__V1__READING__VALUE_INT_VALUE
                                       : 0;
  }
}

int sl_event_datatype_case(int dt) {
  return dt_case(dt);
}

static int64_t dt_min(int dt) {
  switch (dt) {
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_INT8:
    return INT8_MIN;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_INT16:
    return INT16_MIN;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_INT32:
    return INT32_MIN;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT8:
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT16:
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT32:
    return 0;
  default:
    return INT64_MIN;
  }
}

static int64_t dt_max(int dt) {
  switch (dt) {
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_INT8:
    return INT8_MAX;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_INT16:
    return INT16_MAX;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_INT32:
    return INT32_MAX;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT8:
    return UINT8_MAX;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT16:
    return UINT16_MAX;
  case SLUICE__V1__DATA_TYPE__DATA_TYPE_UINT32:
    return UINT32_MAX;
  default:
    return INT64_MAX;
  }
}

int sl_event_reading_check(const Sluice__V1__Reading *r, const char **why) {
  int want = dt_case((int)r->datatype);
  if (!want || r->value_case == SLUICE__V1__READING__VALUE__NOT_SET)
    return 0; /* a newer peer's datatype, or a null */
  if ((int)r->value_case != want) {
    *why = "the value is not in the field its datatype names "
           "(docs/SCHEMAS.md)";
    return -1;
  }
  if (want == SLUICE__V1__READING__VALUE_INT_VALUE &&
      (r->int_value < dt_min((int)r->datatype) ||
       r->int_value > dt_max((int)r->datatype))) {
    *why = "int_value is out of its datatype's range";
    return -1;
  }
  return 0;
}

/* Non-finite doubles as the proto3 JSON mapping writes them. */
static json_t *real_json(double d) {
  if (isnan(d))
    return json_string("NaN");
  if (isinf(d))
    return json_string(d > 0 ? "Infinity" : "-Infinity");
  return json_real(d);
}

int sl_event_json_value(json_t *o, const Sluice__V1__Reading *r,
                        const char *int_key) {
  const char *dt = sl_event_datatype_name((int)r->datatype);
  char u[24];

  switch (r->value_case) {
  case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
    json_object_set_new(o, "value", real_json(r->double_value));
    if (!dt && !isfinite(r->double_value))
      dt = "double"; /* "NaN" is a number, not the string "NaN" */
    break;
  case SLUICE__V1__READING__VALUE_INT_VALUE:
    json_object_set_new(o, int_key, json_integer(r->int_value));
    break;
  case SLUICE__V1__READING__VALUE_UINT_VALUE:
    /* Always a decimal string (the proto3 JSON mapping of uint64): jansson
     * and many JSON readers hold no integer above 2^63-1. */
    snprintf(u, sizeof(u), "%" PRIu64, r->uint_value);
    json_object_set_new(o, "value", json_string(u));
    dt = "uint64";
    break;
  case SLUICE__V1__READING__VALUE_BOOL_VALUE:
    json_object_set_new(o, "value", json_boolean(r->bool_value));
    break;
  case SLUICE__V1__READING__VALUE_STRING_VALUE:
    json_object_set_new(o, "value", json_string(r->string_value));
    break;
  default:
    if (dt)
      json_object_set_new(o, "datatype", json_string(dt));
    return -1;
  }
  if (dt)
    json_object_set_new(o, "datatype", json_string(dt));
  return 0;
}

int sl_event_value_set(Sluice__V1__Reading *rd, int dt, const sl_event_jv_t *v,
                       const char **why) {
  int want = dt ? dt_case(dt) : 0;
  if (dt && !want) {
    *why = "unknown \"datatype\"";
    return -1;
  }
  rd->datatype = (Sluice__V1__DataType)dt;
  if (!dt) {
    /* Untyped: as JSON says. */
    switch (v->kind) {
    case SL_JV_INT:
      if (v->int_ok) {
        rd->value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
        rd->int_value = v->i;
      } else {
        rd->value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
        rd->double_value = v->d;
      }
      return 0;
    case SL_JV_REAL:
      rd->value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      rd->double_value = v->d;
      return 0;
    case SL_JV_BOOL:
      rd->value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
      rd->bool_value = v->b;
      return 0;
    default:
      rd->value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
      rd->string_value = (char *)v->s;
      return 0;
    }
  }
  rd->value_case = (Sluice__V1__Reading__ValueCase)want;
  switch (want) {
  case SLUICE__V1__READING__VALUE_DOUBLE_VALUE:
    if (v->kind == SL_JV_INT || v->kind == SL_JV_REAL)
      rd->double_value = v->d;
    else if (v->kind == SL_JV_STRING && !strcmp(v->s, "NaN"))
      rd->double_value = NAN;
    else if (v->kind == SL_JV_STRING && !strcmp(v->s, "Infinity"))
      rd->double_value = INFINITY;
    else if (v->kind == SL_JV_STRING && !strcmp(v->s, "-Infinity"))
      rd->double_value = -INFINITY;
    else
      goto mismatch;
    if (dt == SLUICE__V1__DATA_TYPE__DATA_TYPE_FLOAT)
      rd->double_value = (float)rd->double_value; /* what a float holds */
    return 0;
  case SLUICE__V1__READING__VALUE_INT_VALUE:
    if (v->kind != SL_JV_INT || !v->int_ok || v->i < dt_min(dt) ||
        v->i > dt_max(dt)) {
      *why = "the value is not an integer in its datatype's range";
      return -1;
    }
    rd->int_value = v->i;
    return 0;
  case SLUICE__V1__READING__VALUE_UINT_VALUE: {
    char *end;
    if (v->kind == SL_JV_INT && v->int_ok && v->i >= 0) {
      rd->uint_value = (uint64_t)v->i;
      return 0;
    }
    if (v->kind != SL_JV_STRING || !isdigit((unsigned char)v->s[0]))
      goto mismatch;
    errno = 0;
    rd->uint_value = strtoull(v->s, &end, 10);
    if (errno || *end || strlen(v->s) > 20)
      goto mismatch;
    return 0;
  }
  case SLUICE__V1__READING__VALUE_BOOL_VALUE:
    if (v->kind != SL_JV_BOOL)
      goto mismatch;
    rd->bool_value = v->b;
    return 0;
  default:
    if (v->kind != SL_JV_STRING)
      goto mismatch;
    rd->string_value = (char *)v->s;
    return 0;
  }
mismatch:
  *why = "the value does not fit its \"datatype\" (docs/SCHEMAS.md)";
  return -1;
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
