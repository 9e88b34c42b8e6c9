/*
 * libsluice, caller side: options, address parsing, batching, backpressure
 * and flush. The I/O thread lives in client_io.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/client_int.h"

void sl_client_opts_init(sl_client_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->client_id = "libsluice";
  opts->token = "";
  opts->max_batch_events = 1000;
  opts->max_batch_bytes = 256u << 10;
  opts->linger_ms = 5;
  opts->max_in_flight = 8;
  opts->max_buffered_events = 100000;
  opts->publish_timeout_ms = 0;
  opts->reconnect_backoff_min_ms = 100;
  opts->reconnect_backoff_max_ms = 10000;
  opts->connect_timeout_ms = 5000;
  opts->max_frame_bytes = 1u << 20;
}

/* ---- batches ---------------------------------------------------------- */

void client__list_push(batch_list_t *l, batch_t *b) {
  b->next = NULL;
  if (l->tail)
    l->tail->next = b;
  else
    l->head = b;
  l->tail = b;
  l->n++;
}

batch_t *client__list_pop(batch_list_t *l) {
  batch_t *b = l->head;

  if (!b)
    return NULL;
  l->head = b->next;
  if (!l->head)
    l->tail = NULL;
  l->n--;
  b->next = NULL;
  return b;
}

void client__batch_free(batch_t *b) {
  if (!b)
    return;
  sl_frame_buf_close(&b->buf);
  free(b->stream);
  free(b);
}

/* Returns a new empty batch with room for need event bytes, or NULL. */
static batch_t *batch_new(uint64_t id, const char *stream, size_t need) {
  batch_t *b = calloc(1, sizeof(*b));

  if (!b)
    return NULL;
  b->id = id;
  b->stream = strdup(stream);
  b->room = SL_FRAME_PUBLISH_HEADER_MAX(strlen(stream));
  sl_frame_buf_init(&b->buf);
  if (!b->stream || sl_frame_buf_reserve(&b->buf, b->room + need) != 0)
    goto fail;
  b->buf.len = b->room;
  b->opened_ns = sl_now_mono_ns();
  return b;
fail:
  client__batch_free(b);
  return NULL;
}

/*
 * Seals the open batch (if any): writes its Publish header into the room in
 * front of the events and queues it for the I/O thread. Cannot fail: the
 * event bytes were bounded by sl_client_publish().
 */
void client__seal_locked(sl_client_t *cl) {
  batch_t *b = cl->open;
  size_t hdr = 0;
  int rc;

  if (!b)
    return;
  cl->open = NULL;
  rc = sl_frame_publish_header(b->buf.data, b->room, b->id, b->stream,
                               b->buf.len - b->room, SL_FRAME_DEFAULT_MAX_BYTES,
                               &hdr);
  /* Our invariant: publish admitted only events that fit a frame. */
  if (rc != 0)
    abort();
  b->frame_off = b->room - hdr;
  b->frame_len = b->buf.len - b->frame_off;
  client__list_push(&cl->sealed, b);
  cl->st.batches++;
}

void client__wake(sl_client_t *cl) {
  static const char one = 1;
  ssize_t n;

  /* A full pipe already holds a wakeup: EAGAIN is fine. */
  do
    n = write(cl->wake_wr, &one, 1);
  while (n < 0 && errno == EINTR);
}

/* ---- options and lifetime --------------------------------------------- */

static int parse_address(const char *a, client_addr_t *addr) {
  const char *colon;

  memset(addr, 0, sizeof(*addr));
  if (!a || !a[0])
    return SL_ECONFIG;
  if (strncmp(a, "unix:", 5) == 0) {
    struct sockaddr_un sun;
    size_t n = strlen(a + 5);
    if (n == 0 || n >= sizeof(sun.sun_path))
      return SL_ECONFIG;
    addr->is_unix = true;
    addr->path = strdup(a + 5);
    return addr->path ? 0 : -ENOMEM;
  }
  colon = strrchr(a, ':');
  if (!colon || colon == a || colon[1] == '\0')
    return SL_ECONFIG;
  if (a[0] == '[') {
    if (colon[-1] != ']' || colon - a < 3)
      return SL_ECONFIG;
    addr->host = strndup(a + 1, (size_t)(colon - a - 2));
  } else {
    addr->host = strndup(a, (size_t)(colon - a));
  }
  addr->port = strdup(colon + 1);
  if (!addr->host || !addr->port)
    return -ENOMEM;
  for (const char *p = addr->port; *p; p++)
    if (*p < '0' || *p > '9')
      return SL_ECONFIG;
  if (atoi(addr->port) < 1 || atoi(addr->port) > 65535)
    return SL_ECONFIG;
  return 0;
}

