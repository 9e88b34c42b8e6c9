/* The fake daemon for the client tests: see fake_server.h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire/frame.h"
#include "tests/client/fake_server.h"

#define MAX_PUBS 100000
#define MAX_HELD 4096

struct fake_server {
  fake_opts_t opts;
  pthread_t thread;
  int lfd;        /* listening socket */
  int cfd;        /* current connection, or -1 */
  int wake[2];    /* stall changes and stop */
  char addr[256]; /* fake_address() */
  char dir[64];   /* temp dir of the Unix socket */
  pthread_mutex_t mu;
  /* Guarded by mu. */
  bool stop;
  bool stall;
  fake_pub_t *pubs;
  size_t n_pubs;
  int conns;
  char hello_id[128];
  char hello_token[128];
  /* Server thread only. */
  sl_frame_buf_t rbuf;
  sl_frame_arena_t *arena;
  uint64_t next_offset;
  int pubs_this_conn;
  int drops;
  uint64_t held_id[MAX_HELD];
  uint32_t held_count[MAX_HELD];
  size_t n_held;
};

static void send_all(fake_server_t *fs, const sl_frame_buf_t *b) {
  size_t off = 0;
  while (off < b->len && fs->cfd >= 0) {
    ssize_t n = send(fs->cfd, b->data + off, b->len - off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return;
    }
    off += (size_t)n;
  }
}

static void send_ack(fake_server_t *fs, uint64_t id, uint32_t count) {
  sl_frame_buf_t b;
  sl_frame_buf_init(&b);
  sl_frame_encode_ack(&b, id, fs->next_offset, count);
  fs->next_offset += count;
  send_all(fs, &b);
  sl_frame_buf_close(&b);
}

static void drop_conn(fake_server_t *fs) {
  if (fs->cfd >= 0)
    close(fs->cfd);
  fs->cfd = -1;
  fs->rbuf.len = 0;
  fs->n_held = 0; /* their acks are lost with the connection */
}

static void on_frame(fake_server_t *fs, const Sluice__V1__Frame *fr) {
  sl_frame_buf_t b;
  bool stall;

  sl_frame_buf_init(&b);
  switch (fr->kind_case) {
  case SLUICE__V1__FRAME__KIND_HELLO:
    pthread_mutex_lock(&fs->mu);
    snprintf(fs->hello_id, sizeof(fs->hello_id), "%s", fr->hello->client_id);
    snprintf(fs->hello_token, sizeof(fs->hello_token), "%s", fr->hello->token);
    pthread_mutex_unlock(&fs->mu);
    if (fs->opts.hello_error)
      sl_frame_encode_error(&b, 0, SL_ECONFIG, "bad token", true);
    else
      sl_frame_encode_hello_ack(&b, "fake-node", 4u << 20,
                                fs->opts.max_batch_events);
    send_all(fs, &b);
    if (fs->opts.hello_error)
      drop_conn(fs);
    break;
  case SLUICE__V1__FRAME__KIND_PUBLISH: {
    uint64_t id = fr->publish->batch_id;
    uint32_t count = (uint32_t)fr->publish->n_events;
    pthread_mutex_lock(&fs->mu);
    if (fs->n_pubs < MAX_PUBS) {
      fs->pubs[fs->n_pubs].batch_id = id;
      fs->pubs[fs->n_pubs].count = count;
      fs->pubs[fs->n_pubs].conn = fs->conns;
      fs->n_pubs++;
    }
    stall = fs->stall;
    pthread_mutex_unlock(&fs->mu);
    fs->pubs_this_conn++;
    if (fs->opts.drop_every && fs->drops < fs->opts.max_drops &&
        fs->pubs_this_conn % fs->opts.drop_every == 0) {
      fs->drops++;
      drop_conn(fs);
    } else if (id == fs->opts.error_batch) {
      sl_frame_encode_error(&b, id, SL_ESTORE, "injected failure", false);
      send_all(fs, &b);
    } else if ((stall || fs->n_held) && fs->n_held < MAX_HELD) {
      fs->held_id[fs->n_held] = id;
      fs->held_count[fs->n_held] = count;
      fs->n_held++;
    } else {
      send_ack(fs, id, count);
    }
    break;
  }
  case SLUICE__V1__FRAME__KIND_PING:
    sl_frame_encode_pong(&b, fr->ping->nonce);
    send_all(fs, &b);
    break;
  default:
    break;
  }
  sl_frame_buf_close(&b);
}

static void on_readable(fake_server_t *fs) {
  size_t off = 0, consumed, blen;
  const uint8_t *body;
  const Sluice__V1__Frame *fr;
  ssize_t n;

  sl_frame_buf_reserve(&fs->rbuf, 64u << 10);
  n = recv(fs->cfd, fs->rbuf.data + fs->rbuf.len, fs->rbuf.cap - fs->rbuf.len,
           0);
  if (n <= 0) {
    drop_conn(fs);
    return;
  }
  fs->rbuf.len += (size_t)n;
  while (fs->cfd >= 0) {
    if (sl_frame_parse(fs->rbuf.data + off, fs->rbuf.len - off,
                       SL_FRAME_DEFAULT_MAX_BYTES, &consumed, &body,
                       &blen) != 0 ||
        (consumed &&
         sl_frame_decode(fs->arena, body, blen, SL_FRAME_FROM_CLIENT, &fr, NULL,
                         0) != 0)) {
      drop_conn(fs);
      return;
    }
    if (!consumed)
      break;
    off += consumed;
    on_frame(fs, fr);
  }
  if (fs->cfd >= 0)
    sl_frame_buf_consume(&fs->rbuf, off);
}

