/*
 * libsluice's I/O thread: connect, handshake, pipelined Publish frames, Ack
 * and Error matching, reconnect with resend, linger timers.
 *
 * Why poll(2) and not libuv: the thread watches exactly two descriptors
 * (the socket and a wakeup pipe) and one timer (the earliest of linger,
 * connect timeout and reconnect backoff), which poll's timeout covers. It
 * keeps the library free of a libuv dependency and of a second event loop
 * inside connectors that may run their own, and the whole loop stays
 * readable in one file. Name resolution (getaddrinfo) blocks this thread
 * during a connect attempt only, which delays nothing but that attempt.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/client_int.h"

#define READ_CHUNK (16u << 10)
#define NS_PER_MS 1000000u

typedef enum conn_state {
  ST_IDLE,       /* no socket; reconnect at deadline_ns */
  ST_CONNECTING, /* non-blocking connect in progress */
  ST_HANDSHAKE,  /* Hello sent, waiting for HelloAck */
  ST_READY,      /* publishing */
} conn_state_t;

typedef struct io {
  sl_client_t *cl;
  int fd;                  /* the socket, or -1 */
  conn_state_t state;      /* see conn_state_t */
  uint64_t deadline_ns;    /* connect/handshake timeout, or reconnect time */
  uint32_t attempt;        /* failed attempts since the last handshake */
  bool ever_connected;     /* a handshake succeeded before */
  sl_frame_buf_t rbuf;     /* bytes read, not yet parsed */
  sl_frame_buf_t ctl;      /* control frames to write (Hello, Pong) */
  batch_t *sending;        /* in-flight batch being written, or NULL */
  size_t send_off;         /* bytes of sending's frame already written */
  sl_frame_arena_t *arena; /* decodes the daemon's frames */
  uint64_t rng;            /* xorshift state for backoff jitter */
  void *ssl;               /* TLS session (client_tls.c), NULL = plain */
  bool tls_wait_read;      /* a TLS write waits for input: no POLLOUT */
} io_t;

static __thread sl_client_t *io_self; /* the client whose thread this is */

bool client__on_io_thread(sl_client_t *cl) {
  return io_self == cl;
}

static uint64_t next_rand(io_t *io) {
  io->rng ^= io->rng << 13;
  io->rng ^= io->rng >> 7;
  io->rng ^= io->rng << 17;
  return io->rng;
}

static void notify(io_t *io, sl_client_state_t state, int err,
                   const char *reason) {
  sl_client_t *cl = io->cl;

  if (cl->opts.state_cb)
    cl->opts.state_cb(cl, state, err, reason ? reason : "", cl->opts.opaque);
}

/*
 * Reports a batch's outcome and frees it. Called with mu released, after
 * the caller unlinked b and set cl->completing to its id under mu (in the
 * same critical section, so flush never sees the batch as done early).
 * Counters move after the callback returned.
 */
static void complete(io_t *io, batch_t *b, uint64_t first_offset, int err) {
  sl_client_t *cl = io->cl;

  if (cl->opts.ack_cb)
    cl->opts.ack_cb(cl, b->id, first_offset, b->n_events, err, cl->opts.opaque);
  pthread_mutex_lock(&cl->mu);
  cl->completing = 0;
  cl->buffered -= b->n_events;
  if (err)
    cl->st.failed += b->n_events;
  else
    cl->st.acked += b->n_events;
  pthread_cond_broadcast(&cl->cond);
  pthread_mutex_unlock(&cl->mu);
  client__batch_free(b);
}

/*
 * Drops the connection: every in-flight batch goes back to the front of the
 * sealed queue, in id order, to be resent with the same id after the
 * reconnect. Schedules that reconnect with jittered exponential backoff.
 */
