/*
 * The daemon fixture (daemon_fixture.h): the work directory, the config,
 * the daemon's lifetime, its log and /metrics, and the scenario table.
 * Sockets, HTTP and frames are in daemon_fixture_io.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loadtest/common/scrape.h"
#include "tests/common/daemon_fixture.h"

const char *sluice_bin;
char dir[256], data_dir[400], cfg_path[300], sock_path[300], log_path[300];
pid_t daemon_pid;
int native_port, http_port, admin_port;
int daemon_status;
void (*fixture_on_fail)(void);
const char *fixture_scenario;

void check_fail_cleanup(void) {
  char cmd[400];
  if (daemon_pid > 0)
    kill(daemon_pid, SIGKILL);
  snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", log_path);
  if (*log_path && system(cmd) < 0)
    perror("system");
  if (fixture_on_fail)
    fixture_on_fail();
}

uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void fixture_init(const char *bin, const char *tag) {
  sluice_bin = bin;
  snprintf(dir, sizeof(dir), "%s/sl_%s_XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", tag);
  CHECK(mkdtemp(dir), "mkdtemp");
  snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
  snprintf(cfg_path, sizeof(cfg_path), "%s/sluice.yaml", dir);
  snprintf(sock_path, sizeof(sock_path), "%s/native.sock", dir);
  snprintf(log_path, sizeof(log_path), "%s/daemon.log", dir);
}

void fixture_remove(void) {
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* ---- scenarios ---------------------------------------------------------- */

#define MAX_SCENARIOS 32
static struct {
  const char *name;
  fixture_scenario_fn fn;
} scenarios[MAX_SCENARIOS];
static int n_scenarios;

void fixture_register(const char *name, fixture_scenario_fn fn) {
  if (n_scenarios == MAX_SCENARIOS) {
    fprintf(stderr, "more than %d scenarios in one program\n", MAX_SCENARIOS);
    abort();
  }
  scenarios[n_scenarios].name = name;
  scenarios[n_scenarios++].fn = fn;
}

int fixture_main(int argc, char **argv, const char *tag, const char *args_usage,
                 int (*setup)(int argc, char **argv)) {
  int want = 3, rc;
  for (const char *p = args_usage; p && *p; p++)
    if (p == args_usage || (p[-1] == ' ' && *p != ' '))
      want++;
  fixture_scenario_fn fn = NULL;
  if (argc == want)
    for (int i = 0; i < n_scenarios; i++)
      if (!strcmp(argv[argc - 1], scenarios[i].name))
        fn = scenarios[i].fn;
  if (!fn) {
    fprintf(stderr, "usage: %s SLUICE_BINARY %s%s", argv[0],
            args_usage ? args_usage : "", args_usage ? " " : "");
    for (int i = 0; i < n_scenarios; i++)
      fprintf(stderr, "%s%s", i ? "|" : "", scenarios[i].name);
    fputc('\n', stderr);
    return 2;
  }
  fixture_scenario = argv[argc - 1];
  fixture_init(argv[1], tag);
  signal(SIGPIPE, SIG_IGN);
  if (setup && (rc = setup(argc, argv)) != 0) {
    fixture_remove();
    return rc;
  }
  uint64_t t0 = now_ms();
  fn();
  printf("%s: ok in %.1f s\n", fixture_scenario,
         (double)(now_ms() - t0) / 1000);
  fixture_remove();
  return 0;
}

/* ---- config ------------------------------------------------------------- */

void write_config_fmt(const char *fmt, ...) {
  char tmp[320];
  va_list ap;
  snprintf(tmp, sizeof(tmp), "%s.tmp", cfg_path);
  FILE *f = fopen(tmp, "w");
  CHECK(f, "open %s", tmp);
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  CHECK(fclose(f) == 0, "write %s", tmp);
  CHECK(chmod(tmp, 0644) == 0, "chmod");
  CHECK(rename(tmp, cfg_path) == 0, "rename");
}

void write_config_streams(const char *streams, const char *extra) {
  write_config_fmt("node:\n"
                   "  id: test-node\n"
                   "  data_dir: %s\n"
                   "listeners:\n"
                   "  native:\n"
                   "    tcp: \"127.0.0.1:0\"\n"
                   "    unix: %s\n"
                   "  http:\n"
                   "    address: \"127.0.0.1:0\"\n"
                   "admin:\n"
                   "  address: \"127.0.0.1:0\"\n"
                   "streams:\n"
                   "%s%s",
                   data_dir, sock_path,
                   streams ? streams
                           : "  - name: readings\n  - name: inference\n",
                   extra ? extra : "");
}

