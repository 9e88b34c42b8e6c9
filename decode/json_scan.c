/*
 * The lexer of the mapped MQTT JSON scanner (decode_json_mapped.c says
 * why there is one): jansson's tokens and checks, byte for byte in the
 * same order, so the first error is the one jansson reported. Strings and
 * numbers are checked here; strings are decoded only when the parser
 * keeps them.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/json_scan.h"
#include "common/common.h"

/* Keeps the first error only, as jansson does. */
void json__fail(scan_t *s, const char *reason, const char *fmt, ...) {
  char text[120];
  va_list ap;
  if (s->err)
    return;
  s->err = SL_EPROTO;
  s->reason = reason;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  snprintf(s->msg, s->msglen, "invalid JSON at byte %zu: %s",
           (size_t)(s->p - s->base), text);
}

void json__no_memory(scan_t *s) {
  if (s->err)
    return;
  s->err = -ENOMEM;
  s->reason = "no_memory";
  snprintf(s->msg, s->msglen, "out of memory");
}

static int arena_reserve(arena_t *a, size_t n) {
  size_t cap = a->cap;
  char *p;
  if (a->len + n <= a->cap)
    return 0;
  while (cap < a->len + n)
    cap *= 2;
  if (a->heap) {
    if (!(p = realloc(a->p, cap)))
      return -ENOMEM;
  } else {
    if (!(p = malloc(cap)))
      return -ENOMEM;
    memcpy(p, a->p, a->len);
  }
  a->p = p;
  a->cap = cap;
  a->heap = true;
  return 0;
}

/* ---- keys of open objects: the duplicate check ---------------------------
 * Linear while an object is small, then a hash table of indices into
 * s->keys (so a payload of many keys stays linear). */

#define LINEAR_KEYS 16

static uint32_t key_hash(const unsigned char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ k[i]) * 16777619u;
  return h;
}

const unsigned char *json__key_bytes(const scan_t *s, const jkey_t *k) {
  return k->raw ? k->raw : (const unsigned char *)s->kbuf.p + k->off;
}

static bool key_eq(const scan_t *s, const jkey_t *a, const jkey_t *b) {
  return a->len == b->len &&
         !memcmp(json__key_bytes(s, a), json__key_bytes(s, b), a->len);
}

/* The duplicate check of one object: linear while small, then a hash
 * table of indices into s->keys (so a payload of many keys stays linear). */

static int keyset_insert(scan_t *s, json_keyset_t *ks, size_t idx) {
  size_t mask = ks->cap - 1;
  for (size_t i = s->keys[idx].hash & mask;; i = (i + 1) & mask) {
    if (!ks->tab[i]) {
      ks->tab[i] = (uint32_t)(idx + 1);
      return 0;
    }
    if (key_eq(s, &s->keys[ks->tab[i] - 1], &s->keys[idx]))
      return 1;
  }
}

/* Adds the key at s->keys[s->nkeys - 1] to the object's set. Returns 1 if
 * it was already there, 0, or -ENOMEM. */
static int keyset_add(scan_t *s, json_keyset_t *ks) {
  size_t idx = s->nkeys - 1, n = idx - ks->first;
  if (!ks->tab) {
    for (size_t i = ks->first; i < idx; i++)
      if (key_eq(s, &s->keys[i], &s->keys[idx]))
        return 1;
    if (n + 1 < LINEAR_KEYS)
      return 0;
  }
  s->keys[idx].hash =
      key_hash(json__key_bytes(s, &s->keys[idx]), s->keys[idx].len);
  if (!ks->tab)
    for (size_t i = ks->first; i < idx; i++)
      s->keys[i].hash =
          key_hash(json__key_bytes(s, &s->keys[i]), s->keys[i].len);
  if (!ks->tab || (n + 1) * 2 > ks->cap) {
    size_t cap = ks->cap ? ks->cap * 2 : 4 * LINEAR_KEYS;
    uint32_t *tab = calloc(cap, sizeof(*tab));
    if (!tab)
      return -ENOMEM;
    free(ks->tab);
    ks->tab = tab;
    ks->cap = cap;
    for (size_t i = ks->first; i < idx; i++)
      for (size_t j = s->keys[i].hash & (cap - 1);; j = (j + 1) & (cap - 1))
        if (!tab[j]) {
          tab[j] = (uint32_t)(i + 1);
          break;
        }
  }
  return keyset_insert(s, ks, idx);
}