static void disconnect(io_t *io, int err, const char *reason) {
  sl_client_t *cl = io->cl;
  uint64_t base, delay;
  unsigned shift = io->attempt < 20 ? io->attempt : 20;

  client__tls_free(io->ssl);
  io->ssl = NULL;
  io->tls_wait_read = false;
  if (io->fd >= 0)
    close(io->fd);
  io->fd = -1;
  io->rbuf.len = 0;
  io->ctl.len = 0;
  io->sending = NULL;
  pthread_mutex_lock(&cl->mu);
  if (cl->inflight.head) {
    cl->st.resent += cl->inflight.n;
    cl->inflight.tail->next = cl->sealed.head;
    if (!cl->sealed.head)
      cl->sealed.tail = cl->inflight.tail;
    cl->sealed.head = cl->inflight.head;
    cl->sealed.n += cl->inflight.n;
    memset(&cl->inflight, 0, sizeof(cl->inflight));
  }
  cl->st.connected = 0;
  pthread_mutex_unlock(&cl->mu);
  base = (uint64_t)cl->opts.reconnect_backoff_min_ms << shift;
  if (base > cl->opts.reconnect_backoff_max_ms)
    base = cl->opts.reconnect_backoff_max_ms;
  delay = base / 2 + next_rand(io) % (base / 2 + 1);
  io->attempt++;
  io->state = ST_IDLE;
  io->deadline_ns = sl_now_mono_ns() + delay * NS_PER_MS;
  notify(io, SL_CLIENT_DISCONNECTED, err, reason);
}

static void on_connected(io_t *io) {
  sl_client_t *cl = io->cl;

  io->ctl.len = 0;
  /* With TLS the Hello's first write drives the handshake. */
  if (cl->tls_ctx &&
      client__tls_new(cl->tls_ctx, io->fd, cl->tls_name, &io->ssl) != 0) {
    disconnect(io, -ENOMEM, "TLS session");
    return;
  }
  if (sl_frame_encode_hello(&io->ctl, SL_PROTOCOL_VERSION, cl->client_id,
                            cl->token) != 0) {
    disconnect(io, -ENOMEM, "cannot encode hello");
    return;
  }
  io->state = ST_HANDSHAKE;
}

