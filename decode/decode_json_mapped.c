/*
 * MQTT JSON payloads -> readings (sl_json_decode_mapped), in one pass and
 * without building a tree.
 *
 * Why not a library: an MQTT payload is usually one small reading, and they
 * arrive at 100,000+ a second on the loop thread. Building a jansson tree
 * per message (an allocation per key and per value, a hashtable per object,
 * then json_decref) was the largest user-space cost of MQTT ingest in the
 * profile. jansson and cJSON can only build trees; the token-array parsers
 * (jsmn and the like) check neither UTF-8, escapes, number ranges nor
 * duplicate keys. So this is a small validating scanner that checks what
 * jansson checked here (json_loadb with JSON_DECODE_ANY |
 * JSON_REJECT_DUPLICATES: syntax, UTF-8, \u escapes and surrogates, no
 * \u0000, no duplicate keys, int64 and double range, nesting at most 2048
 * values deep), keeps jansson's rule that the first error in document
 * order is the one reported (so too_deep, bad_number and bad_json come out
 * as they did), and keeps only the values at the mapped paths.
 * tests/fuzz/fuzz_json.c compares it with the jansson decoder it replaced
 * (tests/fuzz/json_mapped_ref.c) on every input.
 *
 * The lexer (tokens, strings, numbers, UTF-8) is json_scan.c; this file
 * is the parser (nesting, duplicate keys, the mapped paths) and the events.
 * Events are appended to jb as each object is complete; any later error
 * puts jb back as it was.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode_json.h"
#include "decode/json_scan.h"
#include "schemas/event_json.h"
#include "sluice/v1/event.pb-c.h"

/* jansson's JSON_PARSER_MAX_DEPTH: a value nested deeper is too_deep. */
#define MAX_DEPTH 2048
/* at_path() of the tree decoder: longer path components never matched. */
#define MAX_COMPONENT 127

typedef struct paths {
  const char *rest[NPATHS];
  size_t len[NPATHS]; /* length of rest's first component */
} paths_t;

/* Sets path i to r (NULL: none) and the length of its first component. */
static void paths_set(paths_t *ps, int i, const char *r) {
  const char *dot = r ? strchr(r, '.') : NULL;
  ps->rest[i] = r;
  ps->len[i] = !r ? 0 : dot ? (size_t)(dot - r) : strlen(r);
}

/* ---- parser -------------------------------------------------------------
 */

static void parse_value(scan_t *s, tok_t *t, const paths_t *below,
                        unsigned target);

/* Which mapped paths continue below the key just pushed, and which end at
 * its value (at_path() of the tree decoder, on the fly). */
static void paths_step(const scan_t *s, const paths_t *in, paths_t *out,
                       unsigned *target) {
  const jkey_t *k = &s->keys[s->nkeys - 1];
  const unsigned char *kb = NULL;
  *target = 0;
  for (int i = 0; i < NPATHS; i++) {
    const char *r = in->rest[i];
    size_t n = in->len[i];
    out->rest[i] = NULL;
    out->len[i] = 0;
    if (!r || n != k->len || n > MAX_COMPONENT)
      continue;
    if (!kb)
      kb = json__key_bytes(s, k);
    if (memcmp(r, kb, n))
      continue;
    r += n + (r[n] == '.');
    if (*r)
      paths_set(out, i, r);
    else
      *target |= 1u << i;
  }
}

static void parse_object(scan_t *s, tok_t *t, const paths_t *below) {
  static const paths_t none = {{NULL}, {0}};
  json_keyset_t ks = {.first = s->nkeys};
  size_t kmark = s->kbuf.len;
  bool any = false;
  for (int i = 0; i < NPATHS; i++)
    any |= below && below->rest[i];

  json__lex(s, t);
  if (t->type == T_RBRACE)
    goto out;
  for (;;) {
    paths_t next;
    unsigned target = 0;
    if (json__member_key(s, t, &ks) < 0)
      goto out;
    if (any)
      paths_step(s, below, &next, &target);
    json__lex(s, t);
    if (t->type != T_COLON) {
      json__fail(s, "bad_json", "':' expected");
      goto out;
    }
    json__lex(s, t);
    parse_value(s, t, any ? &next : &none, target);
    if (s->err)
      goto out;
    json__lex(s, t);
    if (t->type != T_COMMA)
      break;
    json__lex(s, t);
  }
  if (t->type != T_RBRACE)
    json__fail(s, "bad_json", "'}' expected");
out:
  free(ks.tab);
  s->nkeys = ks.first;
  s->kbuf.len = kmark;
}