int json__member_key(scan_t *s, const tok_t *t, json_keyset_t *ks) {
  int rc;
  if (t->type != T_STRING) {
    json__fail(s, "bad_json", "string or '}' expected");
    return -1;
  }
  if (t->nul) {
    json__fail(s, "bad_json", "NUL byte in object key not supported");
    return -1;
  }
  if ((rc = json__key_push(s, t, ks)) < 0) {
    json__no_memory(s);
    return -1;
  }
  if (rc) {
    json__fail(s, "bad_json", "duplicate object key");
    return -1;
  }
  return 0;
}

int json__key_push(scan_t *s, const tok_t *t, json_keyset_t *ks) {
  jkey_t *k;
  if (s->nkeys == s->capkeys) {
    size_t cap = s->capkeys * 2;
    jkey_t *keys = s->keys == s->keys0 ? malloc(cap * sizeof(*keys))
                                       : realloc(s->keys, cap * sizeof(*keys));
    if (!keys)
      return -ENOMEM;
    if (s->keys == s->keys0)
      memcpy(keys, s->keys0, sizeof(s->keys0));
    s->keys = keys;
    s->capkeys = cap;
  }
  k = &s->keys[s->nkeys];
  if (t->escaped) {
    if (json__decode_string(t, &s->kbuf, &k->off) < 0)
      return -ENOMEM;
    k->raw = NULL;
    k->len = s->kbuf.len - k->off - 1;
  } else {
    k->raw = t->s;
    k->len = (size_t)(t->e - t->s);
  }
  s->nkeys++;
  return keyset_add(s, ks);
}

/* ---- lexer --------------------------------------------------------------
 */

static bool is_digit(unsigned c) {
  return c - '0' < 10;
}

static int hex(unsigned c) {
  if (is_digit(c))
    return (int)(c - '0');
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
}

/* Length of the valid UTF-8 sequence at p (jansson's utf8_check_first and
 * utf8_check_full: no overlong forms, surrogates or values past U+10FFFF),
 * or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = *p, n;
  uint32_t v;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, v = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, v = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, v = c & 0x07;
  else
    return 0;
  if ((size_t)(end - p) < n)
    return 0;
  for (unsigned i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    v = (v << 6) | (p[i] & 0x3f);
  }
  if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) || (n == 3 && v < 0x800) ||
      (n == 4 && v < 0x10000))
    return 0;
  return n;
}

static int u4(const unsigned char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++)
    v = v << 4 | hex(p[i]);
  return v;
}

/* After the opening quote. Sets t to T_STRING, or records the error. */
static void lex_string(scan_t *s, tok_t *t) {
  const unsigned char *p = s->p, *end = s->end;
  t->s = p;
  t->escaped = t->nul = false;
  for (;;) {
    unsigned c;
    /* The common case: printable ASCII. */
    while (p < end && (c = *p) >= 0x20 && c < 0x80 && c != '"' && c != '\\')
      p++;
    s->p = p;
    if (p == end) {
      json__fail(s, "bad_json", "premature end of input");
      return;
    }
    c = *p;
    if (c == '"') {
      t->e = p;
      s->p = p + 1;
      t->type = T_STRING;
      return;
    }
    if (c < 0x20) {
      json__fail(s, "bad_json", "control character 0x%x in a string", c);
      return;
    }
    if (c >= 0x80) {
      size_t n = utf8_len(p, end);
      if (!n) {
        json__fail(s, "bad_json", "invalid UTF-8");
        return;
      }
      p += n;
      continue;
    }
    /* A backslash escape. */
    t->escaped = true;
    if (end - p < 2) {
      json__fail(s, "bad_json", "invalid escape");
      return;
    }
    c = p[1];
    if (c != 'u') {
      if (!strchr("\"\\/bfnrt", (int)c) || !c) {
        json__fail(s, "bad_json", "invalid escape");
        return;
      }
      p += 2;
      continue;
    }
    if (end - p < 6 || hex(p[2]) < 0 || hex(p[3]) < 0 || hex(p[4]) < 0 ||
        hex(p[5]) < 0) {
      json__fail(s, "bad_json", "invalid escape");
      return;
    }
    int v = u4(p + 2);
    p += 6;
    if (v >= 0xd800 && v <= 0xdbff) {
      /* Must be followed by a low surrogate. */
      if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex(p[2]) < 0 ||
          hex(p[3]) < 0 || hex(p[4]) < 0 || hex(p[5]) < 0 ||
          u4(p + 2) < 0xdc00 || u4(p + 2) > 0xdfff) {
        json__fail(s, "bad_json", "invalid Unicode surrogate \\u%04X", v);
        return;
      }
      p += 6;
    } else if (v >= 0xdc00 && v <= 0xdfff) {
      json__fail(s, "bad_json", "invalid Unicode surrogate \\u%04X", v);
      return;
    } else if (v == 0) {
      t->nul = true;
    }
  }
}