static void start_connect(io_t *io) {
  sl_client_t *cl = io->cl;
  struct addrinfo hints, *res = NULL, *ai;
  struct sockaddr_un sun;
  int rc, n = 0, one = 1;

  io->deadline_ns =
      sl_now_mono_ns() + (uint64_t)cl->opts.connect_timeout_ms * NS_PER_MS;
  if (cl->addr.is_unix) {
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, cl->addr.path); /* length checked at parse */
    io->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (io->fd < 0)
      goto fail_errno;
    rc = connect(io->fd, (struct sockaddr *)&sun, sizeof(sun));
  } else {
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(cl->addr.host, cl->addr.port, &hints, &res);
    if (rc != 0) {
      disconnect(io, SL_ENOTFOUND, gai_strerror(rc));
      return;
    }
    /* Successive attempts rotate through the resolved addresses. */
    for (ai = res; ai; ai = ai->ai_next)
      n++;
    ai = res;
    for (int k = 0; k < (int)(io->attempt % (uint32_t)n); k++)
      ai = ai->ai_next;
    io->fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (io->fd < 0) {
      freeaddrinfo(res);
      goto fail_errno;
    }
    /* We batch ourselves: Nagle would only add latency. */
    setsockopt(io->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rc = connect(io->fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
  }
  if (rc == 0) {
    on_connected(io);
    return;
  }
  if (errno == EINPROGRESS) {
    io->state = ST_CONNECTING;
    return;
  }
fail_errno:
  disconnect(io, -errno, "connect failed");
}

/* Finds and unlinks batch id from the in-flight list; NULL if absent. */
static batch_t *take_inflight(sl_client_t *cl, uint64_t id) {
  batch_t **pp = &cl->inflight.head, *prev = NULL;

  for (; *pp; prev = *pp, pp = &(*pp)->next) {
    batch_t *b = *pp;
    if (b->id != id)
      continue;
    *pp = b->next;
    if (cl->inflight.tail == b)
      cl->inflight.tail = prev;
    cl->inflight.n--;
    b->next = NULL;
    return b;
  }
  return NULL;
}

/* Returns 0, or a negative code after which the connection must drop. */
static int on_frame(io_t *io, const Sluice__V1__Frame *fr, char *err,
                    size_t errlen) {
  sl_client_t *cl = io->cl;
  batch_t *b;

  switch (fr->kind_case) {
  case SLUICE__V1__FRAME__KIND_HELLO_ACK:
    if (io->state != ST_HANDSHAKE)
      break;
    pthread_mutex_lock(&cl->mu);
    cl->srv_max_frame = fr->hello_ack->max_frame_bytes;
    cl->srv_max_events = fr->hello_ack->max_batch_events;
    if (io->ever_connected)
      cl->st.reconnects++;
    cl->st.connected = 1;
    pthread_mutex_unlock(&cl->mu);
    io->ever_connected = true;
    io->attempt = 0;
    io->state = ST_READY;
    notify(io, SL_CLIENT_CONNECTED, 0, fr->hello_ack->node_id);
    return 0;
  case SLUICE__V1__FRAME__KIND_ACK:
  case SLUICE__V1__FRAME__KIND_ERROR: {
    bool is_ack = fr->kind_case == SLUICE__V1__FRAME__KIND_ACK;
    uint64_t id = is_ack ? fr->ack->batch_id : fr->error->batch_id;
    if (!is_ack && id == 0) {
      notify(io, SL_CLIENT_SERVER_ERROR, fr->error->code, fr->error->reason);
      if (!fr->error->fatal)
        return 0;
      snprintf(err, errlen, "%s: %s", fr->error->name, fr->error->reason);
      return fr->error->code;
    }
    if (io->state != ST_READY)
      break;
    pthread_mutex_lock(&cl->mu);
    b = take_inflight(cl, id);
    if (b && (b == io->sending || (is_ack && fr->ack->count != b->n_events))) {
      /* Acked before fully sent, or a count that does not match. */
      client__list_push(&cl->inflight, b); /* back, for the resend */
      b = NULL;
    }
    if (b)
      cl->completing = b->id;
    pthread_mutex_unlock(&cl->mu);
    if (!b) {
      snprintf(err, errlen, "%s for unknown batch %llu",
               is_ack ? "ack" : "error", (unsigned long long)id);
      return SL_EPROTO;
    }
    complete(io, b, is_ack ? fr->ack->first_offset : 0,
             is_ack ? 0 : fr->error->code);
    if (!is_ack && fr->error->fatal) {
      snprintf(err, errlen, "%s: %s", fr->error->name, fr->error->reason);
      return fr->error->code;
    }
    return 0;
  }
  case SLUICE__V1__FRAME__KIND_PING:
    return sl_frame_encode_pong(&io->ctl, fr->ping->nonce);
  case SLUICE__V1__FRAME__KIND_PONG:
    return 0;
  default:
    break;
  }
  snprintf(err, errlen, "unexpected %s frame in state %d",
           sl_frame_kind_name(fr->kind_case), (int)io->state);
  return SL_EPROTO;
}

/* Reads what is available and handles every complete frame. */
static void do_read(io_t *io) {
  sl_client_t *cl = io->cl;
  size_t limit = (size_t)cl->opts.max_frame_bytes + SL_FRAME_HEADER_BYTES;
  char err[256];
  ssize_t n;
  int rc;

  for (;;) {
    size_t off = 0, consumed, blen;
    const uint8_t *body;
    const Sluice__V1__Frame *fr;

    if (sl_frame_buf_reserve(&io->rbuf, READ_CHUNK) != 0) {
      disconnect(io, -ENOMEM, "read buffer");
      return;
    }
    io->tls_wait_read = false; /* input came: a blocked write may go on */
    n = io->ssl ? client__tls_recv(io->ssl, io->rbuf.data + io->rbuf.len,
                                   SL_MIN(io->rbuf.cap - io->rbuf.len, limit))
                : recv(io->fd, io->rbuf.data + io->rbuf.len,
                       SL_MIN(io->rbuf.cap - io->rbuf.len, limit), 0);
    if (n == 0) {
      disconnect(io, SL_ECLOSED, "connection closed by peer");
      return;
    }
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        disconnect(io, io->ssl && errno == EPROTO ? SL_EPROTO : -errno,
                   io->ssl && errno == EPROTO ? client__tls_reason()
                                              : "read failed");
      return;
    }
    io->rbuf.len += (size_t)n;
    for (;;) {
      rc = sl_frame_parse(io->rbuf.data + off, io->rbuf.len - off,
                          cl->opts.max_frame_bytes, &consumed, &body, &blen);
      if (rc) {
        disconnect(io, rc, "bad frame length from daemon");
        return;
      }
      if (!consumed)
        break;
      err[0] = '\0';
      rc = sl_frame_decode(io->arena, body, blen, SL_FRAME_FROM_SERVER, &fr,
                           err, sizeof(err));
      if (rc == 0)
        rc = on_frame(io, fr, err, sizeof(err));
      if (rc) {
        disconnect(io, rc, err);
        return;
      }
      off += consumed;
    }
    sl_frame_buf_consume(&io->rbuf, off);
  }
}

