/*
 * The jansson-tree decoder of mapped MQTT JSON payloads that
 * decode/decode_json_mapped.c replaced (sluice before 2026-11-28), kept as
 * the oracle of tests/fuzz/fuzz_json.c: on every input both must agree on
 * the result, the reason and the events' bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "decode/decode_json.h"
#include "sluice/v1/event.pb-c.h"
#include "tests/fuzz/json_mapped_ref.h"

static int bad(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *errstr, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, errlen, fmt, ap);
  va_end(ap);
  return SL_EPROTO;
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

/* Follows a dotted path; "" is root itself. Returns NULL when absent. */
static json_t *at_path(json_t *root, const char *path) {
  json_t *v = root;
  char key[128];
  while (*path) {
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    if (n >= sizeof(key) || !json_is_object(v))
      return NULL;
    memcpy(key, path, n);
    key[n] = '\0';
    if (!(v = json_object_get(v, key)))
      return NULL;
    path += n + (dot ? 1 : 0);
  }
  return v;
}

static int mapped_bad(const char **reason, const char *why, char *e, size_t el,
                      const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int mapped_bad(const char **reason, const char *why, char *e, size_t el,
                      const char *fmt, ...) {
  va_list ap;
  *reason = why;
  va_start(ap, fmt);
  vsnprintf(e, el, fmt, ap);
  va_end(ap);
  return SL_EPROTO;
}

static int mapped_one(json_t *obj, const sl_json_map_t *map, const char *source,
                      Sluice__V1__Attribute **pattrs, size_t nattrs,
                      int64_t def_time, sl_json_batch_t *jb,
                      const char **reason, char *e, size_t el) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  json_t *v = at_path(obj, map->value);
  char why[160];

  if (!v)
    return mapped_bad(reason, "no_value", e, el, "no value at \"%.60s\"",
                      map->value);
  if (json_is_integer(v)) {
    rd.value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
    rd.int_value = json_integer_value(v);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d))
      return mapped_bad(reason, "bad_number", e, el, "value is not finite");
    rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd.double_value = d;
  } else if (json_is_boolean(v)) {
    rd.value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
    rd.bool_value = json_is_true(v);
  } else if (json_is_string(v)) {
    rd.value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
    rd.string_value = (char *)json_string_value(v);
  } else {
    return mapped_bad(reason, "bad_type", e, el,
                      "value at \"%.60s\" must be a number, a boolean or a "
                      "string",
                      map->value);
  }
  ev.time_ns = def_time;
  if (*map->time && (v = at_path(obj, map->time))) {
    if (json_is_string(v)) {
      if (sl_rfc3339_parse(json_string_value(v), strlen(json_string_value(v)),
                           &ev.time_ns) < 0)
        return mapped_bad(reason, "bad_time", e, el,
                          "time \"%.40s\" is not RFC 3339",
                          json_string_value(v));
    } else if (json_is_integer(v)) {
      /* Integers exactly: a double has 53 bits, epoch ns need 61. */
      if (__builtin_mul_overflow((int64_t)json_integer_value(v),
                                 map->time_unit_ns, &ev.time_ns))
        return mapped_bad(reason, "bad_time", e, el, "time out of range");
    } else if (json_is_real(v)) {
      double t = json_real_value(v) * (double)map->time_unit_ns;
      if (!(t > -9.2e18 && t < 9.2e18))
        return mapped_bad(reason, "bad_time", e, el, "time out of range");
      ev.time_ns = (int64_t)llround(t);
    } else {
      return mapped_bad(reason, "bad_time", e, el,
                        "time must be RFC 3339 text or a number");
    }
  }
  if (*map->quality && (v = at_path(obj, map->quality)) &&
      get_quality(v, &rd, why, sizeof(why)) < 0)
    return mapped_bad(reason, "bad_type", e, el, "%s", why);
  if (*map->unit && (v = at_path(obj, map->unit))) {
    if (!json_is_string(v))
      return mapped_bad(reason, "bad_type", e, el, "unit must be a string");
    rd.unit = (char *)json_string_value(v);
  }
  ev.source = (char *)source;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  ev.n_attributes = nattrs;
  ev.attributes = pattrs;
  return sl_json_batch_add(jb, &ev);
}

