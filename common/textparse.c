/* common/textparse.c: durations (common/textparse.h). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/textparse.h"

static const struct {
  const char *name;
  uint64_t ms;
} units[] = {
    /* Longest first so "ms" is not read as "m". */
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

/* The unit s starts with, or -1. */
static int unit_at(const char *s) {
  for (size_t i = 0; i < SL_ARRAY_SIZE(units); i++) {
    size_t ul = strlen(units[i].name);
    if (!strncmp(s, units[i].name, ul) && !isalpha((unsigned char)s[ul]))
      return (int)i;
  }
  return -1;
}

/* "1.5s", "40" (bare ms): one number, at most one unit. */
static int parse_legacy(const char *s, uint64_t *ms) {
  char *end;
  double v;
  int u = -1;
  if (!isdigit((unsigned char)*s))
    return -1;
  v = strtod(s, &end);
  if (end == s || !isfinite(v) || v < 0)
    return -1;
  if (*end && ((u = unit_at(end)) < 0 || end[strlen(units[u].name)]))
    return -1;
  v *= u < 0 ? 1 : (double)units[u].ms;
  if (v >= 18446744073709551615.0)
    return -1;
  *ms = (uint64_t)llround(v);
  return 0;
}

int sl_duration_parse(const char *s, unsigned flags, uint64_t *ms) {
  const char *p = s;
  uint64_t total = 0;
  if (!strcmp(s, "0")) {
    *ms = 0;
    return 0;
  }
  if (!*s)
    return -1;
  while (*p) {
    uint64_t n = 0, part;
    int u;
    if (!isdigit((unsigned char)*p))
      goto legacy;
    for (; isdigit((unsigned char)*p); p++)
      if (__builtin_mul_overflow(n, 10, &n) ||
          __builtin_add_overflow(n, (uint64_t)(*p - '0'), &n))
        return -1;
    if ((u = unit_at(p)) < 0)
      goto legacy;
    p += strlen(units[u].name);
    if (__builtin_mul_overflow(n, units[u].ms, &part) ||
        __builtin_add_overflow(total, part, &total))
      return -1;
  }
  *ms = total;
  return 0;
legacy:
  return flags & SL_DURATION_LEGACY ? parse_legacy(s, ms) : -1;
}
