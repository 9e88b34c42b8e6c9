/*
 * sd_notify(3) by hand: one AF_UNIX datagram of newline-separated
 * "KEY=value" assignments to the socket named by NOTIFY_SOCKET ("/path",
 * or "@name" for the abstract namespace), as systemd documents the
 * protocol. Why not libsystemd: the protocol is one sendto(), and
 * libsystemd would add a shared library (and its own dependencies) to the
 * container image and to every non-systemd target (MicroShift pods, which
 * never set NOTIFY_SOCKET) for that one call; the watchdog decision is
 * ours anyway.
 *
 * The watchdog: a timer on the loop thread sends WATCHDOG=1 every
 * WATCHDOG_USEC / 2 while the daemon is healthy. A loop that hangs sends
 * nothing (the timer is on it); a store that is poisoned, or whose writer
 * has had work queued and committed nothing since the previous period,
 * sends nothing either, so systemd restarts a daemon that cannot store.
 * (A commit longer than the period, e.g. one slow fsync, skips a ping;
 * systemd acts only after WATCHDOG_USEC without one.)
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/notify.h"
#include "telemetry/log.h"

struct sl_notify {
  int fd;
  struct sockaddr_un addr;
  socklen_t addrlen;
  uv_timer_t wd;       /* WATCHDOG=1 */
  int wd_on;           /* the timer was started */
  uint64_t wd_commits; /* writer's commits + errors at the last period */
  int wd_missed;       /* periods skipped in a row (logged once per episode) */
};

static int notify_open(struct sl_notify *n, const char *path) {
  size_t len = strlen(path);
  memset(&n->addr, 0, sizeof(n->addr));
  n->addr.sun_family = AF_UNIX;
  if (len == 0 || len >= sizeof(n->addr.sun_path) ||
      (path[0] != '/' && path[0] != '@'))
    return -EINVAL;
  memcpy(n->addr.sun_path, path, len);
  if (path[0] == '@')
    n->addr.sun_path[0] = 0; /* abstract: no terminating NUL counted */
  n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                           (path[0] == '/'));
  if ((n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
    return -errno;
  return 0;
}

void sl_notify_send(sl_daemon_t *dm, const char *msg) {
  struct sl_notify *n = dm->ntf;
  if (!n || n->fd < 0)
    return;
  if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL,
             (const struct sockaddr *)&n->addr, n->addrlen) < 0)
    sl_debug(SL_LOG_CTX_ADMIN, NULL, "sd_notify: %s", strerror(errno));
}

/* Healthy: the store is not poisoned and its writer made progress since
 * the last period when it had work. */
static int healthy(sl_daemon_t *dm, const char **why) {
  struct sl_notify *n = dm->ntf;
  sl_store_info_t info;
  uint64_t done;
  sl_store_env_info(dm->in.st, &info);
  done = info.commits + info.commit_errors;
  if (info.poisoned) {
    *why = "store poisoned";
    return 0;
  }
  if (info.queued + info.committing > 0 && done == n->wd_commits) {
    *why = "store writer made no progress";
    return 0;
  }
  n->wd_commits = done;
  return 1;
}

static void on_watchdog(uv_timer_t *t) {
  sl_daemon_t *dm = t->data;
  struct sl_notify *n = dm->ntf;
  const char *why = NULL;
  char msg[160];
  if (healthy(dm, &why)) {
    if (n->wd_missed)
      sl_info(SL_LOG_CTX_ADMIN, NULL, "watchdog: healthy again");
    n->wd_missed = 0;
    sl_notify_send(dm, "WATCHDOG=1");
    return;
  }
  if (!n->wd_missed++) {
    sl_warn(SL_LOG_CTX_ADMIN, NULL, "watchdog: not pinging: %s", why);
    snprintf(msg, sizeof(msg), "STATUS=unhealthy: %s", why);
    sl_notify_send(dm, msg);
  }
}

void sl_notify_start(sl_daemon_t *dm) {
  const char *path = getenv("NOTIFY_SOCKET");
  const char *usec = getenv("WATCHDOG_USEC");
  const char *pid = getenv("WATCHDOG_PID");
  struct sl_notify *n;
  unsigned long long wd = 0;
  int rc;

  if (!path || !*path)
    return;
  if (!(n = calloc(1, sizeof(*n))))
    return;
  n->fd = -1;
  if ((rc = notify_open(n, path)) < 0) {
    sl_warn(SL_LOG_CTX_ADMIN, NULL, "NOTIFY_SOCKET %s unusable: %s", path,
            strerror(-rc));
    free(n);
    return;
  }
  dm->ntf = n;
  if (usec && (!pid || strtol(pid, NULL, 10) == (long)getpid()))
    wd = strtoull(usec, NULL, 10);
  if (wd >= 2000) { /* at least 1 ms per ping */
    uv_timer_init(&dm->loop, &n->wd);
    n->wd.data = dm;
    uv_timer_start(&n->wd, on_watchdog, wd / 2000, wd / 2000);
    n->wd_on = 1;
    sl_info(SL_LOG_CTX_ADMIN, NULL, "systemd watchdog: every %llu ms",
            wd / 2000);
  }
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

void sl_notify_ready(sl_daemon_t *dm, const char *status) {
  char msg[400];
  snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
  sl_notify_send(dm, msg);
}

void sl_notify_reloading(sl_daemon_t *dm) {
  struct timespec ts;
  char msg[128];
  if (!dm->ntf)
    return;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  snprintf(msg, sizeof(msg),
           "RELOADING=1\nSTATUS=reloading the config\nMONOTONIC_USEC=%llu",
           (unsigned long long)ts.tv_sec * 1000000ull +
               (unsigned long long)ts.tv_nsec / 1000ull);
  sl_notify_send(dm, msg);
}

void sl_notify_stopping(sl_daemon_t *dm, const char *why) {
  char msg[200];
  struct sl_notify *n = dm->ntf;
  if (!n)
    return;
  if (n->wd_on)
    uv_timer_stop(&n->wd);
  snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=stopping (%s)", why);
  sl_notify_send(dm, msg);
}

void sl_notify_close(sl_daemon_t *dm) {
  struct sl_notify *n = dm->ntf;
  if (n && n->wd_on) {
    uv_close((uv_handle_t *)&n->wd, NULL);
    n->wd_on = 0;
  }
}

void sl_notify_free(sl_daemon_t *dm) {
  struct sl_notify *n = dm->ntf;
  if (!n)
    return;
  if (n->fd >= 0)
    close(n->fd);
  free(n);
  dm->ntf = NULL;
}
