/*
 * common/rfc3339.c: strict RFC 3339 timestamps to int64 nanoseconds.
 *
 * Hand-written rather than sscanf + timegm: sscanf accepts signs, spaces and
 * short fields inside "%2d", timegm silently normalises impossible dates
 * (Feb 30 -> Mar 2), and the product with 1e9 overflowed for years outside
 * 1678..2261 (a signed overflow: a wrapped date in release, an abort under
 * UBSan). Here every field is exactly its digits, every date must exist, and
 * every step is overflow-checked, so a value is either exact or refused.
 */
#include <stdbool.h>

#include "common/common.h"

static bool digits(const char *s, size_t len, size_t at, int n, int *out) {
  int v = 0;
  if (at + (size_t)n > len)
    return false;
  for (int i = 0; i < n; i++) {
    char c = s[at + (size_t)i];
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

static bool leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m) {
  static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar: whole
 * 400-year eras (146097 days each) shifted so a year starts in March, which
 * puts the leap day last. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int sl_rfc3339_parse(const char *s, size_t len, int64_t *out) {
  int y, mo, d, h, mi, sec, oh = 0, om = 0;
  size_t i = 19;
  int64_t frac = 0, secs, ns;
  if (!digits(s, len, 0, 4, &y) || len < 19 || s[4] != '-' ||
      !digits(s, len, 5, 2, &mo) || s[7] != '-' || !digits(s, len, 8, 2, &d) ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !digits(s, len, 11, 2, &h) || s[13] != ':' ||
      !digits(s, len, 14, 2, &mi) || s[16] != ':' ||
      !digits(s, len, 17, 2, &sec))
    return SL_EPROTO;
  if (i < len && s[i] == '.') {
    int nd = 0;
    for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, nd++)
      if (nd < 9)
        frac = frac * 10 + (s[i] - '0');
    if (!nd)
      return SL_EPROTO;
    for (; nd < 9; nd++)
      frac *= 10;
  }
  if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
    i++;
  } else if (i < len && (s[i] == '+' || s[i] == '-')) {
    if (!digits(s, len, i + 1, 2, &oh) || i + 3 >= len || s[i + 3] != ':' ||
        !digits(s, len, i + 4, 2, &om) || oh > 23 || om > 59)
      return SL_EPROTO;
    if (s[i] == '-') {
      oh = -oh;
      om = -om;
    }
    i += 6;
  } else {
    return SL_EPROTO;
  }
  if (i != len)
    return SL_EPROTO;
  /* A leap second (:60) is taken as the first instant of the next minute,
   * as POSIX time has no slot for it. */
  if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 ||
      mi > 59 || sec > 60)
    return SL_ERANGE;
  secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
         (int64_t)oh * 3600 - (int64_t)om * 60;
  /* Borrow a second for a negative instant with a fraction, so the very
   * first representable nanosecond does not overflow on the way there. */
  if (secs < 0 && frac > 0) {
    secs += 1;
    frac -= 1000000000;
  }
  if (__builtin_mul_overflow(secs, (int64_t)1000000000, &ns) ||
      __builtin_add_overflow(ns, frac, &ns))
    return SL_ERANGE;
  *out = ns;
  return 0;
}
