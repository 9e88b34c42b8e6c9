/*
 * Helpers for the connector end-to-end tests, on top of the daemon fixture
 * (tests/common/daemon_fixture.h: the scratch directory, the real daemon,
 * its ports): child processes killed when a check fails, and reading a
 * stream back from the store (read-only, which works while the daemon runs).
 *
 * CHECK is tests/common/check.h's; the fixture's cleanup kills the daemon,
 * and e2e's (fixture_on_fail) every child, showing the tails of their logs.
 */
#ifndef SL_TEST_E2E_H
#define SL_TEST_E2E_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "sluice/v1/event.pb-c.h"
#include "tests/common/daemon_fixture.h"

/* Writes the daemon's config (streams readings, inference and status) and
 * has the children killed when a check fails. */
void e2e_config(void);

/*
 * Starts argv[0] with stdout and stderr to log (a path in e2e_dir); the child
 * is killed when a CHECK fails. With out_fd, stdout goes to a pipe instead
 * whose read end is returned there.
 */
pid_t e2e_spawn(char *const argv[], const char *log, int *out_fd);
/* As e2e_spawn(), with the child's stdin from a pipe too: its write end in
 * *in_fd (commands), its stdout's read end in *out_fd. */
pid_t e2e_spawn_io(char *const argv[], const char *log, int *in_fd,
                   int *out_fd);
/* Reads one line from fd (bounded by deadline_ms). */
void e2e_read_line(int fd, char *buf, size_t len, int deadline_ms);
/* Signals pid and waits (bounded); returns the wait status. */
int e2e_stop(pid_t pid, int sig);
/* Waits (bounded) for pid to exit on its own; returns the wait status. */
int e2e_wait(pid_t pid, int deadline_ms);

/* Every event of a stream, in offset order. */
typedef struct e2e_events {
  Sluice__V1__EventBatch **b; /* unpacked batches */
  size_t nb;
  Sluice__V1__Event **ev; /* views into b */
  size_t n;
} e2e_events_t;

/* Reads stream into ev (an unknown stream reads as empty). */
void e2e_read(const char *stream, e2e_events_t *ev);
void e2e_events_free(e2e_events_t *ev);

/* Attribute value of an event, NULL when absent. */
const char *e2e_attr(const Sluice__V1__Event *e, const char *key);

#endif
