/*
 * Shared pieces of the daemon's end-to-end test programs (daemon_test.c,
 * ingest_rules_test.c). Each program sets sluice_bin and the paths, then
 * starts the daemon with start_daemon(); CHECK failures kill it and show
 * the tail of its log (check_fail_cleanup()).
 */
#ifndef SL_TEST_DTEST_H
#define SL_TEST_DTEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire/frame.h"
#include "sluice/v1/native.pb-c.h"
#include "tests/common/check.h"

extern const char *sluice_bin;
extern char dir[256], data_dir[300], cfg_path[300], sock_path[300],
    log_path[300];
extern pid_t daemon_pid; /* killed when a check fails */
extern int http_port, admin_port;

/* Monotonic milliseconds. */
uint64_t now_ms(void);
/* Makes dir (mkdtemp under $TMPDIR) and the paths inside it. */
void dtest_init_dirs(void);
/* Writes the test config (loopback listeners on port 0, streams readings
 * and inference) with extra YAML appended. */
void write_config(const char *extra);
/* Starts the daemon, waits (bounded) for its "ready" line; the native TCP
 * port through *port, http_port and admin_port set. */
pid_t start_daemon(int *port);
/* Signals the daemon and waits (bounded) for it; returns its wait status.
 * A sanitizer report in its log fails the test. */
int stop_daemon(pid_t pid, int sig);
/* One HTTP/1.0 request on 127.0.0.1:port; the status code (-1 on none),
 * the response body in buf. */
int http_req(int port, const char *method, const char *path, const char *ctype,
             const char *body, const char *extra, char *buf, size_t cap);
void write_all(int fd, const uint8_t *p, size_t n);
/* Reads frames until one of kind want; 0, or -1 on EOF, timeout or an
 * Error frame. */
int await_frame(int fd, sl_frame_buf_t *in, sl_frame_arena_t *ar,
                Sluice__V1__Frame__KindCase want);
/* Polls /metrics until "series value" appears; fails after 10 s. Pipeline
 * and uplink series are published once a second. */
void await_metric(const char *series, int value);
/* Connects to 127.0.0.1:port with a 20 s receive timeout. */
int tcp_connect(int port);

#endif /* SL_TEST_DTEST_H */
