/* `sluice run -c FILE [--accept-new-store]`: the daemon. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"

int sl_cmd_run(int argc, char **argv);
int sl_cmd_run(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) &&
        i + 1 < argc)
      path = argv[++i];
    else if (!strcmp(argv[i], "--accept-new-store"))
      /* The flag is store.accept_new through its environment override:
       * the config file, a reload and the dump all see the same value. */
      setenv("SLUICE_STORE_ACCEPT_NEW", "true", 1);
    else {
      fprintf(stderr, "usage: sluice run -c FILE [--accept-new-store]\n");
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "usage: sluice run -c FILE [--accept-new-store]\n");
    return 2;
  }
  return sl_daemon_run(path);
}
