/*
 * libsluice internals, shared by client.c (caller side: options, batching,
 * flush) and client_io.c (the I/O thread). No other module includes this.
 *
 * Locking: one mutex (mu) guards the batch lists and counters; the caller
 * side and the I/O thread both take it briefly. Socket, read buffer and
 * connection state belong to the I/O thread alone. Callbacks are called by
 * the I/O thread with mu released.
 */
#ifndef SL_CLIENT_INT_H
#define SL_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wire/frame.h"
#include "sluice/client.h"

/*
 * One batch: its events serialized once, with room in front for the
 * Publish header, so sealing writes a header and never copies or allocates
 * (and so never fails).
 */
typedef struct batch {
  struct batch *next; /* in open, sealed or in-flight order */
  uint64_t id;        /* client batch id, never reused by this client */
  uint32_t n_events;  /* events in the batch */
  char *stream;       /* owned; "" for the default stream */
  sl_frame_buf_t buf; /* [room][events]; the frame once sealed */
  size_t room;        /* bytes reserved in front of the events */
  size_t frame_off;   /* sealed: where the frame starts in buf */
  size_t frame_len;   /* sealed: frame bytes; 0 while open */
  uint64_t opened_ns; /* monotonic time of the first event */
} batch_t;

/* A FIFO of batches in ascending id order. */
typedef struct batch_list {
  batch_t *head;
  batch_t *tail;
  uint32_t n;
} batch_list_t;

/* The parsed address. */
typedef struct client_addr {
  bool is_unix;
  char *host; /* owned; inet only, brackets removed */
  char *port; /* owned; inet only */
  char *path; /* owned; unix only */
} client_addr_t;

struct sl_client {
  sl_client_opts_t opts; /* copy; strings below are owned */
  char *client_id;
  char *token;
  void *tls_ctx;  /* SSL_CTX for TLS to the daemon, NULL = plain */
  char *tls_name; /* owned: name the daemon's certificate must carry */
  client_addr_t addr;
  pthread_t thread;
  int wake_rd; /* self-pipe: publish/flush/free wake the I/O thread */
  int wake_wr;

  pthread_mutex_t mu;
  pthread_cond_t cond; /* broadcast when batches complete or state changes */
  /* Guarded by mu. */
  batch_t *open;           /* the batch being filled, or NULL */
  batch_list_t sealed;     /* sealed, waiting to be (re)sent */
  batch_list_t inflight;   /* sent, awaiting Ack or Error */
  uint64_t next_id;        /* id of the next batch opened */
  uint32_t buffered;       /* events not yet acked or failed */
  uint64_t completing;     /* id of the batch whose ack_cb is running, or 0:
                              unlinked from the lists but still outstanding, so
                              flush returns only after the callback */
  bool stopping;           /* sl_client_free() started */
  bool free_on_exit;       /* freed from a callback: the thread cleans up */
  sl_client_stats_t st;    /* counters (buffered/in_flight filled on read) */
  uint32_t srv_max_frame;  /* daemon's limits from HelloAck; 0 = unknown */
  uint32_t srv_max_events; /* idem */
};

/* client.c */
void client__batch_free(batch_t *b);
void client__seal_locked(sl_client_t *cl);
void client__list_push(batch_list_t *l, batch_t *b);
batch_t *client__list_pop(batch_list_t *l);
void client__wake(sl_client_t *cl);
void client__destroy(sl_client_t *cl);

/* client_tls.c: OpenSSL for TLS to the daemon. The session calls keep
 * recv(2)/send(2)'s conventions so the I/O loop treats both alike. */
int client__tls_ctx_new(const sl_client_opts_t *o, void **ctx);
void client__tls_ctx_free(void *ctx);
/* A client session on connected socket fd, verifying name. Returns 0 and
 * *ssl, or -ENOMEM. */
int client__tls_new(void *ctx, int fd, const char *name, void **ssl);
void client__tls_free(void *ssl);
/* >0 bytes, 0 on close_notify, -1 with errno: EAGAIN (TLS waits; *wait_read
 * set when it waits for input) or EPROTO (reason: client__tls_reason()). */
ssize_t client__tls_recv(void *ssl, void *buf, size_t n);
ssize_t client__tls_send(void *ssl, const void *buf, size_t n, bool *wait_read);
const char *client__tls_reason(void);

/* client_io.c */
void *client__io_main(void *arg);
bool client__on_io_thread(sl_client_t *cl);

#endif /* SL_CLIENT_INT_H */