static int check_opts(const sl_client_opts_t *o) {
  if (o->max_batch_events < 1 || o->max_batch_bytes < 1 ||
      o->max_batch_bytes > SL_FRAME_DEFAULT_MAX_BYTES / 2 ||
      o->max_in_flight < 1 || o->max_buffered_events < 1 ||
      o->reconnect_backoff_min_ms < 1 ||
      o->reconnect_backoff_max_ms < o->reconnect_backoff_min_ms ||
      o->connect_timeout_ms < 1 || o->max_frame_bytes < 1024 ||
      o->publish_timeout_ms < -1)
    return SL_ECONFIG;
  return 0;
}

void client__destroy(sl_client_t *cl) {
  batch_t *b;

  client__batch_free(cl->open);
  while ((b = client__list_pop(&cl->sealed)) != NULL)
    client__batch_free(b);
  while ((b = client__list_pop(&cl->inflight)) != NULL)
    client__batch_free(b);
  if (cl->wake_rd >= 0)
    close(cl->wake_rd);
  if (cl->wake_wr >= 0)
    close(cl->wake_wr);
  pthread_cond_destroy(&cl->cond);
  pthread_mutex_destroy(&cl->mu);
  free(cl->addr.host);
  free(cl->addr.port);
  free(cl->addr.path);
  free(cl->client_id);
  free(cl->token);
  free(cl->tls_name);
  client__tls_ctx_free(cl->tls_ctx);
  free(cl);
}

int sl_client_new(const sl_client_opts_t *opts, sl_client_t **out) {
  sl_client_t *cl;
  pthread_condattr_t ca;
  int fds[2];
  int rc;

  *out = NULL;
  rc = check_opts(opts);
  if (rc)
    return rc;
  cl = calloc(1, sizeof(*cl));
  if (!cl)
    return -ENOMEM;
  cl->wake_rd = cl->wake_wr = -1;
  cl->opts = *opts;
  cl->next_id = 1;
  pthread_mutex_init(&cl->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&cl->cond, &ca);
  pthread_condattr_destroy(&ca);
  rc = parse_address(opts->address, &cl->addr);
  if (rc)
    goto fail;
  cl->client_id = strdup(opts->client_id ? opts->client_id : "libsluice");
  cl->token = strdup(opts->token ? opts->token : "");
  if (!cl->client_id || !cl->token) {
    rc = -ENOMEM;
    goto fail;
  }
  cl->opts.address = NULL; /* the copies above are the only strings kept */
  cl->opts.client_id = cl->client_id;
  cl->opts.token = cl->token;
  if (opts->tls_ca_file && *opts->tls_ca_file && !cl->addr.is_unix) {
    if ((rc = client__tls_ctx_new(opts, &cl->tls_ctx)) != 0)
      goto fail;
    cl->tls_name = strdup(opts->tls_server_name && *opts->tls_server_name
                              ? opts->tls_server_name
                              : cl->addr.host);
    if (!cl->tls_name) {
      rc = -ENOMEM;
      goto fail;
    }
  }
  cl->opts.tls_ca_file = cl->opts.tls_cert_file = NULL;
  cl->opts.tls_key_file = cl->opts.tls_server_name = NULL;
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    rc = -errno;
    goto fail;
  }
  cl->wake_rd = fds[0];
  cl->wake_wr = fds[1];
  rc = -pthread_create(&cl->thread, NULL, client__io_main, cl);
  if (rc)
    goto fail;
  *out = cl;
  return 0;
fail:
  client__destroy(cl);
  return rc;
}

void sl_client_free(sl_client_t *cl) {
  if (!cl)
    return;
  pthread_mutex_lock(&cl->mu);
  cl->stopping = true;
  pthread_cond_broadcast(&cl->cond);
  if (client__on_io_thread(cl)) {
    /* Never free what is on the call stack: the thread cleans up. */
    cl->free_on_exit = true;
    pthread_mutex_unlock(&cl->mu);
    return;
  }
  pthread_mutex_unlock(&cl->mu);
  client__wake(cl);
  pthread_join(cl->thread, NULL);
  client__destroy(cl);
}

/* ---- publishing ------------------------------------------------------- */

/* Waits on cond until deadline_ns (0: no limit). Returns 0 or ETIMEDOUT. */
static int wait_until(sl_client_t *cl, uint64_t deadline_ns) {
  struct timespec ts;

  if (deadline_ns == 0)
    return pthread_cond_wait(&cl->cond, &cl->mu);
  ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
  ts.tv_nsec = (long)(deadline_ns % 1000000000u);
  return pthread_cond_timedwait(&cl->cond, &cl->mu, &ts);
}

static uint64_t deadline_after(int timeout_ms) {
  if (timeout_ms < 0)
    return 0;
  return sl_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
}

