/*
 * A small Modbus TCP server for the connector tests (libmodbus).
 *
 *   sl_test_modbus_server [--port N] [--gen G] [--exceptions]
 *
 * Binds 127.0.0.1:N (0, the default, picks a free port; a fixed N is retried
 * for up to 10 s on EADDRINUSE, so a test can bring a "device" back on the
 * port it had), prints "port P" on stdout once it listens, and serves any
 * number of clients until killed. The registers hold the values listed in
 * modbus_values.h for generation G (default 1). With --exceptions every
 * request is answered with exception 4 (server device failure). Requests
 * outside the mapped ranges get exception 2 (illegal data address) from
 * libmodbus itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus/modbus.h>

#include "tests/connectors/modbus_values.h"

static int listen_on(int port) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd, one = 1;
  for (int tries = 0;; tries++) {
    if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
      return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        listen(fd, 16) == 0)
      break;
    int e = errno;
    close(fd);
    if (e != EADDRINUSE || port == 0 || tries >= 200)
      return -1;
    struct timespec ts = {0, 50000000}; /* the port is busy: retry */
    nanosleep(&ts, NULL);
  }
  getsockname(fd, (struct sockaddr *)&sa, &len);
  printf("port %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  return fd;
}

int main(int argc, char **argv) {
  int port = 0, gen = 1, exceptions = 0, lfd, maxfd;
  uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
  modbus_mapping_t *map;
  modbus_t *ctx;
  fd_set all;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--gen") && i + 1 < argc)
      gen = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--exceptions"))
      exceptions = 1;
    else {
      fprintf(stderr, "usage: %s [--port N] [--gen G] [--exceptions]\n",
              argv[0]);
      return 2;
    }
  }
  map = modbus_mapping_new(TV_NBITS, TV_NBITS, TV_NREGS, TV_NREGS);
  ctx = modbus_new_tcp("127.0.0.1", port);
  if (!map || !ctx) {
    fprintf(stderr, "modbus: %s\n", modbus_strerror(errno));
    return 1;
  }
  tv_fill(gen, map->tab_registers, map->tab_input_registers, map->tab_bits,
          map->tab_input_bits);
  if ((lfd = listen_on(port)) < 0) {
    perror("listen");
    return 1;
  }
  FD_ZERO(&all);
  FD_SET(lfd, &all);
  maxfd = lfd;
  for (;;) {
    fd_set rd = all;
    if (select(maxfd + 1, &rd, NULL, NULL, NULL) < 0) {
      if (errno == EINTR)
        continue;
      perror("select");
      return 1;
    }
    for (int fd = 0; fd <= maxfd; fd++) {
      if (!FD_ISSET(fd, &rd))
        continue;
      if (fd == lfd) {
        int c = accept(lfd, NULL, NULL);
        if (c >= 0) {
          FD_SET(c, &all);
          maxfd = c > maxfd ? c : maxfd;
        }
        continue;
      }
      modbus_set_socket(ctx, fd);
      int rc = modbus_receive(ctx, query);
      if (rc > 0) {
        if (exceptions)
          modbus_reply_exception(ctx, query,
                                 MODBUS_EXCEPTION_SLAVE_OR_SERVER_FAILURE);
        else
          modbus_reply(ctx, query, rc, map);
      } else if (rc < 0) {
        close(fd);
        FD_CLR(fd, &all);
      }
    }
  }
}
