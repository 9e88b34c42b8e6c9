/*
 * Inference JSON and OIP v2 responses -> inference events
 * (decode_inference.h, docs/EDGE-AI.md). The payload is parsed into the
 * decoder's reusable flat tree (json_tree.c on json_scan.c: syntax, UTF-8,
 * number ranges, duplicate keys checked as for sluice's event JSON), then
 * each event is built as a protobuf-c struct pointing into the tree and the
 * decoder's fixed arrays, and packed into the batch. Nothing is allocated
 * per event once the decoder has seen payloads of the size.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode_inference.h"
#include "decode/json_tree.h"
#include "sluice/v1/event.pb-c.h"

#define MAX_SOURCE_BYTES 1024
#define MAX_ATTRS 64

struct sl_infer_dec {
  body_t b; /* zeroed at creation; reused (json__body_reopen) */
  Sluice__V1__Detection det[SL_INFER_MAX_DETECTIONS];
  Sluice__V1__Detection *detp[SL_INFER_MAX_DETECTIONS];
  Sluice__V1__ClassScore cls[SL_INFER_MAX_CLASSES];
  Sluice__V1__ClassScore *clsp[SL_INFER_MAX_CLASSES];
  double vals[SL_INFER_MAX_VALUES];
  Sluice__V1__Attribute attr[MAX_ATTRS], *attrp[MAX_ATTRS];
  double tensor[SL_INFER_MAX_TENSOR];
  size_t ntensor;
  char msg[200];
};

int sl_infer_dec_new(sl_infer_dec_t **out) {
  *out = calloc(1, sizeof(**out)); /* ~900 KiB, once per decoder */
  return *out ? 0 : -ENOMEM;
}

void sl_infer_dec_free(sl_infer_dec_t *d) {
  if (!d)
    return;
  json__body_close(&d->b);
  free(d);
}

static int bad(char *e, size_t el, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *e, size_t el, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e, el, fmt, ap);
  va_end(ap);
  return SL_EPROTO;
}

/* ---- tree accessors ------------------------------------------------------ */

#define IS(b, i, ty) ((i) && N(b, i)->type == (ty))
static int get_str(body_t *b, uint32_t v, const char *name, char **out, char *e,
                   size_t el) {
  if (!v)
    return 0;
  if (!IS(b, v, T_STRING))
    return bad(e, el, "\"%s\" must be a string", name);
  *out = (char *)TXT(b, N(b, v)->str);
  return 0;
}
static int get_int(body_t *b, uint32_t v, const char *name, int64_t lo,
                   int64_t hi, int64_t *out, char *e, size_t el) {
  if (!v)
    return 0;
  if (!IS(b, v, T_INT) || N(b, v)->i < lo || N(b, v)->i > hi)
    return bad(e, el, "\"%s\" must be an integer in [%lld, %lld]", name,
               (long long)lo, (long long)hi);
  *out = N(b, v)->i;
  return 0;
}
static int get_num(body_t *b, uint32_t v, const char *name, double *out,
                   char *e, size_t el) {
  if (!v)
    return 0;
  if (!json__is_number(b, v) || !isfinite(json__number(b, v)))
    return bad(e, el, "\"%s\" must be a finite number", name);
  *out = json__number(b, v);
  return 0;
}
static int get_enum(body_t *b, uint32_t v, const char *name,
                    const char *const *names, int *out, char *e, size_t el) {
  if (!v)
    return 0;
  if (IS(b, v, T_STRING)) {
    for (int i = 1; names[i]; i++) {
      if (!strcmp(names[i], TXT(b, N(b, v)->str))) {
        *out = i;
        return 0;
      }
    }
  }
  return bad(e, el, "\"%s\" must be one of %s, %s, %s%s%s", name, names[1],
             names[2], names[3], names[4] ? ", " : "",
             names[4] ? names[4] : "");
}

static const char *const roles[] = {"", "primary", "canary", "shadow", NULL};
static const char *const tasks[] = {"",        "classify", "detect",
                                    "anomaly", "regress",  NULL};
static const char *const statuses[] = {"",      "ok",      "empty",
                                       "error", "skipped", NULL};

/* ---- the inference JSON mapping ----------------------------------------- */

