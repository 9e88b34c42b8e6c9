/*
 * CHECK for the end-to-end test programs (the cmocka unit tests use cmocka's
 * asserts): on failure it prints the file, line, condition and a printf-style
 * message to stderr, calls check_fail_cleanup() when the program defines it,
 * and exits 1.
 *
 * check_fail_cleanup() is a weak reference: a program with nothing to clean
 * up leaves it undefined (it is then NULL); one that starts daemons, brokers
 * or other children defines it to kill them and show their logs. It must not
 * use CHECK itself. It may exit on its own (with status 1).
 */
#ifndef SL_TEST_CHECK_H
#define SL_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

void check_fail_cleanup(void) __attribute__((weak));

/* CHECK's way out: the cleanup (through a variable: in the program that
 * defines it, a test of the function's address is always true). */
__attribute__((noreturn)) static inline void check_fail_exit(void) {
  void (*cleanup)(void) = check_fail_cleanup;
  if (cleanup)
    cleanup();
  exit(1);
}

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      check_fail_exit();                                                       \
    }                                                                          \
  } while (0)

#endif