/* Decodes a lexed string (valid: lex_string checked it) into a, with a
 * terminating NUL; *off gets where it starts. */
int json__decode_string(const tok_t *t, arena_t *a, size_t *off) {
  size_t n = (size_t)(t->e - t->s);
  if (arena_reserve(a, n + 1) < 0)
    return -ENOMEM;
  *off = a->len;
  char *o = a->p + a->len;
  if (!t->escaped) {
    memcpy(o, t->s, n);
    o += n;
  } else {
    for (const unsigned char *p = t->s; p < t->e;) {
      if (*p != '\\') {
        *o++ = (char)*p++;
        continue;
      }
      unsigned c = p[1];
      p += 2;
      if (c != 'u') {
        *o++ = c == 'b'   ? '\b'
               : c == 'f' ? '\f'
               : c == 'n' ? '\n'
               : c == 'r' ? '\r'
               : c == 't' ? '\t'
                          : (char)c;
        continue;
      }
      uint32_t v = (uint32_t)u4(p);
      p += 4;
      if (v >= 0xd800 && v <= 0xdbff) {
        v = 0x10000 + ((v - 0xd800) << 10) + ((uint32_t)u4(p + 2) - 0xdc00);
        p += 6;
      }
      if (v < 0x80) {
        *o++ = (char)v;
      } else if (v < 0x800) {
        *o++ = (char)(0xc0 | v >> 6);
        *o++ = (char)(0x80 | (v & 0x3f));
      } else if (v < 0x10000) {
        *o++ = (char)(0xe0 | v >> 12);
        *o++ = (char)(0x80 | (v >> 6 & 0x3f));
        *o++ = (char)(0x80 | (v & 0x3f));
      } else {
        *o++ = (char)(0xf0 | v >> 18);
        *o++ = (char)(0x80 | (v >> 12 & 0x3f));
        *o++ = (char)(0x80 | (v >> 6 & 0x3f));
        *o++ = (char)(0x80 | (v & 0x3f));
      }
    }
  }
  *o++ = '\0';
  a->len = (size_t)(o - a->p);
  return 0;
}