/*
 * Picks the next sealed batch to send when the window allows, failing
 * batches the daemon's limits cannot take. Returns false when none.
 */
static bool next_batch(io_t *io) {
  sl_client_t *cl = io->cl;
  batch_t *b;

  for (;;) {
    bool too_big;
    pthread_mutex_lock(&cl->mu);
    if (!cl->sealed.head || cl->inflight.n >= cl->opts.max_in_flight) {
      pthread_mutex_unlock(&cl->mu);
      return false;
    }
    b = client__list_pop(&cl->sealed);
    too_big = (cl->srv_max_frame &&
               b->frame_len - SL_FRAME_HEADER_BYTES > cl->srv_max_frame) ||
              (cl->srv_max_events && b->n_events > cl->srv_max_events);
    if (!too_big)
      client__list_push(&cl->inflight, b);
    else
      cl->completing = b->id;
    pthread_mutex_unlock(&cl->mu);
    if (!too_big) {
      io->sending = b;
      io->send_off = 0;
      return true;
    }
    complete(io, b, 0, SL_ETOOBIG);
  }
}

/* Writes until the socket would block or nothing is left to send. */
static void do_write(io_t *io) {
  for (;;) {
    const uint8_t *p;
    size_t len;
    ssize_t n;

    if (io->sending) {
      p = io->sending->buf.data + io->sending->frame_off + io->send_off;
      len = io->sending->frame_len - io->send_off;
    } else if (io->ctl.len) {
      p = io->ctl.data;
      len = io->ctl.len;
    } else if (io->state == ST_READY && next_batch(io)) {
      continue;
    } else {
      return;
    }
    n = io->ssl ? client__tls_send(io->ssl, p, len, &io->tls_wait_read)
                : send(io->fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        disconnect(io, io->ssl && errno == EPROTO ? SL_EPROTO : -errno,
                   io->ssl && errno == EPROTO ? client__tls_reason()
                                              : "write failed");
      return;
    }
    if (io->sending) {
      io->send_off += (size_t)n;
      if (io->send_off == io->sending->frame_len)
        io->sending = NULL;
    } else {
      sl_frame_buf_consume(&io->ctl, (size_t)n);
    }
  }
}

static bool want_write(io_t *io) {
  sl_client_t *cl = io->cl;
  bool more;

  if (io->tls_wait_read)
    return false; /* TLS needs the daemon's answer first (handshake) */
  if (io->sending || io->ctl.len)
    return true;
  if (io->state != ST_READY)
    return false;
  pthread_mutex_lock(&cl->mu);
  more = cl->sealed.head && cl->inflight.n < cl->opts.max_in_flight;
  pthread_mutex_unlock(&cl->mu);
  return more;
}

/* Fails every outstanding batch with SL_ECLOSED, in id order. */
static void fail_all(io_t *io) {
  sl_client_t *cl = io->cl;
  batch_t *b;

  for (;;) {
    pthread_mutex_lock(&cl->mu);
    b = client__list_pop(&cl->inflight);
    if (!b)
      b = client__list_pop(&cl->sealed);
    if (!b) {
      b = cl->open;
      cl->open = NULL;
    }
    if (b)
      cl->completing = b->id;
    pthread_mutex_unlock(&cl->mu);
    if (!b)
      return;
    complete(io, b, 0, SL_ECLOSED);
  }
}