static void parse_array(scan_t *s, tok_t *t) {
  json__lex(s, t);
  if (t->type == T_RBRACKET)
    return;
  while (t->type != T_EOF) {
    parse_value(s, t, NULL, 0);
    if (s->err)
      return;
    json__lex(s, t);
    if (t->type != T_COMMA)
      break;
    json__lex(s, t);
  }
  if (t->type != T_RBRACKET)
    json__fail(s, "bad_json", "']' expected");
}

/* The value whose first token is t (jansson's parse_value: the depth is
 * checked after the token was read). below: paths continuing into it when
 * it is an object; target: paths (bits) ending at it. */
static void parse_value(scan_t *s, tok_t *t, const paths_t *below,
                        unsigned target) {
  found_t f = {.type = t->type};
  if (s->err)
    return;
  if (++s->depth > MAX_DEPTH) {
    json__fail(s, "too_deep", "maximum parsing depth reached");
    return;
  }
  switch (t->type) {
  case T_STRING:
    if (t->nul) {
      json__fail(s, "bad_json", "\\u0000 is not allowed in a string");
      return;
    }
    if (target && json__decode_string(t, &s->str, &f.str) < 0) {
      json__no_memory(s);
      return;
    }
    break;
  case T_INT:
    f.i = t->i;
    break;
  case T_REAL:
    f.d = t->d;
    break;
  case T_TRUE:
  case T_FALSE:
  case T_NULL:
    break;
  case T_LBRACE:
    parse_object(s, t, below);
    break;
  case T_LBRACKET:
    parse_array(s, t);
    break;
  case T_INVALID:
    json__fail(s, "bad_json", "invalid token");
    return;
  default:
    json__fail(s, "bad_json", "unexpected token");
    return;
  }
  for (int i = 0; i < NPATHS; i++)
    if (target & (1u << i))
      s->found[i] = f;
  s->depth--;
}

/* ---- events ----------------------------------------------------------- */

typedef struct mapped_err {
  const char *reason; /* NULL: none yet */
  char msg[200];
} mapped_err_t;