static int box_of(body_t *b, uint32_t v, Sluice__V1__Detection *dt, size_t i,
                  char *e, size_t el) {
  float *f[4] = {&dt->x, &dt->y, &dt->w, &dt->h};
  uint32_t c;
  size_t k = 0;
  if (!IS(b, v, T_LBRACKET) || N(b, v)->n != 4)
    return bad(e, el, "detections[%zu].box must be [x, y, w, h]", i);
  for (c = N(b, v)->first; c; c = N(b, c)->next, k++) {
    double x = json__is_number(b, c) ? json__number(b, c) : NAN;
    if (!(x >= 0 && x <= 1))
      return bad(e, el,
                 "detections[%zu].box values must be numbers in [0, 1] "
                 "(normalised)",
                 i);
    *f[k] = (float)x;
  }
  return 0;
}

enum { D_LABEL_ID, D_LABEL, D_SCORE, D_BOX, D_TRACK, D_N };

static int detections_of(sl_infer_dec_t *d, uint32_t v,
                         Sluice__V1__Inference *in, char *e, size_t el) {
  static const char *const keys[] = {"label_id", "label",    "score",
                                     "box",      "track_id", NULL};
  body_t *b = &d->b;
  size_t i = 0;
  if (!IS(b, v, T_LBRACKET) || N(b, v)->n > SL_INFER_MAX_DETECTIONS)
    return bad(e, el, "\"detections\" must be an array of at most %d",
               SL_INFER_MAX_DETECTIONS);
  for (uint32_t c = N(b, v)->first; c; c = N(b, c)->next, i++) {
    Sluice__V1__Detection *dt = &d->det[i];
    uint32_t k[D_N] = {0};
    int64_t id = 0, tr = 0;
    double sc = 0;
    int rc;
    char what[40];
    sluice__v1__detection__init(dt);
    snprintf(what, sizeof(what), "detections[%zu]", i);
    if (!IS(b, c, T_LBRACE))
      return bad(e, el, "%s must be an object", what);
    if ((rc = json__keys(b, c, keys, k, what, e, el)) < 0)
      return rc;
    if (!k[D_LABEL_ID] || !k[D_SCORE])
      return bad(e, el, "%s needs \"label_id\" and \"score\"", what);
    if ((rc = get_int(b, k[D_LABEL_ID], "label_id", 0, UINT32_MAX, &id, e,
                      el)) < 0 ||
        (rc = get_num(b, k[D_SCORE], "score", &sc, e, el)) < 0 ||
        (rc = get_str(b, k[D_LABEL], "label", &dt->label, e, el)) < 0 ||
        (rc = get_int(b, k[D_TRACK], "track_id", 0, INT64_MAX, &tr, e, el)) < 0)
      return rc;
    if (k[D_BOX] && (rc = box_of(b, k[D_BOX], dt, i, e, el)) < 0)
      return rc;
    dt->label_id = (uint32_t)id;
    dt->score = (float)sc;
    dt->track_id = (uint64_t)tr;
    dt->tracked = k[D_TRACK] != 0;
    d->detp[i] = dt;
  }
  in->n_detections = i;
  in->detections = d->detp;
  return 0;
}

static int classes_of(sl_infer_dec_t *d, uint32_t v, Sluice__V1__Inference *in,
                      char *e, size_t el) {
  static const char *const keys[] = {"label_id", "label", "score", NULL};
  body_t *b = &d->b;
  size_t i = 0;
  if (!IS(b, v, T_LBRACKET) || N(b, v)->n > SL_INFER_MAX_CLASSES)
    return bad(e, el, "\"classes\" must be an array of at most %d",
               SL_INFER_MAX_CLASSES);
  for (uint32_t c = N(b, v)->first; c; c = N(b, c)->next, i++) {
    Sluice__V1__ClassScore *cs = &d->cls[i];
    uint32_t k[3] = {0};
    int64_t id = 0;
    double sc = 0;
    int rc;
    char what[40];
    sluice__v1__class_score__init(cs);
    snprintf(what, sizeof(what), "classes[%zu]", i);
    if (!IS(b, c, T_LBRACE))
      return bad(e, el, "%s must be an object", what);
    if ((rc = json__keys(b, c, keys, k, what, e, el)) < 0)
      return rc;
    if (!k[0] || !k[2])
      return bad(e, el, "%s needs \"label_id\" and \"score\"", what);
    if ((rc = get_int(b, k[0], "label_id", 0, UINT32_MAX, &id, e, el)) < 0 ||
        (rc = get_num(b, k[2], "score", &sc, e, el)) < 0 ||
        (rc = get_str(b, k[1], "label", &cs->label, e, el)) < 0)
      return rc;
    cs->label_id = (uint32_t)id;
    cs->score = (float)sc;
    d->clsp[i] = cs;
  }
  in->n_classes = i;
  in->classes = d->clsp;
  return 0;
}

