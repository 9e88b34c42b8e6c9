/*
 * kill -9 under load: a child appends (group commit, both sync modes) and
 * reports each append after its completion fired; the parent kills it at
 * random points, reopens and checks every reported append is present and
 * intact, offsets contiguous, nothing invented.
 * SL_STORE_CRASH_ROUNDS sets the number of rounds (default 200).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/store/crash_common.h"
#include "tests/store/helpers.h"

static void test_kill9_rounds(void **state) {
  (void)state;
  const char *env = getenv("SL_STORE_CRASH_ROUNDS");
  int rounds = env ? atoi(env) : 200;
  char *dir = th_tmpdir();
  uint64_t from[3] = {0, 0, 0};
  crash_rec_t *recs = NULL;
  size_t cap = 0, total = 0;
  unsigned seed = (unsigned)time(NULL);

  print_message("kill -9 rounds: %d (seed %u)\n", rounds, seed);
  srand(seed);
  for (int round = 0; round < rounds; round++) {
    int p[2], status;
    size_t n, want = (size_t)(rand() % 48);
    pid_t pid;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      crash_child(dir, p[1], (uint64_t)round + 1,
                  round % 2 ? SL_STORE_SYNC_INTERVAL : SL_STORE_SYNC_ALWAYS,
                  round % 3 != 0, 10000);
    }
    close(p[1]);
    /* Kill after a random number of acknowledged appends, sometimes a
     * little later still, so the kill lands anywhere in a commit. */
    n = crash_read(p[0], &recs, &cap, 0, want);
    if (rand() % 2) {
      struct timespec ts = {0, (rand() % 2000) * 1000};
      nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    n = crash_read(p[0], &recs, &cap, n, SIZE_MAX);
    close(p[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
      fail_msg("child exited with %d before the kill",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    crash_verify(dir, recs, n, from);
    total += n;
  }
  print_message("verified %zu acknowledged appends; streams end at %llu, "
                "%llu\n",
                total, (unsigned long long)from[1],
                (unsigned long long)from[2]);
  free(recs);
  th_cleanup(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill9_rounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
