/* connectors/common/duration.c: "250ms", "2s", "5m" -> milliseconds. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "connectors/common/conn.h"

int sl_conn_duration_parse(const char *s, uint32_t *ms) {
  static const struct {
    const char *suffix;
    double mult;
  } units[] = {{"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}, {"", 1}};
  char *end;
  double v;

  if (!s || !*s)
    return SL_ECONFIG;
  errno = 0;
  v = strtod(s, &end);
  if (end == s || errno || !isfinite(v) || v < 0)
    return SL_ECONFIG;
  for (size_t i = 0; i < SL_ARRAY_SIZE(units); i++) {
    if (strcmp(end, units[i].suffix))
      continue;
    v *= units[i].mult;
    if (v > 2147483647.0)
      return SL_ECONFIG;
    *ms = (uint32_t)llround(v);
    return 0;
  }
  return SL_ECONFIG;
}
