/*
 * common/textparse: the one parser of durations and of host:port addresses,
 * shared by the daemon's config (config/), the daemon's listeners and the
 * connectors. Pure functions: no allocation, no logging.
 */
#ifndef SL_COMMON_TEXTPARSE_H
#define SL_COMMON_TEXTPARSE_H

#include <stddef.h>
#include <stdint.h>

/* sl_duration_parse() flags. */
/* The connectors' older spellings, still accepted in their config files:
 * a bare number of milliseconds ("40") and a decimal fraction of a single
 * unit ("1.5s"). The daemon's config takes neither. */
#define SL_DURATION_LEGACY 0x1u

/*
 * Parses a duration into milliseconds: "0", or one or more <digits><unit>
 * with unit ms, s, m, h or d ("250ms", "5s", "1h30m", "2d"). Returns 0 and
 * *ms, or -1 (not a duration, or more than 2^64-1 ms). s: borrowed.
 */
int sl_duration_parse(const char *s, unsigned flags, uint64_t *ms);

/* sl_hostport_split() flags. */
#define SL_HOSTPORT_ANY_PORT 0x1u /* port 0 (listen on a free port) is ok */

/*
 * Splits "host:port" or "[v6]:port" (port 1..65535, or 0 with
 * SL_HOSTPORT_ANY_PORT). The host is non-empty, holds no space or '/', and
 * an unbracketed host holds no ':'. Returns 0 with the host copied into
 * host (hostcap bytes, NUL-terminated; may be NULL to only check) and the
 * port in *port (may be NULL), or -1 (malformed, or host longer than
 * hostcap - 1). s: borrowed.
 */
int sl_hostport_split(const char *s, unsigned flags, char *host, size_t hostcap,
                      uint16_t *port);

#endif /* SL_COMMON_TEXTPARSE_H */