int json_mapped_ref(const char *payload, size_t len, const sl_json_map_t *map,
                    const char *source, const sl_json_attr_t *attrs,
                    size_t nattrs, int64_t default_time_ns, uint32_t max_events,
                    sl_json_batch_t *jb, const char **reason, char *errstr,
                    size_t errlen) {
  sl_json_batch_t saved = *jb;
  Sluice__V1__Attribute a[8], *pa[8];
  json_error_t jerr;
  json_t *root;
  int rc = 0;

  if (nattrs > 8)
    nattrs = 8;
  for (size_t i = 0; i < nattrs; i++) {
    sluice__v1__attribute__init(&a[i]);
    a[i].key = (char *)attrs[i].key;
    a[i].value = (char *)attrs[i].value;
    pa[i] = &a[i];
  }
  root =
      json_loadb(payload, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    enum json_error_code c = json_error_code(&jerr);
    return mapped_bad(reason,
                      c == json_error_stack_overflow     ? "too_deep"
                      : c == json_error_numeric_overflow ? "bad_number"
                                                         : "bad_json",
                      errstr, errlen, "invalid JSON at byte %d: %s",
                      jerr.position, jerr.text);
  }
  if (json_is_array(root) && *map->value) {
    size_t n = json_array_size(root);
    if (n == 0)
      rc = mapped_bad(reason, "no_value", errstr, errlen, "empty array");
    else if (n > max_events)
      rc = mapped_bad(reason, "too_many", errstr, errlen,
                      "%zu events in one payload (limit %u)", n, max_events);
    for (size_t i = 0; i < n && rc == 0; i++) {
      char why[200];
      if ((rc = mapped_one(json_array_get(root, i), map, source, pa, nattrs,
                           default_time_ns, jb, reason, why, sizeof(why))) < 0)
        snprintf(errstr, errlen, "[%zu]: %s", i, why);
    }
  } else {
    rc = mapped_one(root, map, source, pa, nattrs, default_time_ns, jb, reason,
                    errstr, errlen);
  }
  json_decref(root);
  if (rc == -ENOMEM)
    *reason = "no_memory";
  if (rc < 0) {
    /* Leave jb as it was: earlier payloads of the burst stay. */
    jb->buf.len = saved.buf.len;
    jb->count = saved.count;
    jb->min_time_ns = saved.min_time_ns;
    jb->max_time_ns = saved.max_time_ns;
  }
  return rc;
}

/* ---- differential check ------------------------------------------------ */

static const sl_json_map_t maps[] = {
    {"value", "time", 1000000, "quality", "unit", ""},
    {"d.v", "t", 1, "q.s", "", ""},
    {"", "", 1000000000, "", "", ""},
    {"v", "v.t", 1000, "a..b", "v.u.", ""},
};

static int run_one(const sl_json_map_t *map, const uint8_t *data, size_t size,
                   uint32_t max, int ref, sl_json_batch_t *jb,
                   const char **reason) {
  static const sl_json_attr_t attrs[] = {{"k", "v"}};
  static const char seed[] = "{\"value\":1,\"time\":5}";
  static const sl_json_map_t seed_map = {"value", "time", 1, "", "", ""};
  char err[256];
  int rc;
  /* One earlier payload in the batch: a failure must leave it as it was. */
  sl_json_batch_init(jb);
  if (sl_json_decode_mapped(seed, sizeof(seed) - 1, &seed_map, "s", NULL, 0, 0,
                            10, jb, reason, err, sizeof(err)) < 0)
    return -1000;
  *reason = "";
  rc = (ref ? json_mapped_ref : sl_json_decode_mapped)(
      (const char *)data, size, map, "src", attrs, 1, 42, max, jb, reason, err,
      sizeof(err));
  return rc;
}

/* jansson keeps the byte after a number or a literal in a NUL-terminated
 * lookahead buffer, so a NUL byte there vanishes ("2\0" decodes as 2); the
 * scanner rejects it as bad_json. Those inputs are not compared. */
static int jansson_drops_nul(const uint8_t *data, size_t size) {
  for (size_t i = 1; i < size; i++)
    if (!data[i] &&
        ((data[i - 1] >= '0' && data[i - 1] <= '9') ||
         ((data[i - 1] | 0x20) >= 'a' && (data[i - 1] | 0x20) <= 'z')))
      return 1;
  return 0;
}

int json_mapped_compare(const uint8_t *data, size_t size, char *why,
                        size_t whylen) {
  if (jansson_drops_nul(data, size))
    return 0;
  for (size_t m = 0; m < sizeof(maps) / sizeof(maps[0]); m++) {
    for (uint32_t max = 2; max <= 100; max += 98) {
      sl_json_batch_t a, b;
      const char *ra = "", *rb = "";
      int rca = run_one(&maps[m], data, size, max, 0, &a, &ra);
      int rcb = run_one(&maps[m], data, size, max, 1, &b, &rb);
      int same = rca == rcb && (rca == 0 || !strcmp(ra, rb)) &&
                 a.count == b.count && a.buf.len == b.buf.len &&
                 (!a.buf.len || !memcmp(a.buf.data, b.buf.data, a.buf.len)) &&
                 a.min_time_ns == b.min_time_ns &&
                 a.max_time_ns == b.max_time_ns;
      if (!same)
        snprintf(why, whylen,
                 "map %zu max %u: scanner rc %d reason %s count %u bytes %zu; "
                 "jansson rc %d reason %s count %u bytes %zu",
                 m, max, rca, rca ? ra : "-", a.count, a.buf.len, rcb,
                 rcb ? rb : "-", b.count, b.buf.len);
      sl_json_batch_close(&a);
      sl_json_batch_close(&b);
      if (!same)
        return -1;
    }
  }
  return 0;
}