void write_config(const char *extra) {
  write_config_streams(NULL, extra);
}

void append_config(const char *yaml) {
  FILE *f = fopen(cfg_path, "a");
  CHECK(f, "open %s", cfg_path);
  fputs(yaml, f);
  fclose(f);
}

/* ---- the daemon's lifetime ------------------------------------------------
 */

/* Reads the ports off a "ready" line: each listener reads "NAME ... (port
 * N)" or "NAME off"; an off listener's port is 0. */
static void read_ports(const char *p) {
  const char *q;
  native_port = http_port = admin_port = 0;
  if ((q = strstr(p, "native tcp ")) && strncmp(q + 11, "off", 3))
    CHECK((q = strstr(q, "(port ")) &&
              sscanf(q, "(port %d)", &native_port) == 1,
          "native port: %s", p);
  if ((q = strstr(p, " http ")) && strncmp(q + 6, "off", 3))
    CHECK(sscanf(q, " http port %d", &http_port) == 1, "http port: %s", p);
  if ((q = strstr(p, " admin ")) && strncmp(q + 7, "off", 3))
    CHECK((q = strstr(q, "(port ")) && sscanf(q, "(port %d)", &admin_port) == 1,
          "admin port: %s", p);
}

int daemon_try_start(const daemon_opts_t *o) {
  static const daemon_opts_t none;
  if (!o)
    o = &none;
  int timeout = o->timeout_ms ? o->timeout_ms : 20000;
  uint64_t deadline = now_ms() + (uint64_t)timeout;
  int ready0 = 0, until0 = 0;
  if (o->append_log) {
    ready0 = log_count(" ready: ");
    until0 = o->until ? log_count(o->until) : 0;
  } else {
    unlink(log_path);
  }
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int fd =
        open(log_path,
             O_WRONLY | O_CREAT | (o->append_log ? O_APPEND : O_TRUNC), 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (o->child)
      o->child();
    execl(sluice_bin, sluice_bin, "run", "-c", cfg_path, o->arg, (char *)NULL);
    _exit(127);
  }
  daemon_pid = pid;
  for (;;) {
    char line[4096];
    int st, ready = 0, until = 0;
    FILE *f = fopen(log_path, "r");
    while (f && fgets(line, sizeof(line), f)) {
      const char *a = strstr(line, " ready: ");
      if (o->until && strstr(line, o->until))
        until++;
      if (a && ++ready == ready0 + 1)
        read_ports(a);
    }
    if (f)
      fclose(f);
    if (ready > ready0 && (!o->until || until > until0))
      return 0;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      daemon_pid = 0;
      daemon_status = st;
      return 1000 + (WIFEXITED(st) ? WEXITSTATUS(st) : 128);
    }
    CHECK(now_ms() < deadline, "daemon not ready (%s) within %d ms",
          o->until ? o->until : "ready", timeout);
    usleep(10000); /* polling the log for a condition, with a deadline */
  }
}

void await_ready(int n, int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    char line[4096];
    int ready = 0, st;
    FILE *f = fopen(log_path, "r");
    while (f && fgets(line, sizeof(line), f)) {
      const char *a = strstr(line, " ready: ");
      if (a && ++ready == n)
        read_ports(a);
    }
    if (f)
      fclose(f);
    if (ready >= n)
      return;
    CHECK(!daemon_pid || waitpid(daemon_pid, &st, WNOHANG) != daemon_pid,
          "daemon exited before its start %d was ready", n);
    CHECK(now_ms() < deadline, "start %d not ready within %d ms", n,
          timeout_ms);
    usleep(10000); /* polling the log for a condition, with a deadline */
  }
}

pid_t daemon_start(const daemon_opts_t *o) {
  int rc = daemon_try_start(o);
  CHECK(rc == 0, "daemon exited before ready (status %d)", rc - 1000);
  return daemon_pid;
}

pid_t start_daemon(int *port) {
  pid_t pid = daemon_start(NULL);
  CHECK(native_port > 0, "native port");
  CHECK(http_port > 0, "http port");
  CHECK(admin_port > 0, "admin port");
  if (port)
    *port = native_port;
  return pid;
}

int daemon_wait_exit(pid_t pid, int timeout_ms) {
  int st;
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  while (waitpid(pid, &st, WNOHANG) == 0) {
    CHECK(now_ms() < deadline, "pid %d still running after %d ms", (int)pid,
          timeout_ms);
    usleep(5000);
  }
  if (pid == daemon_pid)
    daemon_pid = 0;
  return st;
}

