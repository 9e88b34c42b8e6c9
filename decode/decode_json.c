/*
 * JSON events (HTTP ingest, MQTT "event" payloads) -> serialized EventBatch.
 * MQTT's mapped payloads have their own parser: decode_json_mapped.c; both
 * use the one scanner, json_scan.c (jansson's checks, without a tree).
 *
 * Each JSON value of the body is parsed (json_tree.c) into a flat tree of
 * nodes in arrays that are reused from event to event (on the stack for
 * ordinary events, so no allocation per event); an array body is decoded
 * element by element as it is scanned. Each event is built as a protobuf-c
 * struct pointing into those nodes and packed straight into the batch buffer.
 * The checks and messages are those of the jansson tree decoder this
 * replaced (tests/fuzz/json_body_ref.c, compared on every input by
 * tests/fuzz/fuzz_json.c), in its order: a syntax error anywhere in a JSON
 * value wins over an event error in it. Unknown keys are rejected: a typo
 * in "vaule" must not silently turn a reading into nothing.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "decode/decode_json.h"
#include "decode/json_tree.h"
#include "schemas/event_json.h"
#include "sluice/v1/event.pb-c.h"

#define MAX_SOURCE_BYTES 1024
#define MAX_LIST 1024 /* labels, boxes, attributes per event */
/* The pointer arrays of an event: labels, boxes, then attributes. */
#define PTRS (3 * MAX_LIST)

void sl_json_batch_init(sl_json_batch_t *jb) {
  memset(jb, 0, sizeof(*jb));
  sl_frame_buf_init(&jb->buf);
  sl_json_batch_reset(jb);
}

void sl_json_batch_reset(sl_json_batch_t *jb) {
  jb->buf.len = 0;
  jb->count = 0;
  jb->min_time_ns = INT64_MAX;
  jb->max_time_ns = INT64_MIN;
}

void sl_json_batch_close(sl_json_batch_t *jb) {
  sl_frame_buf_close(&jb->buf);
}

static int bad(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
  return SL_EPROTO;
}

/* ---- the tree's accessors (jansson's, on nodes) ------------------------ */

#define IS(b, i, ty) ((i) && N(b, i)->type == (ty))

/* Reusable room of n elements of size sz at *p (capacity *cap). */
static int room(void *pp, size_t *cap, size_t n, size_t sz) {
  void **p = pp;
  if (n <= *cap)
    return 0;
  size_t c = *cap ? *cap : 16;
  while (c < n)
    c *= 2;
  void *q = realloc(*p, c * sz);
  if (!q)
    return -ENOMEM;
  *p = q;
  *cap = c;
  return 0;
}

/* ---- one event ----------------------------------------------------------- */

/* The time is "time_ns" (integer nanoseconds) or "time" (RFC 3339 text or
 * epoch seconds), never both: two clocks that could disagree are refused
 * rather than one silently preferred. */
