/*
 * common/addr.c: the one "host:port" parser of the tree (common/addr.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "common/addr.h"

int sl_hostport_split(const char *s, unsigned flags, char *host, size_t hostcap,
                      uint16_t *port) {
  const char *h = s, *colon, *p;
  size_t hlen;
  unsigned long v = 0;
  if (!s || !*s)
    return -1;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close || close == s + 1 || close[1] != ':')
      return -1;
    h = s + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
      return -1;
    hlen = (size_t)(colon - s);
  }
  for (size_t i = 0; i < hlen; i++)
    if (h[i] == ' ' || h[i] == '/')
      return -1;
  if (!colon[1])
    return -1;
  for (p = colon + 1; *p; p++)
    if (*p < '0' || *p > '9' || (v = v * 10 + (unsigned)(*p - '0')) > 65535)
      return -1;
  if (!v && !(flags & SL_HOSTPORT_ANY_PORT))
    return -1;
  if (host) {
    if (hlen >= hostcap)
      return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
  }
  if (port)
    *port = (uint16_t)v;
  return 0;
}

int sl_addr_split(const char *address, char *host, size_t hostcap,
                  uint16_t *port, char *errstr, size_t errlen) {
  if (!sl_hostport_split(address, SL_HOSTPORT_ANY_PORT, host, hostcap, port))
    return 0;
  snprintf(errstr, errlen, "'%s' is not host:port", address ? address : "");
  return -EINVAL;
}
