#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/connectors/e2e.h"

char e2e_dir[256];
int e2e_native_port, e2e_http_port;
static const char *sluice_bin;
static char data_dir[300], cfg_path[300], log_path[300];
static pid_t daemon_pid, children[16];
static char child_logs[16][300];
static size_t nchildren;

uint64_t e2e_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void tail(const char *path) {
  char cmd[400];
  fprintf(stderr, "---- %s\n", path);
  snprintf(cmd, sizeof(cmd), "tail -n 25 %s >&2", path);
  if (system(cmd) < 0)
    perror("system");
}

void check_fail_cleanup(void) {
  if (daemon_pid > 0)
    kill(daemon_pid, SIGKILL);
  for (size_t i = 0; i < nchildren; i++)
    if (children[i] > 0)
      kill(children[i], SIGKILL);
  tail(log_path);
  for (size_t i = 0; i < nchildren; i++)
    if (child_logs[i][0])
      tail(child_logs[i]);
  exit(1);
}

void e2e_init(const char *bin, const char *name) {
  FILE *f;
  sluice_bin = bin;
  snprintf(e2e_dir, sizeof(e2e_dir), "/tmp/sl-%s.XXXXXX", name);
  CHECK(mkdtemp(e2e_dir), "mkdtemp: %s", strerror(errno));
  snprintf(data_dir, sizeof(data_dir), "%s/data", e2e_dir);
  snprintf(cfg_path, sizeof(cfg_path), "%s/sluice.yaml", e2e_dir);
  snprintf(log_path, sizeof(log_path), "%s/sluice.log", e2e_dir);
  CHECK((f = fopen(cfg_path, "w")), "open %s", cfg_path);
  fprintf(f,
          "node:\n"
          "  id: connector-test\n"
          "  data_dir: %s\n"
          "listeners:\n"
          "  native:\n"
          "    tcp: \"127.0.0.1:0\"\n"
          "  http:\n"
          "    address: \"127.0.0.1:0\"\n"
          "admin:\n"
          "  address: \"127.0.0.1:0\"\n"
          "streams:\n"
          "  - name: readings\n"
          "  - name: inference\n"
          "  - name: status\n",
          data_dir);
  fclose(f);
}

void e2e_daemon_start(void) {
  uint64_t deadline = e2e_now_ms() + 20000;
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(sluice_bin, sluice_bin, "run", "-c", cfg_path, (char *)NULL);
    _exit(127);
  }
  daemon_pid = pid;
  for (;;) {
    char line[1024];
    int st, found = 0;
    FILE *f = fopen(log_path, "r");
    /* The last ready line: the log is appended across restarts. */
    while (f && fgets(line, sizeof(line), f)) {
      const char *p = strstr(line, " ready: "), *hp;
      if (p && (p = strstr(p, "(port ")) &&
          sscanf(p, "(port %d)", &e2e_native_port) == 1 &&
          (hp = strstr(line, "http port ")) &&
          sscanf(hp, "http port %d", &e2e_http_port) == 1)
        found++;
    }
    if (f)
      fclose(f);
    if (found)
      return;
    CHECK(waitpid(pid, &st, WNOHANG) == 0, "daemon exited before ready");
    CHECK(e2e_now_ms() < deadline, "daemon not ready within 20 s");
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

int e2e_stop(pid_t pid, int sig) {
  int st;
  uint64_t deadline = e2e_now_ms() + 30000;
  kill(pid, sig);
  while (waitpid(pid, &st, WNOHANG) == 0) {
    CHECK(e2e_now_ms() < deadline, "pid %d did not exit within 30 s", pid);
    usleep(10000);
  }
  for (size_t i = 0; i < nchildren; i++)
    if (children[i] == pid)
      children[i] = 0;
  return st;
}

int e2e_wait(pid_t pid, int deadline_ms) {
  int st;
  uint64_t deadline = e2e_now_ms() + (uint64_t)deadline_ms;
  while (waitpid(pid, &st, WNOHANG) == 0) {
    CHECK(e2e_now_ms() < deadline, "pid %d still running after %d ms", pid,
          deadline_ms);
    usleep(10000);
  }
  for (size_t i = 0; i < nchildren; i++)
    if (children[i] == pid)
      children[i] = 0;
  return st;
}

void e2e_daemon_stop(void) {
  char line[512];
  FILE *f;
  int st = e2e_stop(daemon_pid, SIGTERM);
  daemon_pid = 0;
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "daemon exit status %d", st);
  f = fopen(log_path, "r");
  while (f && fgets(line, sizeof(line), f))
    CHECK(!strstr(line, "Sanitizer") && !strstr(line, "runtime error:"),
          "sanitizer report in the daemon log: %s", line);
  if (f)
    fclose(f);
}

