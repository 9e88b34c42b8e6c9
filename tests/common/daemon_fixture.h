/*
 * The one fixture of the test programs that start the real sluice daemon
 * (tests/daemon, tests/config/ops_test.c, tests/mqtt, tests/connectors;
 * tests/sync/sync_common.c still runs its several daemons at once itself):
 * a private work directory, the config file, starting `sluice run` and
 * reading its ports from the "ready" line, stopping it (a sanitizer report
 * in its log is a failure), its log and /metrics, raw sockets, HTTP and
 * native frames, and the scenario table main() dispatches on.
 *
 * A program defines its scenarios with SL_SCENARIO(name) { ... } and its
 * main() as `return fixture_main(argc, argv, "ARGS", setup);`; CMake adds
 * one ctest per scenario with sl_daemon_scenario() (cmake/SluiceTargets.cmake).
 * A CHECK failure kills the daemon (and whatever fixture_on_fail cleans up)
 * and shows the tail of its log.
 */
#ifndef SL_TEST_DAEMON_FIXTURE_H
#define SL_TEST_DAEMON_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sluice/v1/native.pb-c.h"
#include "store/store.h"
#include "wire/frame.h"
#include "tests/common/check.h"

/* ---- the run --------------------------------------------------------------
 */

extern const char *sluice_bin;
extern char dir[256], data_dir[400], cfg_path[300], sock_path[300],
    log_path[300];
extern pid_t daemon_pid; /* killed when a check fails */
/* From the last "ready" line; 0 for a listener that is off. */
extern int native_port, http_port, admin_port;
/* The wait status of a daemon that exited before it was ready. */
extern int daemon_status;
/* More to clean up when a check fails (brokers, mounts); must not CHECK. */
extern void (*fixture_on_fail)(void);

/* Monotonic milliseconds. */
uint64_t now_ms(void);
/* sluice_bin = bin; makes dir ($TMPDIR/sl_<tag>_XXXXXX) and the paths in it:
 * data/, sluice.yaml, native.sock, daemon.log. */
void fixture_init(const char *bin, const char *tag);
/* Removes dir (a warning when it cannot). */
void fixture_remove(void);

/* ---- scenarios ---------------------------------------------------------- */

typedef void (*fixture_scenario_fn)(void);
/* Adds a scenario to the program's table (SL_SCENARIO does it). */
void fixture_register(const char *name, fixture_scenario_fn fn);
/* Defines scenario `name`: `SL_SCENARIO(roundtrip) { ... }`. */
#define SL_SCENARIO(name)                                                      \
  static void scenario_##name(void);                                           \
  __attribute__((constructor)) static void scenario_reg_##name(void) {         \
    fixture_register(#name, scenario_##name);                                  \
  }                                                                            \
  static void scenario_##name(void)
/*
 * main() of a scenario program: `PROG SLUICE_BINARY [ARG...] SCENARIO`, as
 * many ARGs as args_usage names (e.g. "CERTS_SCRIPT"; NULL for none). Calls
 * fixture_init(argv[1], tag), then setup(argc, argv) when given (it may
 * return 77 to skip, or another non-zero status to stop), runs the scenario
 * named last, says how long it took and removes the directory. 2 for a
 * bad command line.
 */
int fixture_main(int argc, char **argv, const char *tag, const char *args_usage,
                 int (*setup)(int argc, char **argv));
/* The scenario's name (argv's last) while it runs. */
extern const char *fixture_scenario;

/* ---- config ------------------------------------------------------------- */