static int get_time(body_t *b, uint32_t v, uint32_t tv, int64_t def, int64_t *t,
                    char *e, size_t el) {
  if (v && tv)
    return bad(e, el, "\"time\" and \"time_ns\" given together: send one");
  if (v) {
    if (!IS(b, v, T_INT))
      return bad(e, el, "\"time_ns\" must be an integer (nanoseconds)");
    *t = N(b, v)->i;
    return 0;
  }
  if ((v = tv)) {
    if (IS(b, v, T_STRING)) {
      const char *ts = TXT(b, N(b, v)->str);
      int rc = sl_rfc3339_parse(ts, N(b, v)->slen, t);
      if (rc == SL_ERANGE)
        return bad(e, el,
                   "\"time\" \"%.40s\" is not a real date or is outside "
                   "1677-09-22..2262-04-11",
                   ts);
      if (rc < 0)
        return bad(e, el, "\"time\" \"%.40s\" is not RFC 3339", ts);
      return 0;
    }
    if (json__is_number(b, v)) {
      double s = json__number(b, v);
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

static int get_quality(body_t *b, uint32_t v, Sluice__V1__Reading *r, char *e,
                       size_t el) {
  if (IS(b, v, T_STRING)) {
    const char *q = TXT(b, N(b, v)->str);
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
  if (IS(b, v, T_INT) && N(b, v)->i >= 0 && N(b, v)->i <= 0xffffffffll) {
    /* An OPC UA StatusCode: its top two bits are the severity. */
    uint32_t code = (uint32_t)N(b, v)->i;
    r->status_code = code;
    r->quality = (code >> 30) == 0   ? SLUICE__V1__QUALITY__QUALITY_GOOD
                 : (code >> 30) == 1 ? SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                                     : SLUICE__V1__QUALITY__QUALITY_BAD;
    return 0;
  }
  return bad(e, el, "\"quality\" must be a name or an OPC UA status code");
}

/* An optional string member v (0: absent) named key. */
static int opt_string(body_t *b, uint32_t v, const char *key, char **out,
                      char *e, size_t el) {
  if (!v)
    return 0;
  if (!IS(b, v, T_STRING))
    return bad(e, el, "\"%s\" must be a string", key);
  *out = (char *)TXT(b, N(b, v)->str);
  return 0;
}

static int get_number(body_t *b, uint32_t o, const char *key, float *out,
                      char *e, size_t el) {
  uint32_t v = json__member(b, o, key);
  if (!v)
    return 0;
  if (!json__is_number(b, v))
    return bad(e, el, "\"%s\" must be a number", key);
  *out = (float)json__number(b, v);
  return 0;
}

enum { I_MODEL, I_VERSION, I_LABELS, I_BOXES, I_LATENCY, I_N };

static int decode_inference(body_t *b, uint32_t o, Sluice__V1__Inference *inf,
                            char *e, size_t el) {
  static const char *const keys[] = {"model", "model_version", "labels",
                                     "boxes", "latency_us",    NULL};
  uint32_t k[I_N] = {0}, v;
  size_t i, n, np = 0;
  int rc;
  if (!IS(b, o, T_LBRACE))
    return bad(e, el, "\"inference\" must be an object");
  if ((rc = json__keys(b, o, keys, k, "inference", e, el)) < 0)
    return rc;
  if ((rc = opt_string(b, k[I_MODEL], "model", &inf->model, e, el)) < 0 ||
      (rc = opt_string(b, k[I_VERSION], "model_version", &inf->model_version, e,
                       el)) < 0)
    return rc;
  if (!inf->model || !*inf->model)
    return bad(e, el, "\"inference.model\" is required");
  if ((v = k[I_LATENCY])) {
    if (!IS(b, v, T_INT) || N(b, v)->i < 0 || N(b, v)->i > 0xffffffffll)
      return bad(e, el, "\"latency_us\" must be a non-negative integer");
    inf->latency_us = (uint32_t)N(b, v)->i;
  }
  if (room(&b->ptrs, &b->capptrs, PTRS, sizeof(*b->ptrs)) < 0)
    return -ENOMEM;
  if ((v = k[I_LABELS])) {
    if (!IS(b, v, T_LBRACKET) || (n = N(b, v)->n) > MAX_LIST)
      return bad(e, el, "\"labels\" must be an array of at most %d", MAX_LIST);
    if (room(&b->labels, &b->caplabels, n, sizeof(*b->labels)) < 0)
      return -ENOMEM;
    uint32_t c = N(b, v)->first;
    for (i = 0; i < n; i++, c = N(b, c)->next) {
      Sluice__V1__Label *l = &b->labels[i];
      sluice__v1__label__init(l);
      if (!IS(b, c, T_LBRACE))
        return bad(e, el, "labels[%zu] must be an object", i);
      if ((rc = opt_string(b, json__member(b, c, "name"), "name", &l->name, e,
                           el)) < 0 ||
          (rc = get_number(b, c, "score", &l->score, e, el)) < 0)
        return rc;
      b->ptrs[np + i] = l;
    }
    inf->n_labels = n;
    inf->labels = (Sluice__V1__Label **)&b->ptrs[np];
    np += n;
  }
  if ((v = k[I_BOXES])) {
    if (!IS(b, v, T_LBRACKET) || (n = N(b, v)->n) > MAX_LIST)
      return bad(e, el, "\"boxes\" must be an array of at most %d", MAX_LIST);
    if (room(&b->boxes, &b->capboxes, n, sizeof(*b->boxes)) < 0)
      return -ENOMEM;
    uint32_t c = N(b, v)->first;
    for (i = 0; i < n; i++, c = N(b, c)->next) {
      Sluice__V1__Box *bx = &b->boxes[i];
      sluice__v1__box__init(bx);
      if (!IS(b, c, T_LBRACE))
        return bad(e, el, "boxes[%zu] must be an object", i);
      if ((rc = get_number(b, c, "x", &bx->x, e, el)) < 0 ||
          (rc = get_number(b, c, "y", &bx->y, e, el)) < 0 ||
          (rc = get_number(b, c, "w", &bx->w, e, el)) < 0 ||
          (rc = get_number(b, c, "h", &bx->h, e, el)) < 0 ||
          (rc = get_number(b, c, "score", &bx->score, e, el)) < 0 ||
          (rc = opt_string(b, json__member(b, c, "label"), "label", &bx->label,
                           e, el)) < 0)
        return rc;
      b->ptrs[np + i] = bx;
    }
    inf->n_boxes = n;
    inf->boxes = (Sluice__V1__Box **)&b->ptrs[np];
  }
  return 0;
}

static int decode_raw(body_t *b, uint32_t o, Sluice__V1__Raw *raw, char *e,
                      size_t el) {
  static const char *const keys[] = {"data", "content_type", NULL};
  uint32_t k[2] = {0}, d;
  const char *b64;
  size_t n;
  int rc, dn;
  if (!IS(b, o, T_LBRACE))
    return bad(e, el, "\"raw\" must be an object");
  if ((rc = json__keys(b, o, keys, k, "raw", e, el)) < 0 ||
      (rc = opt_string(b, k[1], "content_type", &raw->content_type, e, el)) < 0)
    return rc;
  d = k[0];
  if (!IS(b, d, T_STRING))
    return bad(e, el, "\"raw.data\" must be a base64 string");
  b64 = TXT(b, N(b, d)->str);
  n = N(b, d)->slen;
  if (n % 4)
    return bad(e, el, "\"raw.data\" is not valid base64");
  if (room(&b->raw, &b->capraw, n / 4 * 3 + 1, 1) < 0)
    return -ENOMEM;
  dn = n ? EVP_DecodeBlock(b->raw, (const unsigned char *)b64, (int)n) : 0;
  if (dn < 0)
    return bad(e, el, "\"raw.data\" is not valid base64");
  /* EVP_DecodeBlock counts padding bytes as data: remove them. */
  if (n >= 1 && b64[n - 1] == '=')
    dn--;
  if (n >= 2 && b64[n - 2] == '=')
    dn--;
  raw->data.data = b->raw;
  raw->data.len = (size_t)dn;
  return 0;
}

/* A reading's value v under its optional "datatype" dtv (docs/SCHEMAS.md);
 * is_value: v is "value" (not "int_value"). */
static int get_value(body_t *b, uint32_t dtv, uint32_t v, bool is_value,
                     Sluice__V1__Reading *rd, char *e, size_t el) {
  sl_event_jv_t jv = {0};
  const char *why = NULL;
  int dt = 0;

  if (dtv && (!IS(b, dtv, T_STRING) ||
              (dt = sl_event_datatype_parse(TXT(b, N(b, dtv)->str))) < 0))
    return bad(e, el,
               "\"datatype\" must be one of int8, int16, int32, int64, "
               "uint8, uint16, uint32, uint64, float, double, boolean, "
               "string, datetime, text, uuid");
  switch (N(b, v)->type) {
  case T_INT:
    jv.kind = SL_JV_INT;
    jv.int_ok = true;
    jv.i = N(b, v)->i;
    jv.d = (double)jv.i;
    /* Untyped "value": 5 has always been a double. */
    if (!dt && is_value)
      jv.kind = SL_JV_REAL;
    break;
  case T_REAL:
    jv.kind = SL_JV_REAL;
    jv.d = N(b, v)->d;
    break;
  case T_TRUE:
  case T_FALSE:
    jv.kind = SL_JV_BOOL;
    jv.b = N(b, v)->type == T_TRUE;
    break;
  case T_STRING:
    jv.kind = SL_JV_STRING;
    jv.s = TXT(b, N(b, v)->str);
    break;
  default:
    return bad(e, el, "\"value\" must be a number, a boolean or a string");
  }
  if (sl_event_value_set(rd, dt, &jv, &why) < 0)
    return bad(e, el, "%s", why);
  return 0;
}

enum {
  K_SOURCE,
  K_TIME_NS,
  K_TIME,
  K_VALUE,
  K_INT_VALUE,
  K_QUALITY,
  K_UNIT,
  K_INFERENCE,
  K_RAW,
  K_ATTRIBUTES,
  K_DATATYPE,
  K_N
};

/* The event in node 0. */
static int decode_event(body_t *b, int64_t def_time, sl_json_batch_t *jb,
                        char *e, size_t el) {
  static const char *const keys[] = {
      "source", "time_ns",   "time", "value",      "int_value", "quality",
      "unit",   "inference", "raw",  "attributes", "datatype",  NULL};
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Inference inf = SLUICE__V1__INFERENCE__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  uint32_t k[K_N] = {0}, v, iv;
  int rc, kinds = 0;

  if (N(b, 0)->type != T_LBRACE)
    return bad(e, el, "an event must be a JSON object");
  if ((rc = json__keys(b, 0, keys, k, "event", e, el)) < 0)
    return rc;
  v = k[K_SOURCE];
  if (!IS(b, v, T_STRING) || N(b, v)->slen == 0 ||
      N(b, v)->slen > MAX_SOURCE_BYTES)
    return bad(e, el,
               "\"source\" must be a non-empty string of at most %d bytes",
               MAX_SOURCE_BYTES);
  ev.source = (char *)TXT(b, N(b, v)->str);
  if ((rc = get_time(b, k[K_TIME_NS], k[K_TIME], def_time, &ev.time_ns, e,
                     el)) < 0)
    return rc;

  v = k[K_VALUE];
  iv = k[K_INT_VALUE];
  if (v || iv) {
    kinds++;
    if (v && iv)
      return bad(e, el, "give \"value\" or \"int_value\", not both");
    if (iv && !IS(b, iv, T_INT))
      return bad(e, el, "\"int_value\" must be an integer");
    if ((rc = get_value(b, k[K_DATATYPE], iv ? iv : v, !iv, &rd, e, el)) < 0)
      return rc;
    if (k[K_QUALITY] && (rc = get_quality(b, k[K_QUALITY], &rd, e, el)) < 0)
      return rc;
    if ((rc = opt_string(b, k[K_UNIT], "unit", &rd.unit, e, el)) < 0)
      return rc;
    ev.body_case = SLUICE__V1__EVENT__BODY_READING;
    ev.reading = &rd;
  } else if (k[K_QUALITY] || k[K_UNIT] || k[K_DATATYPE]) {
    return bad(e, el,
               "\"quality\", \"unit\" and \"datatype\" belong to a reading "
               "(\"value\")");
  }
  if ((v = k[K_INFERENCE])) {
    kinds++;
    if ((rc = decode_inference(b, v, &inf, e, el)) < 0)
      return rc;
    ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
    ev.inference = &inf;
  }
  if ((v = k[K_RAW])) {
    kinds++;
    if ((rc = decode_raw(b, v, &raw, e, el)) < 0)
      return rc;
    ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
    ev.raw = &raw;
  }
  if (kinds != 1)
    return bad(e, el,
               "an event needs exactly one of \"value\", \"inference\" "
               "or \"raw\"");
  if ((v = k[K_ATTRIBUTES])) {
    size_t n = IS(b, v, T_LBRACE) ? N(b, v)->n : 0, i = 0;
    if (!IS(b, v, T_LBRACE) || n > MAX_LIST)
      return bad(e, el,
                 "\"attributes\" must be an object of at most %d strings",
                 MAX_LIST);
    if (room(&b->attrs, &b->capattrs, n, sizeof(*b->attrs)) < 0 ||
        room(&b->ptrs, &b->capptrs, PTRS, sizeof(*b->ptrs)) < 0)
      return -ENOMEM;
    for (uint32_t c = N(b, v)->first; c; c = N(b, c)->next, i++) {
      if (N(b, c)->type != T_STRING)
        return bad(e, el, "attribute \"%.40s\" must be a string",
                   TXT(b, N(b, c)->key));
      sluice__v1__attribute__init(&b->attrs[i]);
      b->attrs[i].key = (char *)TXT(b, N(b, c)->key);
      b->attrs[i].value = (char *)TXT(b, N(b, c)->str);
      b->ptrs[2 * MAX_LIST + i] = &b->attrs[i];
    }
    ev.n_attributes = n;
    ev.attributes = (Sluice__V1__Attribute **)&b->ptrs[2 * MAX_LIST];
  }
  return sl_json_batch_add_client(jb, &ev, e, el);
}

/* An array body (t at its '['): every element is an event. Returns the
 * first event error (errstr set), 0, or 1 when the scanner recorded a
 * syntax error. *n gets the number of elements. */
static int decode_array(body_t *b, tok_t *t, bool events, int64_t def_time,
                        uint32_t max_events, sl_json_batch_t *jb, size_t *n,
                        char *errstr, size_t errlen) {
  scan_t *s = &b->s;
  char why[200];
  int rc = 0;
  *n = 0;
  s->depth = 1;
  json__lex(s, t);
  if (t->type != T_RBRACKET) {
    while (t->type != T_EOF) {
      json__tree_parse(b, t);
      if (s->err)
        return 1;
      if (events && rc == 0) {
        if (jb->count >= max_events)
          rc = SL_ETOOBIG;
        else if ((rc = decode_event(b, def_time, jb, why, sizeof(why))) < 0)
          snprintf(errstr, errlen, "event [%zu]: %s", *n, why);
      }
      ++*n;
      json__lex(s, t);
      if (t->type != T_COMMA)
        break;
      json__lex(s, t);
    }
    if (t->type != T_RBRACKET)
      json__fail(s, "bad_json", "']' expected");
  }
  s->depth = 0;
  return s->err ? 1 : rc;
}

int sl_json_decode_body(const char *body, size_t len, int64_t default_time_ns,
                        uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                        size_t errlen) {
  size_t line = 1;
  char why[200], msg[200];
  int rc = 0, nvalues = 0;
  body_t *b = malloc(sizeof(*b)); /* ~10 KiB: once per body, off the stack */
  tok_t t;

  if (!b)
    return -ENOMEM;
  json__body_open(b, body, len, msg, sizeof(msg));
  scan_t *s = &b->s;
  sl_json_batch_reset(jb);
  for (;;) {
    /* Skip whitespace between values, counting lines. */
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n')) {
      if (*s->p == '\n')
        line++;
      s->p++;
    }
    if (s->p == s->end)
      break;
    const unsigned char *start = s->p;
    nvalues++;
    json__lex(s, &t);
    if (t.type == T_LBRACKET) {
      size_t n;
      rc = decode_array(b, &t, nvalues == 1, default_time_ns, max_events, jb,
                        &n, errstr, errlen);
      if (rc == 1) {
        rc = json__syntax_error(b, start, line, msg, errstr, errlen);
        goto fail;
      }
      if (nvalues > 1 || n == 0) {
        rc = bad(errstr, errlen,
                 n ? "line %zu: a JSON array must be the whole body"
                   : "line %zu: empty array",
                 line);
        goto fail;
      }
    } else {
      if (t.type == T_LBRACE)
        json__tree_parse(b, &t);
      else if (!s->err)
        json__fail(s, "bad_json", "'[' or '{' expected");
      if (s->err) {
        rc = json__syntax_error(b, start, line, msg, errstr, errlen);
        goto fail;
      }
      if (jb->count >= max_events)
        rc = SL_ETOOBIG;
      else if ((rc = decode_event(b, default_time_ns, jb, why, sizeof(why))) <
               0)
        snprintf(errstr, errlen, "line %zu: %s", line, why);
    }
    if (rc == SL_ETOOBIG)
      snprintf(errstr, errlen, "more than %u events in one request",
               max_events);
    if (rc < 0)
      goto fail;
    line += json__newlines(start, s->p);
  }
  json__body_close(b);
  free(b);
  if (jb->count == 0)
    return bad(errstr, errlen, "no events in the body");
  return 0;
fail:
  json__body_close(b);
  free(b);
  sl_json_batch_reset(jb);
  return rc;
}

int sl_json_batch_add(sl_json_batch_t *jb, const void *evp) {
  const Sluice__V1__Event *ev = evp;
  /* EventBatch.events is field 1, length-delimited: tag 0x0a. */
  size_t sz = sluice__v1__event__get_packed_size(ev);
  if (sl_frame_buf_reserve(&jb->buf, sz + 11) < 0)
    return -ENOMEM;
  uint8_t *p = jb->buf.data + jb->buf.len;
  *p++ = 0x0a;
  for (size_t l = sz;; l >>= 7) {
    if (l < 0x80) {
      *p++ = (uint8_t)l;
      break;
    }
    *p++ = (uint8_t)(l | 0x80);
  }
  p += sluice__v1__event__pack(ev, p);
  jb->buf.len = (size_t)(p - jb->buf.data);
  jb->count++;
  jb->min_time_ns =
      ev->time_ns < jb->min_time_ns ? ev->time_ns : jb->min_time_ns;
  jb->max_time_ns =
      ev->time_ns > jb->max_time_ns ? ev->time_ns : jb->max_time_ns;
  return 0;
}

int sl_json_batch_add_client(sl_json_batch_t *jb, void *evp, char *why,
                             size_t len) {
  sl_ingest_mark_t mark = {0};
  int rc;
  if (!jb->rules)
    return sl_json_batch_add(jb, evp);
  if ((rc = sl_ingest_event_check(jb->rules, evp, why, len)) < 0)
    return rc;
  if (rc > 0 &&
      (rc = sl_ingest_event_fix(jb->rules, evp, (unsigned)rc, &mark)) < 0)
    return rc;
  rc = sl_json_batch_add(jb, evp);
  sl_ingest_mark_undo(&mark);
  return rc;
}