void *client__io_main(void *arg) {
  sl_client_t *cl = arg;
  io_t io;
  bool self_free;

  memset(&io, 0, sizeof(io));
  io.cl = cl;
  io.fd = -1;
  io.state = ST_IDLE;
  io.deadline_ns = 0; /* connect at once */
  io.rng = sl_now_mono_ns() ^ (uint64_t)(uintptr_t)cl;
  if (io.rng == 0)
    io.rng = 0x9e3779b97f4a7c15ull;
  io_self = cl;
  if (cl->tls_ctx) {
    /* OpenSSL writes with send(2) without MSG_NOSIGNAL: a daemon gone must
     * not kill the host process. Blocked here, SIGPIPE stays pending on this
     * thread and the write fails with EPIPE. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
  }
  sl_frame_buf_init(&io.rbuf);
  sl_frame_buf_init(&io.ctl);
  /* Daemon frames are small; 4x covers protobuf-c's decoded overhead. */
  if (sl_frame_arena_new(4 * (size_t)cl->opts.max_frame_bytes + 4096,
                         &io.arena) != 0)
    abort(); /* a control allocation at startup */
  for (;;) {
    struct pollfd pfd[2];
    uint64_t now = sl_now_mono_ns(), wake_at = UINT64_MAX;
    int nfds = 1, timeout;
    bool stop;

    pthread_mutex_lock(&cl->mu);
    stop = cl->stopping;
    if (cl->open) {
      uint64_t due =
          cl->open->opened_ns + (uint64_t)cl->opts.linger_ms * NS_PER_MS;
      if (now >= due)
        client__seal_locked(cl);
      else
        wake_at = due;
    }
    pthread_mutex_unlock(&cl->mu);
    if (stop)
      break;
    if (io.state == ST_IDLE && now >= io.deadline_ns)
      start_connect(&io);
    else if ((io.state == ST_CONNECTING || io.state == ST_HANDSHAKE) &&
             now >= io.deadline_ns)
      disconnect(&io, -ETIMEDOUT, "connect or handshake timed out");
    if (io.state == ST_HANDSHAKE || io.state == ST_READY)
      do_write(&io);
    if (io.state != ST_READY)
      wake_at = SL_MIN(wake_at, io.deadline_ns);
    pfd[0].fd = cl->wake_rd;
    pfd[0].events = POLLIN;
    if (io.fd >= 0) {
      pfd[1].fd = io.fd;
      pfd[1].events = io.state == ST_CONNECTING ? POLLOUT : POLLIN;
      if (io.state != ST_CONNECTING && want_write(&io))
        pfd[1].events |= POLLOUT;
      nfds = 2;
    }
    now = sl_now_mono_ns();
    if (wake_at == UINT64_MAX)
      timeout = -1;
    else if (wake_at <= now)
      timeout = 0;
    else
      timeout = (int)SL_MIN((wake_at - now + NS_PER_MS - 1) / NS_PER_MS,
                            (uint64_t)60000);
    if (poll(pfd, (nfds_t)nfds, timeout) < 0)
      continue; /* EINTR */
    if (pfd[0].revents & POLLIN) {
      char drain[64];
      while (read(cl->wake_rd, drain, sizeof(drain)) > 0)
        ;
    }
    if (nfds < 2 || pfd[1].revents == 0)
      continue;
    if (io.state == ST_CONNECTING) {
      int soerr = 0;
      socklen_t sl = sizeof(soerr);
      getsockopt(io.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
      if (soerr) {
        disconnect(&io, -soerr, "connect failed");
        continue;
      }
      on_connected(&io);
      continue;
    }
    if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
      do_read(&io);
    if (io.fd >= 0 && (pfd[1].revents & POLLOUT))
      do_write(&io);
  }
  client__tls_free(io.ssl);
  if (io.fd >= 0)
    close(io.fd);
  fail_all(&io);
  sl_frame_buf_close(&io.rbuf);
  sl_frame_buf_close(&io.ctl);
  sl_frame_arena_free(io.arena);
  pthread_mutex_lock(&cl->mu);
  self_free = cl->free_on_exit;
  pthread_mutex_unlock(&cl->mu);
  if (self_free) {
    pthread_detach(pthread_self());
    client__destroy(cl);
  }
  return NULL;
}