/* Writes cfg_path (mode 0644, through a rename) from a printf format. */
void write_config_fmt(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* The common test config: node test-node, loopback listeners on port 0
 * (native TCP and Unix socket, HTTP, admin), the streams given (YAML list
 * items; NULL: readings and inference), then extra. */
void write_config_streams(const char *streams, const char *extra);
/* write_config_streams(NULL, extra). */
void write_config(const char *extra);
/* Appends YAML to the config file. */
void append_config(const char *yaml);

/* ---- the daemon's lifetime ------------------------------------------------
 */

typedef struct daemon_opts {
  const char *arg;     /* one more argument after `run -c CFG` */
  const char *until;   /* also wait for a log line containing this */
  int append_log;      /* keep the log; wait for a "ready" line after those
                          already in it */
  int timeout_ms;      /* 0: 20 s */
  void (*child)(void); /* runs in the child before exec (its environment) */
} daemon_opts_t;

/* Starts `sluice run -c cfg_path` (o may be NULL); returns 0 once it logged
 * "ready" (and o->until) with the ports set, or 1000 + its exit status when
 * it exited first. Not ready in time: a failure. */
int daemon_try_start(const daemon_opts_t *o);
/* Waits (bounded) until the log holds n "ready" lines (a daemon that
 * executed itself again logs one per start) and reads the ports off the
 * n-th; the daemon exiting meanwhile is a failure. */
void await_ready(int n, int timeout_ms);
/* daemon_try_start(); exiting before ready is a failure. Returns the pid. */
pid_t daemon_start(const daemon_opts_t *o);
/* daemon_start(NULL) with the three ports required; the native port in
 * *port when port is not NULL. */
pid_t start_daemon(int *port);
/* Signals pid and waits (bounded: 30 s) for it; its wait status. A
 * sanitizer report in the log fails the test. */
int stop_daemon(pid_t pid, int sig);
/* SIGTERM to daemon_pid; a clean exit (status 0) is required. */
void stop_daemon_ok(void);
/* Waits (bounded) for pid (the daemon or another child) to exit without
 * signalling it; its wait status. */
int daemon_wait_exit(pid_t pid, int timeout_ms);
/* 1 when the daemon runs with ASan or TSan (RSS bounds do not apply). */
int daemon_sanitized(void);
/* The daemon's resident set in KiB, -1 when unknown. */
long rss_kb(void);

/* ---- its log --------------------------------------------------------------
 */

/* Lines of the daemon log (or of the file at path) containing needle. */
int log_count(const char *needle);
int file_count(const char *path, const char *needle);
int log_has(const char *needle);
/* Waits (bounded) for a log line containing needle; copies it to line
 * when line is not NULL. */
void await_log(const char *needle, char *line, size_t cap, int timeout_ms);
/* Waits (bounded) until n log lines contain needle; the daemon exiting
 * meanwhile is a failure. */
void await_log_count(const char *needle, int n, int timeout_ms);

/* ---- /metrics -------------------------------------------------------------
 */

/* The value of a series (name and labels as printed), -1 when absent or
 * when the admin port does not answer. */
double metric(const char *series);
/* The same, but the admin port must answer /metrics with 200. */
double metric_strict(const char *series);
/* Polls (bounded: 15 s) until "series value" is on /metrics. */
void await_metric(const char *series, int value);
/* Polls (bounded) until the series reads at least want. */
void await_metric_ge(const char *series, double want, int timeout_ms);
/* The same, polling every poll_ms (await_metric_ge: 20). */
void await_metric_ge_every(const char *series, double want, int timeout_ms,
                           int poll_ms);

/* ---- the store, read back -------------------------------------------------
 */

/* Opens the daemon's store (data_dir) read-only, which works while the
 * daemon runs, and a cursor over stream from its first offset: 0, or -1
 * with nothing left open when the stream does not exist. */
int store_cursor(const char *stream, sl_store_t **st, sl_store_cursor_t **cur);
/* Closes what store_cursor() opened. */
void store_cursor_close(sl_store_t *st, sl_store_cursor_t *cur);

/* ---- sockets, HTTP, frames (daemon_fixture_io.c) ---------------------------
 */

/* Connects to 127.0.0.1:port with a 20 s receive timeout. */
int tcp_connect(int port);
void write_all(int fd, const uint8_t *p, size_t n);
/* send() without SIGPIPE. */
void send_all(int fd, const void *p, size_t n);
/* Reads until EOF (*eof = 1) or timeout_ms; NUL-terminates buf. */
size_t read_until(int fd, char *buf, size_t cap, int timeout_ms, int *eof);
/* One HTTP/1.0 request on 127.0.0.1:port (ctype, extra headers and body
 * optional); the status code (-1 on none), the response body in buf. */
int http_req(int port, const char *method, const char *path, const char *ctype,
             const char *body, const char *extra, char *buf, size_t cap);
/* The same with the whole answer (head and body) left in buf. */
int http_req_raw(int port, const char *method, const char *path,
                 const char *ctype, const char *body, const char *extra,
                 char *buf, size_t cap);
/* One exchange of raw bytes on a fresh connection: the status, or -1
 * without an answer in timeout_ms; buf holds the whole answer. */
int http_raw(int port, const char *req, size_t len, char *buf, size_t cap,
             int timeout_ms);
int http_get(int port, const char *path, char *buf, size_t cap);
/* POST /v1/events to http_port. */
int http_post(const char *ctype, const char *extra, const char *body, char *buf,
              size_t cap);
/* Reads frames until one of kind want; 0, or -1 on EOF, timeout or an
 * Error frame. */
int await_frame(int fd, sl_frame_buf_t *in, sl_frame_arena_t *ar,
                Sluice__V1__Frame__KindCase want);
void hello(sl_frame_buf_t *b, const char *id, const char *token);
/* One Publish frame of one double reading on stream readings. */
void publish_one(sl_frame_buf_t *b, uint64_t batch, double v);

#endif /* SL_TEST_DAEMON_FIXTURE_H */