pid_t e2e_spawn(char *const argv[], const char *log, int *out_fd) {
  int p[2] = {-1, -1};
  pid_t pid;
  CHECK(nchildren < 16, "too many children");
  CHECK(!out_fd || pipe(p) == 0, "pipe");
  snprintf(child_logs[nchildren], sizeof(child_logs[0]), "%s/%s", e2e_dir, log);
  CHECK((pid = fork()) >= 0, "fork");
  if (pid == 0) {
    int fd = open(child_logs[nchildren], O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out_fd ? p[1] : fd, 1);
    dup2(fd, 2);
    if (out_fd) {
      close(p[0]);
      close(p[1]);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  children[nchildren++] = pid;
  if (out_fd) {
    close(p[1]);
    *out_fd = p[0];
  }
  return pid;
}

void e2e_read_line(int fd, char *buf, size_t len, int deadline_ms) {
  size_t n = 0;
  uint64_t deadline = e2e_now_ms() + (uint64_t)deadline_ms;
  while (n + 1 < len) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int left = (int)(deadline - SL_MIN(deadline, e2e_now_ms()));
    CHECK(left > 0 && poll(&pfd, 1, left) == 1, "no line within %d ms",
          deadline_ms);
    CHECK(read(fd, buf + n, 1) == 1, "child closed its output");
    if (buf[n] == '\n')
      break;
    n++;
  }
  buf[n] = '\0';
}

void e2e_read(const char *stream, e2e_events_t *out) {
  sl_store_opts_t so;
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint32_t id;
  char err[256];
  size_t capb = 16, cape = 256;
  int rc;

  memset(out, 0, sizeof(*out));
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(data_dir, &so, &st, err, sizeof(err)) == 0,
        "open store read-only: %s", err);
  if (sl_store_stream_lookup(st, stream, &id)) {
    sl_store_env_close(st);
    return;
  }
  CHECK(sl_store_cursor_open(st, id, 0, SL_STORE_OFFSET_END, &cur) == 0,
        "cursor");
  out->b = malloc(capb * sizeof(*out->b));
  out->ev = malloc(cape * sizeof(*out->ev));
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    CHECK(rec.status == 0, "record status %d", rec.status);
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "batch at %llu does not decode",
          (unsigned long long)rec.first_offset);
    if (out->nb == capb)
      out->b = realloc(out->b, (capb *= 2) * sizeof(*out->b));
    out->b[out->nb++] = b;
    for (size_t i = 0; i < b->n_events; i++) {
      if (out->n == cape)
        out->ev = realloc(out->ev, (cape *= 2) * sizeof(*out->ev));
      out->ev[out->n++] = b->events[i];
    }
  }
  CHECK(rc == SL_ENOTFOUND, "cursor ended with %s", sl_strerror(rc));
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
}

void e2e_events_free(e2e_events_t *ev) {
  for (size_t i = 0; i < ev->nb; i++)
    sluice__v1__event_batch__free_unpacked(ev->b[i], NULL);
  free(ev->b);
  free(ev->ev);
  memset(ev, 0, sizeof(*ev));
}

const char *e2e_attr(const Sluice__V1__Event *e, const char *key) {
  for (size_t i = 0; i < e->n_attributes; i++)
    if (!strcmp(e->attributes[i]->key, key))
      return e->attributes[i]->value;
  return NULL;
}
