/*
 * The jansson tree decoder that sl_json_decode_body() (decode/decode_json.c)
 * replaced, kept verbatim as the reference of the differential check
 * (json_body_compare(), run by tests/fuzz/fuzz_json.c and its corpus
 * replay): one jansson tree per JSON value, an allocation per node.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "decode/decode_json.h"
#include "schemas/event_json.h"
#include "sluice/v1/event.pb-c.h"
#include "tests/fuzz/json_body_ref.h"

#define MAX_SOURCE_BYTES 1024
#define MAX_LIST 1024 /* labels, boxes, attributes per event */

static int bad(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
  return SL_EPROTO;
}

/* The time is "time_ns" (integer nanoseconds) or "time" (RFC 3339 text or
 * epoch seconds), never both: two clocks that could disagree are refused
 * rather than one silently preferred. */
static int get_time(json_t *obj, int64_t def, int64_t *t, char *e, size_t el) {
  json_t *v = json_object_get(obj, "time_ns"),
         *tv = json_object_get(obj, "time");
  if (v && tv)
    return bad(e, el, "\"time\" and \"time_ns\" given together: send one");
  if (v) {
    if (!json_is_integer(v))
      return bad(e, el, "\"time_ns\" must be an integer (nanoseconds)");
    *t = json_integer_value(v);
    return 0;
  }
  if ((v = tv)) {
    if (json_is_string(v)) {
      int rc = sl_rfc3339_parse(json_string_value(v), json_string_length(v), t);
      if (rc == SL_ERANGE)
        return bad(e, el,
                   "\"time\" \"%.40s\" is not a real date or is outside "
                   "1677-09-22..2262-04-11",
                   json_string_value(v));
      if (rc < 0)
        return bad(e, el, "\"time\" \"%.40s\" is not RFC 3339",
                   json_string_value(v));
      return 0;
    }
    if (json_is_number(v)) {
      double s = json_number_value(v);
      if (!(s > -9.2e9 && s < 9.2e9))
        return bad(e, el, "\"time\" %g seconds is out of range", s);
      *t = (int64_t)llround(s * 1e9);
      return 0;
    }
    return bad(e, el, "\"time\" must be RFC 3339 text or epoch seconds");
  }
  *t = def;
  return 0;
}

static int get_quality(json_t *v, Sluice__V1__Reading *r, char *e, size_t el) {
  if (json_is_string(v)) {
    const char *q = json_string_value(v);
    if (!strcmp(q, "good"))
      r->quality = SLUICE__V1__QUALITY__QUALITY_GOOD;
    else if (!strcmp(q, "uncertain"))
      r->quality = SLUICE__V1__QUALITY__QUALITY_UNCERTAIN;
    else if (!strcmp(q, "bad"))
      r->quality = SLUICE__V1__QUALITY__QUALITY_BAD;
    else
      return bad(e, el, "\"quality\" must be good, uncertain or bad");
    return 0;
  }
  if (json_is_integer(v) && json_integer_value(v) >= 0 &&
      json_integer_value(v) <= 0xffffffffll) {
    /* An OPC UA StatusCode: its top two bits are the severity. */
    uint32_t code = (uint32_t)json_integer_value(v);
    r->status_code = code;
    r->quality = (code >> 30) == 0   ? SLUICE__V1__QUALITY__QUALITY_GOOD
                 : (code >> 30) == 1 ? SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                                     : SLUICE__V1__QUALITY__QUALITY_BAD;
    return 0;
  }
  return bad(e, el, "\"quality\" must be a name or an OPC UA status code");
}

static int opt_string(json_t *obj, const char *key, char **out, char *e,
                      size_t el) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return 0;
  if (!json_is_string(v))
    return bad(e, el, "\"%s\" must be a string", key);
  *out = (char *)json_string_value(v);
  return 0;
}

static int get_number(json_t *obj, const char *key, float *out, char *e,
                      size_t el) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return 0;
  if (!json_is_number(v))
    return bad(e, el, "\"%s\" must be a number", key);
  *out = (float)json_number_value(v);
  return 0;
}

