/*
 * config/types.c: one parser and one formatter per option type.
 * Parsers are strict (no trailing junk, no silent overflow, no unit-less
 * sizes mistaken for durations) because a typo in an edge node's config is
 * found much later and much further away than at check-config time.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/textparse.h"
#include "config/cfg.h"

#define FIELD(obj, o, T) ((T *)(void *)((char *)(obj) + (o)->off))
#define CFIELD(obj, o, T)                                                      \
  ((const T *)(const void *)((const char *)(obj) + (o)->off))

void sl_cfg_fmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

/* Tiny control allocations abort on failure (style.md "Memory"). */
static char *xstrndup(const char *s, size_t n) {
  char *p = strndup(s, n);
  if (!p)
    abort();
  return p;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

const char *sl_cfg_type_name(sl_cfg_type_t t) {
  static const char *const names[] = {
      [SL_CFG_BOOL] = "bool",
      [SL_CFG_INT] = "int",
      [SL_CFG_UINT] = "uint",
      [SL_CFG_SIZE] = "size",
      [SL_CFG_DURATION] = "duration",
      [SL_CFG_DOUBLE] = "double",
      [SL_CFG_STRING] = "string",
      [SL_CFG_ENUM] = "enum",
      [SL_CFG_PATH] = "path",
      [SL_CFG_LIST] = "list",
      [SL_CFG_FLAGS] = "list",
      [SL_CFG_SECTION_LIST] = "list of mappings",
  };
  return names[t];
}

/* Decimal digits only, no sign, no overflow. Advances *s. */
static int parse_digits(const char **s, uint64_t *v) {
  const char *p = *s;
  uint64_t x = 0;
  if (!isdigit((unsigned char)*p))
    return -1;
  for (; isdigit((unsigned char)*p); p++) {
    if (__builtin_mul_overflow(x, 10, &x) ||
        __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x))
      return -2;
  }
  *s = p;
  *v = x;
  return 0;
}

static const struct {
  const char *name;
  uint64_t mult;
} size_units[] = {
    {"", 1},
    {"b", 1},
    {"kb", 1000ull},
    {"mb", 1000ull * 1000},
    {"gb", 1000ull * 1000 * 1000},
    {"tb", 1000ull * 1000 * 1000 * 1000},
    {"kib", 1ull << 10},
    {"mib", 1ull << 20},
    {"gib", 1ull << 30},
    {"tib", 1ull << 40},
    {"ki", 1ull << 10},
    {"mi", 1ull << 20},
    {"gi", 1ull << 30},
    {"ti", 1ull << 40},
};

static int parse_size(const char *s, uint64_t *v) {
  uint64_t n;
  if (parse_digits(&s, &n))
    return -1;
  while (*s == ' ')
    s++;
  for (size_t i = 0; i < SL_ARRAY_SIZE(size_units); i++) {
    if (!strcasecmp(s, size_units[i].name))
      return __builtin_mul_overflow(n, size_units[i].mult, v) ? -1 : 0;
  }
  return -1;
}

