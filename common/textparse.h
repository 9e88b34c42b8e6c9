/*
 * common/textparse: the one parser of durations, shared by the daemon's
 * config (config/) and the connectors. Pure function: no allocation, no
 * logging. (host:port: common/addr.h.)
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

#endif /* SL_COMMON_TEXTPARSE_H */