/* Scratch owned per event: freed after packing. */
typedef struct scratch {
  Sluice__V1__Label *labels;
  Sluice__V1__Label **plabels;
  Sluice__V1__Box *boxes;
  Sluice__V1__Box **pboxes;
  Sluice__V1__Attribute *attrs;
  Sluice__V1__Attribute **pattrs;
  uint8_t *raw;
} scratch_t;

static void scratch_free(scratch_t *s) {
  free(s->labels);
  free(s->plabels);
  free(s->boxes);
  free(s->pboxes);
  free(s->attrs);
  free(s->pattrs);
  free(s->raw);
}

static int check_keys(json_t *obj, const char *const *allowed, const char *what,
                      char *e, size_t el) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    int ok = 0;
    for (const char *const *a = allowed; *a; a++)
      if (!strcmp(*a, key))
        ok = 1;
    if (!ok)
      return bad(e, el, "unknown key \"%.40s\" in %s", key, what);
  }
  return 0;
}

static int decode_inference(json_t *o, Sluice__V1__Inference *inf, scratch_t *s,
                            char *e, size_t el) {
  static const char *const keys[] = {"model", "model_version", "labels",
                                     "boxes", "latency_us",    NULL};
  json_t *v;
  size_t i, n;
  int rc;
  if (!json_is_object(o))
    return bad(e, el, "\"inference\" must be an object");
  if ((rc = check_keys(o, keys, "inference", e, el)) < 0)
    return rc;
  if ((rc = opt_string(o, "model", &inf->model, e, el)) < 0 ||
      (rc = opt_string(o, "model_version", &inf->model_version, e, el)) < 0)
    return rc;
  if (!inf->model || !*inf->model)
    return bad(e, el, "\"inference.model\" is required");
  if ((v = json_object_get(o, "latency_us"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 0xffffffffll)
      return bad(e, el, "\"latency_us\" must be a non-negative integer");
    inf->latency_us = (uint32_t)json_integer_value(v);
  }
  if ((v = json_object_get(o, "labels"))) {
    if (!json_is_array(v) || (n = json_array_size(v)) > MAX_LIST)
      return bad(e, el, "\"labels\" must be an array of at most %d", MAX_LIST);
    s->labels = calloc(n ? n : 1, sizeof(*s->labels));
    s->plabels = calloc(n ? n : 1, sizeof(*s->plabels));
    if (!s->labels || !s->plabels)
      return -ENOMEM;
    for (i = 0; i < n; i++) {
      json_t *l = json_array_get(v, i);
      sluice__v1__label__init(&s->labels[i]);
      if (!json_is_object(l))
        return bad(e, el, "labels[%zu] must be an object", i);
      if ((rc = opt_string(l, "name", &s->labels[i].name, e, el)) < 0 ||
          (rc = get_number(l, "score", &s->labels[i].score, e, el)) < 0)
        return rc;
      s->plabels[i] = &s->labels[i];
    }
    inf->n_labels = n;
    inf->labels = s->plabels;
  }
  if ((v = json_object_get(o, "boxes"))) {
    if (!json_is_array(v) || (n = json_array_size(v)) > MAX_LIST)
      return bad(e, el, "\"boxes\" must be an array of at most %d", MAX_LIST);
    s->boxes = calloc(n ? n : 1, sizeof(*s->boxes));
    s->pboxes = calloc(n ? n : 1, sizeof(*s->pboxes));
    if (!s->boxes || !s->pboxes)
      return -ENOMEM;
    for (i = 0; i < n; i++) {
      json_t *b = json_array_get(v, i);
      Sluice__V1__Box *bx = &s->boxes[i];
      sluice__v1__box__init(bx);
      if (!json_is_object(b))
        return bad(e, el, "boxes[%zu] must be an object", i);
      if ((rc = get_number(b, "x", &bx->x, e, el)) < 0 ||
          (rc = get_number(b, "y", &bx->y, e, el)) < 0 ||
          (rc = get_number(b, "w", &bx->w, e, el)) < 0 ||
          (rc = get_number(b, "h", &bx->h, e, el)) < 0 ||
          (rc = get_number(b, "score", &bx->score, e, el)) < 0 ||
          (rc = opt_string(b, "label", &bx->label, e, el)) < 0)
        return rc;
      s->pboxes[i] = bx;
    }
    inf->n_boxes = n;
    inf->boxes = s->pboxes;
  }
  return 0;
}

static int decode_raw(json_t *o, Sluice__V1__Raw *raw, scratch_t *s, char *e,
                      size_t el) {
  static const char *const keys[] = {"data", "content_type", NULL};
  const char *b64;
  size_t n;
  int rc, dn;
  if (!json_is_object(o))
    return bad(e, el, "\"raw\" must be an object");
  if ((rc = check_keys(o, keys, "raw", e, el)) < 0 ||
      (rc = opt_string(o, "content_type", &raw->content_type, e, el)) < 0)
    return rc;
  json_t *d = json_object_get(o, "data");
  if (!json_is_string(d))
    return bad(e, el, "\"raw.data\" must be a base64 string");
  b64 = json_string_value(d);
  n = json_string_length(d);
  if (n % 4)
    return bad(e, el, "\"raw.data\" is not valid base64");
  if (!(s->raw = malloc(n / 4 * 3 + 1)))
    return -ENOMEM;
  dn = n ? EVP_DecodeBlock(s->raw, (const unsigned char *)b64, (int)n) : 0;
  if (dn < 0)
    return bad(e, el, "\"raw.data\" is not valid base64");
  /* EVP_DecodeBlock counts padding bytes as data: remove them. */
  if (n >= 1 && b64[n - 1] == '=')
    dn--;
  if (n >= 2 && b64[n - 2] == '=')
    dn--;
  raw->data.data = s->raw;
  raw->data.len = (size_t)dn;
  return 0;
}

/* A reading's value under its optional "datatype" (docs/SCHEMAS.md). */
static int get_value(json_t *obj, json_t *v, Sluice__V1__Reading *rd, char *e,
                     size_t el) {
  json_t *dtv = json_object_get(obj, "datatype");
  sl_event_jv_t jv = {0};
  const char *why = NULL;
  int dt = 0;

  if (dtv && (!json_is_string(dtv) ||
              (dt = sl_event_datatype_parse(json_string_value(dtv))) < 0))
    return bad(e, el,
               "\"datatype\" must be one of int8, int16, int32, int64, "
               "uint8, uint16, uint32, uint64, float, double, boolean, "
               "string, datetime, text, uuid");
  if (json_is_integer(v)) {
    jv.kind = SL_JV_INT;
    jv.int_ok = true;
    jv.i = json_integer_value(v);
    jv.d = (double)jv.i;
    /* Untyped "value": 5 has always been a double. */
    if (!dt && json_object_get(obj, "value") == v)
      jv.kind = SL_JV_REAL;
  } else if (json_is_real(v)) {
    jv.kind = SL_JV_REAL;
    jv.d = json_real_value(v);
  } else if (json_is_boolean(v)) {
    jv.kind = SL_JV_BOOL;
    jv.b = json_is_true(v);
  } else if (json_is_string(v)) {
    jv.kind = SL_JV_STRING;
    jv.s = json_string_value(v);
  } else {
    return bad(e, el, "\"value\" must be a number, a boolean or a string");
  }
  if (sl_event_value_set(rd, dt, &jv, &why) < 0)
    return bad(e, el, "%s", why);
  return 0;
}

static int decode_event(json_t *obj, int64_t def_time, sl_json_batch_t *jb,
                        char *e, size_t el) {
  static const char *const keys[] = {
      "source", "time_ns",   "time", "value",      "int_value", "quality",
      "unit",   "inference", "raw",  "attributes", "datatype",  NULL};
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Inference inf = SLUICE__V1__INFERENCE__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  scratch_t s = {0};
  json_t *v, *iv;
  int rc, kinds = 0;

  if (!json_is_object(obj))
    return bad(e, el, "an event must be a JSON object");
  if ((rc = check_keys(obj, keys, "event", e, el)) < 0)
    goto out;
  v = json_object_get(obj, "source");
  if (!json_is_string(v) || json_string_length(v) == 0 ||
      json_string_length(v) > MAX_SOURCE_BYTES) {
    rc = bad(e, el, "\"source\" must be a non-empty string of at most %d bytes",
             MAX_SOURCE_BYTES);
    goto out;
  }
  ev.source = (char *)json_string_value(v);
  if ((rc = get_time(obj, def_time, &ev.time_ns, e, el)) < 0)
    goto out;

  v = json_object_get(obj, "value");
  iv = json_object_get(obj, "int_value");
  if (v || iv) {
    kinds++;
    if (v && iv) {
      rc = bad(e, el, "give \"value\" or \"int_value\", not both");
      goto out;
    }
    if (iv && !json_is_integer(iv)) {
      rc = bad(e, el, "\"int_value\" must be an integer");
      goto out;
    }
    if ((rc = get_value(obj, iv ? iv : v, &rd, e, el)) < 0)
      goto out;
    if ((v = json_object_get(obj, "quality")) &&
        (rc = get_quality(v, &rd, e, el)) < 0)
      goto out;
    if ((rc = opt_string(obj, "unit", &rd.unit, e, el)) < 0)
      goto out;
    ev.body_case = SLUICE__V1__EVENT__BODY_READING;
    ev.reading = &rd;
  } else if (json_object_get(obj, "quality") || json_object_get(obj, "unit") ||
             json_object_get(obj, "datatype")) {
    rc = bad(e, el,
             "\"quality\", \"unit\" and \"datatype\" belong to a reading "
             "(\"value\")");
    goto out;
  }
  if ((v = json_object_get(obj, "inference"))) {
    kinds++;
    if ((rc = decode_inference(v, &inf, &s, e, el)) < 0)
      goto out;
    ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
    ev.inference = &inf;
  }
  if ((v = json_object_get(obj, "raw"))) {
    kinds++;
    if ((rc = decode_raw(v, &raw, &s, e, el)) < 0)
      goto out;
    ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
    ev.raw = &raw;
  }
  if (kinds != 1) {
    rc = bad(e, el,
             "an event needs exactly one of \"value\", \"inference\" "
             "or \"raw\"");
    goto out;
  }
  if ((v = json_object_get(obj, "attributes"))) {
    const char *key;
    json_t *av;
    size_t n = json_is_object(v) ? json_object_size(v) : 0, i = 0;
    if (!json_is_object(v) || n > MAX_LIST) {
      rc = bad(e, el, "\"attributes\" must be an object of at most %d strings",
               MAX_LIST);
      goto out;
    }
    s.attrs = calloc(n ? n : 1, sizeof(*s.attrs));
    s.pattrs = calloc(n ? n : 1, sizeof(*s.pattrs));
    if (!s.attrs || !s.pattrs) {
      rc = -ENOMEM;
      goto out;
    }
    json_object_foreach(v, key, av) {
      if (!json_is_string(av)) {
        rc = bad(e, el, "attribute \"%.40s\" must be a string", key);
        goto out;
      }
      sluice__v1__attribute__init(&s.attrs[i]);
      s.attrs[i].key = (char *)key;
      s.attrs[i].value = (char *)json_string_value(av);
      s.pattrs[i] = &s.attrs[i];
      i++;
    }
    ev.n_attributes = n;
    ev.attributes = s.pattrs;
  }

  rc = sl_json_batch_add_client(jb, &ev, e, el);
out:
  scratch_free(&s);
  return rc;
}

int json_body_ref(const char *body, size_t len, int64_t default_time_ns,
                  uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                  size_t errlen) {
  size_t pos = 0, line = 1;
  char why[200];
  int rc = 0, nvalues = 0;

  sl_json_batch_reset(jb);
  for (;;) {
    json_error_t jerr;
    json_t *root;
    /* Skip whitespace between values, counting lines. */
    while (pos < len && (body[pos] == ' ' || body[pos] == '\t' ||
                         body[pos] == '\r' || body[pos] == '\n')) {
      if (body[pos] == '\n')
        line++;
      pos++;
    }
    if (pos == len)
      break;
    root = json_loadb(body + pos, len - pos,
                      JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
      rc = bad(errstr, errlen, "line %zu: invalid JSON: %s",
               line + (size_t)(jerr.line > 0 ? jerr.line - 1 : 0), jerr.text);
      goto fail;
    }
    nvalues++;
    if (json_is_array(root)) {
      size_t n = json_array_size(root);
      if (nvalues > 1 || n == 0) {
        json_decref(root);
        rc = bad(errstr, errlen,
                 n ? "line %zu: a JSON array must be the whole body"
                   : "line %zu: empty array",
                 line);
        goto fail;
      }
      for (size_t i = 0; i < n && rc == 0; i++) {
        if (jb->count >= max_events)
          rc = SL_ETOOBIG;
        else if ((rc = decode_event(json_array_get(root, i), default_time_ns,
                                    jb, why, sizeof(why))) < 0)
          snprintf(errstr, errlen, "event [%zu]: %s", i, why);
      }
    } else {
      if (jb->count >= max_events)
        rc = SL_ETOOBIG;
      else if ((rc = decode_event(root, default_time_ns, jb, why,
                                  sizeof(why))) < 0)
        snprintf(errstr, errlen, "line %zu: %s", line, why);
    }
    json_decref(root);
    if (rc == SL_ETOOBIG)
      snprintf(errstr, errlen, "more than %u events in one request",
               max_events);
    if (rc < 0)
      goto fail;
    /* jansson reports the bytes it consumed in position. */
    for (size_t i = pos; i < pos + (size_t)jerr.position && i < len; i++)
      if (body[i] == '\n')
        line++;
    pos += (size_t)jerr.position;
  }
  if (jb->count == 0)
    return bad(errstr, errlen, "no events in the body");
  return 0;
fail:
  sl_json_batch_reset(jb);
  return rc;
}

/* ---- differential check ------------------------------------------------ */

/* jansson keeps the byte after a number or a literal in a NUL-terminated
 * lookahead buffer, so a NUL byte there vanishes; the scanner rejects it.
 * Those inputs are not compared (as in json_mapped_ref.c). */
static int drops_nul(const uint8_t *data, size_t size) {
  for (size_t i = 1; i < size; i++)
    if (!data[i] &&
        ((data[i - 1] >= '0' && data[i - 1] <= '9') ||
         ((data[i - 1] | 0x20) >= 'a' && (data[i - 1] | 0x20) <= 'z')))
      return 1;
  return 0;
}

/* The part of a message both decoders must agree on: all of it, but for a
 * syntax error only up to "invalid JSON". */
static size_t msg_key(const char *m) {
  const char *p = strstr(m, ": invalid JSON: ");
  return p ? (size_t)(p - m) + strlen(": invalid JSON") : strlen(m);
}

int json_body_compare(const uint8_t *data, size_t size, char *why,
                      size_t whylen) {
  static const sl_ingest_rules_t rules = {.now_ns = 1795744800000000000LL,
                                          .max_future_ns = 300000000000LL};
  if (drops_nul(data, size))
    return 0;
  for (int r = 0; r < 2; r++) {
    for (uint32_t max = 2; max <= 1000; max += 998) {
      sl_json_batch_t a, b;
      char ea[256] = "", eb[256] = "";
      sl_json_batch_init(&a);
      sl_json_batch_init(&b);
      a.rules = b.rules = r ? &rules : NULL;
      int rca = sl_json_decode_body((const char *)data, size, 42, max, &a, ea,
                                    sizeof(ea));
      int rcb =
          json_body_ref((const char *)data, size, 42, max, &b, eb, sizeof(eb));
      size_t ka = msg_key(ea), kb = msg_key(eb);
      /* memcmp only with bytes: an empty batch may have no buffer. */
      int same = rca == rcb && a.count == b.count && a.buf.len == b.buf.len &&
                 (!a.buf.len || !memcmp(a.buf.data, b.buf.data, a.buf.len)) &&
                 a.min_time_ns == b.min_time_ns &&
                 a.max_time_ns == b.max_time_ns &&
                 (rca == 0 || (ka == kb && !memcmp(ea, eb, ka)));
      if (!same)
        snprintf(why, whylen,
                 "rules %d max %u: scanner rc %d count %u bytes %zu '%.90s'; "
                 "jansson rc %d count %u bytes %zu '%.90s'",
                 r, max, rca, a.count, a.buf.len, ea, rcb, b.count, b.buf.len,
                 eb);
      sl_json_batch_close(&a);
      sl_json_batch_close(&b);
      if (!same)
        return -1;
    }
  }
  return 0;
}
