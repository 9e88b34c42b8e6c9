/* connectors/common/conn_cfg.c: the connectors' shared config checks,
 * command line and signals (connectors/common/conn_cfg.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "connectors/common/conn_cfg.h"

const char *const sl_conn_log_levels[] = {"error", "warn", "info", "debug",
                                          NULL};

#define MAX_LEN_CHECK(n)                                                       \
  const char *sl_conn_max##n(const char *s) {                                  \
    return strlen(s) > (n) ? "is longer than " #n " bytes" : NULL;             \
  }
MAX_LEN_CHECK(31)
MAX_LEN_CHECK(63)
MAX_LEN_CHECK(159)
MAX_LEN_CHECK(199)
MAX_LEN_CHECK(255)

int sl_conn_args(int argc, char **argv, const char **path, int *check,
                 int (*docs)(FILE *out), void (*usage)(FILE *out)) {
  *path = NULL;
  *check = 0;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) &&
        i + 1 < argc) {
      *path = argv[++i];
    } else if (!strcmp(argv[i], "--config-docs")) {
      return docs(stdout) ? 1 : 0;
    } else if (!strcmp(argv[i], "--check")) {
      *check = 1;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!*path) {
    usage(stderr);
    return 2;
  }
  return -1;
}

void sl_conn_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, set, NULL);
  signal(SIGPIPE, SIG_IGN);
}
