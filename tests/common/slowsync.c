/*
 * A fault a real disk will not produce on demand: an fsync that takes as
 * long as the test wants. LD_PRELOADed into the daemon by tests that need
 * a commit to be in flight at a chosen moment (tests/mqtt/redeliver_test.c,
 * "settle").
 *
 *   SLUICE_TEST_SYNC_GATE=PATH   while the file PATH exists, fsync() and
 *                                fdatasync() wait (each at most 60 s) after
 *                                creating PATH.held, so the test knows a
 *                                commit is being held; removing PATH lets
 *                                them through.
 *
 * Without the variable (or the file) both calls go straight to libc.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

static void gate(void) {
  const char *g = getenv("SLUICE_TEST_SYNC_GATE");
  char held[4096];
  if (!g || access(g, F_OK) != 0)
    return;
  snprintf(held, sizeof(held), "%s.held", g);
  int fd = open(held, O_WRONLY | O_CREAT, 0644);
  if (fd >= 0)
    close(fd);
  /* Polls the file: bounded, so a test that dies never wedges the daemon. */
  for (int i = 0; i < 12000 && access(g, F_OK) == 0; i++) {
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real)
    *(void **)&real = dlsym(RTLD_NEXT, "fsync");
  gate();
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real)
    *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
  gate();
  return real(fd);
}