enum {
  K_SOURCE,
  K_TIME_NS,
  K_MODEL,
  K_VERSION,
  K_DIGEST,
  K_ROLE,
  K_SEQUENCE,
  K_CAPTURE,
  K_PTS,
  K_EMIT,
  K_LATENCY,
  K_QUEUE,
  K_TASK,
  K_STATUS,
  K_ERROR,
  K_THRESHOLD,
  K_LABEL_MAP,
  K_DETECTIONS,
  K_CLASSES,
  K_ANOMALY,
  K_VALUES,
  K_ATTRIBUTES,
  K_N
};

static int attributes_of(sl_infer_dec_t *d, uint32_t v, Sluice__V1__Event *ev,
                         char *e, size_t el) {
  body_t *b = &d->b;
  size_t i = 0;
  if (!IS(b, v, T_LBRACE) || N(b, v)->n > MAX_ATTRS)
    return bad(e, el, "\"attributes\" must be an object of at most %d strings",
               MAX_ATTRS);
  for (uint32_t c = N(b, v)->first; c; c = N(b, c)->next, i++) {
    if (!IS(b, c, T_STRING))
      return bad(e, el, "attribute \"%.40s\" must be a string",
                 TXT(b, N(b, c)->key));
    sluice__v1__attribute__init(&d->attr[i]);
    d->attr[i].key = (char *)TXT(b, N(b, c)->key);
    d->attr[i].value = (char *)TXT(b, N(b, c)->str);
    d->attrp[i] = &d->attr[i];
  }
  ev->n_attributes = i;
  ev->attributes = d->attrp;
  return 0;
}