static int mapped_bad(mapped_err_t *me, const char *why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int mapped_bad(mapped_err_t *me, const char *why, const char *fmt, ...) {
  va_list ap;
  me->reason = why;
  va_start(ap, fmt);
  vsnprintf(me->msg, sizeof(me->msg), fmt, ap);
  va_end(ap);
  return SL_EPROTO;
}

/* The reading of one record from what its parse found (the checks and
 * messages of the tree decoder's mapped_one(), in its order). */
static int build_event(scan_t *s, const sl_json_map_t *map, const char *source,
                       Sluice__V1__Attribute **pattrs, size_t nattrs,
                       int64_t def_time, sl_json_batch_t *jb,
                       mapped_err_t *me) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  const found_t *f = &s->found[P_VALUE];
  sl_event_jv_t jv = {0};
  const char *dwhy = NULL;
  int dt = 0;

  switch (f->type) {
  case T_EOF:
    return mapped_bad(me, "no_value", "no value at \"%.60s\"", map->value);
  case T_INT:
    jv.kind = SL_JV_INT;
    jv.int_ok = true;
    jv.i = f->i;
    jv.d = (double)f->i;
    break;
  case T_REAL:
    if (!isfinite(f->d))
      return mapped_bad(me, "bad_number", "value is not finite");
    jv.kind = SL_JV_REAL;
    jv.d = f->d;
    break;
  case T_TRUE:
  case T_FALSE:
    jv.kind = SL_JV_BOOL;
    jv.b = f->type == T_TRUE;
    break;
  case T_STRING:
    jv.kind = SL_JV_STRING;
    jv.s = s->str.p + f->str;
    break;
  default:
    return mapped_bad(me, "bad_type",
                      "value at \"%.60s\" must be a number, a boolean or a "
                      "string",
                      map->value);
  }
  f = &s->found[P_DATATYPE];
  if (f->type == T_STRING) {
    if ((dt = sl_event_datatype_parse(s->str.p + f->str)) < 0)
      return mapped_bad(me, "bad_type", "unknown datatype \"%.40s\"",
                        s->str.p + f->str);
  } else if (f->type != T_EOF) {
    return mapped_bad(me, "bad_type", "datatype must be a string");
  }
  if (sl_event_value_set(&rd, dt, &jv, &dwhy) < 0)
    return mapped_bad(me, "bad_type", "%s", dwhy);
  ev.time_ns = def_time;
  f = &s->found[P_TIME];
  if (f->type == T_STRING) {
    const char *ts = s->str.p + f->str;
    int rc = sl_rfc3339_parse(ts, strlen(ts), &ev.time_ns);
    if (rc == SL_ERANGE)
      return mapped_bad(me, "bad_time",
                        "time \"%.40s\" is not a real date or is outside "
                        "1677-09-22..2262-04-11",
                        ts);
    if (rc < 0)
      return mapped_bad(me, "bad_time", "time \"%.40s\" is not RFC 3339", ts);
  } else if (f->type == T_INT) {
    /* Integers exactly: a double has 53 bits, epoch ns need 61. */
    if (__builtin_mul_overflow(f->i, map->time_unit_ns, &ev.time_ns))
      return mapped_bad(me, "bad_time", "time out of range");
  } else if (f->type == T_REAL) {
    double t = f->d * (double)map->time_unit_ns;
    if (!(t > -9.2e18 && t < 9.2e18))
      return mapped_bad(me, "bad_time", "time out of range");
    ev.time_ns = (int64_t)llround(t);
  } else if (f->type != T_EOF) {
    return mapped_bad(me, "bad_time", "time must be RFC 3339 text or a number");
  }
  f = &s->found[P_QUALITY];
  if (f->type == T_STRING) {
    const char *q = s->str.p + f->str;
    if (!strcmp(q, "good"))
      rd.quality = SLUICE__V1__QUALITY__QUALITY_GOOD;
    else if (!strcmp(q, "uncertain"))
      rd.quality = SLUICE__V1__QUALITY__QUALITY_UNCERTAIN;
    else if (!strcmp(q, "bad"))
      rd.quality = SLUICE__V1__QUALITY__QUALITY_BAD;
    else
      return mapped_bad(me, "bad_type",
                        "\"quality\" must be good, uncertain or bad");
  } else if (f->type == T_INT && f->i >= 0 && f->i <= 0xffffffffll) {
    /* An OPC UA StatusCode: its top two bits are the severity. */
    uint32_t code = (uint32_t)f->i;
    rd.status_code = code;
    rd.quality = (code >> 30) == 0   ? SLUICE__V1__QUALITY__QUALITY_GOOD
                 : (code >> 30) == 1 ? SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                                     : SLUICE__V1__QUALITY__QUALITY_BAD;
  } else if (f->type != T_EOF) {
    return mapped_bad(me, "bad_type",
                      "\"quality\" must be a name or an OPC UA status code");
  }
  f = &s->found[P_UNIT];
  if (f->type == T_STRING)
    rd.unit = s->str.p + f->str;
  else if (f->type != T_EOF)
    return mapped_bad(me, "bad_type", "unit must be a string");
  ev.source = (char *)source;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  ev.n_attributes = nattrs;
  ev.attributes = pattrs;
  char why[160];
  int rc = sl_json_batch_add_client(jb, &ev, why, sizeof(why));
  if (rc == SL_EPROTO)
    return mapped_bad(me, "invalid_event", "%s", why);
  return rc;
}

static void record_start(scan_t *s) {
  for (int i = 0; i < NPATHS; i++)
    s->found[i].type = T_EOF;
  s->str.len = 0;
}