static void *server_main(void *arg) {
  fake_server_t *fs = arg;

  for (;;) {
    struct pollfd pfd[3];
    int n = 2;
    bool stop, stall;

    pthread_mutex_lock(&fs->mu);
    stop = fs->stop;
    stall = fs->stall;
    pthread_mutex_unlock(&fs->mu);
    if (stop)
      break;
    if (!stall && fs->n_held && fs->cfd >= 0) {
      for (size_t i = 0; i < fs->n_held; i++)
        send_ack(fs, fs->held_id[i], fs->held_count[i]);
      fs->n_held = 0;
    }
    pfd[0].fd = fs->wake[0];
    pfd[0].events = POLLIN;
    pfd[1].fd = fs->lfd;
    pfd[1].events = POLLIN;
    if (fs->cfd >= 0) {
      pfd[2].fd = fs->cfd;
      pfd[2].events = POLLIN;
      n = 3;
    }
    if (poll(pfd, (nfds_t)n, -1) < 0)
      continue;
    if (pfd[0].revents) {
      char c[16];
      while (read(fs->wake[0], c, sizeof(c)) > 0)
        ;
    }
    if (n == 3 && pfd[2].revents)
      on_readable(fs);
    if (pfd[1].revents & POLLIN) {
      int c = accept(fs->lfd, NULL, NULL);
      if (c >= 0) {
        drop_conn(fs); /* one client at a time: the newest wins */
        fs->cfd = c;
        fs->pubs_this_conn = 0;
        pthread_mutex_lock(&fs->mu);
        fs->conns++;
        pthread_mutex_unlock(&fs->mu);
      }
    }
  }
  drop_conn(fs);
  return NULL;
}

int fake_start(const fake_opts_t *opts, fake_server_t **out) {
  fake_server_t *fs = calloc(1, sizeof(*fs));

  if (!fs)
    return -ENOMEM;
  fs->opts = *opts;
  fs->cfd = -1;
  fs->pubs = calloc(MAX_PUBS, sizeof(*fs->pubs));
  pthread_mutex_init(&fs->mu, NULL);
  sl_frame_buf_init(&fs->rbuf);
  if (!fs->pubs || sl_frame_arena_new(8u << 20, &fs->arena) != 0 ||
      pipe2(fs->wake, O_NONBLOCK | O_CLOEXEC) != 0)
    abort();
  if (opts->unix_socket) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(fs->dir, sizeof(fs->dir), "/tmp/slfakeXXXXXX");
    if (!mkdtemp(fs->dir))
      abort();
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", fs->dir);
    fs->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fs->lfd < 0 || bind(fs->lfd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
      abort();
    snprintf(fs->addr, sizeof(fs->addr), "unix:%s", sun.sun_path);
  } else {
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sin);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0; /* ephemeral */
    fs->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fs->lfd < 0 ||
        bind(fs->lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fs->lfd, (struct sockaddr *)&sin, &sl) != 0)
      abort();
    snprintf(fs->addr, sizeof(fs->addr), "127.0.0.1:%u",
             (unsigned)ntohs(sin.sin_port));
  }
  if (listen(fs->lfd, 16) != 0 ||
      pthread_create(&fs->thread, NULL, server_main, fs) != 0)
    abort();
  *out = fs;
  return 0;
}

static void poke(fake_server_t *fs) {
  char c = 1;
  if (write(fs->wake[1], &c, 1) < 0) {
    /* full pipe: a wakeup is pending anyway */
  }
}

void fake_stop(fake_server_t *fs) {
  char path[128];

  pthread_mutex_lock(&fs->mu);
  fs->stop = true;
  pthread_mutex_unlock(&fs->mu);
  poke(fs);
  pthread_join(fs->thread, NULL);
  close(fs->lfd);
  close(fs->wake[0]);
  close(fs->wake[1]);
  if (fs->opts.unix_socket) {
    snprintf(path, sizeof(path), "%s/s", fs->dir);
    unlink(path);
    rmdir(fs->dir);
  }
  sl_frame_buf_close(&fs->rbuf);
  sl_frame_arena_free(fs->arena);
  pthread_mutex_destroy(&fs->mu);
  free(fs->pubs);
  free(fs);
}

const char *fake_address(fake_server_t *fs) {
  return fs->addr;
}

void fake_stall(fake_server_t *fs, bool stall) {
  pthread_mutex_lock(&fs->mu);
  fs->stall = stall;
  pthread_mutex_unlock(&fs->mu);
  poke(fs);
}

size_t fake_received(fake_server_t *fs, fake_pub_t *out, size_t max) {
  size_t n;
  pthread_mutex_lock(&fs->mu);
  n = fs->n_pubs;
  if (out)
    memcpy(out, fs->pubs, SL_MIN(n, max) * sizeof(*out));
  pthread_mutex_unlock(&fs->mu);
  return n;
}

int fake_connections(fake_server_t *fs) {
  int n;
  pthread_mutex_lock(&fs->mu);
  n = fs->conns;
  pthread_mutex_unlock(&fs->mu);
  return n;
}

void fake_hello(fake_server_t *fs, char *id, char *token, size_t len) {
  pthread_mutex_lock(&fs->mu);
  snprintf(id, len, "%s", fs->hello_id);
  snprintf(token, len, "%s", fs->hello_token);
  pthread_mutex_unlock(&fs->mu);
}
