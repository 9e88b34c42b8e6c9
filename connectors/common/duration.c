/* connectors/common/duration.c: the connectors' durations, in the one
 * format (common/textparse.h) with its legacy spellings. */
#include "common/common.h"
#include "common/textparse.h"
#include "connectors/common/conn.h"

int sl_conn_duration_parse(const char *s, uint32_t *ms) {
  uint64_t v;
  if (!s || sl_duration_parse(s, SL_DURATION_LEGACY, &v) || v > 2147483647u)
    return SL_ECONFIG;
  *ms = (uint32_t)v;
  return 0;
}
