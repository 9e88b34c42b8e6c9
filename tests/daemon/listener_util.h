/*
 * Helpers of listener_test.c: start/stop the daemon on a generated config
 * (ports read from its "ready" line), raw TCP and HTTP exchanges, /metrics
 * series, the daemon's RSS, and native frames.
 */
#ifndef SL_TESTS_LISTENER_UTIL_H
#define SL_TESTS_LISTENER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire/frame.h"

extern const char *sluice_bin;
extern char dir[256], data_dir[400], cfg_path[300], sock_path[300],
    log_path[300], mnt[300];
extern int native_port, http_port, admin_port;
extern pid_t daemon_pid;

uint64_t now_ms(void);
/* Writes the base config (TCP, Unix socket, HTTP, admin on port 0, stream
 * "readings") plus extra YAML. */
void write_config(const char *extra);
/* 0 once "ready" is logged, or 1000 + exit status when it exited first. */
int start_daemon(void);
/* SIGTERM; CHECKs a clean exit. */
void stop_daemon(void);
/* Lines of the daemon log containing needle. */
int log_count(const char *needle);
int tcp_connect(int port);
void send_all(int fd, const void *p, size_t n);
/* Reads until EOF (*eof = 1) or timeout_ms; NUL-terminates buf. */
size_t read_until(int fd, char *buf, size_t cap, int timeout_ms, int *eof);
/* One exchange on a fresh connection: the status, or -1 without an answer
 * in timeout_ms; buf holds the whole answer. */
int http_raw(int port, const char *req, size_t len, char *buf, size_t cap,
             int timeout_ms);
int http_get(int port, const char *path, char *buf, size_t cap);
int http_post(const char *ctype, const char *extra, const char *body, char *buf,
              size_t cap);
/* A /metrics series' value, -1 when absent. */
double metric(const char *series);
long rss_kb(void);
/* 1 when the daemon runs with ASan or TSan (RSS bounds do not apply). */
int daemon_sanitized(void);
void hello(sl_frame_buf_t *b, const char *id, const char *token);
void publish_one(sl_frame_buf_t *b, uint64_t batch, double v);

#endif
