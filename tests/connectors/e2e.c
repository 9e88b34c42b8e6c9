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

static pid_t children[16];
static char child_logs[16][300];
static size_t nchildren;

static void tail(const char *path) {
  char cmd[400];
  fprintf(stderr, "---- %s\n", path);
  snprintf(cmd, sizeof(cmd), "tail -n 25 %s >&2", path);
  if (system(cmd) < 0)
    perror("system");
}

/* fixture_on_fail: the children go, their logs are shown. */
static void kill_children(void) {
  for (size_t i = 0; i < nchildren; i++)
    if (children[i] > 0)
      kill(children[i], SIGKILL);
  for (size_t i = 0; i < nchildren; i++)
    if (child_logs[i][0])
      tail(child_logs[i]);
}

void e2e_config(void) {
  fixture_on_fail = kill_children;
  write_config_fmt("node:\n"
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
}

static void forget(pid_t pid) {
  for (size_t i = 0; i < nchildren; i++)
    if (children[i] == pid)
      children[i] = 0;
}

int e2e_stop(pid_t pid, int sig) {
  kill(pid, sig);
  int st = daemon_wait_exit(pid, 30000);
  forget(pid);
  return st;
}

int e2e_wait(pid_t pid, int deadline_ms) {
  int st = daemon_wait_exit(pid, deadline_ms);
  forget(pid);
  return st;
}

pid_t e2e_spawn(char *const argv[], const char *log, int *out_fd) {
  int p[2] = {-1, -1};
  pid_t pid;
  CHECK(nchildren < 16, "too many children");
  CHECK(!out_fd || pipe(p) == 0, "pipe");
  snprintf(child_logs[nchildren], sizeof(child_logs[0]), "%s/%s", dir, log);
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

pid_t e2e_spawn_io(char *const argv[], const char *log, int *in_fd,
                   int *out_fd) {
  int in[2], out[2];
  pid_t pid;
  CHECK(nchildren < 16, "too many children");
  CHECK(pipe(in) == 0 && pipe(out) == 0, "pipe");
  snprintf(child_logs[nchildren], sizeof(child_logs[0]), "%s/%s", dir, log);
  CHECK((pid = fork()) >= 0, "fork");
  if (pid == 0) {
    int fd = open(child_logs[nchildren], O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(fd, 2);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  children[nchildren++] = pid;
  close(in[0]);
  close(out[1]);
  *in_fd = in[1];
  *out_fd = out[0];
  return pid;
}

void e2e_read_line(int fd, char *buf, size_t len, int deadline_ms) {
  size_t n = 0;
  uint64_t deadline = now_ms() + (uint64_t)deadline_ms;
  while (n + 1 < len) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int left = (int)(deadline - SL_MIN(deadline, now_ms()));
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
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  size_t capb = 16, cape = 256;
  int rc;

  memset(out, 0, sizeof(*out));
  if (store_cursor(stream, &st, &cur) < 0)
    return;
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
  store_cursor_close(st, cur);
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