/* The inference object in node 0. */
static int decode_one(sl_infer_dec_t *d, const char *source, int64_t def_time,
                      sl_json_batch_t *jb, char *e, size_t el) {
  static const char *const keys[] = {"source",
                                     "time_ns",
                                     "model",
                                     "model_version",
                                     "model_digest",
                                     "role",
                                     "sequence",
                                     "capture_time_ns",
                                     "pts_ns",
                                     "emit_time_ns",
                                     "latency_us",
                                     "queue_us",
                                     "task",
                                     "status",
                                     "error",
                                     "score_threshold",
                                     "label_map_digest",
                                     "detections",
                                     "classes",
                                     "anomaly_score",
                                     "values",
                                     "attributes",
                                     NULL};
  body_t *b = &d->b;
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Inference in = SLUICE__V1__INFERENCE__INIT;
  uint32_t k[K_N] = {0}, v;
  int64_t seq = 0, lat = 0, q = 0, t = 0;
  int role = 0, task = 0, status = 0, rc;
  double th = 0;

  if (N(b, 0)->type != T_LBRACE)
    return bad(e, el, "an inference must be a JSON object");
  if ((rc = json__keys(b, 0, keys, k, "inference", e, el)) < 0)
    return rc;
  ev.source = (char *)source;
  if ((v = k[K_SOURCE]) && (!IS(b, v, T_STRING) || !N(b, v)->slen ||
                            N(b, v)->slen > MAX_SOURCE_BYTES))
    return bad(e, el,
               "\"source\" must be a non-empty string of at most %d bytes",
               MAX_SOURCE_BYTES);
  if (v)
    ev.source = (char *)TXT(b, N(b, v)->str);
  if (!ev.source || !*ev.source)
    return bad(e, el, "\"source\" is required");
  if ((rc = get_str(b, k[K_MODEL], "model", &in.model, e, el)) < 0)
    return rc;
  if (!in.model || !*in.model)
    return bad(e, el, "\"model\" is required");
  if ((rc = get_str(b, k[K_VERSION], "model_version", &in.model_version, e,
                    el)) < 0 ||
      (rc = get_str(b, k[K_DIGEST], "model_digest", &in.model_digest, e, el)) <
          0 ||
      (rc = get_str(b, k[K_ERROR], "error", &in.error, e, el)) < 0 ||
      (rc = get_str(b, k[K_LABEL_MAP], "label_map_digest", &in.label_map_digest,
                    e, el)) < 0 ||
      (rc = get_enum(b, k[K_ROLE], "role", roles, &role, e, el)) < 0 ||
      (rc = get_enum(b, k[K_TASK], "task", tasks, &task, e, el)) < 0 ||
      (rc = get_enum(b, k[K_STATUS], "status", statuses, &status, e, el)) < 0 ||
      (rc = get_int(b, k[K_SEQUENCE], "sequence", 0, INT64_MAX, &seq, e, el)) <
          0 ||
      (rc = get_int(b, k[K_CAPTURE], "capture_time_ns", INT64_MIN, INT64_MAX,
                    &in.capture_time_ns, e, el)) < 0 ||
      (rc = get_int(b, k[K_PTS], "pts_ns", INT64_MIN, INT64_MAX, &in.pts_ns, e,
                    el)) < 0 ||
      (rc = get_int(b, k[K_EMIT], "emit_time_ns", INT64_MIN, INT64_MAX,
                    &in.emit_time_ns, e, el)) < 0 ||
      (rc = get_int(b, k[K_LATENCY], "latency_us", 0, UINT32_MAX, &lat, e,
                    el)) < 0 ||
      (rc = get_int(b, k[K_QUEUE], "queue_us", 0, UINT32_MAX, &q, e, el)) < 0 ||
      (rc = get_num(b, k[K_THRESHOLD], "score_threshold", &th, e, el)) < 0 ||
      (rc = get_num(b, k[K_ANOMALY], "anomaly_score", &in.anomaly_score, e,
                    el)) < 0 ||
      (rc = get_int(b, k[K_TIME_NS], "time_ns", INT64_MIN, INT64_MAX, &t, e,
                    el)) < 0)
    return rc;
  in.role = (Sluice__V1__InferenceRole)role;
  in.task = (Sluice__V1__InferenceTask)task;
  in.status = (Sluice__V1__InferenceStatus)status;
  in.sequence = (uint64_t)seq;
  in.latency_us = (uint32_t)lat;
  in.queue_us = (uint32_t)q;
  in.score_threshold = (float)th;
  if (in.error && *in.error &&
      status != SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_ERROR)
    return bad(e, el, "\"error\" goes with \"status\": \"error\"");
  if ((v = k[K_DETECTIONS]) && (rc = detections_of(d, v, &in, e, el)) < 0)
    return rc;
  if ((v = k[K_CLASSES]) && (rc = classes_of(d, v, &in, e, el)) < 0)
    return rc;
  if ((v = k[K_VALUES])) {
    size_t i = 0;
    if (!IS(b, v, T_LBRACKET) || N(b, v)->n > SL_INFER_MAX_VALUES)
      return bad(e, el, "\"values\" must be an array of at most %d numbers",
                 SL_INFER_MAX_VALUES);
    for (uint32_t c = N(b, v)->first; c; c = N(b, c)->next, i++) {
      if (!json__is_number(b, c) || !isfinite(json__number(b, c)))
        return bad(e, el, "values[%zu] must be a finite number", i);
      d->vals[i] = json__number(b, c);
    }
    in.n_values = i;
    in.values = d->vals;
  }
  if ((v = k[K_ATTRIBUTES]) && (rc = attributes_of(d, v, &ev, e, el)) < 0)
    return rc;
  ev.time_ns = k[K_TIME_NS] ? t : k[K_CAPTURE] ? in.capture_time_ns : def_time;
  ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  ev.inference = &in;
  return sl_json_batch_add_client(jb, &ev, e, el);
}

