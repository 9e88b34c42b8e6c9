/* `sluice run -c FILE [--accept-new-store]`: the daemon. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  int rc = sl_daemon_run(path);
  if (rc == SL_DAEMON_REEXEC) {
    /* The fleet applied a change that needs a restart: the same process
     * (same pid for systemd, same container) runs again from the start;
     * the fleet's trial state in the store says what to run. */
    char *args[] = {argv[0] ? argv[0] : "run", "-c", (char *)path, NULL};
    char *full[] = {"sluice", args[0], args[1], args[2], NULL};
    fflush(NULL);
    execv("/proc/self/exe", full);
    fprintf(stderr, "sluice: cannot execute itself again: %s\n",
            strerror(errno));
    return 1;
  }
  return rc;
}