static const struct {
  const char *name;
  uint64_t ms;
} dur_units[] = {
    /* Longest first so "ms" is not read as "m". */
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

/* "0" or one or more <digits><unit>: "250ms", "5s", "1h30m"; legacy: also
 * "40" (ms) and "1.5s". The one format (common/textparse.h). */
static int parse_duration(const char *s, unsigned legacy, uint64_t *v) {
  return sl_duration_parse(s, legacy ? SL_DURATION_LEGACY : 0, v);
}

static int parse_bool(const char *s, bool *v) {
  static const char *const t[] = {"true", "yes", "on"};
  static const char *const f[] = {"false", "no", "off"};
  for (size_t i = 0; i < SL_ARRAY_SIZE(t); i++) {
    if (!strcasecmp(s, t[i])) {
      *v = true;
      return 0;
    }
    if (!strcasecmp(s, f[i])) {
      *v = false;
      return 0;
    }
  }
  return -1;
}

static int parse_int(const char *s, int64_t *v) {
  uint64_t n;
  bool neg = *s == '-';
  if (*s == '-' || *s == '+')
    s++;
  if (parse_digits(&s, &n) || *s)
    return -1;
  if (neg ? n > (uint64_t)INT64_MAX + 1 : n > (uint64_t)INT64_MAX)
    return -1;
  *v = neg ? (int64_t)(0 - n) : (int64_t)n;
  return 0;
}

static int parse_double(const char *s, double *v) {
  char *end;
  if (!*s || isspace((unsigned char)*s))
    return -1;
  errno = 0;
  *v = strtod(s, &end);
  if (*end || errno == ERANGE || !isfinite(*v))
    return -1;
  /* strtod also takes hex floats and "infinity"; keep to plain decimals. */
  for (const char *p = s; *p; p++) {
    if (!strchr("0123456789+-.eE", *p))
      return -1;
  }
  return 0;
}

static int enum_index(const char *const *names, const char *s) {
  for (int i = 0; names && names[i]; i++) {
    if (!strcmp(names[i], s))
      return i;
  }
  return -1;
}

static void enum_list(const char *const *names, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; names[i] && used < len; i++) {
    int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
}

/* Parses a number-like type without range checks (also used for bounds). */
static int parse_raw(sl_cfg_type_t t, const char *s, sl_cfg_val_t *v) {
  switch (t) {
  case SL_CFG_INT:
    return parse_int(s, &v->i);
  case SL_CFG_UINT: {
    const char *p = s;
    return parse_digits(&p, &v->u) || *p ? -1 : 0;
  }
  case SL_CFG_SIZE:
  case SL_CFG_LIST:
  case SL_CFG_FLAGS:
  case SL_CFG_SECTION_LIST:
    return t == SL_CFG_SIZE ? parse_size(s, &v->u)
                            : parse_raw(SL_CFG_UINT, s, v);
  case SL_CFG_DURATION:
    return parse_duration(s, 0, &v->u);
  case SL_CFG_DOUBLE:
    return parse_double(s, &v->d);
  default:
    return -1;
  }
}

/* Range check for number types; min/max were validated by the table test. */
static int check_range(const sl_cfg_opt_t *o, const sl_cfg_val_t *v, char *why,
                       size_t whylen) {
  sl_cfg_val_t lo, hi;
  bool below = false, above = false;
  if (o->min && !parse_raw(o->type, o->min, &lo)) {
    below = o->type == SL_CFG_INT      ? v->i < lo.i
            : o->type == SL_CFG_DOUBLE ? v->d < lo.d
                                       : v->u < lo.u;
  }
  if (o->max && !parse_raw(o->type, o->max, &hi)) {
    above = o->type == SL_CFG_INT      ? v->i > hi.i
            : o->type == SL_CFG_DOUBLE ? v->d > hi.d
                                       : v->u > hi.u;
  }
  if (!below && !above)
    return 0;
  if (o->min && o->max)
    SL_CFG_FMT(why, whylen, "is out of range (expected %s..%s)", o->min,
               o->max);
  else if (below)
    SL_CFG_FMT(why, whylen, "is out of range (minimum %s)", o->min);
  else
    SL_CFG_FMT(why, whylen, "is out of range (maximum %s)", o->max);
  return -1;
}

static const char *expect_text(sl_cfg_type_t t) {
  switch (t) {
  case SL_CFG_BOOL:
    return "is not a bool (expected true or false)";
  case SL_CFG_INT:
    return "is not an integer (expected e.g. -5)";
  case SL_CFG_UINT:
    return "is not an unsigned integer (expected e.g. 64)";
  case SL_CFG_SIZE:
    return "is not a size (expected e.g. 512MiB)";
  case SL_CFG_DURATION:
    return "is not a duration (expected e.g. 250ms, 5s, 1h)";
  case SL_CFG_DOUBLE:
    return "is not a number (expected e.g. 0.5)";
  default:
    return "is not valid";
  }
}

static int parse_list(const sl_cfg_opt_t *o, const char *const *items, size_t n,
                      sl_cfg_val_t *val, char *why, size_t whylen) {
  memset(val, 0, sizeof(*val));
  if (o->max) {
    sl_cfg_val_t hi;
    if (!parse_raw(SL_CFG_UINT, o->max, &hi) && n > hi.u) {
      SL_CFG_FMT(why, whylen, "has too many items (maximum %s)", o->max);
      return -1;
    }
  }
  if (o->type == SL_CFG_LIST)
    val->l.v = xcalloc(n, sizeof(char *));
  for (size_t i = 0; i < n; i++) {
    const char *it = items[i], *bad;
    if (!*it) {
      SL_CFG_FMT(why, whylen, "has an empty item");
      goto fail;
    }
    if (o->type == SL_CFG_FLAGS) {
      int k = enum_index(o->enums, it);
      if (k < 0 && strcmp(it, "all")) {
        char names[256];
        enum_list(o->enums, names, sizeof(names));
        SL_CFG_FMT(why, whylen, "has unknown item \"%.64s\" (expected %s, all)",
                   it, names);
        goto fail;
      }
      val->mask |= k < 0 ? UINT32_MAX : 1u << k;
      continue;
    }
    if (o->enums && enum_index(o->enums, it) < 0) {
      char names[256];
      enum_list(o->enums, names, sizeof(names));
      SL_CFG_FMT(why, whylen, "has unknown item \"%.64s\" (expected one of %s)",
                 it, names);
      goto fail;
    }
    if (o->check && (bad = o->check(it))) {
      if (o->flags & SL_CFG_KV_SECRETS) /* the item may be a secret */
        SL_CFG_FMT(why, whylen, "item %zu is invalid: %s", val->l.n + 1, bad);
      else
        SL_CFG_FMT(why, whylen, "has an invalid item \"%.64s\": %s", it, bad);
      goto fail;
    }
    val->l.v[val->l.n++] = xstrndup(it, strlen(it));
  }
  if (o->type == SL_CFG_FLAGS && o->enums) {
    /* "all" sets only the bits that exist. */
    uint32_t allbits = 0;
    for (int k = 0; o->enums[k]; k++)
      allbits |= 1u << k;
    val->mask &= allbits;
  }
  return 0;
fail:
  sl_cfg_val_free(o, val);
  return -1;
}

int sl_cfg_parse_items(const sl_cfg_opt_t *o, const char *const *items,
                       size_t n, sl_cfg_val_t *val, char *why, size_t whylen) {
  return parse_list(o, items, n, val, why, whylen);
}

/* Splits "a, b,c" on commas (items trimmed) and parses the items. */
static int parse_csv(const sl_cfg_opt_t *o, const char *s, sl_cfg_val_t *val,
                     char *why, size_t whylen) {
  size_t n = 1, k = 0;
  int rc;
  for (const char *p = s; *p; p++)
    n += *p == ',';
  while (*s == ' ')
    s++;
  if (!*s)
    return parse_list(o, NULL, 0, val, why, whylen);
  char *copy = xstrndup(s, strlen(s));
  const char **items = xcalloc(n, sizeof(char *));
  for (char *p = copy, *next; p; p = next) {
    char *end;
    next = strchr(p, ',');
    if (next)
      *next++ = '\0';
    while (*p == ' ')
      p++;
    end = p + strlen(p);
    while (end > p && end[-1] == ' ')
      *--end = '\0';
    items[k++] = p;
  }
  rc = parse_list(o, items, k, val, why, whylen);
  free(items);
  free(copy);
  return rc;
}

int sl_cfg_parse(const sl_cfg_opt_t *o, const char *s, sl_cfg_val_t *val,
                 char *why, size_t whylen) {
  const char *bad;
  memset(val, 0, sizeof(*val));
  switch (o->type) {
  case SL_CFG_BOOL:
    if (parse_bool(s, &val->b))
      goto type_error;
    return 0;
  case SL_CFG_INT:
  case SL_CFG_UINT:
  case SL_CFG_SIZE:
  case SL_CFG_DURATION:
  case SL_CFG_DOUBLE:
    if (o->type == SL_CFG_DURATION && (o->flags & SL_CFG_LEGACY_DURATION)
            ? parse_duration(s, 1, &val->u)
            : parse_raw(o->type, s, val))
      goto type_error;
    return check_range(o, val, why, whylen);
  case SL_CFG_ENUM:
    if ((val->e = enum_index(o->enums, s)) < 0) {
      char names[256];
      enum_list(o->enums, names, sizeof(names));
      SL_CFG_FMT(why, whylen, "is not one of %s", names);
      return -1;
    }
    return 0;
  case SL_CFG_PATH:
    if (*s && *s != '/') {
      SL_CFG_FMT(why, whylen, "is not an absolute path");
      return -1;
    }
    /* fallthrough */
  case SL_CFG_STRING:
    if (o->check && (bad = o->check(s))) {
      SL_CFG_FMT(why, whylen, "%s", bad);
      return -1;
    }
    val->s = xstrndup(s, strlen(s));
    return 0;
  case SL_CFG_LIST:
  case SL_CFG_FLAGS:
    return parse_csv(o, s, val, why, whylen);
  case SL_CFG_SECTION_LIST:
    SL_CFG_FMT(why, whylen, "is not a list of mappings");
    return -1;
  }
type_error:
  SL_CFG_FMT(why, whylen, "%s", expect_text(o->type));
  return -1;
}

void sl_cfg_val_free(const sl_cfg_opt_t *o, sl_cfg_val_t *val) {
  if (o->type == SL_CFG_STRING || o->type == SL_CFG_PATH) {
    free(val->s);
  } else if (o->type == SL_CFG_LIST) {
    for (size_t i = 0; i < val->l.n; i++)
      free(val->l.v[i]);
    free(val->l.v);
  }
  memset(val, 0, sizeof(*val));
}

void sl_cfg_field_free(const sl_cfg_opt_t *o, void *obj) {
  sl_cfg_val_t v;
  switch (o->type) {
  case SL_CFG_STRING:
  case SL_CFG_PATH:
    v.s = *FIELD(obj, o, char *);
    *FIELD(obj, o, char *) = NULL;
    sl_cfg_val_free(o, &v);
    break;
  case SL_CFG_LIST:
    v.l = *FIELD(obj, o, sl_cfg_strlist_t);
    memset(FIELD(obj, o, sl_cfg_strlist_t), 0, sizeof(v.l));
    sl_cfg_val_free(o, &v);
    break;
  case SL_CFG_SECTION_LIST: {
    sl_cfg_array_t a;
    memcpy(&a, FIELD(obj, o, char), sizeof(a));
    for (size_t i = 0; i < a.n; i++)
      sl_cfg_obj_free(o->sub, (char *)a.v + i * o->sub->size);
    free(a.v);
    memset(FIELD(obj, o, char), 0, sizeof(a));
    break;
  }
  default:
    break;
  }
}

void sl_cfg_obj_free(const sl_cfg_section_t *sec, void *obj) {
  for (size_t i = 0; i < sec->n_opts; i++)
    sl_cfg_field_free(&sec->opts[i], obj);
}

void sl_cfg_store(const sl_cfg_opt_t *o, void *obj, sl_cfg_val_t *val) {
  sl_cfg_field_free(o, obj);
  switch (o->type) {
  case SL_CFG_BOOL:
    *FIELD(obj, o, bool) = val->b;
    break;
  case SL_CFG_INT:
    *FIELD(obj, o, int64_t) = val->i;
    break;
  case SL_CFG_UINT:
  case SL_CFG_SIZE:
  case SL_CFG_DURATION:
    *FIELD(obj, o, uint64_t) = val->u;
    break;
  case SL_CFG_DOUBLE:
    *FIELD(obj, o, double) = val->d;
    break;
  case SL_CFG_ENUM:
    *FIELD(obj, o, int) = val->e;
    break;
  case SL_CFG_FLAGS:
    *FIELD(obj, o, uint32_t) = val->mask;
    break;
  case SL_CFG_STRING:
  case SL_CFG_PATH:
    *FIELD(obj, o, char *) = val->s;
    break;
  case SL_CFG_LIST:
    *FIELD(obj, o, sl_cfg_strlist_t) = val->l;
    break;
  case SL_CFG_SECTION_LIST:
    break;
  }
  memset(val, 0, sizeof(*val));
}

bool sl_cfg_field_equal(const sl_cfg_opt_t *o, const void *a, const void *b) {
  switch (o->type) {
  case SL_CFG_BOOL:
    return *CFIELD(a, o, bool) == *CFIELD(b, o, bool);
  case SL_CFG_INT:
    return *CFIELD(a, o, int64_t) == *CFIELD(b, o, int64_t);
  case SL_CFG_UINT:
  case SL_CFG_SIZE:
  case SL_CFG_DURATION:
    return *CFIELD(a, o, uint64_t) == *CFIELD(b, o, uint64_t);
  case SL_CFG_DOUBLE:
    return !memcmp(CFIELD(a, o, double), CFIELD(b, o, double), sizeof(double));
  case SL_CFG_ENUM:
    return *CFIELD(a, o, int) == *CFIELD(b, o, int);
  case SL_CFG_FLAGS:
    return *CFIELD(a, o, uint32_t) == *CFIELD(b, o, uint32_t);
  case SL_CFG_STRING:
  case SL_CFG_PATH:
    return !strcmp(*CFIELD(a, o, char *), *CFIELD(b, o, char *));
  case SL_CFG_LIST: {
    const sl_cfg_strlist_t *x = CFIELD(a, o, sl_cfg_strlist_t);
    const sl_cfg_strlist_t *y = CFIELD(b, o, sl_cfg_strlist_t);
    if (x->n != y->n)
      return false;
    for (size_t i = 0; i < x->n; i++) {
      if (strcmp(x->v[i], y->v[i]))
        return false;
    }
    return true;
  }
  case SL_CFG_SECTION_LIST:
    return false; /* compared element-wise by sl_config_diff() */
  }
  return false;
}

static void fmt_size(uint64_t v, char *buf, size_t len) {
  static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4 && v; i++) {
    unsigned shift = 40u - 10u * (unsigned)i;
    if (!(v & ((1ull << shift) - 1))) {
      SL_CFG_FMT(buf, len, "%" PRIu64 "%s", v >> shift, units[i]);
      return;
    }
  }
  SL_CFG_FMT(buf, len, "%" PRIu64, v);
}