int sl_infer_decode_json(sl_infer_dec_t *d, const char *payload, size_t len,
                         const char *source, int64_t default_time_ns,
                         uint32_t max_events, sl_json_batch_t *jb, char *errstr,
                         size_t errlen) {
  body_t *b = &d->b;
  scan_t *s = &b->s;
  size_t line = 1, idx = 0;
  char why[200];
  int rc = 0;
  tok_t t;

  json__body_reopen(b, payload, len, d->msg, sizeof(d->msg));
  sl_json_batch_reset(jb);
  for (;;) {
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n')) {
      if (*s->p == '\n')
        line++;
      s->p++;
    }
    if (s->p == s->end)
      break;
    const unsigned char *start = s->p;
    bool array = false;
    json__lex(s, &t);
    if (t.type == T_LBRACKET) {
      array = true;
      s->depth = 1;
      json__lex(s, &t);
      if (t.type == T_RBRACKET) {
        rc = bad(errstr, errlen, "line %zu: empty array", line);
        goto fail;
      }
    }
    for (;;) {
      if (t.type == T_LBRACE)
        json__tree_parse(b, &t);
      else if (!s->err)
        json__fail(s, "bad_json", "'{' expected");
      if (s->err) {
        rc = json__syntax_error(b, start, line, d->msg, errstr, errlen);
        goto fail;
      }
      if (jb->count >= max_events) {
        rc = SL_ETOOBIG;
        snprintf(errstr, errlen, "more than %u inference events", max_events);
        goto fail;
      }
      if ((rc = decode_one(d, source, default_time_ns, jb, why, sizeof(why))) <
          0) {
        if (array)
          snprintf(errstr, errlen, "inference [%zu]: %s", idx, why);
        else
          snprintf(errstr, errlen, "line %zu: %s", line, why);
        goto fail;
      }
      idx++;
      if (!array)
        break;
      json__lex(s, &t);
      if (t.type == T_RBRACKET)
        break;
      if (t.type != T_COMMA) {
        if (!s->err)
          json__fail(s, "bad_json", "']' expected");
        rc = json__syntax_error(b, start, line, d->msg, errstr, errlen);
        goto fail;
      }
      json__lex(s, &t);
    }
    s->depth = 0;
    line += json__newlines(start, s->p);
  }
  if (jb->count == 0)
    return bad(errstr, errlen, "no inference in the payload");
  return 0;
fail:
  sl_json_batch_reset(jb);
  return rc;
}

/* ---- Open Inference Protocol v2 responses -------------------------------- */

/* Appends every number below v (flat or nested arrays) to d->tensor. */
static int flatten(sl_infer_dec_t *d, uint32_t v, bool boolean, char *e,
                   size_t el) {
  body_t *b = &d->b;
  for (uint32_t c = N(b, v)->first; c; c = N(b, c)->next) {
    jnode_t *n = N(b, c);
    if (n->type == T_LBRACKET) {
      int rc = flatten(d, c, boolean, e, el);
      if (rc < 0)
        return rc;
      continue;
    }
    if (d->ntensor >= SL_INFER_MAX_TENSOR)
      return bad(e, el, "output data: more than %d elements",
                 SL_INFER_MAX_TENSOR);
    if (boolean && (n->type == T_TRUE || n->type == T_FALSE))
      d->tensor[d->ntensor++] = n->type == T_TRUE;
    else if (json__is_number(b, c) && isfinite(json__number(b, c)))
      d->tensor[d->ntensor++] = json__number(b, c);
    else
      return bad(e, el, "output data: element %zu is not a finite %s",
                 d->ntensor, boolean ? "boolean" : "number");
  }
  return 0;
}