static const double pow10_exact[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Converts a checked JSON number to a double, correctly rounded. Returns 0,
 * 1 on overflow (as strtod's ERANGE to +-HUGE_VAL), or -ENOMEM. */
static int to_double(const unsigned char *b, const unsigned char *e,
                     double *out) {
  const unsigned char *p = b;
  bool neg = *p == '-';
  uint64_t m = 0;
  int digits = 0, exp10 = 0;
  char buf[128], *heap = NULL, *text = buf, *endp;
  size_t n = (size_t)(e - b);

  /* Fast path (Clinger): a mantissa of at most 2^53 and a power of ten up
   * to 1e22 are both exact doubles, so one multiplication or division
   * rounds correctly. Covers ordinary readings like 21.5 or -0.0031. */
  if (neg)
    p++;
  for (; p < e && is_digit(*p); p++)
    if (m || *p != '0') {
      if (++digits > 19)
        goto slow;
      m = m * 10 + (uint64_t)(*p - '0');
    }
  if (p < e && *p == '.')
    for (p++; p < e && is_digit(*p); p++) {
      if (m || *p != '0') {
        if (++digits > 19)
          goto slow;
        m = m * 10 + (uint64_t)(*p - '0');
      }
      exp10--;
    }
  if (p < e) {
    bool eneg = false;
    int x = 0;
    p++; /* e or E */
    if (*p == '+' || *p == '-')
      eneg = *p++ == '-';
    for (; p < e; p++)
      if (x < 100000)
        x = x * 10 + (*p - '0');
    exp10 += eneg ? -x : x;
  }
  if (m <= (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
    double d = (double)m;
    d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
    *out = neg ? -d : d;
    return 0;
  }
slow:
  /* strtod wants a terminated string. The daemon never calls setlocale,
   * so the decimal point is '.'. */
  if (n >= sizeof(buf)) {
    if (!(heap = malloc(n + 1)))
      return -ENOMEM;
    text = heap;
  }
  memcpy(text, b, n);
  text[n] = '\0';
  errno = 0;
  *out = strtod(text, &endp);
  int over = (*out == HUGE_VAL || *out == -HUGE_VAL) && errno == ERANGE;
  free(heap);
  return over;
}

/* jansson reads one byte past a number or a literal to see where it ends,
 * decoding it as UTF-8 like every byte it reads: an invalid sequence there
 * is the first error, before the token's own (an integer overflow). */
static bool lookahead_ok(scan_t *s, const unsigned char *p) {
  if (p < s->end && *p >= 0x80 && !utf8_len(p, s->end)) {
    s->p = p;
    json__fail(s, "bad_json", "invalid UTF-8");
    return false;
  }
  return true;
}

/* At '-' or a digit. jansson's grammar: a leading zero is not followed by
 * digits, '.' and an exponent need digits; integers are int64. */
static void lex_number(scan_t *s, tok_t *t) {
  const unsigned char *p = s->p, *b = p, *end = s->end;
  bool neg = false, real = false;
  t->type = T_INVALID;
  if (*p == '-') {
    neg = true;
    p++;
  }
  if (p < end && *p == '0') {
    p++;
    if (p < end && is_digit(*p))
      goto invalid;
  } else if (p < end && is_digit(*p)) {
    while (p < end && is_digit(*p))
      p++;
  } else {
    goto invalid;
  }
  if (p < end && *p == '.') {
    real = true;
    p++;
    if (p == end || !is_digit(*p))
      goto invalid;
    while (p < end && is_digit(*p))
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    real = true;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p == end || !is_digit(*p))
      goto invalid;
    while (p < end && is_digit(*p))
      p++;
  }
  if (!lookahead_ok(s, p))
    return;
  s->p = p;
  if (!real) {
    uint64_t u = 0, lim = neg ? (1ull << 63) : (1ull << 63) - 1;
    for (const unsigned char *q = b + neg; q < p; q++) {
      unsigned d = *q - '0';
      if (u > (lim - d) / 10) {
        json__fail(s, "bad_number",
                   neg ? "too big negative integer" : "too big integer");
        return;
      }
      u = u * 10 + d;
    }
    t->i = neg ? (int64_t)(0 - u) : (int64_t)u;
    t->type = T_INT;
    return;
  }
  int rc = to_double(b, p, &t->d);
  if (rc < 0)
    json__no_memory(s);
  else if (rc > 0)
    json__fail(s, "bad_number", "real number overflow");
  else
    t->type = T_REAL;
  return;
invalid:
  lookahead_ok(s, p);
}

/* Reads the next token. Errors inside a token are recorded in s (first
 * one wins) and give T_INVALID. */
void json__lex(scan_t *s, tok_t *t) {
  const unsigned char *p = s->p, *end = s->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  s->p = p;
  if (p == end) {
    t->type = T_EOF;
    return;
  }
  unsigned c = *p;
  switch (c) {
  case '{':
    t->type = T_LBRACE;
    break;
  case '}':
    t->type = T_RBRACE;
    break;
  case '[':
    t->type = T_LBRACKET;
    break;
  case ']':
    t->type = T_RBRACKET;
    break;
  case ':':
    t->type = T_COLON;
    break;
  case ',':
    t->type = T_COMMA;
    break;
  case '"':
    s->p = p + 1;
    t->type = T_INVALID;
    lex_string(s, t);
    return;
  default:
    if (c == '-' || is_digit(c)) {
      lex_number(s, t);
      return;
    }
    t->type = T_INVALID;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
      const unsigned char *b = p;
      while (p < end && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
        p++;
      size_t n = (size_t)(p - b);
      if (!lookahead_ok(s, p))
        return;
      s->p = p;
      if (n == 4 && !memcmp(b, "true", 4))
        t->type = T_TRUE;
      else if (n == 5 && !memcmp(b, "false", 5))
        t->type = T_FALSE;
      else if (n == 4 && !memcmp(b, "null", 4))
        t->type = T_NULL;
      return;
    }
    /* jansson decodes the input as UTF-8 before it looks at tokens. */
    if (c >= 0x80 && !utf8_len(p, end))
      json__fail(s, "bad_json", "invalid UTF-8");
    return;
  }
  s->p = p + 1;
}