static void fmt_duration(uint64_t v, char *buf, size_t len) {
  if (!v) {
    SL_CFG_FMT(buf, len, "0");
    return;
  }
  for (size_t i = SL_ARRAY_SIZE(dur_units); i-- > 0;) {
    if (v % dur_units[i].ms == 0) {
      SL_CFG_FMT(buf, len, "%" PRIu64 "%s", v / dur_units[i].ms,
                 dur_units[i].name);
      return;
    }
  }
}

/* YAML double-quoted scalar. */
static size_t fmt_quoted(const char *s, char *buf, size_t len) {
  size_t k = 0;
#define PUT(c)                                                                 \
  do {                                                                         \
    if (k + 1 < len)                                                           \
      buf[k] = (c);                                                            \
    k++;                                                                       \
  } while (0)
  PUT('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      PUT('\\');
      PUT((char)*p);
    } else if (*p < 0x20 || *p == 0x7f) {
      static const char hex[] = "0123456789abcdef";
      PUT('\\');
      PUT('x');
      PUT(hex[*p >> 4]);
      PUT(hex[*p & 15]);
    } else {
      PUT((char)*p);
    }
  }
  PUT('"');
#undef PUT
  if (len)
    buf[k < len ? k : len - 1] = '\0';
  return k;
}