/* The chosen output tensor into d->tensor; its last dimension in *last. */
static int tensor_of(sl_infer_dec_t *d, uint32_t outs, const char *want,
                     uint64_t *last, char *e, size_t el) {
  static const char *const types[] = {
      "BOOL",  "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
      "INT32", "INT64", "FP16",   "FP32",   "FP64",   NULL};
  body_t *b = &d->b;
  uint32_t o = 0, v;
  if (!IS(b, outs, T_LBRACKET) || !N(b, outs)->n)
    return bad(e, el, "\"outputs\" must be a non-empty array");
  for (uint32_t c = N(b, outs)->first; c && !o; c = N(b, c)->next) {
    if (!IS(b, c, T_LBRACE))
      return bad(e, el, "\"outputs\" must hold tensor objects");
    v = json__member(b, c, "name");
    if (!want || !*want ||
        (IS(b, v, T_STRING) && !strcmp(TXT(b, N(b, v)->str), want)))
      o = c;
  }
  if (!o)
    return bad(e, el, "no output tensor named \"%.60s\"", want);
  v = json__member(b, o, "datatype");
  size_t ti = 0;
  while (IS(b, v, T_STRING) && types[ti] &&
         strcmp(types[ti], TXT(b, N(b, v)->str)))
    ti++;
  if (!IS(b, v, T_STRING) || !types[ti])
    return bad(e, el,
               "output \"datatype\" must be BOOL, UINT8..64, INT8..64 or "
               "FP16/32/64 (BYTES outputs are not inference scores)");
  uint32_t sh = json__member(b, o, "shape");
  uint64_t count = 1;
  *last = 0;
  if (!IS(b, sh, T_LBRACKET))
    return bad(e, el, "output \"shape\" must be an array of integers");
  for (uint32_t c = N(b, sh)->first; c; c = N(b, c)->next) {
    if (!IS(b, c, T_INT) || N(b, c)->i < 0 || N(b, c)->i > SL_INFER_MAX_TENSOR)
      return bad(e, el, "output \"shape\" must hold integers in [0, %d]",
                 SL_INFER_MAX_TENSOR);
    *last = (uint64_t)N(b, c)->i;
    count *= *last;
    if (count > SL_INFER_MAX_TENSOR)
      return bad(e, el, "output has more than %d elements",
                 SL_INFER_MAX_TENSOR);
  }
  uint32_t data = json__member(b, o, "data");
  if (!IS(b, data, T_LBRACKET))
    return bad(e, el, "output \"data\" must be an array");
  d->ntensor = 0;
  int rc = flatten(d, data, ti == 0, e, el);
  if (rc < 0)
    return rc;
  if (d->ntensor != count)
    return bad(e, el, "output data has %zu elements, its shape says %llu",
               d->ntensor, (unsigned long long)count);
  return 0;
}

