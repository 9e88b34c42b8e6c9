/* `sluice run -c FILE`: the daemon. */
#include <stdio.h>
#include <string.h>

#include "broker/daemon.h"

int sl_cmd_run(int argc, char **argv);
int sl_cmd_run(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) &&
        i + 1 < argc)
      path = argv[++i];
    else {
      fprintf(stderr, "usage: sluice run -c FILE\n");
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "usage: sluice run -c FILE\n");
    return 2;
  }
  return sl_daemon_run(path);
}
