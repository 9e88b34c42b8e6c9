/*
 * loadtest/common/scrape.c: see scrape.h. A plain HTTP/1.0 GET over a
 * socket: the benchmarks and tests need one number, and libcurl or
 * libmicrohttpd's client side would add a dependency for twenty lines.
 */
#include "loadtest/common/scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int sl_scrape_metric(int port, const char *series, double *v) {
  static char buf[1 << 20];
  struct sockaddr_in sa = {.sin_family = AF_INET};
  struct timeval tv = {.tv_sec = 5};
  const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  size_t len = 0, sl = strlen(series);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1)) {
    ssize_t n;
    while (len < sizeof(buf) - 1 &&
           (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
      len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  for (char *p = strstr(buf, series); p; p = strstr(p + 1, series))
    if (p > buf && p[-1] == '\n' && p[sl] == ' ') {
      *v = strtod(p + sl + 1, NULL);
      return 0;
    }
  return -1;
}