int sl_infer_decode_oip(sl_infer_dec_t *d, const char *payload, size_t len,
                        const sl_oip_map_t *map, const char *source,
                        int64_t default_time_ns, sl_json_batch_t *jb,
                        char *errstr, size_t errlen) {
  body_t *b = &d->b;
  scan_t *s = &b->s;
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Inference in = SLUICE__V1__INFERENCE__INIT;
  uint32_t v;
  uint64_t last = 0;
  int rc;
  tok_t t;

  json__body_reopen(b, payload, len, d->msg, sizeof(d->msg));
  sl_json_batch_reset(jb);
  json__lex(s, &t);
  if (t.type == T_LBRACE)
    json__tree_parse(b, &t);
  else if (!s->err)
    json__fail(s, "bad_json", "'{' expected");
  if (!s->err) {
    json__lex(s, &t);
    if (t.type != T_EOF && !s->err)
      json__fail(s, "bad_json", "end of the response expected");
  }
  if (s->err)
    return json__syntax_error(b, s->base, 1, d->msg, errstr, errlen);
  if (!source || !*source)
    return bad(errstr, errlen, "no source for the response");
  ev.source = (char *)source;
  ev.time_ns = default_time_ns;
  ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  ev.inference = &in;
  in.model = (char *)map->model;
  in.model_version = (char *)map->model_version;
  in.model_digest = (char *)map->model_digest;
  in.label_map_digest = (char *)map->label_map_digest;
  in.score_threshold = map->score_threshold;
  in.role = (Sluice__V1__InferenceRole)map->role;
  in.task = map->task ? (Sluice__V1__InferenceTask)map->task
                      : SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_CLASSIFY;
  if ((rc = get_str(b, json__member(b, 0, "model_name"), "model_name",
                    &in.model, errstr, errlen)) < 0 ||
      (rc = get_str(b, json__member(b, 0, "model_version"), "model_version",
                    &in.model_version, errstr, errlen)) < 0)
    return rc;
  if (!in.model || !*in.model)
    return bad(errstr, errlen, "no \"model_name\" and no model configured");
  v = json__member(b, 0, "id");
  if (IS(b, v, T_STRING) && N(b, v)->slen && N(b, v)->slen < 20 &&
      strspn(TXT(b, N(b, v)->str), "0123456789") == N(b, v)->slen)
    in.sequence = strtoull(TXT(b, N(b, v)->str), NULL, 10);
  if ((v = json__member(b, 0, "error"))) {
    if ((rc = get_str(b, v, "error", &in.error, errstr, errlen)) < 0)
      return rc;
    in.status = SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_ERROR;
    return sl_json_batch_add_client(jb, &ev, errstr, errlen);
  }
  if ((rc = tensor_of(d, json__member(b, 0, "outputs"), map->output, &last,
                      errstr, errlen)) < 0)
    return rc;
  const double *x = d->tensor;
  size_t n = d->ntensor;
  switch (in.task) {
  case SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_DETECT: {
    size_t nd = 0;
    if (last != 6 || n % 6)
      return bad(errstr, errlen,
                 "detect: the output's rows must be [x, y, w, h, score, "
                 "class] (last dimension 6)");
    for (size_t r = 0; r < n / 6; r++) {
      const double *row = x + 6 * r;
      if (row[4] < map->score_threshold)
        continue;
      if (nd == SL_INFER_MAX_DETECTIONS)
        return bad(errstr, errlen, "detect: more than %d detections",
                   SL_INFER_MAX_DETECTIONS);
      for (int k = 0; k < 4; k++)
        if (!(row[k] >= 0 && row[k] <= 1))
          return bad(errstr, errlen,
                     "detect: row %zu: box values must be in [0, 1] "
                     "(normalised)",
                     r);
      if (!(row[5] >= 0 && row[5] <= UINT32_MAX) || row[5] != floor(row[5]))
        return bad(errstr, errlen, "detect: row %zu: class must be an id", r);
      Sluice__V1__Detection *dt = &d->det[nd];
      sluice__v1__detection__init(dt);
      dt->x = (float)row[0];
      dt->y = (float)row[1];
      dt->w = (float)row[2];
      dt->h = (float)row[3];
      dt->score = (float)row[4];
      dt->label_id = (uint32_t)row[5];
      if (dt->label_id < map->nlabels)
        dt->label = (char *)map->labels[dt->label_id];
      d->detp[nd++] = dt;
    }
    in.n_detections = nd;
    in.detections = d->detp;
    in.status = nd ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK
                   : SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY;
    break;
  }
  case SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_ANOMALY:
    if (!n)
      return bad(errstr, errlen, "anomaly: the output is empty");
    in.anomaly_score = x[0];
    in.status = SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK;
    break;
  case SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_REGRESS:
    if (n > SL_INFER_MAX_VALUES)
      return bad(errstr, errlen, "regress: more than %d values",
                 SL_INFER_MAX_VALUES);
    memcpy(d->vals, x, n * sizeof(*x));
    in.n_values = n;
    in.values = d->vals;
    in.status = n ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK
                  : SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY;
    break;
  default: {
    /* classify: the top_k at or above the threshold, best first (selection:
     * k is small; ties keep the lower class id). */
    size_t k = map->top_k ? map->top_k : 5, nc = 0;
    if (map->nlabels && n != map->nlabels)
      return bad(errstr, errlen,
                 "classify: %zu scores but the label map has %zu labels", n,
                 map->nlabels);
    k = k < SL_INFER_MAX_CLASSES ? k : SL_INFER_MAX_CLASSES;
    double prev = INFINITY;
    size_t prev_i = SIZE_MAX;
    while (nc < k) {
      size_t best = SIZE_MAX;
      for (size_t i = 0; i < n; i++) {
        /* after (prev, prev_i) in (score desc, id asc) order */
        bool after = x[i] < prev || (x[i] == prev && i > prev_i);
        if (after && (best == SIZE_MAX || x[i] > x[best]))
          best = i;
      }
      if (best == SIZE_MAX || x[best] < map->score_threshold)
        break;
      Sluice__V1__ClassScore *cs = &d->cls[nc];
      sluice__v1__class_score__init(cs);
      cs->label_id = (uint32_t)best;
      cs->score = (float)x[best];
      if (best < map->nlabels)
        cs->label = (char *)map->labels[best];
      d->clsp[nc++] = cs;
      prev = x[best];
      prev_i = best;
    }
    in.n_classes = nc;
    in.classes = d->clsp;
    in.status = nc ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK
                   : SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY;
    break;
  }
  }
  return sl_json_batch_add_client(jb, &ev, errstr, errlen);
}
