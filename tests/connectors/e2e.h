/*
 * Helpers for the connector end-to-end tests: a scratch directory, the real
 * daemon (`sluice run`, generated config, port 0, ports read from its ready
 * line), child processes killed when a check fails, and reading a stream
 * back from the store (read-only, which works while the daemon runs).
 *
 * CHECK is tests/common/check.h's; its cleanup, check_fail_cleanup() in
 * e2e.c, kills the daemon and every child, shows the tails of their logs and
 * exits 1.
 */
#ifndef SL_TEST_E2E_H
#define SL_TEST_E2E_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "sluice/v1/event.pb-c.h"
#include "tests/common/check.h"

extern char e2e_dir[256]; /* scratch directory */
extern int e2e_native_port, e2e_http_port;

uint64_t e2e_now_ms(void);

/* Creates the scratch dir and the daemon's config with streams readings,
 * inference and status. */
void e2e_init(const char *sluice_bin, const char *name);

/* Starts the daemon, waits for its ready line (bounded). */
void e2e_daemon_start(void);
/* Signals it, waits (bounded), checks exit 0 and a clean sanitizer log. */
void e2e_daemon_stop(void);

/*
 * Starts argv[0] with stdout and stderr to log (a path in e2e_dir); the child
 * is killed when a CHECK fails. With out_fd, stdout goes to a pipe instead
 * whose read end is returned there.
 */
pid_t e2e_spawn(char *const argv[], const char *log, int *out_fd);
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