int sl_client_publish(sl_client_t *cl, const char *stream,
                      const Sluice__V1__Event *ev, uint64_t *batch_id) {
  size_t esz = sluice__v1__event__get_packed_size(ev);
  size_t need = 1 + 10 + esz; /* tag, length varint, event */
  size_t slen;
  uint64_t deadline = 0;
  bool wake = false;
  batch_t *b;
  int rc = 0;

  stream = stream ? stream : "";
  slen = strlen(stream);
  if (slen > 4096 ||
      need > SL_FRAME_DEFAULT_MAX_BYTES - SL_FRAME_PUBLISH_HEADER_MAX(slen))
    return SL_ETOOBIG;
  pthread_mutex_lock(&cl->mu);
  while (!cl->stopping && cl->buffered >= cl->opts.max_buffered_events) {
    if (cl->opts.publish_timeout_ms == 0 || client__on_io_thread(cl)) {
      rc = SL_EBACKPRESSURE;
      goto out;
    }
    if (deadline == 0 && cl->opts.publish_timeout_ms > 0)
      deadline = deadline_after(cl->opts.publish_timeout_ms);
    if (wait_until(cl, deadline) == ETIMEDOUT &&
        cl->buffered >= cl->opts.max_buffered_events) {
      rc = SL_EBACKPRESSURE;
      goto out;
    }
  }
  if (cl->stopping) {
    rc = SL_ECLOSED;
    goto out;
  }
  b = cl->open;
  if (b && (strcmp(b->stream, stream) != 0 ||
            b->buf.len - b->room + need > cl->opts.max_batch_bytes)) {
    client__seal_locked(cl);
    wake = true;
    b = NULL;
  }
  if (!b) {
    b = batch_new(cl->next_id, stream, need);
    if (!b) {
      rc = -ENOMEM;
      goto out;
    }
    cl->next_id++;
    cl->open = b;
    wake = true; /* the I/O thread arms the linger timer */
  } else if (sl_frame_buf_reserve(&b->buf, need) != 0) {
    rc = -ENOMEM;
    goto out;
  }
  /* Room is reserved: appending cannot fail. */
  if (sl_frame_event_append(&b->buf, ev) != 0)
    abort();
  b->n_events++;
  cl->buffered++;
  cl->st.published++;
  if (batch_id)
    *batch_id = b->id;
  if (b->n_events >= cl->opts.max_batch_events ||
      b->buf.len - b->room >= cl->opts.max_batch_bytes) {
    client__seal_locked(cl);
    wake = true;
  }
out:
  pthread_mutex_unlock(&cl->mu);
  if (wake)
    client__wake(cl);
  return rc;
}

int sl_client_publish_reading(sl_client_t *cl, const char *stream,
                              const char *source, int64_t time_ns, double value,
                              Sluice__V1__Quality quality, const char *unit,
                              uint64_t *batch_id) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;

  ev.source = (char *)(source ? source : "");
  ev.time_ns = time_ns ? time_ns : sl_now_wall_ns();
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = value;
  rd.quality = quality;
  rd.unit = (char *)(unit ? unit : "");
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  return sl_client_publish(cl, stream, &ev, batch_id);
}

/* The lowest batch id not yet acked or failed; UINT64_MAX when none. */
static uint64_t min_outstanding(const sl_client_t *cl) {
  uint64_t m = cl->completing ? cl->completing : UINT64_MAX;

  if (cl->inflight.head && cl->inflight.head->id < m)
    m = cl->inflight.head->id;
  if (cl->sealed.head && cl->sealed.head->id < m)
    m = cl->sealed.head->id;
  if (cl->open && cl->open->id < m)
    m = cl->open->id;
  return m;
}

int sl_client_flush(sl_client_t *cl, int timeout_ms) {
  uint64_t deadline = deadline_after(timeout_ms);
  uint64_t last;
  int rc = 0;

  if (client__on_io_thread(cl))
    return -EDEADLK;
  pthread_mutex_lock(&cl->mu);
  if (cl->open) {
    client__seal_locked(cl);
    client__wake(cl);
  }
  last = cl->next_id - 1;
  while (min_outstanding(cl) <= last) {
    if (cl->stopping) {
      rc = SL_ECLOSED;
      break;
    }
    if (timeout_ms == 0 || wait_until(cl, deadline) == ETIMEDOUT) {
      if (min_outstanding(cl) <= last)
        rc = -ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&cl->mu);
  return rc;
}

void sl_client_stats(sl_client_t *cl, sl_client_stats_t *stats) {
  pthread_mutex_lock(&cl->mu);
  *stats = cl->st;
  stats->in_flight = cl->inflight.n;
  stats->buffered = cl->buffered;
  pthread_mutex_unlock(&cl->mu);
}