int stop_daemon(pid_t pid, int sig) {
  kill(pid, sig);
  int st = daemon_wait_exit(pid, 30000);
  /* In sanitizer builds the daemon reports to its log: a report is a
   * failure even when the exit status looks fine. */
  CHECK(!log_count("Sanitizer") && !log_count("runtime error:"),
        "sanitizer report in the daemon log");
  return st;
}

void stop_daemon_ok(void) {
  int st = stop_daemon(daemon_pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
}

int daemon_sanitized(void) {
  char path[64], line[512];
  int yes = getenv("ASAN_OPTIONS") || getenv("TSAN_OPTIONS");
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)daemon_pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, "libasan") || strstr(line, "libtsan"))
      yes = 1;
  if (f)
    fclose(f);
  return yes;
}

long rss_kb(void) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

/* ---- its log --------------------------------------------------------------
 */

int file_count(const char *path, const char *needle) {
  char line[8192];
  int n = 0;
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f))
    n += strstr(line, needle) != NULL;
  if (f)
    fclose(f);
  return n;
}

int log_count(const char *needle) {
  return file_count(log_path, needle);
}

int log_has(const char *needle) {
  return log_count(needle) > 0;
}

void await_log(const char *needle, char *line, size_t cap, int timeout_ms) {
  char buf[8192];
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    FILE *f = fopen(log_path, "r");
    while (f && fgets(buf, sizeof(buf), f))
      if (strstr(buf, needle)) {
        fclose(f);
        if (line)
          snprintf(line, cap, "%s", buf);
        return;
      }
    if (f)
      fclose(f);
    CHECK(now_ms() < deadline, "no log line with \"%s\" within %d ms", needle,
          timeout_ms);
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

void await_log_count(const char *needle, int n, int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  while (log_count(needle) < n) {
    CHECK(now_ms() < deadline, "log line '%s' seen %d times, want %d", needle,
          log_count(needle), n);
    CHECK(daemon_pid <= 0 || waitpid(daemon_pid, NULL, WNOHANG) == 0,
          "daemon exited");
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

/* ---- /metrics -------------------------------------------------------------
 */

double metric(const char *series) {
  double v;
  return sl_scrape_metric(admin_port, series, &v) == 0 ? v : -1;
}

double metric_strict(const char *series) {
  static char buf[1 << 20];
  char want[300];
  CHECK(http_get(admin_port, "/metrics", buf, sizeof(buf)) == 200, "metrics");
  snprintf(want, sizeof(want), "\n%s ", series);
  const char *p = strstr(buf, want);
  return p ? atof(p + strlen(want)) : -1;
}

void await_metric(const char *series, int value) {
  static char buf[1 << 17];
  char want[256];
  uint64_t deadline = now_ms() + 15000;
  snprintf(want, sizeof(want), "%s %d\n", series, value);
  for (;;) {
    if (http_req(admin_port, "GET", "/metrics", NULL, NULL, NULL, buf,
                 sizeof(buf)) == 200 &&
        strstr(buf, want))
      return;
    CHECK(now_ms() < deadline, "metric never reached '%s'", want);
    usleep(20000);
  }
}

void await_metric_ge_every(const char *series, double want, int timeout_ms,
                           int poll_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  double v;
  while ((v = metric(series)) < want) {
    CHECK(now_ms() < deadline, "%s = %g, waited for %g", series, v, want);
    usleep((useconds_t)poll_ms * 1000);
  }
}

void await_metric_ge(const char *series, double want, int timeout_ms) {
  await_metric_ge_every(series, want, timeout_ms, 20);
}

/* ---- the store, read back -------------------------------------------------
 */

int store_cursor(const char *stream, sl_store_t **st, sl_store_cursor_t **cur) {
  sl_store_opts_t so;
  uint32_t id;
  char err[256];
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(data_dir, &so, st, err, sizeof(err)) == 0,
        "open store read-only: %s", err);
  if (sl_store_stream_lookup(*st, stream, &id) != 0) {
    sl_store_env_close(*st);
    return -1;
  }
  CHECK(sl_store_cursor_open(*st, id, 0, SL_STORE_OFFSET_END, cur) == 0,
        "cursor on %s", stream);
  return 0;
}

void store_cursor_close(sl_store_t *st, sl_store_cursor_t *cur) {
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
}
