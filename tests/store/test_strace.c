/*
 * Crash inside an LMDB commit: the child appends under strace, which kills
 * it at the Nth fdatasync, pwrite64 or writev. The store must reopen with
 * every acknowledged append intact. Exit 77 (skipped) without strace.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/store/crash_common.h"
#include "tests/store/helpers.h"

static const char *strace_path(void) {
  static const char *const paths[] = {"/usr/bin/strace", "/bin/strace",
                                      "/usr/local/bin/strace"};
  for (size_t i = 0; i < SL_ARRAY_SIZE(paths); i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

static char self_path[4096];

static size_t run_under_strace(const char *dir, const char *sys, int when,
                               int round, crash_rec_t **recs, size_t *cap) {
  char inject[128], rs[32];
  int p[2], status;
  size_t n;
  pid_t pid;

  snprintf(inject, sizeof(inject), "inject=%s:signal=KILL:when=%d", sys, when);
  snprintf(rs, sizeof(rs), "%d", round);
  assert_int_equal(pipe(p), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    dup2(p[1], 3);
    close(p[1]);
    execl(strace_path(), "strace", "-f", "-qq", "-o", "/dev/null", "-e", inject,
          self_path, "child", dir, rs, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  n = crash_read(p[0], recs, cap, 0, SIZE_MAX);
  close(p[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return n;
}

static void test_kill_in_commit(void **state) {
  (void)state;
  static const struct {
    const char *sys;
    int whens[12];
  } plan[] = {
      {"fdatasync", {1, 2, 3, 4, 5, 6, 8, 11, 15, 20, 30, 45}},
      {"pwrite64", {1, 2, 3, 4, 5, 6, 7, 9, 12, 16, 25, 40}},
      {"writev", {1, 2, 3, 5, 8, 13, 21, 0}},
  };
  char *dir = th_tmpdir();
  uint64_t from[3] = {0, 0, 0};
  crash_rec_t *recs = NULL;
  size_t cap = 0, total = 0;
  int round = 1, runs = 0;

  for (size_t i = 0; i < SL_ARRAY_SIZE(plan); i++) {
    for (size_t j = 0; j < 12 && plan[i].whens[j]; j++) {
      size_t n = run_under_strace(dir, plan[i].sys, plan[i].whens[j], round++,
                                  &recs, &cap);
      crash_verify(dir, recs, n, from);
      total += n;
      runs++;
    }
  }
  print_message("%d strace kills, %zu acknowledged appends verified\n", runs,
                total);
  free(recs);
  th_cleanup(dir);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill_in_commit),
  };
  ssize_t n;

  if (argc == 4 && !strcmp(argv[1], "child"))
    crash_child(argv[2], 3, (uint64_t)atoi(argv[3]), SL_STORE_SYNC_ALWAYS,
                atoi(argv[3]) % 2, 2000);
  if (!strace_path()) {
    fprintf(stderr, "strace not found: skipped\n");
    return 77;
  }
  n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
  if (n <= 0)
    return 1;
  self_path[n] = '\0';
  return cmocka_run_group_tests(tests, NULL, NULL);
}