int sl_json_decode_mapped(const char *payload, size_t len,
                          const sl_json_map_t *map, const char *source,
                          const sl_json_attr_t *attrs, size_t nattrs,
                          int64_t default_time_ns, uint32_t max_events,
                          sl_json_batch_t *jb, const char **reason,
                          char *errstr, size_t errlen) {
  sl_json_batch_t saved = *jb;
  Sluice__V1__Attribute a[8], *pa[8];
  mapped_err_t me = {0};
  paths_t top = {{NULL}, {0}};
  unsigned top_target = 0;
  size_t n = 0;
  bool too_many = false, records = false;
  tok_t t;
  scan_t s;
  int rc = 0;

  s.p = s.base = (const unsigned char *)payload;
  s.end = s.p + len;
  s.depth = 0;
  s.err = 0;
  s.reason = NULL;
  s.msg = errstr;
  s.msglen = errlen;
  s.str = (arena_t){s.str0, 0, sizeof(s.str0), false};
  s.kbuf = (arena_t){s.kbuf0, 0, sizeof(s.kbuf0), false};
  s.keys = s.keys0;
  s.nkeys = 0;
  s.capkeys = sizeof(s.keys0) / sizeof(s.keys0[0]);

  if (nattrs > 8)
    nattrs = 8;
  for (size_t i = 0; i < nattrs; i++) {
    sluice__v1__attribute__init(&a[i]);
    a[i].key = (char *)attrs[i].key;
    a[i].value = (char *)attrs[i].value;
    pa[i] = &a[i];
  }
  /* Where each path starts: "" is the record itself for the value and
   * "absent" for the others. */
  if (*map->value)
    paths_set(&top, P_VALUE, map->value);
  else
    top_target = 1u << P_VALUE;
  paths_set(&top, P_TIME, *map->time ? map->time : NULL);
  paths_set(&top, P_QUALITY, *map->quality ? map->quality : NULL);
  paths_set(&top, P_UNIT, *map->unit ? map->unit : NULL);
  paths_set(&top, P_DATATYPE,
            map->datatype && *map->datatype ? map->datatype : NULL);

  json__lex(&s, &t);
  if (t.type == T_LBRACKET && *map->value) {
    /* An array of records: one event per element. */
    records = true;
    s.depth = 1;
    json__lex(&s, &t);
    if (t.type != T_RBRACKET) {
      while (t.type != T_EOF) {
        record_start(&s);
        parse_value(&s, &t, &top, 0);
        if (s.err)
          break;
        if (++n > max_events)
          too_many = true;
        if (!too_many && !me.reason) {
          rc = build_event(&s, map, source, pa, nattrs, default_time_ns, jb,
                           &me);
          if (rc == -ENOMEM) {
            json__no_memory(&s);
            break;
          }
          if (rc < 0) {
            /* Keep the element's index; go on: a syntax error later in
             * the payload is what the tree decoder reported. */
            char why[sizeof(me.msg)];
            memcpy(why, me.msg, sizeof(why));
            snprintf(me.msg, sizeof(me.msg), "[%zu]: %.160s", n - 1, why);
          }
        }
        json__lex(&s, &t);
        if (t.type != T_COMMA)
          break;
        json__lex(&s, &t);
      }
      if (t.type != T_RBRACKET)
        json__fail(&s, "bad_json", "']' expected");
    }
    s.depth = 0;
  } else {
    record_start(&s);
    parse_value(&s, &t, &top, top_target);
    if (!s.err) {
      rc = build_event(&s, map, source, pa, nattrs, default_time_ns, jb, &me);
      if (rc == -ENOMEM)
        json__no_memory(&s);
    }
  }
  if (!s.err) {
    json__lex(&s, &t);
    if (t.type != T_EOF)
      json__fail(&s, "bad_json", "end of file expected");
  }

  if (s.err) {
    rc = s.err;
    *reason = s.reason;
  } else if (records && n == 0) {
    rc = SL_EPROTO;
    *reason = "no_value";
    snprintf(errstr, errlen, "empty array");
  } else if (too_many) {
    rc = SL_EPROTO;
    *reason = "too_many";
    snprintf(errstr, errlen, "%zu events in one payload (limit %u)", n,
             max_events);
  } else if (me.reason) {
    rc = SL_EPROTO;
    *reason = me.reason;
    snprintf(errstr, errlen, "%s", me.msg);
  }
  if (s.str.heap)
    free(s.str.p);
  if (s.kbuf.heap)
    free(s.kbuf.p);
  if (s.keys != s.keys0)
    free(s.keys);
  if (rc < 0) {
    /* Leave jb as it was: earlier payloads of the burst stay. */
    jb->buf.len = saved.buf.len;
    jb->count = saved.count;
    jb->min_time_ns = saved.min_time_ns;
    jb->max_time_ns = saved.max_time_ns;
  }
  return rc;
}
