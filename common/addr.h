/*
 * common/addr.h: "host:port" addresses of the listeners and the admin
 * server.
 */
#ifndef SL_COMMON_ADDR_H
#define SL_COMMON_ADDR_H

#include <stddef.h>
#include <stdint.h>

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

/*
 * sl_hostport_split() for a listener or the admin server (port 0 allowed).
 * Returns 0 or -EINVAL with the reason in errstr.
 */
int sl_addr_split(const char *address, char *host, size_t hostcap,
                  uint16_t *port, char *errstr, size_t errlen);

#endif /* SL_COMMON_ADDR_H */
