#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ingest/http/http_guard.h"
#include "common/common.h"

/* The watchdog's period: deadlines are enforced to within this. */
#define WATCH_MS 100

typedef struct hconn hconn_t;

struct hconn {
  hconn_t *prev, *next; /* hg->head is the oldest */
  sl_hguard_t *hg;
  int fd;
  uint64_t start_ns; /* accept, or the end of the previous answer */
  int complete;      /* the current request is entirely received */
  int shut;          /* shut down by the guard */
  int counted;       /* holds one of the node's connections */
  int too_many_args;
};

struct sl_hguard {
  sl_hguard_opts_t o;
  pthread_mutex_t lock; /* the list and every hconn's fields */
  pthread_cond_t cond;
  hconn_t *head, *tail;
  unsigned n;
  int stop;
  pthread_t watchdog;
};

static void shut(hconn_t *hc, sl_metric_t *m) {
  if (hc->shut || hc->fd < 0)
    return;
  hc->shut = 1;
  /* libmicrohttpd sees EOF/an error and closes the connection on its own
   * thread; the fd is still open (it closes only after NOTIFY_CLOSED,
   * which needs our lock). */
  shutdown(hc->fd, SHUT_RDWR);
  sl_metric_add(m, 1);
}

static void *watchdog_main(void *arg) {
  sl_hguard_t *hg = arg;
  uint64_t limit = hg->o.request_timeout_ms * 1000000ull;
  pthread_mutex_lock(&hg->lock);
  while (!hg->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WATCH_MS * 1000000l;
    if (ts.tv_nsec >= 1000000000l) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000l;
    }
    pthread_cond_timedwait(&hg->cond, &hg->lock, &ts);
    if (!limit)
      continue;
    uint64_t now = sl_now_mono_ns();
    for (hconn_t *hc = hg->head; hc; hc = hc->next)
      if (!hc->complete && now - hc->start_ns > limit)
        shut(hc, hg->o.timeouts);
  }
  pthread_mutex_unlock(&hg->lock);
  return NULL;
}

int sl_hguard_new(const sl_hguard_opts_t *o, sl_hguard_t **out) {
  sl_hguard_t *hg = calloc(1, sizeof(*hg));
  int rc;
  if (!hg)
    return -ENOMEM;
  hg->o = *o;
  pthread_mutex_init(&hg->lock, NULL);
  pthread_cond_init(&hg->cond, NULL);
  if ((rc = pthread_create(&hg->watchdog, NULL, watchdog_main, hg)) != 0) {
    pthread_cond_destroy(&hg->cond);
    pthread_mutex_destroy(&hg->lock);
    free(hg);
    return -rc;
  }
  *out = hg;
  return 0;
}

void sl_hguard_free(sl_hguard_t *hg) {
  if (!hg)
    return;
  pthread_mutex_lock(&hg->lock);
  hg->stop = 1;
  pthread_cond_signal(&hg->cond);
  pthread_mutex_unlock(&hg->lock);
  pthread_join(hg->watchdog, NULL);
  /* MHD_stop_daemon closed every connection (NOTIFY_CLOSED unlinked it). */
  pthread_cond_destroy(&hg->cond);
  pthread_mutex_destroy(&hg->lock);
  free(hg);
}

static void on_started(sl_hguard_t *hg, struct MHD_Connection *conn,
                       void **socket_context) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  hconn_t *hc = calloc(1, sizeof(*hc));
  *socket_context = hc;
  if (!hc)
    return; /* unguarded; the handler refuses it (see verdict) */
  hc->hg = hg;
  hc->fd = ci ? ci->connect_fd : -1;
  hc->start_ns = sl_now_mono_ns();
  if (hg->o.node && sl_guard_conn_take(hg->o.node, hg->o.path) == 0)
    hc->counted = 1;
  pthread_mutex_lock(&hg->lock);
  if (hg->o.soft_limit && hg->n >= hg->o.soft_limit) {
    /* Make room: the oldest connection still sending its request goes. A
     * probe sends its request at once, so it is never the oldest. */
    for (hconn_t *old = hg->head; old; old = old->next)
      if (!old->complete && !old->shut) {
        shut(old, hg->o.evictions);
        break;
      }
  }
  hc->prev = hg->tail;
  if (hg->tail)
    hg->tail->next = hc;
  else
    hg->head = hc;
  hg->tail = hc;
  hg->n++;
  pthread_mutex_unlock(&hg->lock);
}

static void on_closed(sl_hguard_t *hg, hconn_t *hc) {
  pthread_mutex_lock(&hg->lock);
  if (hc->prev)
    hc->prev->next = hc->next;
  else
    hg->head = hc->next;
  if (hc->next)
    hc->next->prev = hc->prev;
  else
    hg->tail = hc->prev;
  hg->n--;
  pthread_mutex_unlock(&hg->lock);
  if (hc->counted)
    sl_guard_conn_give(hg->o.node);
  free(hc);
}

void sl_hguard_notify(void *cls, struct MHD_Connection *conn,
                      void **socket_context,
                      enum MHD_ConnectionNotificationCode toe) {
  sl_hguard_t *hg = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED)
    on_started(hg, conn, socket_context);
  else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
    on_closed(hg, *socket_context);
    *socket_context = NULL;
  }
}

static hconn_t *get(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

void *sl_hguard_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  sl_hguard_t *hg = cls;
  hconn_t *hc = get(conn);
  char *q = strchr(uri, '?');
  unsigned nargs = 0;
  if (!q)
    return NULL;
  for (const char *p = q; p; p = strchr(p + 1, '&'))
    nargs++;
  if (nargs > hg->o.max_args && hc) {
    /* libmicrohttpd splits the query right after this callback, in place,
     * into records in its connection pool; with too many it runs out of
     * pool and the connection hangs without an answer. Ending the query
     * here (the URI is its own writable read buffer) leaves it nothing to
     * split; the handler answers 414 from the flag. */
    q[1] = '\0';
    hc->too_many_args = 1;
  }
  return NULL; /* the handler's *req_cls stays NULL on its first call */
}

sl_hguard_verdict_t sl_hguard_verdict(struct MHD_Connection *conn) {
  hconn_t *hc = get(conn);
  if (!hc)
    return SL_HGUARD_TOO_MANY_CONNS; /* could not even track it */
  if (hc->hg->o.node && !hc->counted)
    return SL_HGUARD_TOO_MANY_CONNS;
  if (hc->too_many_args) {
    hc->too_many_args = 0; /* per request */
    return SL_HGUARD_TOO_MANY_ARGS;
  }
  return SL_HGUARD_OK;
}

void sl_hguard_request_done(struct MHD_Connection *conn) {
  hconn_t *hc = get(conn);
  if (!hc)
    return;
  pthread_mutex_lock(&hc->hg->lock);
  hc->complete = 1;
  pthread_mutex_unlock(&hc->hg->lock);
}

void sl_hguard_response_done(struct MHD_Connection *conn) {
  hconn_t *hc = conn ? get(conn) : NULL;
  if (!hc)
    return;
  pthread_mutex_lock(&hc->hg->lock);
  hc->complete = 0;
  hc->start_ns = sl_now_mono_ns();
  pthread_mutex_unlock(&hc->hg->lock);
}
