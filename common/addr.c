/*
 * common/addr.c: the one "host:port" parser of the tree (common/addr.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

int sl_addr_split(const char *address, char *host, size_t hostcap,
                  uint16_t *port, char *errstr, size_t errlen) {
  const char *colon, *h = address;
  size_t hlen;
  char *end;
  long p;

  if (!address || !*address)
    goto bad;
  if (*address == '[') {
    const char *rb = strchr(address, ']');
    if (!rb || rb[1] != ':')
      goto bad;
    h = address + 1;
    hlen = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(address, ':');
    if (!colon)
      goto bad;
    hlen = (size_t)(colon - address);
  }
  if (hlen == 0 || hlen >= hostcap)
    goto bad;
  errno = 0;
  p = strtol(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
    goto bad;
  memcpy(host, h, hlen);
  host[hlen] = 0;
  *port = (uint16_t)p;
  return 0;
bad:
  snprintf(errstr, errlen, "'%s' is not host:port", address ? address : "");
  return -EINVAL;
}