void sl_cfg_format(const sl_cfg_opt_t *o, const void *obj, char *buf,
                   size_t len) {
  size_t used;
  switch (o->type) {
  case SL_CFG_BOOL:
    SL_CFG_FMT(buf, len, "%s", *CFIELD(obj, o, bool) ? "true" : "false");
    break;
  case SL_CFG_INT:
    SL_CFG_FMT(buf, len, "%" PRId64, *CFIELD(obj, o, int64_t));
    break;
  case SL_CFG_UINT:
    SL_CFG_FMT(buf, len, "%" PRIu64, *CFIELD(obj, o, uint64_t));
    break;
  case SL_CFG_SIZE:
    fmt_size(*CFIELD(obj, o, uint64_t), buf, len);
    break;
  case SL_CFG_DURATION:
    fmt_duration(*CFIELD(obj, o, uint64_t), buf, len);
    break;
  case SL_CFG_DOUBLE: {
    double d = *CFIELD(obj, o, double), back;
    SL_CFG_FMT(buf, len, "%.15g", d);
    if (sscanf(buf, "%lf", &back) != 1 || back != d)
      SL_CFG_FMT(buf, len, "%.17g", d);
    break;
  }
  case SL_CFG_ENUM:
    SL_CFG_FMT(buf, len, "%s", o->enums[*CFIELD(obj, o, int)]);
    break;
  case SL_CFG_STRING:
  case SL_CFG_PATH:
    fmt_quoted(*CFIELD(obj, o, char *), buf, len);
    break;
  case SL_CFG_FLAGS:
  case SL_CFG_LIST: {
    bool flags = o->type == SL_CFG_FLAGS;
    const sl_cfg_strlist_t *l = flags ? NULL : CFIELD(obj, o, sl_cfg_strlist_t);
    uint32_t mask = flags ? *CFIELD(obj, o, uint32_t) : 0;
    size_t n = flags ? 32 : l->n;
    bool first = true;
    used = (size_t)snprintf(buf, len, "[");
    for (size_t i = 0; i < n && used < len; i++) {
      if (flags && !o->enums[i])
        break;
      if (flags && !(mask >> i & 1))
        continue;
      used += (size_t)snprintf(buf + used, len - used, "%s", first ? "" : ", ");
      first = false;
      if (used >= len)
        break;
      if (flags) {
        used += (size_t)snprintf(buf + used, len - used, "%s", o->enums[i]);
      } else if ((o->flags & SL_CFG_KV_SECRETS) &&
                 !(o->printable && o->printable(l->v[i]))) {
        /* Only keys the row's allow-list accepts show their value; an
         * item without "=" names no key, so nothing of it is shown. */
        const char *eq = strchr(l->v[i], '=');
        char red[160];
        if (eq)
          SL_CFG_FMT(red, sizeof(red), "%.*s=<redacted>",
                     (int)SL_MIN(eq - l->v[i], 120), l->v[i]);
        else
          SL_CFG_FMT(red, sizeof(red), "<redacted>");
        used += fmt_quoted(red, buf + used, len - used);
      } else {
        used += fmt_quoted(l->v[i], buf + used, len - used);
      }
    }
    if (used < len)
      SL_CFG_FMT(buf + used, len - used, "]");
    break;
  }
  case SL_CFG_SECTION_LIST:
    SL_CFG_FMT(buf, len, "[]");
    break;
  }
}

unsigned sl_cfg_distance(const char *a, const char *b) {
  unsigned row[129];
  size_t la = strlen(a), lb = strlen(b);
  if (la > 128 || lb > 128)
    return 255;
  for (size_t j = 0; j <= lb; j++)
    row[j] = (unsigned)j;
  for (size_t i = 1; i <= la; i++) {
    unsigned diag = row[0];
    row[0] = (unsigned)i;
    for (size_t j = 1; j <= lb; j++) {
      unsigned up = row[j];
      unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
      row[j] = SL_MIN(SL_MIN(row[j] + 1, row[j - 1] + 1), diag + cost);
      diag = up;
    }
  }
  return SL_MIN(row[lb], 255u);
}
