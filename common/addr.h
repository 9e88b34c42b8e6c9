/*
 * common/addr.h: "host:port" addresses of the listeners and the admin
 * server.
 */
#ifndef SL_COMMON_ADDR_H
#define SL_COMMON_ADDR_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses "host:port" ("[v6]:port" too) into host and port. Returns 0 or
 * -EINVAL with the reason in errstr.
 */
int sl_addr_split(const char *address, char *host, size_t hostcap,
                  uint16_t *port, char *errstr, size_t errlen);

#endif /* SL_COMMON_ADDR_H */
